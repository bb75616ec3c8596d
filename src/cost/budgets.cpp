// Budget verdicts, their text for people, and the JSON form of a cost report.
#include <cmath>

#include "sigmaquant/cost.h"
#include "sigmaquant/error.h"

namespace sq {

namespace {

// The display scale of a quantity: a divisor and the unit's name.
struct Scaled {
  double div;
  std::string name;
};
Scaled scale_for(double v, const std::string& unit) {
  const double a = std::fabs(v);
  if (unit == "B") {
    if (a >= 1024.0 * 1024 * 1024) return {1024.0 * 1024 * 1024, "GiB"};
    if (a >= 1024.0 * 1024) return {1024.0 * 1024, "MiB"};
    if (a >= 1024.0) return {1024.0, "KiB"};
    return {1, "B"};
  }
  if (unit == "ops") return {1e9, "GBOPs"};
  if (unit == "s" || unit == "J") {
    static const std::pair<double, const char*> kPrefixes[] = {
        {1, ""}, {1e-3, "m"}, {1e-6, "u"}, {1e-9, "n"}, {1e-12, "p"}};
    for (const auto& [f, p] : kPrefixes)
      if (a >= f) return {f, p + unit};
    // Below a pico-unit (or zero): the exponent form in milli-units, the budgets' file unit.
    return a == 0 ? Scaled{1e-3, "m" + unit} : Scaled{1, unit};
  }
  return {1, unit};
}

std::string scaled_text(double v, const Scaled& s, int digits) {
  return fmt::format("{:.{}g} {}", v / s.div, digits, s.name);
}

}  // namespace

std::string budget_value_text(double v, const std::string& unit) {
  return scaled_text(v, scale_for(v, unit), 4);
}

std::string budget_percent_text(double pct) {
  const double a = std::fabs(pct);
  if (!std::isfinite(pct) || a >= 1e6) return fmt::format("{:.3g} %", pct);
  if (a >= 0.1 || a == 0) return fmt::format("{:.1f} %", pct);
  return fmt::format("{:.2g} %", pct);
}

std::string budget_check_text(const BudgetCheck& c) {
  // Both in the budget's scale, with the fewest significant digits (4 at least) that tell them
  // apart: an overshoot of 0.0001 % must not read "0.065 ms against 0.065 ms".
  const Scaled s = scale_for(c.budget, c.unit);
  int digits = 4;
  while (digits < 17 && c.value != c.budget &&
         scaled_text(c.value, s, digits) == scaled_text(c.budget, s, digits))
    ++digits;
  std::string text = fmt::format("{} against {}", scaled_text(c.value, s, digits),
                                 scaled_text(c.budget, s, digits));
  if (c.fits) {
    if (c.budget > 0)
      text += fmt::format(", {} used", budget_percent_text(100.0 * c.value / c.budget));
    return text;
  }
  return text + fmt::format(", over by {} (+{})", budget_value_text(c.excess, c.unit),
                            budget_percent_text(c.excess_pct));
}

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
