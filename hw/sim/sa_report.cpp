// sa_report — the shift-add RTL's figures per bit assignment (docs/results.md, "Shift-add
// accelerator RTL"): a whole inference of the trained ResNet-20 (models/resnet20-fmnist.sqg) (every
// conv/linear layer) on the Verilated RTL, bit-serial and csd, for uniform and SigmaQuant (Phase 1)
// assignments: cycles against the cost model (round_robin and even schedules), bit flips (the
// energy proxy) against the cost model's energy, and the memory the assignment needs. Writes
// hw/results/energy.json.
//
//   build-hw/bin/sa_report [out.json [model.sqg]]
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "sa_host.h"
#include "sa_net.h"
#include "sa_sim.h"
#include "sigmaquant/alloc.h"
#include "sigmaquant/graph_io.h"

namespace {

// Energy of one counted bit flip, for the target file only (the ranking needs none): a 32-bit
// add costs 0.1 pJ at 45 nm (Horowitz, ISSCC 2014), ~3.1 fJ per result bit.
constexpr double kFjPerToggle = 0.1e3 / 32;

sq::BitConfig uniform(const sq::Graph& g, int w, int a) {
  sq::BitConfig b;
  for (int node : g.weight_layers()) {
    sq::LayerBits lb;
    lb.wbits = w;
    lb.abits = a;
    b.layers[g.nodes[static_cast<size_t>(node)].name] = lb;
  }
  return b;
}

// Datapath cycles of a program (the sum over the datapaths of their busy cycles).
double program_work(const sqhw::LayerProgram& p, const sqhw::HwConfig& hw) {
  double work = 0;
  for (size_t dp = 0; dp < p.desc.size(); ++dp)
    for (const sqhw::Descriptor& d : p.desc[dp]) {
      const int64_t lanes = std::max(1, hw.datapath_bits / (p.abits + d.wbits + hw.guard_bits));
      const int64_t groups = (p.npos + lanes - 1) / lanes;
      int64_t digits = 0;
      for (int e = d.ebase; e < d.ebase + d.ecount; ++e)
        digits += p.csd ? sq::csd_digits(p.entries[dp][static_cast<size_t>(e)].w) : d.wbits;
      work += static_cast<double>(groups * std::max<int64_t>(digits, 1));
    }
  return work;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string out = argc > 1 ? argv[1] : "hw/results/energy.json";
  const std::string model = argc > 2 ? argv[2] : SQ_SOURCE_DIR "/models/resnet20-fmnist.sqg";
  const sqhw::HwConfig hw = sqhw::SaSim::verilated_config();
  sqhw::SaSim sim(hw);
  const sq::Graph trained = sq::load_graph(model);
  const sq::QuantModel base = sqhw::calibrated_qmodel(trained, uniform(trained, 8, 8), 3);
  const sq::Graph& g = base.graph;

  // The assignments: uniform 8/6/4-bit weights (8-bit activations), and SigmaQuant Phase 1
  // under the weight memory of uniform 6 and 4 bits (same memory, bits placed by sigma).
  std::vector<std::pair<std::string, sq::BitConfig>> assignments = {
      {"uniform w8", uniform(g, 8, 8)},
      {"uniform w6", uniform(g, 6, 8)},
      {"uniform w4", uniform(g, 4, 8)}};
  const sq::Target t_rtl = sqhw::shiftadd_target(hw, true, true);
  for (int w : {6, 4}) {
    const sq::CostReport u = sq::CostEvaluator(g, t_rtl).evaluate(uniform(g, w, 8));
    sq::Phase1Options o;
    o.abits = 8;
    sq::Budgets b;
    b.weight_bytes = static_cast<double>(u.weight_bytes);
    o.budgets = b;
    const sq::Phase1Result r = sq::sigmaquant_phase1(g, t_rtl, o);
    assignments.push_back({"sigmaquant @ w" + std::to_string(w) + " memory", r.bits});
  }

  nlohmann::ordered_json J;
  J["network"] = model + " (BN folded; inputs: a random image, see sa_net.h)";
  J["hw"] = {{"datapaths", hw.datapaths},
             {"datapath_bits", hw.datapath_bits},
             {"guard_bits", hw.guard_bits},
             {"wmax", hw.wmax},
             {"amax", hw.amax}};
  J["fj_per_toggle"] = kFjPerToggle;
  double csd_toggles = 0, csd_work = 0;
  for (const auto& [name, bits] : assignments) {
    const sqhw::Net n = sqhw::make_net(sqhw::with_bits(base, bits), 5);
    const sq::BitConfig hb = sqhw::hardware_bits(n.qm, n.im);
    const sq::QuantizedWeightSet qw = sqhw::integer_weights(n.qm, n.im);
    nlohmann::ordered_json A;
    A["name"] = name;
    nlohmann::ordered_json wb = nlohmann::ordered_json::object();
    double mean_w = 0, nw = 0;
    int wmin = 8, wmaxa = 1, amin = 8, amaxa = 1;
    for (const sq::IntLayer& L : n.im.layers) {
      const auto& lb = hb.layers.at(L.name);
      wb[L.name] = {lb.wbits, lb.abits};
      mean_w += static_cast<double>(L.weights.size()) * lb.wbits;
      nw += static_cast<double>(L.weights.size());
      wmin = std::min(wmin, lb.wbits), wmaxa = std::max(wmaxa, lb.wbits);
      amin = std::min(amin, lb.abits), amaxa = std::max(amaxa, lb.abits);
    }
    A["bits"] = wb;
    A["mean_wbits"] = mean_w / nw;
    A["widths"] = {{"wmin", wmin}, {"wmax", wmaxa}, {"amin", amin}, {"amax", amaxa}};
    for (bool csd : {false, true}) {
      const sq::CostReport rr =
          sq::CostEvaluator(g, sqhw::shiftadd_target(hw, csd, true)).evaluate(hb, &qw);
      const sq::CostReport ev =
          sq::CostEvaluator(g, sqhw::shiftadd_target(hw, csd, false)).evaluate(hb, &qw);
      uint64_t cycles = 0, toggles = 0;
      double work = 0;
      bool exact = true;
      nlohmann::ordered_json layers = nlohmann::ordered_json::array();
      for (size_t l = 0; l < n.im.layers.size(); ++l) {
        const sq::IntLayer& L = n.im.layers[l];
        const sq::ConvShape s = sq::conv_shape_of(g, L.node);
        const sqhw::LayerProgram p =
            sqhw::compile_layer(hw, s, L, n.inputs[l].data(), hb.layers.at(L.name).abits, csd);
        const sqhw::LayerResult r = sim.run(p, L);
        std::vector<int64_t> ref(static_cast<size_t>(s.out_size()));
        sq::conv2d_acc_ref(s, L, n.inputs[l].data(), ref.data());
        exact = exact && ref == r.acc;
        cycles += r.cycles;
        toggles += r.activity;
        work += program_work(p, hw);
        layers.push_back({{"layer", L.name},
                          {"rtl_cycles", r.cycles},
                          {"model_cycles", rr.layers[l].cycles},
                          {"even_model_cycles", ev.layers[l].cycles},
                          {"toggles", r.activity}});
      }
      if (csd) csd_toggles += static_cast<double>(toggles), csd_work += work;
      nlohmann::ordered_json V;
      V["bit_exact"] = exact;
      V["rtl_cycles"] = cycles;
      V["model_cycles"] = rr.cycles;
      V["even_model_cycles"] = ev.cycles;
      V["even_model_error_pct"] =
          100.0 * (ev.cycles - static_cast<double>(cycles)) / static_cast<double>(cycles);
      V["datapath_cycles"] = work;
      V["toggles"] = toggles;
      V["toggles_per_datapath_cycle"] = static_cast<double>(toggles) / work;
      V["model_energy_uj"] = rr.energy_j * 1e6;
      // The model's datapath part (work x energy_pj_per_cycle; the rest is memory traffic).
      V["model_compute_energy_uj"] =
          work * sqhw::shiftadd_target(hw, csd, true).energy.energy_per_cycle_j * 1e6;
      V["weight_bytes"] = rr.weight_bytes;
      V["activation_bytes"] = rr.activation_bytes;
      V["layers"] = layers;
      A[csd ? "csd" : "bit_serial"] = V;
      std::printf(
          "%-26s %-10s mean w %.2f  rtl %9llu cycles  model %11.1f  even %11.1f (%+.2f %%)"
          "  toggles %11llu  model energy %.4f uJ  %s\n",
          name.c_str(), csd ? "csd" : "bit-serial", mean_w / nw,
          static_cast<unsigned long long>(cycles), rr.cycles, ev.cycles,
          V["even_model_error_pct"].get<double>(), static_cast<unsigned long long>(toggles),
          rr.energy_j * 1e6, exact ? "bit-exact" : "MISMATCH");
      std::fflush(stdout);
    }
    J["assignments"].push_back(A);
  }
  J["toggles_per_datapath_cycle"] = csd_toggles / csd_work;
  std::ofstream(out) << J.dump(1) << "\n";
  std::printf("wrote %s\n", out.c_str());
  return 0;
}
