// sigmaquant import — a float CNN from ONNX to a SigmaQuant graph (.sqg).
#include <fmt/format.h>

#include "common.h"
#include "sigmaquant/error.h"
#include "sigmaquant/graph_io.h"
#include "sigmaquant/onnx.h"

namespace sqcli {
namespace {

struct ImportFlags {
  std::string in, out, name, mean, stddev;
  Common common;
};

std::vector<float> parse_floats(const std::string& s, const char* flag) {
  std::vector<float> v;
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t comma = s.find(',', pos);
    std::string part = s.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    try {
      size_t used = 0;
      v.push_back(std::stof(part, &used));
      if (used != part.size()) throw std::invalid_argument(part);
    } catch (const std::exception&) {
      sq::fail("{} '{}': expected comma-separated numbers (e.g. 0.286 or 0.49,0.48,0.45)", flag, s);
    }
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return v;
}

void run_import(const ImportFlags& f) {
  prepare_output(f.out, "--out");
  std::vector<std::string> notes;
  sq::Graph g = sq::import_onnx(f.in, &notes);
  // Exporters name graphs generically ("torch_jit", "main_graph"): default to the file's stem.
  std::string stem = f.in.substr(f.in.find_last_of('/') + 1);
  stem = stem.substr(0, stem.rfind('.') == 0 ? stem.size() : stem.rfind('.'));
  g.name = f.name.empty() ? (stem.empty() ? g.name : stem) : f.name;
  // The normalization the ONNX model expects of its input (default: none, the raw [0, 1] image).
  // A model that normalizes its input itself (Sub/Div at its start) already has them.
  const size_t c = static_cast<size_t>(g.input_shape[0]);
  if (!g.input_mean.empty() && (!f.mean.empty() || !f.stddev.empty()))
    sq::fail("--input-mean/--input-std: {} normalizes its input itself (Sub/Div at its start); "
             "leave them out", f.in);
  if (g.input_mean.empty()) {
    g.input_mean = f.mean.empty() ? std::vector<float>(c, 0.0f) : parse_floats(f.mean, "--input-mean");
    g.input_std = f.stddev.empty() ? std::vector<float>(c, 1.0f) : parse_floats(f.stddev, "--input-std");
  }
  if (g.input_mean.size() != c || g.input_std.size() != c)
    sq::fail("--input-mean/--input-std: expected {} value(s) each (one per input channel), got {} and {}",
             c, g.input_mean.size(), g.input_std.size());
  for (float s : g.input_std)
    if (!(s > 0)) sq::fail("--input-std: {} must be positive", s);
  sq::GraphFile file{g, nlohmann::json::object(), {}};
  file.meta["import"] = {{"source", f.in}, {"format", "onnx"}};
  if (!notes.empty()) file.meta["import"]["notes"] = notes;
  sq::save_graph_file(f.out, file);
  if (f.common.json) {
    print_json({{"model", g.name}, {"input_shape", g.input_shape}, {"classes", g.num_classes},
                {"nodes", g.nodes.size()}, {"weight_layers", g.weight_layers().size()},
                {"total_params", g.total_params()}, {"total_macs", g.total_macs()}, {"out", f.out},
                {"notes", notes}});
    return;
  }
  for (const std::string& n : notes) fmt::print("note: {}\n", n);
  fmt::print("imported {}: {} nodes, {} weight layers, {} parameters, {} MACs per sample -> {}\n",
             f.in, g.nodes.size(), g.weight_layers().size(), g.total_params(), g.total_macs(), f.out);
}

}  // namespace

void add_import(CLI::App& app) {
  auto f = std::make_shared<ImportFlags>();
  CLI::App* cmd = app.add_subcommand("import", "import a float CNN from ONNX into a .sqg model");
  cmd->add_option("model", f->in, "ONNX file (float CNN: Conv, Gemm/MatMul, Relu, pools, ...)")
      ->required();
  cmd->add_option("--out,-o", f->out, "output model (.sqg)")->required();
  cmd->add_option("--name", f->name, "model name (default: the file name without .onnx)");
  cmd->add_option("--input-mean", f->mean,
                  "per-channel mean the ONNX model's input is normalized with, x' = (x - mean) / std "
                  "with x in [0, 1] (default 0: the model takes the raw image)");
  cmd->add_option("--input-std", f->stddev, "per-channel std of that normalization (default 1)");
  cmd->add_flag("--json", f->common.json, "print machine-readable JSON on stdout");
  cmd->callback([f] { run_import(*f); });
}

}  // namespace sqcli
