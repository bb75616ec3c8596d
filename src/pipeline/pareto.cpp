// The Pareto sweep: every method at every budget (and seed), each run in its own directory (so
// an interrupted sweep resumes and reuses every finished run), then the table, the summary over
// seeds and the report.
// Data parallel (req.dist): the runs are independent, so they are scheduled across the ranks
// (run i on rank i % world); when every rank is done, rank 0 collects the finished runs from
// their directories (a resume of a finished run only reads its log) and writes the table.
#include <fmt/format.h>

#include "pipeline_internal.h"
#include "sigmaquant/error.h"
#include "sigmaquant/fileutil.h"
#include "sigmaquant/report.h"
#include "sigmaquant/stats.h"

namespace sq {
namespace {

struct SweepRun {
  std::string method;
  double budget = 0;  // average weight bits; 0 = the target's budgets
  uint64_t seed = 0;
};

// Runs (or, with `collect`, reads back the finished) run `run` of the sweep.
RunResult run_one(const ParetoRequest& req, const SweepRun& run, bool seed_dirs,
                  const DataBundle& data, Observer* observer, bool collect, int owner,
                  ParetoPoint& p) {
  AllocationRequest r = req.base;
  r.dist = nullptr;  // the sweep shares whole runs out; each trains in one process
  r.method = run.method;
  r.seed = run.seed;
  // Searched activation widths go to the methods that search them; the others run at abits.
  if (!find_method(run.method).searches_abits) r.abits_set.clear();
  r.avg_bits = run.budget;
  const std::string dir = seed_dirs ? fmt::format("{}/seed{}", req.out_dir, run.seed) : req.out_dir;
  r.out_dir = run.budget > 0 ? fmt::format("{}/{}-{}bits", dir, run.method, run.budget)
                             : fmt::format("{}/{}", dir, run.method);
  r.write_report = true;
  const std::string label = run.budget > 0 ? fmt::format("{} bits", run.budget) : "target budgets";
  if (collect) {
    const std::string log = path_in(r.out_dir, "log.json");
    if (!file_exists(log))
      fail(
          "pareto: {} (rank {}'s run) is not here: across machines the runs' --out-dir must be "
          "on a file system every rank shares",
          log, owner);
    r.resume = true;
  } else if (observer) {
    const int world = dist_world_size(req.dist.get());
    const std::string what = seed_dirs
                                 ? fmt::format("{} at {}, seed {}", run.method, label, run.seed)
                                 : fmt::format("{} at {}", run.method, label);
    observer->message(
        world > 1 ? fmt::format("== {} (rank {} of {}) ==", what, dist_rank(req.dist.get()), world)
                  : fmt::format("== {} ==", what));
  }
  RunResult res = run_allocation(r, data, collect ? nullptr : observer);
  const RunFinal& f = *res.log.final;
  p.method = run.method;
  p.budget = label;
  p.avg_bits = f.avg_bits;
  p.accuracy = f.accuracy;
  p.weight_bytes = f.cost.weight_bytes;
  p.energy_j = f.cost.energy_j;
  p.latency_s = f.cost.latency_s;
  p.qat_epochs = f.qat_epochs_total;
  p.search_qat_epochs = f.search_qat_epochs;
  p.seconds = f.seconds_total;
  p.search_seconds = f.search_seconds;
  p.final_qat_epochs = f.final_qat_epochs;
  p.final_seconds = f.final_seconds;
  p.seed = run.seed;
  p.run_dir = r.out_dir;
  return res;
}

}  // namespace

ParetoResult pareto_sweep(const ParetoRequest& req, const DataBundle& data, Observer* observer) {
  if (req.methods.empty() || req.budgets.empty())
    fail("pareto: methods and budgets must not be empty");
  for (const std::string& m : req.methods) find_method(m);
  for (double b : req.budgets)
    if (b != 0 && !(b >= 1 && b <= 8))
      fail("pareto: budget {}: expected average weight bits in [1, 8] or 0 (the target's budgets)",
           b);
  if (req.out_dir.empty()) fail("pareto: an output directory is needed");
  std::vector<uint64_t> seeds = req.seeds;
  for (size_t i = 0; i < seeds.size(); ++i)
    for (size_t k = 0; k < i; ++k)
      if (seeds[k] == seeds[i]) fail("pareto: seed {} is listed twice", seeds[i]);
  const bool seed_dirs = !seeds.empty();
  if (seeds.empty()) seeds.push_back(req.base.seed);
  make_dirs(req.out_dir);
  std::vector<SweepRun> runs;
  for (uint64_t s : seeds)
    for (double b : req.budgets)
      for (const std::string& m : req.methods) runs.push_back({m, b, s});

  DistContext* dist = req.dist.get();
  const int world = dist_world_size(dist), rank = dist_rank(dist);
  ParetoResult res;
  if (world > 1) {
    // This rank's share; then rank 0 alone goes on to collect every run.
    for (size_t i = 0; i < runs.size(); ++i)
      if (static_cast<int>(i % static_cast<size_t>(world)) == rank) {
        ParetoPoint p;
        run_one(req, runs[i], seed_dirs, data, observer, false, rank, p);
        res.points.push_back(p);
      }
    dist_wait_all(dist, "pareto: waiting for every rank's runs");
    if (rank != 0) return res;  // this rank's points only
    res = ParetoResult();
  }
  std::optional<RunLog> report_log;
  for (size_t i = 0; i < runs.size(); ++i) {
    ParetoPoint p;
    RunResult run = run_one(req, runs[i], seed_dirs, data, observer, world > 1,
                            static_cast<int>(i % static_cast<size_t>(world)), p);
    res.points.push_back(p);
    res.model = run.log.model_name;
    res.target = run.log.target_name;
    res.fp32_accuracy = run.log.fp32_accuracy;
    // The report shows one run's details beside the fronts: SigmaQuant's when it ran.
    if (!report_log || (runs[i].method == "sigmaquant" && report_log->method != "sigmaquant"))
      report_log = run.log;
  }
  write_pareto(path_in(req.out_dir, "pareto.json"), res);
  nlohmann::json pj = res.to_json();
  write_file_atomic(path_in(req.out_dir, "pareto.csv"), pareto_csv(pj));
  const ParetoSummary summary = summarize_pareto(res, req.reference);
  write_file_atomic(path_in(req.out_dir, "summary.json"), summary.to_json().dump(2) + "\n");
  write_file_atomic(path_in(req.out_dir, "summary.md"), pareto_summary_markdown(summary));
  write_report(path_in(req.out_dir, "report.html"), report_log->to_json(), &pj);
  return res;
}

}  // namespace sq
