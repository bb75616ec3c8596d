// Statistics for comparing allocation methods over several seeds: mean ± standard deviation,
// Welch's unequal-variance t-test, and the summary of a Pareto sweep (one cell per method and
// budget, significance against the best method of each budget, weight memory saved against a
// reference method at equal accuracy). Torch-free.
//
//   sq::ParetoResult p = sq::read_pareto("runs/bench/lenet5/pareto.json");
//   sq::ParetoSummary s = sq::summarize_pareto(p);        // reference "uniform", alpha 0.05
//   fmt::print("{}", sq::pareto_summary_markdown(s));
//
// Units as in the run log: accuracies are fractions, costs in bytes, J, s.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace sq {

struct ParetoResult;  // sigmaquant/run_log.h

struct MeanStd {
  double mean = 0;
  double std = 0;  // sample standard deviation (n - 1); 0 when n < 2
  int n = 0;
};
MeanStd mean_std(const std::vector<double>& x);

struct WelchTest {
  double t = 0;          // (mean(a) - mean(b)) / sqrt(s_a²/n_a + s_b²/n_b)
  double df = 0;         // Welch–Satterthwaite degrees of freedom
  double p = 1;          // two-sided p-value
  bool defined = false;  // false when either sample has fewer than 2 values
};
// Welch's t-test of equal means. Both variances 0: p = 1 when the means are equal, else 0.
WelchTest welch_t_test(const std::vector<double>& a, const std::vector<double>& b);

// One method at one budget over its seeds.
struct ParetoCell {
  std::string method, budget;
  std::vector<uint64_t> seeds;
  std::vector<double> accuracies;  // one per seed
  MeanStd accuracy, avg_bits, weight_bytes, search_seconds, search_qat_epochs, seconds;
  std::optional<MeanStd> energy_j, latency_s;
  // The search in QAT-epoch equivalents: search seconds / (final-QAT seconds per epoch), mean
  // over seeds; absent when no run recorded its final QAT time.
  std::optional<MeanStd> search_epoch_equivalents;
  // Against the best method (highest mean accuracy) of the same budget; absent for the best.
  std::optional<WelchTest> vs_best;
  bool best = false;
  bool significantly_worse = false;  // vs_best defined and p < alpha
  // 1 - weight_bytes / (reference's weight memory at this mean accuracy, interpolated linearly
  // on the reference method's front of mean accuracy against mean memory). Absent when the
  // accuracy lies outside the reference's range (it is never reached, or below its cheapest
  // point): the reason is in iso_note.
  std::optional<double> iso_memory_saving;
  std::string iso_note;
};

// A method that refused a budget (sq::Infeasible) for the seeds listed; the first run's reason.
struct ParetoRefusedCell {
  std::string method, budget;
  std::vector<uint64_t> seeds;
  std::string reason;
};

struct ParetoSummary {
  std::string model, target, reference;
  double fp32_accuracy = 0;
  double alpha = 0.05;
  std::vector<ParetoCell> cells;  // budgets in the order they first appear, methods likewise
  std::vector<ParetoRefusedCell> refused;
  nlohmann::ordered_json to_json() const;
};

// Groups the points by (method, budget). A method with no point is simply absent; a missing
// reference method leaves iso_memory_saving empty with a note.
ParetoSummary summarize_pareto(const ParetoResult& p, const std::string& reference = "uniform",
                               double alpha = 0.05);
// A Markdown table (one row per cell) with the settings line above it, and the refusals below.
std::string pareto_summary_markdown(const ParetoSummary& s);

}  // namespace sq
