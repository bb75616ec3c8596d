#include "search_flags.h"

#include <fmt/format.h>

#include <algorithm>
#include <sstream>

#include "sigmaquant/error.h"
#include "sigmaquant/fileutil.h"
#include "sigmaquant/graph_io.h"
#include "sigmaquant/qmodel.h"

namespace sqcli {

std::vector<int> parse_width_list(const std::string& s, const std::string& flag, int lo, int hi) {
  std::vector<int> bits;
  std::stringstream ss(s);
  std::string part;
  while (std::getline(ss, part, ',')) {
    try {
      size_t used = 0;
      int b = std::stoi(part, &used);
      if (used != part.size() || b < lo || b > hi) throw std::invalid_argument(part);
      bits.push_back(b);
    } catch (const std::exception&) {
      sq::fail("{} '{}': expected a comma-separated list of bitwidths in {}..{} (e.g. 2,4,8)", flag,
               s, lo, hi);
    }
  }
  std::sort(bits.begin(), bits.end());
  bits.erase(std::unique(bits.begin(), bits.end()), bits.end());
  if (bits.empty()) sq::fail("{} '{}' is empty", flag, s);
  return bits;
}

std::vector<int> parse_bits_set(const std::string& s, const std::string& flag) {
  return parse_width_list(s, flag, 1, 8);
}

void add_search_flags(CLI::App* cmd, SearchFlags& s, bool with_method) {
  if (with_method) {
    std::string names;
    for (const std::string& n : sq::method_names()) names += (names.empty() ? "" : ", ") + n;
    cmd->add_option("--method", s.method, names)->capture_default_str();
  }
  cmd->add_option("--target,-t", s.target, "target file (targets/*.json) or builtin name")
      ->capture_default_str();
  cmd->add_option("--accuracy-target", s.accuracy_target,
                  "accuracy to reach, in percent (default: FP32 minus --max-drop)");
  cmd->add_option("--max-drop", s.max_drop, "accepted accuracy drop from FP32, in points")
      ->capture_default_str();
  cmd->add_option("--bits-set", s.bits_set,
                  "candidate weight bitwidths (the paper's: 2,4,8); sigmaquant-channel also takes 0 "
                  "(pruned channels)")
      ->capture_default_str();
  cmd->add_option("--abits", s.abits, "activation bits")->capture_default_str();
  cmd->add_option("--abits-set", s.abits_set,
                  "activation widths to search per tensor, e.g. 2,4,8 (every method but exhaustive "
                  "and sigmaquant-channel); one width = --abits");
  cmd->add_option("--dnas-wbits", s.dnas_wbits, "dnas: weight widths per channel (0 = pruned)")
      ->capture_default_str();
  cmd->add_option("--dnas-epochs", s.dnas_epochs, "dnas: search epochs per lambda tried")
      ->capture_default_str();
  cmd->add_option("--dnas-lambda", s.dnas_lambda,
                  "dnas: cost strength (0: bisected until the argmax meets the budgets)")
      ->capture_default_str();
  cmd->add_option("--dnas-bisect", s.dnas_bisect, "dnas: bisection steps on lambda")
      ->capture_default_str();
  cmd->add_option("--dnas-penalty", s.dnas_penalty,
                  "dnas: regulariser, cost (the expected cost, every metric pushed down: the "
                  "paper's) or excess (only the expected cost above each budget)")
      ->capture_default_str();
  cmd->add_option("--dnas-tau-end", s.dnas_tau_end,
                  "dnas: final temperature, reached geometrically over the search's steps (0: "
                  "the paper's 5 x exp(-0.045 per epoch))")
      ->capture_default_str();
  cmd->add_option("--dnas-fill", s.dnas_fill,
                  "dnas budget mode: raise each argmax while every budget holds, most "
                  "quantization damage removed per unit of cost first (false: the argmax as "
                  "searched)")
      ->capture_default_str();
  cmd->add_option("--dnas-select-epochs", s.dnas_select_epochs,
                  "dnas: score each lambda's argmax after this much QAT (0: PTQ alone)")
      ->capture_default_str();
  cmd->add_option("--channel-group", s.channel_group,
                  "dnas, sigmaquant-channel: channels per weight width in a layer come in "
                  "multiples of this (16: the engine's tile; 1: free per-channel widths)")
      ->capture_default_str();
  cmd->add_option("--first-last-bits", s.first_last, "pin the first and last weight layers");
  cmd->add_option("--cycle-epochs", s.cycle_epochs, "QAT per Phase 2 cycle (fraction of an epoch)")
      ->capture_default_str();
  cmd->add_option("--max-iterations", s.max_iterations, "Phase 2 iteration limit")
      ->capture_default_str();
  cmd->add_option("--band", s.band, "tolerance band above the accuracy target, in points")
      ->capture_default_str();
  cmd->add_flag("--minimize", s.minimize,
                "above target + band, lower bits to save resources (default: stop at the target)");
  cmd->add_option("--max-raises", s.max_raises, "raises per Phase 2 iteration")
      ->capture_default_str();
  cmd->add_option("--kl", s.kl, "layer sensitivity: output (KL of the logits) or weight")
      ->capture_default_str();
  cmd->add_option("--final-epochs", s.final_epochs, "final QAT epochs (a fraction: a subset)")
      ->capture_default_str();
  cmd->add_option("--final-start", s.final_start,
                  "final QAT starts from: search (the method's trained search state where it has "
                  "one) or ptq (the PTQ model, for every method: the same final QAT for all)")
      ->capture_default_str();
  cmd->add_option("--lr", s.lr, "QAT learning rate")->capture_default_str();
  cmd->add_option("--batch-size,-b", s.batch_size, "QAT batch size")->capture_default_str();
  add_training_flags(cmd, s.training);
  cmd->add_option("--val-samples", s.val_samples,
                  "validation images held out of the training set (at most a fifth of it)")
      ->capture_default_str();
  cmd->add_option("--kl-samples", s.kl_samples, "images for the output KL")->capture_default_str();
  cmd->add_option("--calib-samples", s.calib_samples, "activation-calibration images")
      ->capture_default_str();
  cmd->add_option("--hessian-samples", s.hessian_samples, "images for the Hessian traces")
      ->capture_default_str();
  cmd->add_option("--hessian-probes", s.hessian_probes, "Hutchinson probes per batch")
      ->capture_default_str();
  cmd->add_option("--adaptive-samples", s.adaptive_samples, "images for Zhou et al.'s measurements")
      ->capture_default_str();
  cmd->add_option("--exhaustive-limit", s.exhaustive_limit, "most assignments exhaustive tries")
      ->capture_default_str();
  cmd->add_flag("--resume", s.resume, "continue an interrupted run in the output directory");
  cmd->add_flag_function("--no-report", [&s](int64_t) { s.report = false; }, "do not write report.html");
}

sq::AllocationRequest make_request(const SearchFlags& s, bool progress) {
  auto pct = [](double v, const char* flag) {
    if (!(v >= 0 && v <= 100)) sq::fail("{} {}: expected a percentage in [0, 100]", flag, v);
    return v / 100;
  };
  sq::AllocationRequest r;
  r.method = s.method;
  try {  // an unknown method fails before the model is read, naming the flag
    sq::find_method(s.method);
  } catch (const sq::Error& e) {
    sq::fail("--{}", e.what());  // "--method 'x': expected one of ..."
  }
  if (!sq::file_exists(s.model))
    sq::fail("--model '{}': quantize needs a trained FP32 model file (.sqg)", s.model);
  sq::GraphFile file = sq::load_graph_file(s.model);
  if (sq::is_qmodel(file.meta))
    sq::fail("--model '{}' is already quantized: give the FP32 model", s.model);
  r.model = std::move(file.graph);
  r.model_path = s.model;
  r.target = sq::resolve_target(s.target);
  if (s.avg_bits != 0 && !(s.avg_bits >= 1 && s.avg_bits <= 8))
    sq::fail("--avg-bits {}: expected an average weight width in [1, 8]", s.avg_bits);
  r.avg_bits = s.avg_bits;
  r.accuracy_target = pct(s.accuracy_target, "--accuracy-target");
  r.max_drop = pct(s.max_drop, "--max-drop");
  // 0 (pruned channels) is sigmaquant-channel's; the pipeline names other methods that get it.
  r.bits_set = parse_width_list(s.bits_set, "--bits-set", 0, 8);
  r.abits = s.abits;
  if (!s.abits_set.empty()) {
    r.abits_set = parse_width_list(s.abits_set, "--abits-set", sq::kMinActBits, sq::kMaxActBits);
    if (r.abits_set.size() == 1) {
      r.abits = r.abits_set[0];
      r.abits_set.clear();
    }
  }
  r.dnas_wbits = parse_width_list(s.dnas_wbits, "--dnas-wbits", 0, 8);
  r.dnas_epochs = s.dnas_epochs;
  r.dnas_lambda = s.dnas_lambda;
  r.dnas_bisect_steps = s.dnas_bisect;
  r.dnas_select_epochs = s.dnas_select_epochs;
  r.dnas_penalty = sq::parse_dnas_penalty(s.dnas_penalty, "--dnas-penalty");
  r.dnas_tau_end = s.dnas_tau_end;
  r.dnas_fill = s.dnas_fill;
  r.channel_group = s.channel_group;
  r.first_last_bits = s.first_last;
  r.cycle_epochs = s.cycle_epochs;
  r.max_iterations = s.max_iterations;
  r.band = pct(s.band, "--band");
  r.minimize = s.minimize;
  r.max_raises = s.max_raises;
  r.kl = sq::parse_kl_mode(s.kl, "--kl");
  r.final_epochs = s.final_epochs;
  r.final_start = sq::parse_final_start(s.final_start, "--final-start");
  r.training = training_settings(s.training);
  r.training.lr = s.lr;
  r.training.batch_size = s.batch_size;
  r.val_samples = s.val_samples;
  r.kl_samples = s.kl_samples;
  r.calib_samples = s.calib_samples;
  r.hessian_samples = s.hessian_samples;
  r.hessian_probes = s.hessian_probes;
  r.adaptive_samples = s.adaptive_samples;
  r.adaptive_drop = pct(s.adaptive_drop, "--adaptive-drop");
  r.exhaustive_limit = s.exhaustive_limit;
  r.seed = s.seed;
  r.out_dir = s.out_dir;
  r.resume = s.resume;
  r.write_report = s.report;
  r.progress = progress;
  return r;
}

void StderrObserver::message(const std::string& line) { fmt::print(stderr, "{}\n", line); }

void StderrObserver::iteration(const sq::RunIteration& it) {
  if (it.stage == "exhaustive") return;  // the method draws its own counter
  fmt::print(stderr, "iteration {} ({}): validation accuracy {:.2f}%, {:.2f} avg bits, {} changes\n",
             it.iter, it.stage, 100 * it.accuracy, it.avg_bits, it.changes.size());
}

}  // namespace sqcli
