// sigmaquant quantize — a bit allocation under a target's budgets and an accuracy target, by
// SigmaQuant (Phase 1 + Phase 2) or a baseline, then the final QAT: bits, quantized model, run log
// and report in one directory. The flow is the library's sq::run_allocation.
#include <fmt/format.h>

#include "common.h"
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
  // One allocation is not data-parallel: several ranks would write the same run directory.
  if (const int world = sq::dist_config_from_env(300).world_size; world > 1)
    sq::fail(
        "quantize runs as one process (the environment says WORLD_SIZE={}): start it without "
        "RANK/WORLD_SIZE, or share whole runs out over ranks with pareto",
        world);
  const bool chatty = !f.common.quiet && !f.common.json;
  if (f.s.out_dir.empty()) f.s.out_dir = default_out_dir(f.s);
  sq::AllocationRequest req = make_request(f.s, chatty);
  sq::DataBundle d = load_data(f.data);
  StderrObserver obs;
  sq::RunResult r = sq::run_allocation(req, d, chatty ? &obs : nullptr);
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
  cmd->callback([f] { run_quantize(*f); });
}

}  // namespace sqcli
