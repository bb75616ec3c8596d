// Writes the seed corpora of the fuzz targets: sq_fuzz_seeds OUT_DIR creates OUT_DIR/<target>/
// with a few small well-formed files (and near-misses) per format, every one under 4 KB
// (fuzz/run.sh adds the example files of targets/ and examples/). Generated rather than committed
// so that the seeds follow the formats if they change.
#include <sys/stat.h>
#include <zlib.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "fuzz_util.h"
#include "sigmaquant/bits.h"
#include "sigmaquant/cost.h"
#include "sigmaquant/fileutil.h"
#include "sigmaquant/graph_io.h"
#include "sigmaquant/integerize.h"
#include "sigmaquant/run_log.h"
#include "sigmaquant/sqm.h"
#include "sigmaquant/transform.h"

namespace {

std::string out_dir;

std::string be32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
          static_cast<char>(v)};
}

std::string gzip(const std::string& raw) {
  z_stream z{};
  // windowBits 15 + 16: a gzip wrapper, as gzopen writes.
  if (deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) std::abort();
  std::string out(deflateBound(&z, raw.size()) + 32, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(raw.data()));
  z.avail_in = static_cast<uInt>(raw.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  if (deflate(&z, Z_FINISH) != Z_STREAM_END) std::abort();
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

void seed(const std::string& target, const std::string& name, const std::string& bytes) {
  const std::string dir = out_dir + "/" + target;
  sq::make_dirs(dir);
  std::ofstream(dir + "/" + name, std::ios::binary) << bytes;
}

std::string pattern(size_t n, unsigned mul) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * mul + 7) & 0xff);
  return s;
}

// ---- idx ----
std::string idx_images(uint32_t n, uint32_t rows, uint32_t cols) {
  return be32(0x803) + be32(n) + be32(rows) + be32(cols) + pattern(size_t{n} * rows * cols, 37);
}
std::string idx_labels(uint32_t n, int classes) {
  std::string s = be32(0x801) + be32(n);
  for (uint32_t i = 0; i < n; ++i) s.push_back(static_cast<char>(i % classes));
  return s;
}

// ---- npy ----
std::string npy(const std::string& descr, const std::string& shape, const std::string& data,
                int major = 1) {
  std::string header =
      "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  const size_t pre = major == 1 ? 10 : 12;
  while ((pre + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string out = "\x93NUMPY";
  out.push_back(static_cast<char>(major));
  out.push_back('\0');
  const size_t len = header.size();
  out.push_back(static_cast<char>(len & 0xff));
  out.push_back(static_cast<char>(len >> 8));
  if (major > 1) out += std::string(2, '\0');
  return out + header + data;
}
std::string f32s(size_t n) {
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    float v = static_cast<float>(i % 11) / 10.0f;
    s.append(reinterpret_cast<const char*>(&v), 4);
  }
  return s;
}
std::string f64s(size_t n) {
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    double v = static_cast<double>(i % 5) / 4.0;
    s.append(reinterpret_cast<const char*>(&v), 8);
  }
  return s;
}
std::string ints(size_t n, int size) {
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    uint64_t v = i % 3;
    s.append(reinterpret_cast<const char*>(&v), static_cast<size_t>(size));
  }
  return s;
}
// The npy target's input: <u16 LE length of the images file><images><labels>.
std::string npy_pair(const std::string& images, const std::string& labels) {
  std::string s;
  s.push_back(static_cast<char>(images.size() & 0xff));
  s.push_back(static_cast<char>(images.size() >> 8));
  return s + images + labels;
}

// ---- sqg ----
sq::Graph tiny_mlp() {
  sq::Graph g("mlp", {1, 2, 2}, 3);
  g.linear("fc", g.flatten("flat", g.input()), 3);
  g.infer_shapes();
  g.init_params(1);
  return g;
}
std::string sqg_bytes(const sq::GraphFile& f) {
  const std::string path = out_dir + "/.seed.sqg";
  sq::save_graph_file(path, f);
  std::string bytes = sq::read_file(path);
  std::remove(path.c_str());
  return bytes;
}
std::string bits_text(const sq::BitConfig& b, const sq::Graph& g) {
  const std::string path = out_dir + "/.seed.json";
  sq::save_bits(path, b, &g);
  std::string text = sq::read_file(path);
  std::remove(path.c_str());
  return text;
}

// The sqg target's second form: <JSON header>\0<payload>.
std::string sqg_unframed(const std::string& file) {
  uint64_t hlen;
  std::memcpy(&hlen, file.data() + 16, 8);
  return file.substr(24, hlen) + '\0' + file.substr(24 + hlen, file.size() - 28 - hlen);
}

