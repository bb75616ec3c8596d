// sigmaquant quantize — a bit allocation under a target's budgets and an accuracy target, by
// SigmaQuant (Phase 1 + Phase 2) or a baseline, then the final QAT: bits, quantized model, run log
// and report in one directory.
#include <fmt/format.h>

#include "common.h"
#include "search_driver.h"
#include "sigmaquant/error.h"
#include "sigmaquant/train.h"

namespace sqcli {
namespace {

struct QuantizeCmd {
  SearchSettings s;
  DataFlags data;
  Common common;
};

void run_quantize(QuantizeCmd& f) {
  sq::configure_runtime(f.common.threads);
  f.s.progress = !f.common.quiet && !f.common.json;
  if (f.s.out_dir.empty()) {
    std::string stem = f.s.model;
    auto slash = stem.find_last_of('/');
    if (slash != std::string::npos) stem = stem.substr(slash + 1);
    auto dot = stem.rfind('.');
    if (dot != std::string::npos) stem = stem.substr(0, dot);
    f.s.out_dir = "runs/" + stem + "-" + f.s.method;
  }
  sq::DataBundle d = load_data(f.data);
  nlohmann::ordered_json log = run_search(f.s, d);
  if (f.common.json) {
    print_json(log);
    return;
  }
  fmt::print("{}", summarize_run(log));
}

}  // namespace

void add_quantize(CLI::App& app) {
  auto f = std::make_shared<QuantizeCmd>();
  CLI::App* cmd = app.add_subcommand(
      "quantize", "mixed-precision allocation (SigmaQuant or a baseline) + final QAT under a target");
  cmd->add_option("--model,-m", f->s.model, "trained FP32 model (.sqg)")->required();
  cmd->add_option("--seed", f->s.seed, "random seed")->capture_default_str();
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
