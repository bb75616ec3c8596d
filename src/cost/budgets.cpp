// Budget verdicts and the JSON form of a cost report.
#include "sigmaquant/cost.h"
#include "sigmaquant/error.h"

namespace sq {

std::vector<BudgetCheck> check_budgets(const CostReport& r, const Budgets& b) {
  std::vector<BudgetCheck> out;
  auto add = [&](const char* metric, const char* key, const char* unit, double value,
                 const std::optional<double>& budget) {
    if (!budget) return;
    BudgetCheck c;
    c.metric = metric;
    c.key = key;
    c.unit = unit;
    c.value = value;
    c.budget = *budget;
    c.fits = value <= *budget;
    if (!c.fits) {
      c.excess = value - *budget;
      c.excess_pct = 100.0 * c.excess / *budget;
    }
    out.push_back(c);
  };
  if (b.latency_s && !r.has_timing)
    fail("budget latency_ms: the {} model of target '{}' defines no latency", r.model, r.target);
  if (b.energy_j && !r.has_energy)
    fail("budget energy_uj: the {} model of target '{}' defines no energy", r.model, r.target);
  add("weight memory", "weight_kib", "B", static_cast<double>(r.weight_bytes), b.weight_bytes);
  add("activation memory", "activation_kib", "B", static_cast<double>(r.activation_bytes),
      b.activation_bytes);
  add("latency", "latency_ms", "s", r.latency_s, b.latency_s);
  add("energy", "energy_uj", "J", r.energy_j, b.energy_j);
  add("BOPs", "gbops", "ops", static_cast<double>(r.bops), b.bops);
  return out;
}

bool fits_budgets(const CostReport& r, const Budgets& b) {
  for (const auto& c : check_budgets(r, b))
    if (!c.fits) return false;
  return true;
}

nlohmann::ordered_json cost_to_json(const CostReport& r) {
  nlohmann::ordered_json layers = nlohmann::ordered_json::array();
  for (const LayerCost& l : r.layers) {
    nlohmann::ordered_json j = {{"name", l.name},
                                {"wbits", l.wbits},
                                {"abits", l.abits},
                                {"mean_wbits", l.mean_wbits},
                                {"channels", l.channels},
                                {"pruned_channels", l.pruned_channels},
                                {"weights", l.weights},
                                {"weight_bits", l.weight_bits},
                                {"weight_bytes", l.weight_bytes},
                                {"scale_bytes", l.scale_bytes},
                                {"bias_bytes", l.bias_bytes},
                                {"macs", l.macs},
                                {"bops", l.bops}};
    if (r.has_timing) {
      j["cycles"] = l.cycles;
      j["latency_s"] = l.latency_s;
    }
    if (r.has_energy) j["energy_j"] = l.energy_j;
    layers.push_back(j);
  }
  nlohmann::ordered_json total = {{"weight_bytes", r.weight_bytes},
                                  {"activation_bytes", r.activation_bytes},
                                  {"activation_peak_at", r.activation_peak_at},
                                  {"macs", r.macs},
                                  {"bops", r.bops}};
  if (r.has_timing) {
    total["cycles"] = r.cycles;
    total["latency_s"] = r.latency_s;
  }
  if (r.has_energy) total["energy_j"] = r.energy_j;
  if (r.has_area) total["area_mm2"] = r.area_mm2;
  return {{"target", r.target}, {"model", r.model}, {"total", total}, {"layers", layers}};
}

nlohmann::ordered_json budgets_to_json(const std::vector<BudgetCheck>& checks) {
  nlohmann::ordered_json a = nlohmann::ordered_json::array();
  for (const auto& c : checks)
    a.push_back({{"metric", c.metric},
                 {"key", c.key},
                 {"unit", c.unit},
                 {"value", c.value},
                 {"budget", c.budget},
                 {"fits", c.fits},
                 {"excess", c.excess},
                 {"excess_pct", c.excess_pct}});
  return a;
}

}  // namespace sq
