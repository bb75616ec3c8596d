// The Pareto sweep: every method at every budget, each run in its own directory (so an
// interrupted sweep resumes and reuses every finished run), then the table and the report.
#include <fmt/format.h>

#include "pipeline_internal.h"
#include "sigmaquant/error.h"
#include "sigmaquant/fileutil.h"
#include "sigmaquant/report.h"
#include "sigmaquant/stats.h"

namespace sq {

ParetoResult pareto_sweep(const ParetoRequest& req, const DataBundle& data, Observer* observer) {
  if (req.methods.empty() || req.budgets.empty())
    fail("pareto: methods and budgets must not be empty");
  for (const std::string& m : req.methods) find_method(m);
  for (double b : req.budgets)
    if (b != 0 && !(b >= 1 && b <= 8))
      fail("pareto: budget {}: expected average weight bits in [1, 8] or 0 (the target's budgets)",
           b);
  if (req.out_dir.empty()) fail("pareto: an output directory is needed");
  make_dirs(req.out_dir);

  std::vector<uint64_t> seeds = req.seeds;
  for (size_t i = 0; i < seeds.size(); ++i)
    for (size_t k = 0; k < i; ++k)
      if (seeds[k] == seeds[i]) fail("pareto: seed {} is listed twice", seeds[i]);
  const bool seed_dirs = !seeds.empty();
  if (seeds.empty()) seeds.push_back(req.base.seed);

  ParetoResult res;
  std::optional<RunLog> report_log;
  for (uint64_t seed : seeds)
    for (double b : req.budgets)
      for (const std::string& m : req.methods) {
        AllocationRequest r = req.base;
        r.method = m;
        r.seed = seed;
        // Searched activation widths go to the methods that search them; the others run at abits.
        if (!find_method(m).searches_abits) r.abits_set.clear();
        r.avg_bits = b;
        const std::string dir =
            seed_dirs ? fmt::format("{}/seed{}", req.out_dir, seed) : req.out_dir;
        r.out_dir = b > 0 ? fmt::format("{}/{}-{}bits", dir, m, b) : fmt::format("{}/{}", dir, m);
        r.write_report = true;
        std::string label = b > 0 ? fmt::format("{} bits", b) : "target budgets";
        if (observer)
          observer->message(seed_dirs ? fmt::format("== {} at {}, seed {} ==", m, label, seed)
                                      : fmt::format("== {} at {} ==", m, label));
        RunResult run = run_allocation(r, data, observer);
        const RunFinal& f = *run.log.final;
        ParetoPoint p;
        p.method = m;
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
        p.seed = seed;
        p.run_dir = r.out_dir;
        res.points.push_back(p);
        res.model = run.log.model_name;
        res.target = run.log.target_name;
        res.fp32_accuracy = run.log.fp32_accuracy;
        // The report shows one run's details beside the fronts: SigmaQuant's when it ran.
        if (!report_log || (m == "sigmaquant" && report_log->method != "sigmaquant"))
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
