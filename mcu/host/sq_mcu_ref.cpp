// sq_mcu_ref — the host side of the Cortex-M check (mcu/run_qemu.sh, docs/mcu.md): writes test
// images as the raw float32 stream the exported C program reads, and runs the integer engine
// (GraphExecutor, the same integerize() + plan that `sigmaquant export --format c` writes as C)
// over that stream, writing the logits the cross-built program must reproduce bit for bit.
//
//   sq_mcu_ref images [--data fashion-mnist] [--data-dir D] [--offset 0] --count N
//                     -o images.f32 [--labels labels.u8]
//   sq_mcu_ref logits -m q.sqg --images images.f32 -o logits.f32 [--isa auto|reference]
//
// Links only the torch-free libraries (sigmaquant_core, sigmaquant_engine).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "sigmaquant/data.h"
#include "sigmaquant/engine.h"
#include "sigmaquant/error.h"
#include "sigmaquant/fileutil.h"
#include "sigmaquant/integerize.h"
#include "sigmaquant/qmodel.h"

namespace {

[[noreturn]] void usage(const char* msg) {
  std::fprintf(stderr,
               "sq_mcu_ref: %s\n"
               "usage: sq_mcu_ref images [--data FORMAT] [--data-dir DIR] [--offset K] --count N "
               "-o images.f32 [--labels labels.u8]\n"
               "       sq_mcu_ref logits -m q.sqg --images images.f32 -o logits.f32 "
               "[--isa auto|reference]\n",
               msg);
  std::exit(2);
}

int64_t parse_count(const std::string& flag, const std::string& v) {
  char* end = nullptr;
  const long long n = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || n < 0)
    sq::fail("{} '{}': expected a non-negative integer", flag, v);
  return n;
}

struct Args {
  std::string cmd, data = "fashion-mnist", data_dir, out, labels, model, images, isa = "auto";
  int64_t offset = 0, count = -1;
};

Args parse(int argc, char** argv) {
  if (argc < 2) usage("missing command (images or logits)");
  Args a;
  a.cmd = argv[1];
  if (a.cmd != "images" && a.cmd != "logits") usage(("unknown command '" + a.cmd + "'").c_str());
  for (int i = 2; i < argc; ++i) {
    const std::string f = argv[i];
    if (i + 1 >= argc) usage(("flag " + f + " needs a value").c_str());
    const std::string v = argv[++i];
    if (f == "--data")
      a.data = v;
    else if (f == "--data-dir")
      a.data_dir = v;
    else if (f == "--offset")
      a.offset = parse_count(f, v);
    else if (f == "--count")
      a.count = parse_count(f, v);
    else if (f == "-o")
      a.out = v;
    else if (f == "--labels")
      a.labels = v;
    else if (f == "-m")
      a.model = v;
    else if (f == "--images")
      a.images = v;
    else if (f == "--isa")
      a.isa = v;
    else
      usage(("unknown flag " + f).c_str());
  }
  if (a.out.empty()) usage("-o is required");
  return a;
}

void write_images(const Args& a) {
  if (a.count <= 0) sq::fail("--count: expected a positive number of images");
  sq::DataSpec spec;
  spec.format = a.data;
  spec.dir = a.data_dir;
  const sq::DataBundle d = sq::load_data(spec);
  const sq::Dataset& t = d.test;
  if (a.offset + a.count > t.size())
    sq::fail("--offset {} --count {}: the {} test split has {} images", a.offset, a.count, t.name,
             t.size());
  const size_t n = static_cast<size_t>(t.image_numel());
  const char* first = reinterpret_cast<const char*>(t.image(a.offset));
  sq::write_file_atomic(a.out, std::string(first, first + a.count * n * sizeof(float)));
  if (!a.labels.empty()) {
    std::string lab;
    for (int64_t i = 0; i < a.count; ++i) lab += static_cast<char>(t.labels[a.offset + i]);
    sq::write_file_atomic(a.labels, lab);
  }
  std::printf("%lld images of %lld floats (%s test, from %lld) -> %s\n",
              static_cast<long long>(a.count), static_cast<long long>(n), t.name.c_str(),
              static_cast<long long>(a.offset), a.out.c_str());
}

void write_logits(const Args& a) {
  if (a.model.empty()) usage("-m is required");
  if (a.images.empty()) usage("--images is required");
  sq::Isa isa;
  if (a.isa == "auto")
    isa = sq::Isa::Auto;
  else if (a.isa == "reference")
    isa = sq::Isa::Reference;
  else
    sq::fail("--isa '{}': expected auto or reference", a.isa);
  const sq::QuantModel qm = sq::load_qmodel(a.model);
  sq::GraphExecutor ex = sq::GraphExecutor::prepare(qm.graph, sq::integerize(qm), isa);
  const std::string raw = sq::read_file(a.images);
  const size_t in = static_cast<size_t>(ex.input_size()) * sizeof(float);
  if (raw.empty() || raw.size() % in != 0)
    sq::fail("{}: {} bytes (expected a positive multiple of {}: float32 images of {} values)",
             a.images, raw.size(), in, ex.input_size());
  const size_t n = raw.size() / in;
  std::vector<float> image(static_cast<size_t>(ex.input_size()));
  std::vector<float> logits(n * static_cast<size_t>(ex.output_size()));
  for (size_t i = 0; i < n; ++i) {
    std::memcpy(image.data(), raw.data() + i * in, in);
    ex.run(image.data(), logits.data() + i * ex.output_size());
  }
  const char* p = reinterpret_cast<const char*>(logits.data());
  sq::write_file_atomic(a.out, std::string(p, p + logits.size() * sizeof(float)));
  std::printf("%zu images -> %lld logits each (integer engine, isa %s) -> %s\n", n,
              static_cast<long long>(ex.output_size()), a.isa.c_str(), a.out.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Args a = parse(argc, argv);
    if (a.cmd == "images")
      write_images(a);
    else
      write_logits(a);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sq_mcu_ref: %s\n", e.what());
    return 1;
  }
  return 0;
}
