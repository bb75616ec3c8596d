// The run log of one allocation (format "sigmaquant-run") and the table of a Pareto sweep
// (format "sigmaquant-pareto") as typed values, with their JSON forms (schemas in
// docs/formats.md). Torch-free: the report, the fuzz targets and the Python module read them
// without the training world. Written by the allocation pipeline (sigmaquant/pipeline.h).
//
//   sq::RunLog log = sq::read_run_log("runs/r20/log.json");   // errors name file and field
//   if (log.final) fmt::print("{:.2f}%\n", 100 * log.final->accuracy);
//
// Units: accuracies are fractions in [0, 1]; costs in base units (bytes, s, J).
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "sigmaquant/cost.h"
#include "sigmaquant/search.h"

namespace sq {

struct CostSummary {
  double weight_bytes = 0, activation_bytes = 0, bops = 0;
  std::optional<double> energy_j, latency_s;
};
CostSummary summarize_cost(const CostReport& r);

struct RunIteration {
  int iter = 0;
  std::string stage;  // "phase1" | "phase2" | "spend" | "exhaustive"
  double accuracy = 0;  // validation
  double avg_bits = 0;
  CostSummary cost;
  std::vector<BudgetCheck> budgets;
  std::vector<BitChange> changes;
  double qat_epochs = 0, seconds = 0;
  std::map<std::string, int> bits;
  std::map<std::string, int> abits;  // per weight layer: its input activation bits (empty in
                                     // logs before searched activation widths)
  std::map<std::string, double> kl;
};

// One iteration in its log form (what RunLog::to_json writes under "iterations").
nlohmann::ordered_json iteration_to_json(const RunIteration& it);

struct RunLayer {
  std::string name;
  int64_t weights = 0;
  double sigma = 0;
  int bits = 0;  // weight bits (channel-wise layers: the widest channel's)
  int abits = 0;  // its input activation's bits (0: not recorded, logs before issue 13)
  // Channel-wise layers only: the weight-weighted mean width and the pruned (0-bit) channels.
  std::optional<double> mean_bits;
  std::optional<int64_t> pruned_channels;
  std::optional<int> cluster, phase1_bits;
  std::optional<double> kl;
};

struct RunFinal {
  double accuracy = 0;          // test, of the returned model
  double val_accuracy = 0;      // validation, of the returned model
  double ptq_accuracy = 0;      // test, before the final QAT
  double ptq_val_accuracy = 0;  // validation, before the final QAT
  double qat_val_accuracy = 0;  // validation, after the final QAT (= ptq_val when none ran)
  std::string kept;             // "final QAT" | "before final QAT" | "no final QAT"
  double avg_bits = 0;
  CostSummary cost;
  std::vector<BudgetCheck> budgets;
  double search_qat_epochs = 0, search_seconds = 0;
  double final_qat_epochs = 0, final_seconds = 0;
  double qat_epochs_total = 0, seconds_total = 0;
  std::string bits_file, model_file, report_file;  // "" when not written
};

struct RunLog {
  std::string method;
  std::string model_name, model_path;
  double fp32_accuracy = 0, fp32_val_accuracy = 0;
  std::string target_name, cost_model;
  std::vector<BudgetCheck> target_budgets;  // metric, key, budget, unit (value/fits unused)
  nlohmann::ordered_json settings = nlohmann::ordered_json::object();  // the request, recorded
  nlohmann::ordered_json clusters;      // sigmaquant: {k, centers, bits}; null otherwise
  nlohmann::ordered_json measurements;  // hessian / adaptive: per layer; null otherwise
  std::vector<RunIteration> iterations;
  std::optional<std::string> phase2_stop_reason;
  int phase2_best_iteration = 0;
  double phase2_best_val_accuracy = 0;
  std::vector<RunLayer> layers;
  std::optional<RunFinal> final;
  std::string search_model;  // an interrupted sigmaquant run: its last search model

  nlohmann::ordered_json to_json() const;
  // Validates (validate_run_log) and reads; errors name `where` and the field.
  static RunLog from_json(const nlohmann::json& j, const std::string& where);
};
RunLog read_run_log(const std::string& path);
void write_run_log(const std::string& path, const RunLog& log);  // atomic
// A one-screen summary (what `quantize` prints).
std::string summarize_run(const RunLog& log);

struct ParetoPoint {
  std::string method, budget;  // budget: "3 bits" or "target budgets"
  double avg_bits = 0, accuracy = 0, weight_bytes = 0;
  std::optional<double> energy_j, latency_s;
  double qat_epochs = 0, search_qat_epochs = 0, seconds = 0, search_seconds = 0;
  double final_qat_epochs = 0, final_seconds = 0;  // the final QAT alone
  uint64_t seed = 0;                               // the run's seed (0: not recorded)
  std::string run_dir;
};
// A run whose method proved that no assignment of its widths meets the budget (sq::Infeasible):
// recorded in its run directory (refused.json) and listed instead of a point.
struct ParetoRefusal {
  std::string method, budget;  // budget as in ParetoPoint
  uint64_t seed = 0;
  std::string reason, run_dir;
};
struct ParetoResult {
  std::string model, target;
  double fp32_accuracy = 0;
  std::vector<ParetoPoint> points;
  std::vector<ParetoRefusal> refused;
  nlohmann::ordered_json to_json() const;
  static ParetoResult from_json(const nlohmann::json& j, const std::string& where);
};
ParetoResult read_pareto(const std::string& path);
void write_pareto(const std::string& path, const ParetoResult& p);  // atomic

}  // namespace sq
