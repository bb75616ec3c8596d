// sigmaquant pareto — several allocation methods at several average-weight-bit budgets under one
// target: a table (CSV + JSON) of accuracy against weight memory, energy and latency, and the
// report with the fronts (the library's sq::pareto_sweep).
#include <fmt/format.h>

#include <sstream>

#include "common.h"
#include "dist_flags.h"
#include "search_flags.h"
#include "sigmaquant/error.h"
#include "sigmaquant/stats.h"
#include "sigmaquant/table.h"
#include "sigmaquant/train.h"

namespace sqcli {
namespace {

struct ParetoCmd {
  SearchFlags s;
  DataFlags data;
  Common common;
  DistFlags dist;
  std::string methods = "sigmaquant,uniform,adaptive,hessian";
  std::string budgets = "2.5,3,4";
  std::string seeds;  // "": --seed alone
  std::string reference = "uniform";
};

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string part;
  while (std::getline(ss, part, ','))
    if (!part.empty()) out.push_back(part);
  return out;
}

std::vector<double> parse_budgets(const std::string& list) {
  std::vector<double> budgets;
  for (const std::string& b : split_list(list)) {
    if (b == "target") {  // the target file's own budgets
      budgets.push_back(0);
      continue;
    }
    try {
      size_t used = 0;
      double v = std::stod(b, &used);
      if (used != b.size() || !(v >= 1 && v <= 8)) throw std::invalid_argument(b);
      budgets.push_back(v);
    } catch (const std::exception&) {
      sq::fail(
          "--budgets '{}': expected average weight bits in 1..8 or 'target' (the target's "
          "own budgets), comma-separated (e.g. 2.5,3,4)",
          list);
    }
  }
  return budgets;
}

std::vector<uint64_t> parse_seeds(const std::string& list) {
  std::vector<uint64_t> seeds;
  for (const std::string& v : split_list(list)) {
    size_t used = 0;
    unsigned long long x = 0;
    try {
      x = std::stoull(v, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != v.size() || v.empty() || v[0] == '-')
      sq::fail("--seeds '{}': expected non-negative integers, comma-separated (e.g. 1,2,3)", list);
    seeds.push_back(x);
  }
  if (seeds.empty()) sq::fail("--seeds '{}': expected at least one seed", list);
  return seeds;
}

std::string opt3(const std::optional<double>& v, double scale) {
  return v ? fmt::format("{:.3f}", scale * *v) : "-";
}

void run_pareto(ParetoCmd& f) {
  sq::configure_runtime(f.common.threads);
  launch_if_asked(f.dist);
  const bool chatty = !f.common.quiet && !f.common.json;
  sq::ParetoRequest req;
  req.dist = sq::init_distributed(sq::dist_config_from_env(f.dist.timeout));
  const bool rank0 = sq::dist_rank(req.dist.get()) == 0;
  if (req.dist && chatty && rank0)
    fmt::print(stderr, "pareto: the runs are shared out over {} ranks (run i on rank i % {})\n",
               sq::dist_world_size(req.dist.get()), sq::dist_world_size(req.dist.get()));
  req.methods = split_list(f.methods);
  req.budgets = parse_budgets(f.budgets);
  if (req.methods.empty() || req.budgets.empty())
    sq::fail("--methods and --budgets must not be empty");
  req.out_dir = f.s.out_dir.empty() ? "runs/pareto" : f.s.out_dir;
  if (!f.seeds.empty()) req.seeds = parse_seeds(f.seeds);
  req.reference = f.reference;
  f.s.method = req.methods.front();
  req.base = make_request(f.s, chatty);
  sq::DataBundle d = load_data(f.data);
  StderrObserver obs;
  sq::ParetoResult p = sq::pareto_sweep(req, d, chatty ? &obs : nullptr);
  if (!rank0) return;
  if (f.common.json) {
    print_json(p.to_json());
    return;
  }
  sq::Table t({"budget", "method", "seed", "avg bits", "accuracy", "weight KiB", "energy uJ",
               "latency ms", "QAT epochs", "search s", "total s"},
              {sq::Align::Left, sq::Align::Left, sq::Align::Right, sq::Align::Right,
               sq::Align::Right, sq::Align::Right, sq::Align::Right, sq::Align::Right,
               sq::Align::Right, sq::Align::Right, sq::Align::Right});
  for (const sq::ParetoPoint& q : p.points)
    t.add({q.budget, q.method, std::to_string(q.seed), fmt::format("{:.2f}", q.avg_bits),
           fmt::format("{:.2f}%", 100 * q.accuracy), fmt::format("{:.2f}", q.weight_bytes / 1024),
           opt3(q.energy_j, 1e6), opt3(q.latency_s, 1e3), fmt::format("{:.2f}", q.qat_epochs),
           fmt::format("{:.0f}", q.search_seconds), fmt::format("{:.0f}", q.seconds)});
  fmt::print("{} under {} (FP32 {:.2f}%)\n{}", p.model, p.target, 100 * p.fp32_accuracy, t.str());
  if (req.seeds.empty())  // with seeds, the summary below lists them
    for (const sq::ParetoRefusal& r : p.refused)
      fmt::print("refused: {} at {}: {}\n", r.method, r.budget, r.reason);
  if (!req.seeds.empty())
    fmt::print("\n{}", sq::pareto_summary_markdown(sq::summarize_pareto(p, req.reference)));
  fmt::print(
      "table: {0}/pareto.csv, {0}/pareto.json; over seeds: {0}/summary.md, "
      "{0}/summary.json; report: {0}/report.html\n",
      req.out_dir);
}

}  // namespace

void add_pareto(CLI::App& app) {
  auto f = std::make_shared<ParetoCmd>();
  CLI::App* cmd = app.add_subcommand(
      "pareto", "compare allocation methods across average-bit budgets (table, plots, report)");
  cmd->add_option("--model,-m", f->s.model, "trained FP32 model (.sqg)")->required();
  cmd->add_option("--seed", f->s.seed, "random seed")->capture_default_str();
  cmd->add_option("--methods", f->methods, "comma-separated methods")->capture_default_str();
  cmd->add_option("--budgets", f->budgets,
                  "average weight bits, comma-separated; 'target': the target file's budgets")
      ->capture_default_str();
  cmd->add_option("--seeds", f->seeds,
                  "run every method and budget once per seed, comma-separated (e.g. 1,2,3): "
                  "mean ± std and Welch's t-test in summary.md; replaces --seed");
  cmd->add_option("--reference", f->reference,
                  "the method the summary's memory saving at equal accuracy is measured against")
      ->capture_default_str();
  cmd->add_option("--out-dir,-o", f->s.out_dir, "output directory (default runs/pareto)");
  add_search_flags(cmd, f->s, false);
  add_data_flags(cmd, f->data);
  add_common_flags(cmd, f->common);
  add_dist_flags(cmd, f->dist);
  cmd->callback([f] { run_pareto(*f); });
}

}  // namespace sqcli