// ---- sqm ----
// A quantized model of g (BN folded) with mixed bits and fixed activation ranges, as .sqm bytes.
std::string sqm_bytes(const sq::Graph& float_graph) {
  sq::QuantModel qm;
  qm.graph = sq::fold_batchnorm(float_graph);
  qm.bits = sq::BitConfig::uniform(qm.graph, 4, 8);
  const auto wl = qm.graph.weight_layers();
  sq::LayerBits& first = qm.bits.layers[qm.graph.nodes[wl[0]].name];
  first.channel_wbits.assign(static_cast<size_t>(qm.graph.nodes[wl[0]].out_channels), 3);
  first.channel_wbits[0] = 0;
  qm.weight_scales = sq::max_weight_scales(qm.graph, qm.bits);
  for (const auto& [node, bits] : sq::activation_quant_points(qm.graph, qm.bits))
    qm.acts[qm.graph.nodes[node].name] = sq::act_quant_from_range({-1.0, 2.0}, bits);
  const std::string path = out_dir + "/.seed.sqm";
  sq::save_sqm(path, qm.graph, sq::integerize(qm), {{"seed", true}});
  std::string bytes = sq::read_file(path);
  std::remove(path.c_str());
  return bytes;
}
// A graph the graph executor runs end to end: a residual add, ReLU requantized to a conv's point,
// a depthwise conv into global average pooling with no point between, and the logits.
sq::Graph tiny_residual() {
  sq::Graph g("res", {1, 4, 4}, 2);
  int r = g.relu("r1", g.conv2d("c1", g.input(), 2, 3, 1, 1, 1, true));
  int x = g.relu("r2", g.add("add", g.conv2d("c2", r, 2, 3, 1, 1, 1, true), r));
  x = g.relu6("r3", g.conv2d("dw", x, 2, 3, 1, 1, 2, true));
  g.linear("fc", g.flatten("flat", g.global_avgpool("gap", x)), 2);
  g.infer_shapes();
  g.init_params(3);
  g.input_mean = {0.5f};
  g.input_std = {0.25f};
  return g;
}
// The sqm target's second form: <JSON header>\0<u32 n><weights: n bytes><scales><bias>.
std::string sqm_unframed(const std::string& file) {
  auto section = [&](int k) {
    uint64_t off, len;
    std::memcpy(&off, file.data() + 16 + 32 * k + 16, 8);
    std::memcpy(&len, file.data() + 16 + 32 * k + 24, 8);
    return file.substr(off, len);
  };
  const std::string h = section(0);
  uint32_t hlen;
  std::memcpy(&hlen, h.data(), 4);
  std::string text(hlen, '\0');
  uLongf n = hlen;
  uncompress(reinterpret_cast<Bytef*>(text.data()), &n, reinterpret_cast<const Bytef*>(h.data() + 4),
             h.size() - 4);
  const std::string w = section(1);
  std::string out = text + '\0';
  const uint32_t nw = static_cast<uint32_t>(w.size());
  out.append(reinterpret_cast<const char*>(&nw), 4);
  return out + w + section(2) + section(3);
}

}  // namespace

