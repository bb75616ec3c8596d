// sigmaquant quantize — a bit allocation under a target's budgets and an accuracy target, by
// SigmaQuant (Phase 1 + Phase 2) or a baseline, then the final QAT: bits, quantized model, run log
// and report in one directory. The flow is the library's sq::run_allocation.
#include <fmt/format.h>

#include "common.h"
#include "dist_flags.h"
#include "search_flags.h"
#include "sigmaquant/distributed.h"
#include "sigmaquant/error.h"
#include "sigmaquant/train.h"

namespace sqcli {
namespace {

struct QuantizeCmd {
  SearchFlags s;
  DataFlags data;
  Common common;
  DistFlags dist;
};

std::string default_out_dir(const SearchFlags& s) {
  std::string stem = s.model;
  auto slash = stem.find_last_of('/');
  if (slash != std::string::npos) stem = stem.substr(slash + 1);
  auto dot = stem.rfind('.');
  if (dot != std::string::npos) stem = stem.substr(0, dot);
  return "runs/" + stem + "-" + s.method;
}

void run_quantize(QuantizeCmd& f) {
  sq::configure_runtime(f.common.threads);
  launch_if_asked(f.dist);
  // Data parallel: every rank runs the same allocation (Phase 2's cycles and the final QAT
  // train in shares, exhaustive shares its candidates out); rank 0 alone writes and prints.
  std::shared_ptr<sq::DistContext> dist =
      join_job(f.dist, f.s.batch_size, !f.common.json && !f.common.quiet);
  const bool rank0 = sq::dist_rank(dist.get()) == 0;
  const bool chatty = !f.common.quiet && !f.common.json && rank0;
  if (f.s.out_dir.empty()) f.s.out_dir = default_out_dir(f.s);
  sq::AllocationRequest req = make_request(f.s, chatty);
  req.dist = dist;
  sq::DataBundle d = load_data(f.data);
  StderrObserver obs;
  sq::RunResult r = sq::run_allocation(req, d, chatty ? &obs : nullptr);
  if (!rank0) return;
  if (f.common.json) {
    print_json(r.log.to_json());
    return;
  }
  fmt::print("{}", sq::summarize_run(r.log));
}

}  // namespace

void add_quantize(CLI::App& app) {
  auto f = std::make_shared<QuantizeCmd>();
  CLI::App* cmd = app.add_subcommand(
      "quantize", "mixed-precision allocation (SigmaQuant or a baseline) + final QAT under a target");
  cmd->add_option("--model,-m", f->s.model, "trained FP32 model (.sqg)")->required();
  cmd->add_option("--seed", f->s.seed, "random seed (validation split, QAT order)")
      ->capture_default_str();
  cmd->add_option("--avg-bits", f->s.avg_bits,
                  "weight-memory budget: the size at this average weight width (replaces the "
                  "target's weight budget)");
  cmd->add_option("--out-dir,-o", f->s.out_dir, "output directory (default runs/<model>-<method>)");
  add_search_flags(cmd, f->s, true);
  add_data_flags(cmd, f->data);
  add_common_flags(cmd, f->common);
  add_dist_flags(cmd, f->dist);
  cmd->callback([f] { run_quantize(*f); });
}

}  // namespace sqcli
