// Hardware targets and costs: Target, load_target, cost(model, target, bits).
#include <fmt/format.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <optional>

#include "bindings.h"
#include "sigmaquant/bits.h"
#include "sigmaquant/error.h"
#include "sigmaquant/qmodel.h"

namespace sqpy {
namespace {

// The budgets by their field names (base units: bytes, seconds, joules, operations).
using BudgetField = std::optional<double> sq::Budgets::*;
const std::vector<std::pair<const char*, BudgetField>>& budget_fields() {
  static const std::vector<std::pair<const char*, BudgetField>> f = {
      {"weight_bytes", &sq::Budgets::weight_bytes},
      {"activation_bytes", &sq::Budgets::activation_bytes},
      {"latency_s", &sq::Budgets::latency_s},
      {"energy_j", &sq::Budgets::energy_j},
      {"bops", &sq::Budgets::bops}};
  return f;
}

py::dict budgets_of(const sq::Target& t) {
  py::dict d;
  for (const auto& [name, field] : budget_fields())
    if (t.budgets.*field) d[name] = *(t.budgets.*field);
  return d;
}

void set_budgets(sq::Target& t, const py::dict& d) {
  sq::Budgets b;
  for (auto [k, v] : d) {
    const std::string key = py::str(k);
    auto it = std::find_if(budget_fields().begin(), budget_fields().end(),
                           [&](const auto& f) { return key == f.first; });
    if (it == budget_fields().end())
      sq::fail(
          "Target.budgets: unknown budget '{}' (expected weight_bytes, activation_bytes, "
          "latency_s, energy_j, bops)",
          key);
    if (v.is_none()) continue;
    const double value = py::float_(py::reinterpret_borrow<py::object>(v)).cast<double>();
    if (!(value > 0)) sq::fail("Target.budgets: {} = {} (expected a positive number)", key, value);
    b.*(it->second) = value;
  }
  t.budgets = b;
}

// A bit assignment for g: an int (uniform weight bits), a path to a bits file, a dict in the
// bits-file format (with "layers"), or a dict layer -> wbits / {"wbits", "abits", ...} in which
// unlisted layers keep 8 bits.
sq::BitConfig bits_arg(const sq::Graph& g, py::handle bits, int abits) {
  sq::BitConfig b;
  if (py::isinstance<py::int_>(bits) && !py::isinstance<py::bool_>(bits)) {
    b = sq::BitConfig::uniform(g, bits.cast<int>(), abits);
  } else if (is_path(bits)) {
    b = sq::load_bits(path_of(bits));
  } else if (py::isinstance<py::dict>(bits)) {
    nlohmann::json j = from_python(bits, "bits");
    if (!j.contains("layers") && !j.contains("format"))
      j = {{"format", "sigmaquant-bits"},
           {"version", sq::kBitsFormatVersion},
           {"default", {{"wbits", 8}, {"abits", abits}}},
           {"layers", j}};
    b = sq::bits_from_json(j, "bits");
  } else {
    sq::fail(
        "bits: expected an int (uniform weight bits), a dict (layer -> bits) or the path "
        "of a bits file (got {})",
        type_name(bits));
  }
  sq::validate_bits(b, g, "bits");
  return b;
}

// What `sigmaquant cost --json` prints.
py::object cost(py::handle model, py::handle target, py::handle bits, int abits) {
  sq::Graph g;
  sq::BitConfig b;
  if (py::isinstance<sq::QuantModel>(model)) {
    const auto& qm = model.cast<const sq::QuantModel&>();
    g = qm.graph;
    b = bits.is_none() ? qm.bits : bits_arg(g, bits, abits);
  } else {
    g = graph_arg(model, "cost: model");
    if (bits.is_none()) sq::fail("cost: bits: give the bits of an FP32 model (int, dict or file)");
    b = bits_arg(g, bits, abits);
  }
  const sq::Target t = target_arg(target);
  const sq::CostReport r = sq::compute_cost(g, t, b);
  const std::vector<sq::BudgetCheck> checks = sq::check_budgets(r, t.budgets);
  bool fits = true;
  for (const auto& c : checks) fits = fits && c.fits;
  nlohmann::ordered_json j;
  j["model"] = g.name;
  j["target"] = t.name;
  j["bits"] = sq::bits_to_json(b, &g);
  j["average_wbits"] = sq::average_weight_bits(b, g);
  j["cost"] = sq::cost_to_json(r);
  j["budgets"] = sq::budgets_to_json(checks);
  j["fits"] = fits;
  return to_python(j);
}

}  // namespace

void bind_cost(py::module_& m) {
  py::class_<sq::Target>(m, "Target", "A hardware target: its cost model and budgets.")
      .def_readwrite("name", &sq::Target::name)
      .def_readonly("description", &sq::Target::description)
      .def_readonly("source", &sq::Target::source)
      .def_property_readonly("cost_model",
                             [](const sq::Target& t) { return sq::cost_model_name(t.kind); })
      .def_property("budgets", &budgets_of, &set_budgets,
                    "dict: weight_bytes, activation_bytes, latency_s, energy_j, bops (base "
                    "units; absent = no limit)")
      .def("to_json", [](const sq::Target& t) { return to_python(sq::target_to_json(t)); })
      .def_static(
          "from_json",
          [](py::handle j, const std::string& where) {
            return sq::target_from_json(from_python(j, where), where);
          },
          py::arg("json"), py::arg("where") = "target", "a target from its file's JSON (a dict)")
      .def("__repr__", [](const sq::Target& t) {
        return fmt::format("<sigmaquant.Target '{}': {} model, {} budget(s)>", t.name,
                           sq::cost_model_name(t.kind), py::len(budgets_of(t)));
      });

  m.def(
      "load_target", [](py::handle spec) { return target_arg(spec); }, py::arg("spec"),
      "A target file (targets/*.json) or a builtin: size, bops, shiftadd, shiftadd-csd, mpic, "
      "mcu.");
  m.def("cost", &cost, py::arg("model"), py::arg("target"), py::arg("bits") = py::none(),
        py::arg("abits") = 8,
        "Per-layer and total cost of a bit assignment on a target and the verdict for each of "
        "its budgets (a dict: model, target, bits, average_wbits, cost {layers, total}, budgets, "
        "fits). model: Graph, .sqg path or QuantModel (bits default to its own); bits: int "
        "(uniform), dict layer -> bits (others 8), a bits-file dict or path.");
}

}  // namespace sqpy