// A small finished sigmaquant run log and a Pareto table with three points.
void seed_logs() {
  sq::RunLog log;
  log.method = "sigmaquant";
  log.model_name = "convnet";
  log.model_path = "m.sqg";
  log.fp32_accuracy = 0.9;
  log.fp32_val_accuracy = 0.91;
  log.target_name = "shiftadd";
  log.cost_model = "shiftadd";
  sq::BudgetCheck b;
  b.metric = "weight memory";
  b.key = "weight_kib";
  b.unit = "B";
  b.budget = 1024;
  b.value = 900;
  log.target_budgets = {b};
  log.settings = {{"bits_set", "2,4,8"}, {"abits", 8}};
  log.clusters = {{"k", 2}, {"centers", {0.1, 0.3}}, {"bits", {4, 8}}};
  for (int i = 0; i < 2; ++i) {
    sq::RunIteration it;
    it.iter = i;
    it.stage = i == 0 ? "phase1" : "phase2";
    it.accuracy = 0.8 + 0.05 * i;
    it.avg_bits = 4 + i;
    it.cost.weight_bytes = 900;
    it.budgets = {b};
    it.bits = {{"conv", 4}, {"fc", 8 - 4 * i}};
    if (i) it.changes.push_back({"fc", 8, 4, "pay: smallest KL"});
    it.kl = {{"conv", 0.01}, {"fc", 0.02}};
    log.iterations.push_back(it);
  }
  log.phase2_stop_reason = "in band";
  log.phase2_best_iteration = 1;
  log.phase2_best_val_accuracy = 0.85;
  sq::RunLayer conv{"conv", 18, 0.2, 4, 0, 4, 0.01}, fc{"fc", 32, 0.1, 4, 1, 8, 0.02};
  log.layers = {conv, fc};
  sq::RunFinal f;
  f.accuracy = 0.86;
  f.val_accuracy = 0.87;
  f.kept = "final QAT";
  f.avg_bits = 4;
  f.budgets = {b};
  f.model_file = "model.sqg";
  log.final = f;
  seed("run_log", "finished.json", log.to_json().dump(1));
  log.final.reset();
  log.search_model = "search-model-1.sqg";
  seed("run_log", "interrupted.json", log.to_json().dump(1));

  sq::ParetoResult p;
  p.model = "convnet";
  p.target = "shiftadd";
  p.fp32_accuracy = 0.9;
  for (int i = 0; i < 3; ++i) {
    sq::ParetoPoint q;
    q.method = i == 2 ? "uniform" : "sigmaquant";
    q.budget = std::to_string(2 + i) + " bits";
    q.avg_bits = 2 + i;
    q.accuracy = 0.8 + 0.03 * i;
    q.weight_bytes = 500 + 200 * i;
    q.energy_j = 1e-6 * (1 + i);
    q.run_dir = "runs/p/" + q.method;
    p.points.push_back(q);
  }
  seed("pareto", "three.json", p.to_json().dump(1));
}

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: sq_fuzz_seeds OUT_DIR\n");
    return 2;
  }
  out_dir = argv[1];
  try {
    seed("idx_images", "two_3x3", idx_images(2, 3, 3));
    seed("idx_images", "one_28x28.gz", gzip(idx_images(1, 28, 28)));
    seed("idx_images", "five_4x2", idx_images(5, 4, 2));
    seed("idx_images", "truncated", idx_images(2, 3, 3).substr(0, 20));
    seed("idx_labels", "five", idx_labels(5, 10));
    seed("idx_labels", "twelve.gz", gzip(idx_labels(12, 10)));
    seed("idx_labels", "out_of_range", idx_labels(3, 200));

    const std::string rec10 = std::string(1, '\3') + pattern(3072, 13);
    const std::string rec100 = std::string("\5\52") + pattern(3072, 29);
    seed("cifar", "cifar10_one", rec10);
    seed("cifar", "cifar100_one", rec100);
    seed("cifar", "cifar10_two.gz", gzip(rec10 + rec10));
    seed("cifar", "short", rec10.substr(0, 100));

    seed("npy", "u1_nhw",
         npy_pair(npy("|u1", "(2, 3, 3)", pattern(18, 11)), npy("|u1", "(2,)", ints(2, 1))));
    seed("npy", "f4_nchw",
         npy_pair(npy("<f4", "(2, 1, 2, 2)", f32s(8)), npy("<i8", "(2,)", ints(2, 8))));
    seed("npy", "f4_nhwc",
         npy_pair(npy("<f4", "(1, 2, 2, 3)", f32s(12)), npy("<u2", "(1,)", ints(1, 2))));
    seed("npy", "f8_v2",
         npy_pair(npy("<f8", "(3, 2, 2)", f64s(12), 2), npy("<i4", "(3,)", ints(3, 4), 3)));
    seed("npy", "u1_gz",
         npy_pair(gzip(npy("|u1", "(4, 2, 2)", pattern(16, 3))),
                  gzip(npy("|i1", "(4,)", ints(4, 1)))));

    const std::string mlp = sqg_bytes({tiny_mlp(), {}, {}});
    sq::GraphFile conv{sqfuzz::tiny_convnet(), {{"train", {{"epochs", 2}, {"lr", 0.1}}}}, {}};
    conv.blobs["optimizer"] = pattern(40, 5);
    const std::string convnet = sqg_bytes(conv);
    seed("sqg", "mlp.sqg", mlp);
    seed("sqg", "convnet.sqg", convnet);
    seed("sqg", "mlp.unframed", sqg_unframed(mlp));
    seed("sqg", "convnet.unframed", sqg_unframed(convnet));

    const std::string sqm_mlp = sqm_bytes(tiny_mlp());
    const std::string sqm_conv = sqm_bytes(sqfuzz::tiny_convnet());
    seed("sqm", "mlp.sqm", sqm_mlp);
    seed("sqm", "convnet.sqm", sqm_conv);
    seed("sqm", "mlp.unframed", sqm_unframed(sqm_mlp));
    const std::string sqm_res = sqm_bytes(tiny_residual());
    seed("sqm", "res.sqm", sqm_res);
    seed("sqm", "res.unframed", sqm_unframed(sqm_res));
    seed("sqm", "convnet.unframed", sqm_unframed(sqm_conv));

    const sq::Graph g = sqfuzz::tiny_convnet();
    sq::BitConfig mixed = sq::BitConfig::uniform(g, 4, 8);
    mixed.layers["conv"].channel_wbits = {3, 0};
    mixed.layers["conv"].wbits = 3;
    mixed.layers["fc"].granularity = sq::Granularity::PerTensor;
    mixed.layers["fc"].abits = 16;
    seed("bits", "uniform.json", bits_text(sq::BitConfig::uniform(g, 8, 8), g));
    seed("bits", "mixed.json", bits_text(mixed, g));
    seed("bits", "default.json",
         R"({"format": "sigmaquant-bits", "version": 1, "default": {"wbits": 2, "abits": 4},
             "layers": {"fc": 8, "conv": {"abits": 6, "channel_wbits": [1, 8]}}})");
    for (const char* name : {"size", "bops", "shiftadd", "shiftadd-csd", "mpic", "mcu"})
      seed("target", std::string("builtin_") + name + ".json",
           sq::target_to_json(sq::builtin_target(name)).dump(1));
    seed_logs();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sq_fuzz_seeds: %s\n", e.what());
    return 1;
  }
  return 0;
}
