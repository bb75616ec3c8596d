// The Pareto sweep: every method at every budget (and seed), each run in its own directory (so
// an interrupted sweep resumes and reuses every finished run), then the table, the summary over
// seeds and the report.
// Data parallel (req.dist): the runs are independent, so they are scheduled across the ranks
// (run i on rank i % world); when every rank is done, rank 0 collects the finished runs from
// their directories (a resume of a finished run only reads its log) and writes the table.
// A method that proves it cannot meet a budget (sq::Infeasible) is an answer, not a failure: the
// refusal is written to the run's directory (refused.json, so a resume and the collecting rank
// read it back) and listed in pareto.json, the summary and the report; the sweep goes on. Any
// other error still ends the sweep.
#include <fmt/format.h>

#include <filesystem>

#include "pipeline_internal.h"
#include "sigmaquant/error.h"
#include "sigmaquant/fileutil.h"
#include "sigmaquant/infeasible.h"
#include "sigmaquant/report.h"
#include "sigmaquant/stats.h"

namespace sq {
namespace {

struct SweepRun {
  std::string method;
  double budget = 0;  // average weight bits; 0 = the target's budgets
  uint64_t seed = 0;
};

constexpr const char* kRefusedFile = "refused.json";

// The refusal recorded in `dir`, if any.
std::optional<ParetoRefusal> read_refusal(const std::string& dir) {
  const std::string path = path_in(dir, kRefusedFile);
  if (!file_exists(path)) return std::nullopt;
  const nlohmann::json j = parse_json_strict(read_file(path), path);
  ParetoRefusal r;
  if (!j.is_object() || !j.contains("reason") || !j["reason"].is_string() ||
      !j.contains("method") || !j["method"].is_string())
    fail("{}: expected an object with the strings 'method' and 'reason' (a refused run)", path);
  r.method = j["method"].get<std::string>();
  r.reason = j["reason"].get<std::string>();
  r.run_dir = dir;
  return r;
}

// Runs (or, with `collect`, reads back the finished) run `run` of the sweep. A run whose method
// refuses the budget gives no result (nullopt) and fills `refusal`.
std::optional<RunResult> run_one(const ParetoRequest& req, const SweepRun& run, bool seed_dirs,
                                 const DataBundle& data, Observer* observer, bool collect,
                                 int owner, ParetoPoint& p, ParetoRefusal& refusal) {
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
  const std::string log = path_in(r.out_dir, "log.json");
  refusal = ParetoRefusal();
  refusal.method = run.method;
  refusal.budget = label;
  refusal.seed = run.seed;
  refusal.run_dir = r.out_dir;
  // Recorded before (this sweep, resumed, or another rank's share): read back, not rerun.
  if ((collect || r.resume) && !file_exists(log))
    if (std::optional<ParetoRefusal> was = read_refusal(r.out_dir)) {
      if (was->method != run.method)
        fail("{}: this directory holds a {} run; expected {}", path_in(r.out_dir, kRefusedFile),
             was->method, run.method);
      refusal.reason = was->reason;
      if (observer && !collect)
        observer->message(
            fmt::format("{} at {}: refused (recorded): {}", run.method, label, refusal.reason));
      return std::nullopt;
    }
  if (collect) {
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
  std::optional<RunResult> out;
  try {
    out = run_allocation(r, data, collect ? nullptr : observer);
  } catch (const Infeasible& e) {
    refusal.reason = e.what();
    make_dirs(r.out_dir);
    nlohmann::ordered_json j = {
        {"method", run.method}, {"budget", label}, {"seed", run.seed}, {"reason", refusal.reason}};
    write_file_atomic(path_in(r.out_dir, kRefusedFile), j.dump(2) + "\n");
    if (observer)
      observer->message(fmt::format("{} at {}: refused: {}", run.method, label, refusal.reason));
    return std::nullopt;
  }
  RunResult& res = *out;
  if (!collect) std::filesystem::remove(path_in(r.out_dir, kRefusedFile));  // a stale refusal
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
  return out;
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
        ParetoRefusal no;
        if (run_one(req, runs[i], seed_dirs, data, observer, false, rank, p, no))
          res.points.push_back(p);
        else
          res.refused.push_back(no);
      }
    dist_wait_all(dist, "pareto: waiting for every rank's runs");
    if (rank != 0) return res;  // this rank's points only
    res = ParetoResult();
  }
  std::optional<RunLog> report_log;
  for (size_t i = 0; i < runs.size(); ++i) {
    ParetoPoint p;
    ParetoRefusal no;
    std::optional<RunResult> done =
        run_one(req, runs[i], seed_dirs, data, observer, world > 1,
                static_cast<int>(i % static_cast<size_t>(world)), p, no);
    if (!done) {
      res.refused.push_back(no);
      continue;
    }
    const RunResult& run = *done;
    res.points.push_back(p);
    res.model = run.log.model_name;
    res.target = run.log.target_name;
    res.fp32_accuracy = run.log.fp32_accuracy;
    // The report shows one run's details beside the fronts: SigmaQuant's when it ran.
    if (!report_log || (runs[i].method == "sigmaquant" && report_log->method != "sigmaquant"))
      report_log = run.log;
  }
  if (res.points.empty()) {
    std::string why;
    for (const ParetoRefusal& r : res.refused)
      why += fmt::format("\n  {} at {}: {}", r.method, r.budget, r.reason);
    fail("pareto: every method refused every budget, so there is nothing to compare:{}", why);
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
