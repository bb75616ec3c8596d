// sigmaquant cost — what a bit assignment costs on a target: per-layer table, totals, and the
// verdict for every budget of the target file.
#include <fmt/format.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "common.h"
#include "quant_flags.h"
#include "sigmaquant/bits.h"
#include "sigmaquant/cost.h"
#include "sigmaquant/error.h"
#include "sigmaquant/table.h"

namespace sqcli {
namespace {

struct CostFlags {
  ModelFlags model;
  BitsFlags bits;  // --bits FILE or --wbits/--abits (shared with ptq and qat)
  std::string target = "size";
  bool json = false;
  bool check = false;
};

std::string fmt_bytes(double b) {
  if (b < 1024) return fmt::format("{:.0f} B", b);
  if (b < 1024.0 * 1024) return fmt::format("{:.2f} KiB", b / 1024);
  return fmt::format("{:.2f} MiB", b / (1024.0 * 1024));
}
std::string fmt_seconds(double s) {
  if (s < 1e-3) return fmt::format("{:.2f} us", s * 1e6);
  if (s < 1) return fmt::format("{:.3f} ms", s * 1e3);
  return fmt::format("{:.3f} s", s);
}
std::string fmt_joules(double j) {
  if (j < 1e-6) return fmt::format("{:.2f} nJ", j * 1e9);
  if (j < 1e-3) return fmt::format("{:.3f} uJ", j * 1e6);
  return fmt::format("{:.3f} mJ", j * 1e3);
}
std::string fmt_count(double v) {  // 992.7 M
  if (v < 1e4) return fmt::format("{:.0f}", v);
  if (v < 1e6) return fmt::format("{:.1f} k", v / 1e3);
  if (v < 1e9) return fmt::format("{:.1f} M", v / 1e6);
  return fmt::format("{:.2f} G", v / 1e9);
}

std::string target_summary(const sq::Target& t) {
  std::string s = fmt::format("{} ({}", t.name, sq::cost_model_name(t.kind));
  if (t.kind == sq::CostModelKind::ShiftAdd)
    s += t.shiftadd.variant == sq::ShiftAddVariant::Csd ? ", data-aware CSD" : ", bit-serial";
  return s + (t.source.rfind("builtin:", 0) == 0 ? ", builtin defaults)" : ", " + t.source + ")");
}

void run_cost(const CostFlags& f) {
  sq::Graph g = resolve_model(f.model.model, parse_shape(f.model.input_shape, "--input-shape"),
                              f.model.classes, f.model.seed);
  sq::Target t = sq::resolve_target(f.target);

  const sq::BitConfig bits = resolve_bits(f.bits, g);
  std::string bits_desc = f.bits.file.empty()
                              ? fmt::format("uniform w{} a{}", f.bits.wbits, f.bits.abits)
                              : f.bits.file;
  if (f.bits.per_tensor) bits_desc += ", per-tensor scales";
  if (f.bits.first_last)
    bits_desc += fmt::format(", first/last layers at {} bits", f.bits.first_last);

  sq::CostReport r = sq::compute_cost(g, t, bits);
  std::vector<sq::BudgetCheck> checks = sq::check_budgets(r, t.budgets);
  bool all_fit = true;
  for (const auto& c : checks) all_fit = all_fit && c.fits;
  const double avg_bits = sq::average_weight_bits(bits, g);

  if (f.json) {
    nlohmann::ordered_json j;
    j["model"] = g.name;
    j["target"] = sq::target_to_json(t);
    j["bits"] = sq::bits_to_json(bits, &g);
    j["average_wbits"] = avg_bits;
    j["cost"] = sq::cost_to_json(r);
    j["budgets"] = sq::budgets_to_json(checks);
    j["fits"] = all_fit;
    std::fputs((j.dump(2) + "\n").c_str(), stdout);
  } else {
    fmt::print("model   {} ({})\ntarget  {}\nbits    {}, average {:.2f} weight bits\n\n", g.name,
               f.model.model, target_summary(t), bits_desc, avg_bits);
    bool any_pruned = false;
    for (const auto& l : r.layers) any_pruned = any_pruned || l.pruned_channels > 0;
    std::vector<std::string> head = {"layer", "w", "a"};
    if (any_pruned) head.push_back("pruned");
    for (const char* h : {"weights", "weight mem", "MACs", "BOPs"}) head.push_back(h);
    if (r.has_timing) head.insert(head.end(), {"cycles", "latency"});
    if (r.has_energy) head.push_back("energy");
    std::vector<sq::Align> align(head.size(), sq::Align::Right);
    align[0] = sq::Align::Left;
    sq::Table tab(head, align);
    auto row = [&](std::vector<std::string> cells, const std::string& pruned, double cycles,
                   double lat, double energy) {
      if (any_pruned) cells.insert(cells.begin() + 3, pruned);
      if (r.has_timing) cells.insert(cells.end(), {fmt_count(cycles), fmt_seconds(lat)});
      if (r.has_energy) cells.push_back(fmt_joules(energy));
      tab.add(cells);
    };
    int64_t weights = 0;
    for (const auto& l : r.layers) {
      const bool mixed = std::fabs(l.mean_wbits - l.wbits) > 1e-9;
      row({l.name, mixed ? fmt::format("{:.2f}", l.mean_wbits) : std::to_string(l.wbits),
           std::to_string(l.abits), sq::thousands(l.weights),
           fmt_bytes(static_cast<double>(l.weight_bytes)), sq::thousands(l.macs),
           fmt_count(static_cast<double>(l.bops))},
          l.pruned_channels ? fmt::format("{}/{}", l.pruned_channels, l.channels) : "", l.cycles,
          l.latency_s, l.energy_j);
      weights += l.weights;
    }
    tab.add_separator();
    row({"total", fmt::format("{:.2f}", avg_bits), "", sq::thousands(weights),
         fmt_bytes(static_cast<double>(r.weight_bytes)), sq::thousands(r.macs),
         fmt_count(static_cast<double>(r.bops))},
        "", r.cycles, r.latency_s, r.energy_j);
    fmt::print("{}", tab.str());

    int64_t packed = 0, scales = 0, biases = 0;
    for (const auto& l : r.layers) {
      packed += (l.weight_bits + 7) / 8;
      scales += l.scale_bytes;
      biases += l.bias_bytes;
    }
    fmt::print("\nweight memory      {} (packed weights {}, scales {}, biases {})\n",
               fmt_bytes(static_cast<double>(r.weight_bytes)),
               fmt_bytes(static_cast<double>(packed)), fmt_bytes(static_cast<double>(scales)),
               fmt_bytes(static_cast<double>(biases)));
    fmt::print("activation memory  {} peak (while running {})\n",
               fmt_bytes(static_cast<double>(r.activation_bytes)), r.activation_peak_at);
    if (r.has_timing)
      fmt::print("latency            {} ({} cycles at {:g} MHz)\n", fmt_seconds(r.latency_s),
                 sq::thousands(std::llround(r.cycles)), t.energy.clock_hz / 1e6);
    if (r.has_energy) fmt::print("energy             {}\n", fmt_joules(r.energy_j));
    if (r.has_area) fmt::print("area               {:.4f} mm²\n", r.area_mm2);

    if (checks.empty()) {
      fmt::print("\nno budgets in this target\n");
    } else {
      fmt::print("\nbudgets\n");
      sq::Table bt({"budget", "value", "limit", "verdict"},
                   {sq::Align::Left, sq::Align::Right, sq::Align::Right, sq::Align::Left});
      for (const auto& c : checks)
        bt.add({c.metric, sq::budget_value_text(c.value, c.unit),
                sq::budget_value_text(c.budget, c.unit),
                c.fits ? fmt::format("fits ({} used)",
                                     sq::budget_percent_text(100.0 * c.value / c.budget))
                       : fmt::format("EXCEEDS by {} (+{})", sq::budget_value_text(c.excess, c.unit),
                                     sq::budget_percent_text(c.excess_pct))});
      fmt::print("{}", bt.str());
      fmt::print("{}\n", all_fit ? "fits every budget" : "over budget");
    }
  }
  if (f.check && !all_fit) {
    std::fflush(stdout);
    std::exit(3);
  }
}

}  // namespace

void add_cost(CLI::App& app) {
  auto f = std::make_shared<CostFlags>();
  CLI::App* cmd = app.add_subcommand(
      "cost", "what a bit assignment costs on a hardware target, and whether it fits the budgets");
  add_model_flags(cmd, f->model, true);
  add_bits_flags(cmd, f->bits);
  cmd->add_option("--target,-t", f->target,
                  "target file (targets/*.json) or builtin: size, bops, shiftadd, shiftadd-csd, "
                  "mpic, mcu")
      ->capture_default_str();
  cmd->add_flag("--json", f->json, "print machine-readable JSON on stdout");
  cmd->add_flag("--check", f->check, "exit with status 3 when a budget is exceeded");
  cmd->callback([f] { run_cost(*f); });
}

}  // namespace sqcli
