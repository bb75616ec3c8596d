// One allocation run: request checks, the validation split, the method (through the registry),
// the final QAT that never makes the result worse, the outputs and resume.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "pipeline_internal.h"
#include "sigmaquant/alloc.h"
#include "sigmaquant/error.h"
#include "sigmaquant/fileutil.h"
#include "sigmaquant/graph_io.h"
#include "sigmaquant/quantize.h"
#include "sigmaquant/report.h"
#include "sigmaquant/train.h"
#include "sigmaquant/transform.h"

namespace sq {

using Clock = std::chrono::steady_clock;

std::map<std::string, int> bits_map(const BitConfig& b, const Graph& g) {
  std::map<std::string, int> m;
  for (int i : g.weight_layers()) m[g.nodes[i].name] = b.for_layer(g.nodes[i].name).wbits;
  return m;
}

BitConfig bits_from_map(const std::map<std::string, int>& m, const Graph& g,
                        const BitConfig& base, const std::string& where) {
  BitConfig b = base;
  for (int i : g.weight_layers()) {
    const std::string& n = g.nodes[i].name;
    auto it = m.find(n);
    if (it == m.end())
      fail("{}: field 'bits.{}' is missing (expected an integer bitwidth)", where, n);
    b.layers[n].wbits = it->second;
  }
  return b;
}

RunIteration to_iteration(const Phase2Step& s, const Graph& g) {
  RunIteration it;
  it.iter = s.iteration;
  bool spend = false;
  for (const BitChange& c : s.changes) spend = spend || c.why.rfind("spend", 0) == 0;
  it.stage = s.iteration == 0 ? "phase1" : spend ? "spend" : "phase2";
  it.accuracy = s.accuracy;
  it.avg_bits = s.avg_bits;
  it.cost = summarize_cost(s.cost);
  it.budgets = s.budgets;
  it.changes = s.changes;
  it.qat_epochs = s.qat_epochs;
  it.seconds = s.seconds;
  it.bits = bits_map(s.bits, g);
  for (int i : g.weight_layers()) it.abits[g.nodes[i].name] = s.bits.for_layer(g.nodes[i].name).abits;
  it.kl = s.kl;
  return it;
}

Phase2Step step_from_iteration(const RunIteration& it, const Graph& g, const BitConfig& base,
                               const CostEvaluator& ce, const Budgets& b) {
  Phase2Step s;
  s.iteration = it.iter;
  s.bits = bits_from_map(it.bits, g, base, "run log iteration " + std::to_string(it.iter));
  for (const auto& [n, a] : it.abits) {
    auto l = s.bits.layers.find(n);
    if (l == s.bits.layers.end())
      fail("run log iteration {}: field 'abits.{}' is not a weight layer", it.iter, n);
    l->second.abits = a;
  }
  s.accuracy = it.accuracy;
  s.qat_epochs = it.qat_epochs;
  s.seconds = it.seconds;
  s.changes = it.changes;
  s.kl = it.kl;
  s.cost = ce.evaluate(s.bits);
  s.budgets = check_budgets(s.cost, b);
  s.avg_bits = average_weight_bits(s.bits, g);
  return s;
}

namespace {

double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

class NullObserver : public Observer {};

void check_request(const AllocationRequest& r, const DataBundle& data) {
  const MethodInfo& method = find_method(r.method);  // throws, listing the known names
  auto bad = [](double v, double lo, double hi) { return !(v >= lo && v <= hi); };
  if (bad(r.cycle_epochs, 0, 10))
    fail("cycle_epochs {}: expected a number in [0, 10] (0: Phase 2 scores steps by PTQ)",
         r.cycle_epochs);
  if (bad(r.final_epochs, 0, 1000))
    fail("final_epochs {}: expected a number in [0, 1000]", r.final_epochs);
  if (r.max_iterations < 0) fail("max_iterations {}: must be >= 0", r.max_iterations);
  if (r.avg_bits != 0 && bad(r.avg_bits, 1, 8))
    fail("avg_bits {}: expected an average weight width in [1, 8] (or 0: the target's budgets)",
         r.avg_bits);
  if (bad(r.accuracy_target, 0, 1))
    fail("accuracy_target {}: expected a fraction in [0, 1] (0: FP32 minus max_drop)",
         r.accuracy_target);
  if (bad(r.max_drop, 0, 1)) fail("max_drop {}: expected a fraction in [0, 1]", r.max_drop);
  if (bad(r.band, 0, 1)) fail("band {}: expected a fraction in [0, 1]", r.band);
  if (bad(r.adaptive_drop, 1e-9, 1))
    fail("adaptive_drop {}: expected a fraction in (0, 1]", r.adaptive_drop);
  if (bad(r.training.lr, 1e-12, 10))
    fail("lr {}: expected a positive learning rate", r.training.lr);
  if (r.training.batch_size < 1) fail("batch_size {}: must be >= 1", r.training.batch_size);
  if (r.abits < kMinActBits || r.abits > kMaxActBits)
    fail("abits {} is out of range ({}..{})", r.abits, kMinActBits, kMaxActBits);
  for (int a : r.abits_set)
    if (a < kMinActBits || a > kMaxActBits)
      fail("abits_set: {} is not an activation width in {}..{}", a, kMinActBits, kMaxActBits);
  if (r.abits_set.size() > 1 && !method.searches_abits) {
    std::string which;
    for (const std::string& n : method_names())
      if (find_method(n).searches_abits) which += (which.empty() ? "" : ", ") + n;
    fail(
        "abits_set: method '{}' takes one activation width (abits); searched activation widths "
        "are supported by {}",
        r.method, which);
  }
  if (r.dnas_epochs < 1) fail("dnas_epochs {}: must be >= 1", r.dnas_epochs);
  if (bad(r.dnas_lambda, 0, 1e12))
    fail("dnas_lambda {}: expected >= 0 (0: chosen to meet the budgets)", r.dnas_lambda);
  if (r.dnas_bisect_steps < 0) fail("dnas_bisect_steps {}: must be >= 0", r.dnas_bisect_steps);
  if (bad(r.dnas_select_epochs, 0, 100))
    fail("dnas_select_epochs {}: expected a number in [0, 100]", r.dnas_select_epochs);
  if (bad(r.dnas_tau_end, 0, 1e6))
    fail("dnas_tau_end {}: expected >= 0 (0: the per-epoch schedule)", r.dnas_tau_end);
  if (r.channel_group < 1 || r.channel_group > 4096)
    fail("channel_group {}: expected 1..4096 (1: free per-channel widths; 16: the engine's tile)",
         r.channel_group);
  if (r.bits_set.empty()) fail("bits_set is empty");
  for (int b : r.bits_set) {
    // Width 0 (a pruned output channel) only where a method assigns widths per channel from
    // the bits set: sigmaquant-channel / -prune (dnas has its own dnas_wbits).
    if (b == 0 && r.method != "sigmaquant-channel" && r.method != "sigmaquant-prune")
      fail("bits_set {{{}}}: width 0 (pruned channels) is for method sigmaquant-channel (or "
           "sigmaquant-prune, which adds it; dnas: dnas_wbits); method '{}' takes widths 1..8",
           fmt::join(r.bits_set, ","), r.method);
    if (b < 0 || b > 8) fail("bits_set: {} is not a weight width in 0..8", b);
  }
  if (*std::max_element(r.bits_set.begin(), r.bits_set.end()) == 0)
    fail("bits_set {{0}}: every channel pruned (expected a width in 1..8 besides 0)");
  if (r.first_last_bits != 0 && (r.first_last_bits < 1 || r.first_last_bits > 8))
    fail("first_last_bits {}: expected a width in 1..8 (0: not pinned)", r.first_last_bits);
  if (r.val_samples < 1) fail("val_samples {}: must be >= 1", r.val_samples);
  if (r.model.nodes.empty()) fail("the model is empty");
  if (data.train.size() < 10)
    fail(
        "the training set has {} images; the search needs at least 10 (check the data and its "
        "limits)",
        data.train.size());
  if (data.test.size() < 1) fail("the test set is empty (check the data and its limits)");
  if (data.train.image_shape != r.model.input_shape)
    fail("the data's images are {} but the model '{}' expects {}",
         shape_str(data.train.image_shape), r.model.name, shape_str(r.model.input_shape));
  if (data.train.num_classes > r.model.num_classes)
    fail("the data has {} classes but the model '{}' outputs {}", data.train.num_classes,
         r.model.name, r.model.num_classes);
}

// Files this run writes into out_dir (removed when a run that created the directory fails
// before its first checkpoint).
const char* const kRunFiles[] = {"log.json",    "bits.json",  "model.sqg",
                                 "report.html", "final.ckpt", "search-best.sqg"};

struct OutputDir {
  std::string dir;
  bool created = false;
  bool checkpointed = false;
  void open(const std::string& d) {
    dir = d;
    if (d.empty()) return;
    created = !std::filesystem::exists(d);
    make_dirs(d);
    // A bad path fails here, before the work, not after it.
    const std::string probe = path_in(d, ".write-test");
    write_file_atomic(probe, "");
    std::remove(probe.c_str());
    remove_stale_temp_files(d);
  }
  // On failure: a directory this run created and never checkpointed goes (nothing half-written
  // stays); otherwise only temporaries go and the recorded state stays for --resume.
  void abandon() noexcept {
    if (dir.empty()) return;
    try {
      remove_stale_temp_files(dir);
      if (created && !checkpointed) {
        std::error_code ec;
        for (const char* f : kRunFiles) std::filesystem::remove(path_in(dir, f), ec);
        for (const auto& e : std::filesystem::directory_iterator(dir, ec))
          if (e.path().filename().string().rfind("search-model-", 0) == 0)
            std::filesystem::remove(e.path(), ec);
        std::filesystem::remove(dir, ec);  // only if empty
      }
    } catch (...) {
    }
  }
};

// The validation images the search holds out of n training images (at most a fifth).
int64_t validation_images(const AllocationRequest& r, int64_t n) {
  return std::max<int64_t>(1, std::min<int64_t>(r.val_samples, n / 5));
}

// What the request and the data sizes alone decide: recorded in the log's settings, and what a
// resume must match.
nlohmann::ordered_json request_identity(const AllocationRequest& r, int64_t train_n, int64_t val_n,
                                        int64_t test_n) {
  std::string bits;
  for (int b : r.bits_set) bits += (bits.empty() ? "" : ",") + std::to_string(b);
  nlohmann::ordered_json s = {{"bits_set", bits},
                              {"abits", r.abits},
                              {"avg_bits_budget", r.avg_bits},
                              {"seed", r.seed},
                              {"final_qat_epochs", r.final_epochs},
                              {"final_start", final_start_name(r.final_start)},
                              {"lr", r.training.lr},
                              {"batch_size", r.training.batch_size},
                              {"train_images", train_n},
                              {"val_images", val_n},
                              {"test_images", test_n}};
  if (r.first_last_bits) s["first_last_bits"] = r.first_last_bits;
  return s;
}

nlohmann::ordered_json settings_json(const AllocationRequest& r, double target_acc,
                                     const Dataset& train, const Dataset& val, const Dataset& test,
                                     const Augmentation& aug) {
  nlohmann::ordered_json s = request_identity(r, train.size(), val.size(), test.size());
  s["accuracy_target"] = target_acc;
  s["augment"] = aug.on;
  s["augment_pad"] = aug.pad;
  s["augment_flip"] = aug.flip;
  if (r.method == "sigmaquant") {
    s["cycle_epochs"] = r.cycle_epochs;
    s["max_iterations"] = r.max_iterations;
    s["band"] = r.band;
    s["minimize"] = r.minimize;
    s["max_raises"] = r.max_raises;
    s["kl"] = kl_mode_name(r.kl);
  }
  return s;
}

// The final QAT, keeping the better validated state: the model is never worse on the validation
// images than what it held before this training step.
struct FinalQat {
  QuantModel model;
  double before_val = 0, after_val = 0, epochs = 0;
  std::string kept;
};

FinalQat final_qat(QuantModel start, const AllocationRequest& r, const Dataset& train,
                   const Dataset& val, const Augmentation& aug, Observer& obs) {
  FinalQat f;
  EvalOptions eo;
  eo.dist = r.dist.get();
  f.before_val = evaluate_quant(start, val, eo).accuracy;
  f.after_val = f.before_val;
  if (r.final_epochs <= 0) {
    f.model = std::move(start);
    f.kept = "no final QAT";
    return f;
  }
  TrainOptions t;
  Dataset part;
  const Dataset* use = &train;
  if (r.final_epochs < 1) {
    part = take(train, std::max<int64_t>(r.training.batch_size * dist_world_size(r.dist.get()),
                                         std::llround(r.final_epochs * train.size())));
    use = &part;
    t.epochs = 1;
    f.epochs = static_cast<double>(part.size()) / train.size();
  } else {
    t.epochs = static_cast<int>(std::lround(r.final_epochs));
    f.epochs = t.epochs;
  }
  t.lr = r.training.lr;
  t.batch_size = r.training.batch_size;
  t.memory_limit = r.training.memory_limit;
  apply(aug, t);
  t.seed = r.seed;
  t.progress = r.progress && dist_rank(r.dist.get()) == 0;
  t.label = "final QAT";
  t.dist = r.dist;
  if (!r.out_dir.empty()) {
    t.checkpoint = path_in(r.out_dir, "final.ckpt");
    t.resume = r.resume;
  }
  QuantModel trained = start;
  bool diverged = false;
  try {
    qat(trained, *use, nullptr, t, {});
    f.after_val = evaluate_quant(trained, val, eo).accuracy;
  } catch (const Error& e) {
    // A diverged final QAT is a training step that made things worse: keep the state before it.
    if (std::string(e.what()).find("diverged") == std::string::npos) throw;
    diverged = true;
    f.after_val = 0;
    obs.message(fmt::format("final QAT: {}", e.what()));
  }
  if (!diverged && f.after_val >= f.before_val) {
    f.model = std::move(trained);
    f.kept = "final QAT";
  } else {
    f.model = std::move(start);
    f.kept = "before final QAT";
  }
  obs.message(fmt::format(
      "final QAT: validation {:.2f}% before, {:.2f}% after; kept the model {}", 100 * f.before_val,
      100 * f.after_val,
      f.kept == "final QAT" ? "after the final QAT" : "from before the final QAT (it was better)"));
  return f;
}

RunResult finished_run(const RunLog& previous, Observer& obs) {
  obs.message(fmt::format("{}: finished earlier, reusing it", previous.final->model_file));
  RunResult res;
  res.log = previous;
  if (previous.final->model_file.empty() || !file_exists(previous.final->model_file))
    fail("the finished run's model '{}' is missing; delete the directory to start afresh",
         previous.final->model_file);
  res.model = load_qmodel(previous.final->model_file);
  res.bits = res.model.bits;
  return res;
}

// A resumed run must be the run that was recorded: a finished one would otherwise come back
// as the answer to a different question (another budget, data, seed). Compares what the request
// alone decides with the log's settings (a key the log lacks, from an older version, is skipped).
void check_same_request(const RunLog& was, const AllocationRequest& req, const DataBundle& data,
                        const std::string& log_path) {
  if (!was.target_name.empty() && was.target_name != req.target.name)
    fail(
        "{}: this directory holds a run under target '{}' (this request: '{}'); resume needs the "
        "same settings: use another output directory or leave out resume",
        log_path, was.target_name, req.target.name);
  const int64_t n = data.train.size(), n_val = validation_images(req, n);
  nlohmann::ordered_json now = request_identity(req, n - n_val, n_val, data.test.size());
  now["first_last_bits"] = req.first_last_bits;  // recorded only when set: absent = 0
  for (const auto& [key, value] : now.items()) {
    const bool recorded = was.settings.contains(key);
    if (!recorded && !(key == "first_last_bits" && value != 0)) continue;
    const nlohmann::ordered_json old = recorded ? was.settings.at(key) : nlohmann::ordered_json(0);
    if (old != value)
      fail(
          "{}: this directory holds a run with {} = {} (this request: {}); resume needs the same "
          "settings: use another output directory or leave out resume",
          log_path, key, old.dump(), value.dump());
  }
}

}  // namespace

RunResult run_allocation(const AllocationRequest& req, const DataBundle& data, Observer* obs_in) {
  NullObserver null_observer;
  Observer& obs = obs_in ? *obs_in : null_observer;
  check_request(req, data);
  const MethodInfo& method = find_method(req.method);
  const Graph& fp32 = req.model;
  if (req.resume && req.out_dir.empty()) fail("resume needs an output directory (out_dir)");

  auto t_start = Clock::now();
  DistContext* dist = req.dist.get();
  // Data parallel: every rank runs the same flow; rank 0 alone writes files.
  const bool writer = dist_rank(dist) == 0;
  EvalOptions eo;
  eo.dist = dist;  // evaluations in shares, counts all-reduced: the same figures on every rank
  const std::string& dir = req.out_dir;
  const std::string log_path = dir.empty() ? "" : path_in(dir, "log.json");
  std::optional<RunLog> previous;
  if (req.resume && file_exists(log_path)) {
    previous = read_run_log(log_path);
    if (previous->method != req.method || previous->model_path != req.model_path)
      fail("{}: this directory holds a {} run of '{}'; resume needs the same method and model",
           log_path, previous->method, previous->model_path);
    check_same_request(*previous, req, data, log_path);
    if (previous->final) return finished_run(*previous, obs);
  }
  // Every rank has read the recorded state before rank 0 writes the next.
  if (req.resume) dist_wait_all(dist, "reading the run log");
  OutputDir out;
  out.open(writer ? dir : "");
  out.checkpointed = previous.has_value();
  try {
    // Data: the search validates on images held out of the training set (at most a fifth of it);
    // the test set gives only the final figures.
    const int64_t n = data.train.size();
    const int64_t n_val = validation_images(req, n);
    auto [train, val] = split(data.train, static_cast<double>(n_val) / n, req.seed);
    obs.message(fmt::format(
        "data: {} training images split into {} for QAT and {} for validation (seed {}); {} test "
        "images for the final figures",
        n, train.size(), val.size(), req.seed, data.test.size()));
    const Augmentation aug = resolve_augmentation(req.training, data.train);
    obs.message(describe(aug));

    Budgets budgets = req.avg_bits > 0
                          ? budgets_for_avg_bits(fp32, req.target, req.avg_bits, req.abits)
                          : req.target.budgets;
    if (budgets.empty())
      fail("target '{}' has no budgets: set avg_bits or use a target file with \"budgets\"",
           req.target.name);
    Graph folded = fold_batchnorm(fp32);
    CostEvaluator ce(folded, req.target);
    if (req.avg_bits > 0 && !req.target.storage.weight_widths.empty()) {
      // A target that stores widths rounded up (MPIC: {2,4,8}) makes an average below a stored
      // width the memory of the stored one: say so, since the run will report that width.
      const std::vector<int>& w = req.target.storage.weight_widths;
      const int lo = static_cast<int>(std::floor(req.avg_bits));
      auto stored = [&](int b) {
        for (int x : w)
          if (x >= b) return x;
        return b;
      };
      if (stored(lo) == stored(lo + 1))
        obs.message(fmt::format(
            "avg_bits {}: target '{}' stores weights at {{{}}} bits (narrower ones rounded up), "
            "so this budget is {:.2f} KiB of weight memory, the memory of uniform {}-bit weights",
            req.avg_bits, req.target.name, fmt::join(w, ","), *budgets.weight_bytes / 1024,
            stored(lo)));
    }
    // Width 0 (sigmaquant-channel's pruned channels) is not a storage width of the target.
    const bool prune = std::count(req.bits_set.begin(), req.bits_set.end(), 0) > 0;
    std::vector<int> candidates;
    for (int b : req.bits_set)
      if (b > 0) candidates.push_back(b);
    candidates = candidate_widths(candidates, req.target);
    if (prune) candidates.insert(candidates.begin(), 0);
    std::map<std::string, int> pinned;
    if (req.first_last_bits) {
      auto w = fp32.weight_layers();
      pinned[fp32.nodes[w.front()].name] = req.first_last_bits;
      pinned[fp32.nodes[w.back()].name] = req.first_last_bits;
    }

    double fp32_val = evaluate(fp32, val, eo).accuracy;
    double fp32_test = evaluate(fp32, data.test, eo).accuracy;
    double target_acc = req.accuracy_target > 0 ? req.accuracy_target : fp32_val - req.max_drop;

    RunLog log;
    log.method = req.method;
    log.model_name = fp32.name;
    log.model_path = req.model_path;
    log.fp32_accuracy = fp32_test;
    log.fp32_val_accuracy = fp32_val;
    log.target_name = req.target.name;
    log.cost_model = cost_model_name(req.target.kind);
    log.target_budgets =
        check_budgets(ce.evaluate(BitConfig::uniform(folded, 8, req.abits)), budgets);
    log.settings = settings_json(req, target_acc, train, val, data.test, aug);
    if (dist) log.settings["world_size"] = dist_world_size(dist);

    OracleOptions oo;
    oo.kl = kl_mode_name(req.kl);
    oo.kl_samples = req.kl_samples;
    oo.val_samples = val.size();
    oo.lr = req.training.lr;
    oo.batch_size = req.training.batch_size;
    oo.memory_limit = req.training.memory_limit;
    oo.seed = req.seed;
    oo.progress = req.progress;
    oo.calib_samples = req.calib_samples;
    oo.augment = aug.on;
    oo.augment_pad = aug.pad;
    oo.augment_flip = aug.flip;
    oo.dist = req.dist;

    std::string last_model = previous ? previous->search_model : "";
    auto checkpoint = [&](const QuantModel* m) {
      if (dir.empty() || !writer) return;
      // The model first (under its own name), then the log that points at it: a kill between
      // the two leaves the previous consistent pair.
      if (m) {
        std::string mp =
            path_in(dir, fmt::format("search-model-{}.sqg",
                                     log.iterations.empty() ? 0 : log.iterations.back().iter));
        save_qmodel(mp, *m);
        log.search_model = mp;
      }
      write_run_log(log_path, log);
      out.checkpointed = true;
      if (!last_model.empty() && last_model != log.search_model) std::remove(last_model.c_str());
      last_model = log.search_model;
    };

    // QAT (Phase 2's cycles, dnas, the final QAT) at this batch must fit in memory: find out now,
    // not after the search's first hour (a PTQ model calibrated on a few images: only its tensors'
    // sizes matter).
    if (!dist && req.training.memory_limit >= 0 && req.final_epochs > 0) {
      TrainOptions t;
      t.batch_size = req.training.batch_size;
      t.memory_limit = req.training.memory_limit;
      PtqOptions p;
      p.calib_samples = std::min<int64_t>(req.calib_samples, 16);
      p.seed = req.seed;
      check_qat_memory(ptq(fp32, BitConfig::uniform(folded, 8, req.abits), train, p), train, t);
    }

    // ---- the search ----
    obs.stage("search");
    auto t_search = Clock::now();
    MethodContext ctx{req,    fp32,  folded,    ce, budgets,    candidates,
                      pinned, train, val,       oo, target_acc, previous ? &*previous : nullptr,
                      log,    obs,   checkpoint};
    MethodResult mr = method.run(ctx);
    double search_seconds = since(t_search);
    if (!fits(ce, budgets, mr.bits))
      fail("method '{}' returned an assignment that breaks a budget (a bug: please report it)",
           req.method);
    if (dist) {
      // The final QAT trains one model on every rank: the assignment must be the same.
      std::vector<double> wb;
      for (const auto& [name, b] : bits_map(mr.bits, folded)) wb.push_back(b);
      dist_check_same(dist, wb, fmt::format("method '{}': the assignment", req.method));
    }
    if (!dir.empty() && writer) save_bits(path_in(dir, "bits.json"), mr.bits, &folded);

    // ---- final QAT ----
    obs.stage("final QAT");
    auto t_final = Clock::now();
    QuantModel start =
        mr.start_model && req.final_start == FinalStart::Search
            ? std::move(*mr.start_model)
            : requantize_model(fp32, nullptr, mr.bits, train, req.calib_samples, req.seed);
    double before_test = evaluate_quant(start, data.test, eo).accuracy;
    FinalQat fq = final_qat(std::move(start), req, train, val, aug, obs);
    double final_seconds = since(t_final);
    QuantModel& qm = fq.model;
    double test_acc =
        fq.kept == "before final QAT" ? before_test : evaluate_quant(qm, data.test, eo).accuracy;
    qm.meta["eval"] = {{"data", data.test.name},
                       {"samples", data.test.size()},
                       {"accuracy", test_acc},
                       {"fp32_accuracy", fp32_test}};
    qm.meta["method"] = req.method;

    for (int i : folded.weight_layers()) {
      const Node& nd = folded.nodes[i];
      RunLayer L;
      L.name = nd.name;
      L.weights = static_cast<int64_t>(nd.params.at("weight").size());
      L.sigma = weight_std(nd);
      const LayerBits& lb = mr.bits.for_layer(nd.name);
      L.bits = lb.wbits;
      L.abits = lb.abits;
      if (!lb.channel_wbits.empty()) {
        int64_t pruned = 0;
        double sum = 0;
        for (int b : lb.channel_wbits) {
          pruned += b == 0;
          sum += b;
        }
        L.mean_bits = sum / static_cast<double>(lb.channel_wbits.size());
        L.pruned_channels = pruned;
      }
      if (mr.cluster.count(nd.name)) L.cluster = mr.cluster.at(nd.name);
      if (mr.phase1_bits.count(nd.name)) L.phase1_bits = mr.phase1_bits.at(nd.name);
      if (mr.layer_kl.count(nd.name)) L.kl = mr.layer_kl.at(nd.name);
      log.layers.push_back(L);
    }
    CostReport cr = ce.evaluate(mr.bits);
    RunFinal f;
    f.accuracy = test_acc;
    f.val_accuracy = fq.kept == "before final QAT" ? fq.before_val : fq.after_val;
    f.ptq_accuracy = before_test;
    f.ptq_val_accuracy = fq.before_val;
    f.qat_val_accuracy = fq.after_val;
    f.kept = fq.kept;
    f.avg_bits = average_weight_bits(mr.bits, folded);
    f.cost = summarize_cost(cr);
    f.budgets = check_budgets(cr, budgets);
    f.search_qat_epochs = mr.search_qat_epochs;
    f.search_seconds = search_seconds;
    f.final_qat_epochs = fq.epochs;
    f.final_seconds = final_seconds;
    f.qat_epochs_total = mr.search_qat_epochs + fq.epochs;
    if (!dir.empty()) {
      f.bits_file = path_in(dir, "bits.json");
      f.model_file = path_in(dir, "model.sqg");
      if (writer) save_qmodel(f.model_file, qm);
      if (req.write_report) f.report_file = path_in(dir, "report.html");
    }
    f.seconds_total = since(t_start);
    log.final = f;
    // The finished log no longer points at the search models; they go after the log is safe.
    std::string search_model = log.search_model;
    log.search_model.clear();
    if (!dir.empty() && writer) {
      obs.stage("report");
      if (req.write_report) write_report(f.report_file, log.to_json());
      write_run_log(log_path, log);
      for (const std::string& p :
           {search_model, path_in(dir, "final.ckpt"), path_in(dir, "search-best.sqg")})
        if (!p.empty()) std::remove(p.c_str());
    }
    obs.stage("done");
    RunResult res;
    res.bits = mr.bits;
    res.model = std::move(qm);
    res.log = std::move(log);
    return res;
  } catch (...) {
    out.abandon();
    throw;
  }
}

}  // namespace sq
