// sigmaquant info — per-layer table: name, type, output shape, parameters, MACs, weight σ.
#include <fmt/format.h>

#include "common.h"
#include "sigmaquant/graph_io.h"
#include "sigmaquant/table.h"

namespace sqcli {
namespace {

struct InfoFlags {
  ModelFlags model;
  Common common;
};

void run_info(const InfoFlags& f) {
  sq::Graph g = resolve_model(f.model.model, parse_shape(f.model.input_shape, "--input-shape"),
                              f.model.classes, f.model.seed);
  nlohmann::json layers = nlohmann::json::array();
  sq::Table t({"#", "layer", "type", "output", "params", "MACs", "weight σ"},
              {sq::Align::Right, sq::Align::Left, sq::Align::Left, sq::Align::Left,
               sq::Align::Right, sq::Align::Right, sq::Align::Right});
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const sq::Node& n = g.nodes[i];
    sq::LayerStats st = g.layer_stats(static_cast<int>(i));
    double sigma = sq::weight_std(n);
    bool wl = sq::is_weight_layer(n);
    t.add({std::to_string(i), n.name, sq::op_name(n.op), sq::shape_str(n.out_shape),
           st.params ? sq::thousands(st.params) : "", st.macs ? sq::thousands(st.macs) : "",
           wl ? fmt::format("{:.4f}", sigma) : ""});
    nlohmann::json jl = {{"index", i}, {"name", n.name}, {"type", sq::op_name(n.op)},
                         {"output_shape", n.out_shape}, {"params", st.params}, {"macs", st.macs}};
    if (wl) jl["weight_std"] = sigma;
    layers.push_back(jl);
  }
  if (f.common.json) {
    print_json({{"model", g.name}, {"input_shape", g.input_shape}, {"classes", g.num_classes},
                {"total_params", g.total_params()}, {"total_macs", g.total_macs()},
                {"weight_layers", g.weight_layers().size()}, {"layers", layers}});
    return;
  }
  fmt::print("model {}  input {}  classes {}\n\n", g.name, sq::shape_str(g.input_shape),
             g.num_classes);
  fmt::print("{}", t.str());
  fmt::print("\ntotal: {} parameters, {} MACs per sample, {} weight layers, {:.1f} KiB as FP32\n",
             sq::thousands(g.total_params()), sq::thousands(g.total_macs()),
             g.weight_layers().size(), static_cast<double>(g.total_params()) * 4 / 1024);
}

}  // namespace

void add_info(CLI::App& app) {
  auto f = std::make_shared<InfoFlags>();
  CLI::App* cmd = app.add_subcommand("info", "per-layer table of a model (shapes, params, MACs, σ)");
  add_model_flags(cmd, f->model, true);
  cmd->add_flag("--json", f->common.json, "print machine-readable JSON on stdout");
  cmd->callback([f] { run_info(*f); });
}

}  // namespace sqcli
