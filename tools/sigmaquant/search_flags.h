// The flags of `quantize` and `pareto`, turned into the library's AllocationRequest. Percent on
// the command line, fractions in the library.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "sigmaquant/pipeline.h"
#include "training_flags.h"

namespace sqcli {

struct SearchFlags {
  std::string method = "sigmaquant";
  std::string model;  // FP32 .sqg
  std::string target = "shiftadd";
  double avg_bits = 0;
  double accuracy_target = 0;  // percent
  double max_drop = 0.5;       // points
  std::string bits_set = "2,3,4,5,6,8";
  int abits = 8;
  std::string abits_set;  // "": --abits alone
  std::string dnas_wbits = "0,2,4,8";
  int dnas_epochs = 4;
  double dnas_lambda = 0;
  int dnas_bisect = 3;
  double dnas_select_epochs = 0;
  std::string dnas_penalty = "cost";
  double dnas_tau_end = 0;
  bool dnas_fill = true;
  int channel_group = 16;
  int first_last = 0;
  double cycle_epochs = 0.1;
  int max_iterations = 6;
  double band = 0.5;  // points
  bool minimize = false;
  int max_raises = 2;
  std::string kl = "output";
  double final_epochs = 1;
  std::string final_start = "search";
  double lr = 0.001;
  int64_t batch_size = 128;
  TrainingFlags training;
  int64_t val_samples = 2000, kl_samples = 512, calib_samples = 1024;
  int64_t hessian_samples = 512;
  int hessian_probes = 4;
  int64_t adaptive_samples = 1000;
  double adaptive_drop = 1.0;  // points
  int64_t exhaustive_limit = 2000;
  uint64_t seed = 1;
  std::string out_dir;
  bool resume = false;
  bool report = true;
};

void add_search_flags(CLI::App* cmd, SearchFlags& s, bool with_method);
std::vector<int> parse_bits_set(const std::string& s, const std::string& flag = "--bits-set");
// A comma-separated list of widths in lo..hi, sorted, duplicates removed; errors name the flag.
std::vector<int> parse_width_list(const std::string& s, const std::string& flag, int lo, int hi);
// Loads the model and the target named by the flags; every field named by its flag on error.
sq::AllocationRequest make_request(const SearchFlags& s, bool progress);

// Prints the pipeline's news on stderr.
class StderrObserver : public sq::Observer {
 public:
  void message(const std::string& line) override;
  void iteration(const sq::RunIteration& it) override;
};

}  // namespace sqcli
