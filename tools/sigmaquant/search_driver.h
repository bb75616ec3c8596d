// One bit-allocation run from the command line: a method (sigmaquant or a baseline) under a
// target's budgets, its search, the final QAT, and the outputs in one directory (bits.json,
// model.sqg, log.json, report.html). Shared by `quantize` and `pareto`.
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "sigmaquant/data.h"

namespace sqcli {

struct SearchSettings {
  std::string method = "sigmaquant";  // sigmaquant | uniform | adaptive | hessian | random |
                                      // exhaustive
  std::string model;                  // FP32 .sqg
  std::string target = "shiftadd";
  double avg_bits = 0;  // > 0: weight-memory budget of this average width (else the target's)
  double accuracy_target = 0;  // percent; 0: FP32 validation accuracy - max_drop
  double max_drop = 0.5;       // percentage points
  std::string bits_set = "2,3,4,5,6,8";
  int abits = 8;
  int first_last = 0;
  // Phase 2
  double cycle_epochs = 0.1;
  int max_iterations = 6;
  double band = 0.5;  // percentage points above the target
  bool minimize = false;
  int max_raises = 2;
  std::string kl = "output";
  // training
  double final_epochs = 1;
  double lr = 0.001;
  int64_t batch_size = 128;
  int64_t val_samples = 2000, kl_samples = 512, calib_samples = 1024;
  // baselines
  int64_t hessian_samples = 512;
  int hessian_probes = 4;
  int64_t adaptive_samples = 1000;
  double adaptive_drop = 1.0;  // percentage points
  int64_t exhaustive_limit = 2000;
  uint64_t seed = 1;
  std::string out_dir;
  bool resume = false;
  bool progress = true;
  bool report = true;
};

void add_search_flags(CLI::App* cmd, SearchSettings& s, bool with_method);
std::vector<int> parse_bits_set(const std::string& s, const std::string& flag = "--bits-set");

// Runs one method end to end and returns its run log (also written to <out_dir>/log.json).
// With resume, a finished run in out_dir is returned as is, and an interrupted one continues
// from its last recorded step.
nlohmann::ordered_json run_search(const SearchSettings& s, const sq::DataBundle& data);

// A one-screen summary of a run log.
std::string summarize_run(const nlohmann::json& log);

}  // namespace sqcli
