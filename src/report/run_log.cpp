// Typed run log and Pareto table <-> JSON. The schema checks (with errors naming the field) are
// the report's validate_run_log / validate_pareto; reading then fills the typed values.
#include "sigmaquant/run_log.h"

#include <fmt/format.h>

#include "sigmaquant/error.h"
#include "sigmaquant/fileutil.h"
#include "sigmaquant/report.h"
#include "sigmaquant/table.h"

namespace sq {
namespace {

using ojson = nlohmann::ordered_json;
using json = nlohmann::json;

ojson cost_json(const CostSummary& c) {
  ojson j = {{"weight_bytes", c.weight_bytes},
             {"activation_bytes", c.activation_bytes},
             {"bops", c.bops}};
  if (c.energy_j) j["energy_j"] = *c.energy_j;
  if (c.latency_s) j["latency_s"] = *c.latency_s;
  return j;
}

CostSummary cost_from(const json& j) {
  CostSummary c;
  if (!j.is_object()) return c;
  c.weight_bytes = j.value("weight_bytes", 0.0);
  c.activation_bytes = j.value("activation_bytes", 0.0);
  c.bops = j.value("bops", 0.0);
  if (j.contains("energy_j") && j["energy_j"].is_number()) c.energy_j = j["energy_j"].get<double>();
  if (j.contains("latency_s") && j["latency_s"].is_number())
    c.latency_s = j["latency_s"].get<double>();
  return c;
}

std::vector<BudgetCheck> budgets_from(const json& a) {
  std::vector<BudgetCheck> out;
  if (!a.is_array()) return out;
  for (const json& b : a) {
    BudgetCheck c;
    c.metric = b.value("metric", "");
    c.key = b.value("key", "");
    c.unit = b.value("unit", "");
    c.budget = b.value("budget", 0.0);
    c.value = b.contains("value") && b["value"].is_number() ? b["value"].get<double>() : 0.0;
    c.fits = b.contains("fits") && b["fits"].is_boolean() ? b["fits"].get<bool>() : true;
    if (!c.fits) {
      c.excess = c.value - c.budget;
      c.excess_pct = c.budget > 0 ? 100 * c.excess / c.budget : 0;
    }
    out.push_back(c);
  }
  return out;
}

}  // namespace

ojson iteration_to_json(const RunIteration& s) {
  ojson changes = ojson::array();
  for (const BitChange& c : s.changes) {
    ojson e = {{"layer", c.layer}, {"from", c.from}, {"to", c.to}, {"why", c.why}};
    if (c.activation) e["activation"] = true;
    changes.push_back(e);
  }
  ojson bits = ojson::object(), kl = ojson::object(), abits = ojson::object();
  for (const auto& [n, b] : s.bits) bits[n] = b;
  for (const auto& [n, b] : s.abits) abits[n] = b;
  for (const auto& [n, v] : s.kl) kl[n] = v;
  ojson j = {{"iter", s.iter},
             {"stage", s.stage},
             {"accuracy", s.accuracy},
             {"avg_bits", s.avg_bits},
             {"cost", cost_json(s.cost)},
             {"budgets", budgets_to_json(s.budgets)},
             {"changes", changes},
             {"qat_epochs", s.qat_epochs},
             {"seconds", s.seconds},
             {"bits", bits}};
  if (!s.abits.empty()) j["abits"] = abits;
  if (!s.kl.empty()) j["kl"] = kl;
  return j;
}

namespace {

RunIteration iteration_from(const json& j, const std::string& where, size_t i) {
  RunIteration s;
  try {
    s.iter = j.at("iter").get<int>();
    s.stage = j.value("stage", "");
    s.accuracy = j.value("accuracy", 0.0);
    s.avg_bits = j.value("avg_bits", 0.0);
    s.cost = cost_from(j.value("cost", json::object()));
    s.budgets = budgets_from(j.value("budgets", json::array()));
    s.qat_epochs = j.value("qat_epochs", 0.0);
    s.seconds = j.value("seconds", 0.0);
    // Named copies: items() of a temporary would dangle.
    const json changes = j.value("changes", json::array());
    const json bits = j.value("bits", json::object()), kl = j.value("kl", json::object());
    const json abits = j.value("abits", json::object());
    for (const json& c : changes) {
      BitChange ch{c.at("layer").get<std::string>(), c.at("from").get<int>(),
                   c.at("to").get<int>(), c.value("why", "")};
      ch.activation = c.value("activation", false);
      s.changes.push_back(ch);
    }
    for (const auto& [n, v] : bits.items()) s.bits[n] = v.get<int>();
    for (const auto& [n, v] : abits.items()) s.abits[n] = v.get<int>();
    for (const auto& [n, v] : kl.items()) s.kl[n] = v.get<double>();
  } catch (const json::exception& e) {
    fail("{}: field 'iterations[{}]' is malformed ({})", where, i, e.what());
  }
  return s;
}

}  // namespace

CostSummary summarize_cost(const CostReport& r) {
  CostSummary c;
  c.weight_bytes = static_cast<double>(r.weight_bytes);
  c.activation_bytes = static_cast<double>(r.activation_bytes);
  c.bops = static_cast<double>(r.bops);
  if (r.has_energy) c.energy_j = r.energy_j;
  if (r.has_timing) c.latency_s = r.latency_s;
  return c;
}

ojson RunLog::to_json() const {
  ojson j = {{"format", "sigmaquant-run"}, {"version", 1}, {"method", method}};
  j["model"] = {{"name", model_name},
                {"path", model_path},
                {"fp32_accuracy", fp32_accuracy},
                {"fp32_val_accuracy", fp32_val_accuracy}};
  ojson tb = ojson::array();
  for (const BudgetCheck& c : target_budgets)
    tb.push_back({{"metric", c.metric}, {"key", c.key}, {"budget", c.budget}, {"unit", c.unit}});
  j["target"] = {{"name", target_name}, {"cost_model", cost_model}, {"budgets", tb}};
  j["settings"] = settings;
  if (!clusters.is_null()) j["clusters"] = clusters;
  if (!measurements.is_null()) j["measurements"] = measurements;
  if (!iterations.empty()) {
    ojson it = ojson::array();
    for (const RunIteration& s : iterations) it.push_back(iteration_to_json(s));
    j["iterations"] = it;
  }
  if (phase2_stop_reason)
    j["phase2"] = {{"stop_reason", *phase2_stop_reason},
                   {"best_iteration", phase2_best_iteration},
                   {"best_val_accuracy", phase2_best_val_accuracy}};
  if (!layers.empty()) {
    ojson ls = ojson::array();
    for (const RunLayer& L : layers) {
      ojson l = {{"name", L.name}, {"weights", L.weights}, {"sigma", L.sigma}, {"bits", L.bits}};
      if (L.abits > 0) l["abits"] = L.abits;
      if (L.mean_bits) l["mean_bits"] = *L.mean_bits;
      if (L.pruned_channels) l["pruned_channels"] = *L.pruned_channels;
      if (L.cluster) l["cluster"] = *L.cluster;
      if (L.phase1_bits) l["phase1_bits"] = *L.phase1_bits;
      if (L.kl) l["kl"] = *L.kl;
      ls.push_back(l);
    }
    j["layers"] = ls;
  }
  if (final) {
    const RunFinal& f = *final;
    ojson fj = {{"accuracy", f.accuracy},
                {"val_accuracy", f.val_accuracy},
                {"ptq_accuracy", f.ptq_accuracy},
                {"ptq_val_accuracy", f.ptq_val_accuracy},
                {"qat_val_accuracy", f.qat_val_accuracy},
                {"kept", f.kept},
                {"avg_bits", f.avg_bits},
                {"cost", cost_json(f.cost)},
                {"budgets", budgets_to_json(f.budgets)},
                {"search_qat_epochs", f.search_qat_epochs},
                {"search_seconds", f.search_seconds},
                {"final_qat_epochs", f.final_qat_epochs},
                {"final_seconds", f.final_seconds},
                {"qat_epochs_total", f.qat_epochs_total},
                {"seconds_total", f.seconds_total}};
    if (!f.bits_file.empty()) fj["bits_file"] = f.bits_file;
    if (!f.model_file.empty()) fj["model_file"] = f.model_file;
    if (!f.report_file.empty()) fj["report_file"] = f.report_file;
    j["final"] = fj;
  }
  if (!search_model.empty()) j["search_model"] = search_model;
  return j;
}

RunLog RunLog::from_json(const json& j, const std::string& where) {
  validate_run_log(j, where);
  RunLog r;
  try {
    r.method = j.at("method").get<std::string>();
    const json& m = j.at("model");
    r.model_name = m.value("name", "");
    r.model_path = m.value("path", "");
    r.fp32_accuracy = m.value("fp32_accuracy", 0.0);
    r.fp32_val_accuracy = m.value("fp32_val_accuracy", 0.0);
    if (j.contains("target") && j["target"].is_object()) {
      const json& t = j["target"];
      r.target_name = t.value("name", "");
      r.cost_model = t.value("cost_model", "");
      r.target_budgets = budgets_from(t.value("budgets", json::array()));
    }
    if (j.contains("settings") && j["settings"].is_object()) r.settings = j["settings"];
    if (j.contains("clusters")) r.clusters = j["clusters"];
    if (j.contains("measurements")) r.measurements = j["measurements"];
    if (j.contains("iterations") && j["iterations"].is_array()) {
      size_t i = 0;
      for (const json& it : j["iterations"]) r.iterations.push_back(iteration_from(it, where, i++));
    }
    if (j.contains("phase2") && j["phase2"].is_object()) {
      const json& p = j["phase2"];
      r.phase2_stop_reason = p.value("stop_reason", "");
      r.phase2_best_iteration = p.value("best_iteration", 0);
      r.phase2_best_val_accuracy = p.value("best_val_accuracy", 0.0);
    }
    if (j.contains("layers") && j["layers"].is_array())
      for (const json& l : j["layers"]) {
        RunLayer L;
        L.name = l.at("name").get<std::string>();
        L.weights = l.value("weights", int64_t{0});
        L.sigma = l.contains("sigma") && l["sigma"].is_number() ? l["sigma"].get<double>() : 0.0;
        L.bits = l.at("bits").get<int>();
        if (l.contains("abits") && l["abits"].is_number_integer()) L.abits = l["abits"].get<int>();
        if (l.contains("mean_bits") && l["mean_bits"].is_number())
          L.mean_bits = l["mean_bits"].get<double>();
        if (l.contains("pruned_channels") && l["pruned_channels"].is_number_integer())
          L.pruned_channels = l["pruned_channels"].get<int64_t>();
        if (l.contains("cluster") && l["cluster"].is_number()) L.cluster = l["cluster"].get<int>();
        if (l.contains("phase1_bits") && l["phase1_bits"].is_number())
          L.phase1_bits = l["phase1_bits"].get<int>();
        if (l.contains("kl") && l["kl"].is_number()) L.kl = l["kl"].get<double>();
        r.layers.push_back(L);
      }
    if (j.contains("final") && j["final"].is_object()) {
      const json& f = j["final"];
      RunFinal F;
      F.accuracy = f.value("accuracy", 0.0);
      F.val_accuracy = f.value("val_accuracy", 0.0);
      F.ptq_accuracy = f.value("ptq_accuracy", 0.0);
      F.ptq_val_accuracy = f.value("ptq_val_accuracy", 0.0);
      F.qat_val_accuracy = f.value("qat_val_accuracy", 0.0);
      F.kept = f.value("kept", "");
      F.avg_bits = f.value("avg_bits", 0.0);
      F.cost = cost_from(f.value("cost", json::object()));
      F.budgets = budgets_from(f.value("budgets", json::array()));
      F.search_qat_epochs = f.value("search_qat_epochs", 0.0);
      F.search_seconds = f.value("search_seconds", 0.0);
      F.final_qat_epochs = f.value("final_qat_epochs", 0.0);
      F.final_seconds = f.value("final_seconds", 0.0);
      F.qat_epochs_total = f.value("qat_epochs_total", 0.0);
      F.seconds_total = f.value("seconds_total", 0.0);
      F.bits_file = f.value("bits_file", "");
      F.model_file = f.value("model_file", "");
      F.report_file = f.value("report_file", "");
      r.final = F;
    }
    r.search_model = j.value("search_model", "");
  } catch (const json::exception& e) {
    fail("{}: not a run log the pipeline wrote ({})", where, e.what());
  }
  return r;
}

RunLog read_run_log(const std::string& path) {
  json j = parse_json_strict(read_file(path), path);
  return RunLog::from_json(j, path);
}

void write_run_log(const std::string& path, const RunLog& log) {
  write_file_atomic(path, log.to_json().dump(2) + "\n");
}

std::string summarize_run(const RunLog& log) {
  std::string out = fmt::format("{} on {} under {}: ", log.method, log.model_name, log.target_name);
  if (!log.final) return out + "not finished\n";
  const RunFinal& f = *log.final;
  out += fmt::format(
      "test accuracy {:.2f}% (FP32 {:.2f}%, before the final QAT {:.2f}%), {:.2f} average weight "
      "bits\n",
      100 * f.accuracy, 100 * log.fp32_accuracy, 100 * f.ptq_accuracy, f.avg_bits);
  out += fmt::format("validation: {:.2f}% before the final QAT, {:.2f}% after; kept: {}\n",
                     100 * f.ptq_val_accuracy, 100 * f.qat_val_accuracy, f.kept);
  Table t({"budget", "value", "limit", "fits"},
          {Align::Left, Align::Right, Align::Right, Align::Left});
  for (const BudgetCheck& b : f.budgets)
    t.add({b.metric, fmt::format("{:.6g} {}", b.value, b.unit),
           fmt::format("{:.6g} {}", b.budget, b.unit), b.fits ? "yes" : "NO"});
  out += t.str();
  out += fmt::format(
      "search: {:.2f} QAT epochs, {:.0f} s; final QAT: {:.2f} epochs, {:.0f} s; total {:.0f} s\n",
      f.search_qat_epochs, f.search_seconds, f.final_qat_epochs, f.final_seconds,
      f.seconds_total);
  if (log.phase2_stop_reason)
    out += fmt::format("Phase 2 stopped: {} (best iteration {})\n", *log.phase2_stop_reason,
                       log.phase2_best_iteration);
  if (!f.bits_file.empty()) out += fmt::format("bits: {}\n", f.bits_file);
  if (!f.model_file.empty()) out += fmt::format("model: {}\n", f.model_file);
  if (!f.report_file.empty()) out += fmt::format("report: {}\n", f.report_file);
  return out;
}

// ---- Pareto ----

ojson ParetoResult::to_json() const {
  ojson pts = ojson::array();
  for (const ParetoPoint& p : points) {
    ojson j = {{"method", p.method},
               {"budget", p.budget},
               {"avg_bits", p.avg_bits},
               {"accuracy", p.accuracy},
               {"weight_bytes", p.weight_bytes}};
    if (p.energy_j) j["energy_j"] = *p.energy_j;
    if (p.latency_s) j["latency_s"] = *p.latency_s;
    j["qat_epochs"] = p.qat_epochs;
    j["search_qat_epochs"] = p.search_qat_epochs;
    j["seconds"] = p.seconds;
    j["search_seconds"] = p.search_seconds;
    j["final_qat_epochs"] = p.final_qat_epochs;
    j["final_seconds"] = p.final_seconds;
    if (p.seed) j["seed"] = p.seed;
    j["run_dir"] = p.run_dir;
    pts.push_back(j);
  }
  ojson out = {
      {"format", "sigmaquant-pareto"},  {"version", 1}, {"model", model}, {"target", target},
      {"fp32_accuracy", fp32_accuracy}, {"points", pts}};
  if (!refused.empty()) {
    ojson rs = ojson::array();
    for (const ParetoRefusal& r : refused) {
      ojson j = {{"method", r.method}, {"budget", r.budget}};
      if (r.seed) j["seed"] = r.seed;
      j["reason"] = r.reason;
      j["run_dir"] = r.run_dir;
      rs.push_back(j);
    }
    out["refused"] = rs;
  }
  return out;
}

ParetoResult ParetoResult::from_json(const json& j, const std::string& where) {
  validate_pareto(j, where);
  ParetoResult r;
  try {
    r.model = j.value("model", "");
    r.target = j.value("target", "");
    r.fp32_accuracy =
        j.contains("fp32_accuracy") && j["fp32_accuracy"].is_number() ? j["fp32_accuracy"].get<double>() : 0.0;
    for (const json& p : j.at("points")) {
      ParetoPoint q;
      q.method = p.at("method").get<std::string>();
      q.budget = p.contains("budget") && p["budget"].is_string() ? p["budget"].get<std::string>() : "";
      auto num = [&](const char* k) {
        return p.contains(k) && p[k].is_number() ? p[k].get<double>() : 0.0;
      };
      q.avg_bits = num("avg_bits");
      q.accuracy = num("accuracy");
      q.weight_bytes = num("weight_bytes");
      if (p.contains("energy_j") && p["energy_j"].is_number()) q.energy_j = p["energy_j"].get<double>();
      if (p.contains("latency_s") && p["latency_s"].is_number())
        q.latency_s = p["latency_s"].get<double>();
      q.qat_epochs = num("qat_epochs");
      q.search_qat_epochs = num("search_qat_epochs");
      q.seconds = num("seconds");
      q.search_seconds = num("search_seconds");
      q.final_qat_epochs = num("final_qat_epochs");
      q.final_seconds = num("final_seconds");
      if (p.contains("seed") && p["seed"].is_number_unsigned()) q.seed = p["seed"].get<uint64_t>();
      q.run_dir = p.contains("run_dir") && p["run_dir"].is_string() ? p["run_dir"].get<std::string>() : "";
      r.points.push_back(q);
    }
    if (j.contains("refused"))
      for (const json& x : j.at("refused")) {
        ParetoRefusal q;
        q.method = x.at("method").get<std::string>();
        q.budget = x.value("budget", "");
        if (x.contains("seed") && x["seed"].is_number_unsigned())
          q.seed = x["seed"].get<uint64_t>();
        q.reason = x.at("reason").get<std::string>();
        q.run_dir = x.value("run_dir", "");
        r.refused.push_back(q);
      }
  } catch (const json::exception& e) {
    fail("{}: not a Pareto table ({})", where, e.what());
  }
  return r;
}

ParetoResult read_pareto(const std::string& path) {
  json j = parse_json_strict(read_file(path), path);
  return ParetoResult::from_json(j, path);
}

void write_pareto(const std::string& path, const ParetoResult& p) {
  write_file_atomic(path, p.to_json().dump(2) + "\n");
}

}  // namespace sq
