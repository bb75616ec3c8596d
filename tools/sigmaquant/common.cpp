#include "common.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include <cstdio>
#include <sstream>

#include "sigmaquant/error.h"
#include "sigmaquant/fileutil.h"
#include "sigmaquant/graph_io.h"
#include "sigmaquant/zoo.h"

namespace sqcli {

void add_data_flags(CLI::App* app, DataFlags& f) {
  app->add_option("--data", f.format,
                  "dataset: fashion-mnist, mnist, idx, cifar10, cifar100 or npy")
      ->capture_default_str();
  app->add_option("--data-dir", f.dir, "directory of the dataset files (default: the format's)");
  app->add_option("--limit-train", f.limit_train, "use only the first N training samples");
  app->add_option("--limit-test", f.limit_test, "use only the first N test samples");
  app->add_option("--classes", f.classes,
                  "class count of the data (idx, npy; default: the largest training label + 1, "
                  "refused if a class below it has no training sample)")
      ->check(CLI::PositiveNumber);
}

sq::DataBundle load_data(const DataFlags& f) {
  sq::DataSpec spec;
  spec.format = f.format;
  spec.dir = f.dir;
  spec.num_classes = f.classes;
  sq::DataBundle b = sq::load_data(spec);
  if (f.limit_train < 0 || f.limit_test < 0) sq::fail("--limit-train/--limit-test must be >= 0");
  b.train = sq::take(b.train, f.limit_train);
  b.test = sq::take(b.test, f.limit_test);
  return b;
}

void add_model_flags(CLI::App* app, ModelFlags& f, bool with_shape) {
  app->add_option("--model,-m", f.model, "model file (.sqg) or zoo name (" +
                                            [] {
                                              std::string s;
                                              for (auto& n : sq::zoo_names())
                                                s += (s.empty() ? "" : ", ") + n;
                                              return s;
                                            }() + ")")
      ->required();
  if (with_shape) {
    app->add_option("--input-shape", f.input_shape, "C,H,W of a zoo model's input")
        ->capture_default_str();
    app->add_option("--classes", f.classes, "number of classes of a zoo model")
        ->capture_default_str();
  }
  app->add_option("--seed", f.seed, "random seed (initialisation, shuffling, augmentation)")
      ->capture_default_str();
}

sq::Shape parse_shape(const std::string& s, const std::string& flag) {
  sq::Shape shape;
  std::stringstream ss(s);
  std::string part;
  while (std::getline(ss, part, ',')) {
    try {
      size_t used = 0;
      long long v = std::stoll(part, &used);
      if (used != part.size() || v <= 0) throw std::invalid_argument(part);
      shape.push_back(v);
    } catch (const std::exception&) {
      sq::fail("{} '{}': expected positive integers C,H,W (e.g. 1,28,28)", flag, s);
    }
  }
  if (shape.size() != 3) sq::fail("{} '{}': expected three sizes C,H,W (e.g. 1,28,28)", flag, s);
  return shape;
}

sq::Graph resolve_model(const std::string& spec, const sq::Shape& input_shape, int64_t classes,
                        uint64_t seed) {
  if (sq::file_exists(spec)) return sq::load_graph(spec);
  if (sq::is_zoo_name(spec)) return sq::make_zoo_model(spec, input_shape, classes, seed);
  std::string known;
  for (auto& n : sq::zoo_names()) known += (known.empty() ? "" : ", ") + n;
  sq::fail("--model '{}': no such file, and not a zoo model (expected a .sqg file or one of: {})",
           spec, known);
}

void write_logits(const std::string& path, const std::vector<float>& logits) {
  sq::write_file_atomic(path, std::string(reinterpret_cast<const char*>(logits.data()),
                                          logits.size() * sizeof(float)));
}

void add_common_flags(CLI::App* app, Common& c) {
  app->add_flag("--json", c.json, "print machine-readable JSON on stdout");
  app->add_option("--threads", c.threads, "CPU threads for LibTorch")
      ->capture_default_str()
      ->check(positive_number());
  app->add_flag("--quiet,-q", c.quiet, "no progress bars");
}

CLI::Validator positive_number() {
  return CLI::Validator(
      [](std::string& v) {
        try {
          if (std::stod(v) > 0) return std::string();
        } catch (const std::exception&) {
        }
        return "must be a positive number (got " + v + ")";
      },
      "> 0");
}

void print_json(const nlohmann::json& j) { std::fputs((j.dump(2) + "\n").c_str(), stdout); }

static std::string dir_of(const std::string& path) {
  auto p = path.find_last_of('/');
  return p == std::string::npos ? "" : path.substr(0, p);
}

// Creates the directory of an output file and checks that the file can be written there, so that
// a bad path fails now rather than after the first epoch (checkpoint) or the last (model).
void prepare_output(const std::string& path, const char* flag) {
  try {
    sq::make_dirs(dir_of(path));
    struct stat st;
    if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
      sq::fail("is a directory (expected a file name)");
    const std::string probe = path + ".tmp." + std::to_string(::getpid());
    const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) sq::fail("{}: cannot write ({})", probe, std::strerror(errno));
    ::close(fd);
    ::unlink(probe.c_str());
  } catch (const sq::Error& e) {
    sq::fail("{} '{}' cannot be written: {}", flag, path, e.what());
  }
}

}  // namespace sqcli
