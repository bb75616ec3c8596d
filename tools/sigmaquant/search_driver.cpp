#include "search_driver.h"

#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <sstream>

#include "common.h"
#include "sigmaquant/alloc.h"
#include "sigmaquant/error.h"
#include "sigmaquant/fileutil.h"
#include "sigmaquant/graph_io.h"
#include "sigmaquant/quantize.h"
#include "sigmaquant/report.h"
#include "sigmaquant/search.h"
#include "sigmaquant/table.h"
#include "sigmaquant/transform.h"

namespace sqcli {
namespace {

using json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

const std::vector<std::string> kMethods = {"sigmaquant", "uniform", "adaptive",
                                           "hessian",    "random",  "exhaustive"};

json cost_summary(const sq::CostReport& r) {
  json j = {{"weight_bytes", r.weight_bytes}, {"activation_bytes", r.activation_bytes},
            {"bops", r.bops}};
  if (r.has_energy) j["energy_j"] = r.energy_j;
  if (r.has_timing) j["latency_s"] = r.latency_s;
  return j;
}

json bits_map(const sq::BitConfig& b, const sq::Graph& g) {
  json j = json::object();
  for (int i : g.weight_layers()) j[g.nodes[i].name] = b.for_layer(g.nodes[i].name).wbits;
  return j;
}

sq::BitConfig bits_from_map(const nlohmann::json& j, const sq::Graph& g, int abits,
                            const std::string& where) {
  sq::BitConfig b = sq::BitConfig::uniform(g, 8, abits);
  for (int i : g.weight_layers()) {
    const std::string& n = g.nodes[i].name;
    if (!j.contains(n) || !j[n].is_number_integer())
      sq::fail("{}: field 'bits.{}' must be an integer bitwidth", where, n);
    b.layers[n].wbits = j[n].get<int>();
  }
  return b;
}

json step_json(const sq::Phase2Step& s, const sq::Graph& g, const char* stage) {
  json changes = json::array();
  for (const sq::BitChange& c : s.changes)
    changes.push_back({{"layer", c.layer}, {"from", c.from}, {"to", c.to}, {"why", c.why}});
  json kl = json::object();
  for (const auto& [n, v] : s.kl) kl[n] = v;
  return {{"iter", s.iteration},     {"stage", stage},
          {"accuracy", s.accuracy},  {"avg_bits", s.avg_bits},
          {"cost", cost_summary(s.cost)}, {"budgets", sq::budgets_to_json(s.budgets)},
          {"changes", changes},      {"qat_epochs", s.qat_epochs},
          {"seconds", s.seconds},    {"bits", bits_map(s.bits, g)},
          {"kl", kl}};
}

sq::Phase2Step step_from_json(const nlohmann::json& j, const sq::Graph& g, int abits,
                              const sq::CostEvaluator& ce, const sq::Budgets& b,
                              const std::string& where) {
  sq::Phase2Step s;
  try {
    s.iteration = j.at("iter").get<int>();
    s.bits = bits_from_map(j.at("bits"), g, abits, where);
    s.accuracy = j.at("accuracy").get<double>();
    s.qat_epochs = j.at("qat_epochs").get<double>();
    s.seconds = j.at("seconds").get<double>();
    for (const auto& c : j.at("changes"))
      s.changes.push_back({c.at("layer").get<std::string>(), c.at("from").get<int>(),
                           c.at("to").get<int>(), c.value("why", "")});
    for (const auto& [n, v] : j.at("kl").items()) s.kl[n] = v.get<double>();
  } catch (const nlohmann::json::exception& e) {
    sq::fail("{}: an iteration record is malformed ({}); delete the directory to start afresh",
             where, e.what());
  }
  s.cost = ce.evaluate(s.bits);
  s.budgets = sq::check_budgets(s.cost, b);
  s.avg_bits = sq::average_weight_bits(s.bits, g);
  return s;
}

void write_json(const std::string& path, const json& j) {
  sq::write_file_atomic(path, j.dump(2) + "\n");
}

std::string path_in(const std::string& dir, const std::string& file) { return dir + "/" + file; }

}  // namespace

std::vector<int> parse_bits_set(const std::string& s, const std::string& flag) {
  std::vector<int> bits;
  std::stringstream ss(s);
  std::string part;
  while (std::getline(ss, part, ',')) {
    try {
      size_t used = 0;
      int b = std::stoi(part, &used);
      if (used != part.size() || b < 1 || b > 8) throw std::invalid_argument(part);
      bits.push_back(b);
    } catch (const std::exception&) {
      sq::fail("{} '{}': expected a comma-separated list of bitwidths in 1..8 (e.g. 2,4,8)", flag,
               s);
    }
  }
  std::sort(bits.begin(), bits.end());
  bits.erase(std::unique(bits.begin(), bits.end()), bits.end());
  if (bits.empty()) sq::fail("{} '{}' is empty", flag, s);
  return bits;
}

void add_search_flags(CLI::App* cmd, SearchSettings& s, bool with_method) {
  if (with_method)
    cmd->add_option("--method", s.method,
                    "sigmaquant, uniform, adaptive, hessian, random or exhaustive")
        ->capture_default_str();
  cmd->add_option("--target,-t", s.target, "target file (targets/*.json) or builtin name")
      ->capture_default_str();
  cmd->add_option("--accuracy-target", s.accuracy_target,
                  "accuracy to reach, in percent (default: FP32 minus --max-drop)");
  cmd->add_option("--max-drop", s.max_drop, "accepted accuracy drop from FP32, in points")
      ->capture_default_str();
  cmd->add_option("--bits-set", s.bits_set, "candidate weight bitwidths (the paper's: 2,4,8)")
      ->capture_default_str();
  cmd->add_option("--abits", s.abits, "activation bits")->capture_default_str();
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
  cmd->add_option("--lr", s.lr, "QAT learning rate")->capture_default_str();
  cmd->add_option("--batch-size,-b", s.batch_size, "QAT batch size")->capture_default_str();
  cmd->add_option("--val-samples", s.val_samples,
                  "validation images held out of the training set for the search")
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

// ---------------------------------------------------------------------------------------------

nlohmann::ordered_json run_search(const SearchSettings& s, const sq::DataBundle& data) {
  if (std::find(kMethods.begin(), kMethods.end(), s.method) == kMethods.end())
    sq::fail("--method '{}': expected one of sigmaquant, uniform, adaptive, hessian, random, "
             "exhaustive",
             s.method);
  if (s.kl != "output" && s.kl != "weight")
    sq::fail("--kl '{}': expected output or weight", s.kl);
  if (!(s.cycle_epochs > 0 && s.cycle_epochs <= 10))
    sq::fail("--cycle-epochs {}: expected a number in (0, 10]", s.cycle_epochs);
  if (!(s.final_epochs >= 0)) sq::fail("--final-epochs {}: must be >= 0", s.final_epochs);
  if (s.max_iterations < 0) sq::fail("--max-iterations must be >= 0");
  if (s.abits < sq::kMinActBits || s.abits > sq::kMaxActBits)
    sq::fail("--abits {} is out of range ({}..{})", s.abits, sq::kMinActBits, sq::kMaxActBits);
  if (!sq::file_exists(s.model))
    sq::fail("--model '{}': quantize needs a trained FP32 model file (.sqg)", s.model);
  std::vector<int> cand = parse_bits_set(s.bits_set);
  sq::GraphFile file = sq::load_graph_file(s.model);
  if (sq::is_qmodel(file.meta))
    sq::fail("--model '{}' is already quantized: give the FP32 model", s.model);
  const sq::Graph& fp32 = file.graph;
  if (data.train.size() < 2) sq::fail("the training set is empty (check --data / --limit-train)");
  if (data.test.size() < 1) sq::fail("the test set is empty (check --data / --limit-test)");

  auto t_start = Clock::now();
  const std::string dir = s.out_dir;
  sq::make_dirs(dir);
  prepare_output(path_in(dir, "log.json"), "--out-dir");
  const std::string log_path = path_in(dir, "log.json");

  nlohmann::json previous;
  if (s.resume && sq::file_exists(log_path)) {
    try {
      previous = nlohmann::json::parse(sq::read_file(log_path));
    } catch (const nlohmann::json::exception& e) {
      sq::fail("{}: not a run log ({}); delete it to start afresh", log_path, e.what());
    }
    if (previous.value("method", "") != s.method ||
        previous.value("model", nlohmann::json::object()).value("path", "") != s.model)
      sq::fail("{}: this directory holds a {} run of {}; --resume needs the same method and model",
               log_path, previous.value("method", "?"),
               previous.value("model", nlohmann::json::object()).value("path", "?"));
    if (previous.contains("final")) {
      if (s.progress) fmt::print(stderr, "{}: finished earlier, reusing it\n", log_path);
      return previous;
    }
  }

  // Data: the search validates on images held out of the training set; the test set is only for
  // the final figure.
  double frac = std::min(0.5, static_cast<double>(s.val_samples) / data.train.size());
  auto [train, val] = sq::split(data.train, frac, s.seed);
  if (val.size() == 0) sq::fail("--val-samples {} leaves no validation images", s.val_samples);

  sq::Target target = sq::resolve_target(s.target);
  sq::Budgets budgets = s.avg_bits > 0 ? sq::budgets_for_avg_bits(fp32, target, s.avg_bits, s.abits)
                                       : target.budgets;
  if (budgets.empty())
    sq::fail("target '{}' has no budgets: give --avg-bits or a target file with \"budgets\"",
             s.target);
  sq::Graph folded = sq::fold_batchnorm(fp32);
  sq::CostEvaluator ce(folded, target);

  std::map<std::string, int> pinned;
  if (s.first_last) {
    auto w = fp32.weight_layers();
    pinned[fp32.nodes[w.front()].name] = s.first_last;
    pinned[fp32.nodes[w.back()].name] = s.first_last;
  }

  double fp32_val = sq::evaluate(fp32, val).accuracy;
  double fp32_test = sq::evaluate(fp32, data.test).accuracy;
  double target_acc =
      s.accuracy_target > 0 ? s.accuracy_target / 100 : fp32_val - s.max_drop / 100;

  json log = {{"format", "sigmaquant-run"},
              {"version", 1},
              {"method", s.method},
              {"model",
               {{"name", fp32.name},
                {"path", s.model},
                {"fp32_accuracy", fp32_test},
                {"fp32_val_accuracy", fp32_val}}}};
  json tb = json::array();
  for (const sq::BudgetCheck& c : sq::check_budgets(ce.evaluate(sq::BitConfig::uniform(folded, 8, s.abits)), budgets))
    tb.push_back({{"metric", c.metric}, {"key", c.key}, {"budget", c.budget}, {"unit", c.unit}});
  log["target"] = {{"name", target.name}, {"cost_model", sq::cost_model_name(target.kind)},
                   {"budgets", tb}};
  log["settings"] = {{"bits_set", s.bits_set},
                     {"abits", s.abits},
                     {"avg_bits_budget", s.avg_bits},
                     {"accuracy_target", target_acc},
                     {"seed", s.seed},
                     {"final_qat_epochs", s.final_epochs},
                     {"lr", s.lr},
                     {"train_images", train.size()},
                     {"val_images", val.size()},
                     {"test_images", data.test.size()}};
  if (s.method == "sigmaquant") {
    json& st = log["settings"];
    st["cycle_epochs"] = s.cycle_epochs;
    st["max_iterations"] = s.max_iterations;
    st["band"] = s.band / 100;
    st["minimize"] = s.minimize;
    st["max_raises"] = s.max_raises;
    st["kl"] = s.kl;
  }
  if (s.first_last) log["settings"]["first_last_bits"] = s.first_last;

  sq::OracleOptions oo;
  oo.kl = s.kl;
  oo.kl_samples = s.kl_samples;
  oo.val_samples = val.size();
  oo.lr = s.lr;
  oo.batch_size = s.batch_size;
  oo.seed = s.seed;
  oo.progress = s.progress;
  oo.calib_samples = s.calib_samples;

  // ---- the search ----
  auto t_search = Clock::now();
  double search_epochs = 0;
  sq::BitConfig bits;
  std::optional<sq::QuantModel> start_model;  // trained state to start the final QAT from
  std::map<std::string, double> final_kl;
  std::map<std::string, int> phase1_bits;
  std::map<std::string, std::pair<double, int>> sigma_cluster;
  json iterations = json::array();

  if (s.method == "sigmaquant") {
    sq::Phase1Options o1;
    o1.candidate_bits = cand;
    o1.abits = s.abits;
    o1.pinned = pinned;
    o1.budgets = budgets;
    sq::Phase1Result p1 = sq::sigmaquant_phase1(fp32, target, o1);
    json layers_p1 = json::array();
    for (const sq::Phase1Layer& L : p1.layers) {
      phase1_bits[L.name] = L.bits;
      sigma_cluster[L.name] = {L.sigma, L.cluster};
    }
    log["clusters"] = {{"k", p1.k}, {"centers", p1.centers}, {"bits", p1.cluster_bits}};

    sq::QatOracle oracle(fp32, train, val, oo);
    sq::Phase2Options o2;
    o2.target_accuracy = target_acc;
    o2.band = s.band / 100;
    o2.minimize = s.minimize;
    o2.max_iterations = s.max_iterations;
    o2.cycle_epochs = s.cycle_epochs;
    o2.max_raises = s.max_raises;
    o2.candidate_bits = cand;
    o2.pinned = pinned;

    std::vector<sq::Phase2Step> done;
    if (!previous.is_null() && previous.contains("iterations")) {
      for (const auto& it : previous["iterations"])
        done.push_back(step_from_json(it, folded, s.abits, ce, budgets, log_path));
      if (!done.empty()) {
        std::string mp = previous.value("search_model", "");
        if (mp.empty() || !sq::file_exists(mp))
          sq::fail("{}: the search model '{}' of the last step is missing; delete the directory to "
                   "start afresh",
                   log_path, mp);
        oracle.set_model(sq::load_qmodel(mp));
        if (s.progress)
          fmt::print(stderr, "resuming the search after iteration {}\n", done.back().iteration);
      }
    }
    for (const sq::Phase2Step& st : done)
      iterations.push_back(step_json(st, folded, st.iteration == 0 ? "phase1" : "phase2"));

    std::string last_model;
    auto on_step = [&](const sq::Phase2Step& st) {
      // The model first (under its own name), then the log that points at it: a kill between
      // the two leaves the previous consistent pair.
      std::string mp = path_in(dir, fmt::format("search-model-{}.sqg", st.iteration));
      sq::save_qmodel(mp, oracle.model());
      iterations.push_back(step_json(st, folded, st.iteration == 0 ? "phase1" : "phase2"));
      log["iterations"] = iterations;
      log["search_model"] = mp;
      write_json(log_path, log);
      if (!last_model.empty() && last_model != mp) std::remove(last_model.c_str());
      last_model = mp;
      if (s.progress)
        fmt::print(stderr, "iteration {}: accuracy {:.2f}% (target {:.2f}%), {:.2f} avg bits, {} changes\n",
                   st.iteration, 100 * st.accuracy, 100 * target_acc, st.avg_bits, st.changes.size());
    };
    if (!done.empty()) last_model = previous.value("search_model", "");
    sq::Phase2Result p2 =
        sq::sigmaquant_phase2(folded, ce, budgets, p1.bits, oracle, o2, done, on_step);
    log["phase2"] = {{"stop_reason", p2.stop_reason}, {"best_iteration", p2.best_step},
                     {"best_val_accuracy", p2.accuracy}};
    bits = p2.bits;
    search_epochs = p2.qat_epochs;
    start_model = sq::requantize_model(fp32, &oracle.model(), bits, train, s.calib_samples, s.seed);
    for (int i : folded.weight_layers()) {
      const std::string& n = folded.nodes[i].name;
      final_kl[n] = oracle.layer_kl(n, bits.for_layer(n).wbits);
    }
  } else if (s.method == "uniform") {
    int b = sq::nearest_feasible_uniform(folded, ce, budgets, {2, 3, 4, 5, 6, 7, 8}, s.abits,
                                         pinned);
    bits = sq::uniform_with_pins(folded, b, s.abits, pinned);
    log["settings"]["uniform_bits"] = b;
  } else if (s.method == "adaptive") {
    std::map<std::string, double> p, t;
    sq::adaptive_measure(fp32, train, s.adaptive_samples, s.adaptive_drop / 100, s.seed, p, t);
    bits = sq::adaptive_allocation(folded, ce, budgets, p, t, cand, s.abits, pinned);
    json m = json::object();
    for (const auto& [n, v] : p) m[n] = {{"p", v}, {"t", t[n]}};
    log["measurements"] = m;
  } else if (s.method == "hessian") {
    auto traces = sq::hutchinson_traces(fp32, train, s.hessian_samples, s.hessian_probes, s.seed);
    bits = sq::hessian_allocation(folded, ce, budgets, traces, cand, s.abits, pinned);
    json m = json::object();
    for (const auto& [n, v] : traces) m[n] = {{"trace", v}};
    log["measurements"] = m;
  } else if (s.method == "random") {
    bits = sq::random_allocation(folded, ce, budgets, cand, s.abits, s.seed, pinned);
  } else {  // exhaustive: every feasible assignment gets the same short QAT cycle
    std::vector<sq::BitConfig> all =
        sq::feasible_assignments(folded, ce, budgets, cand, s.abits, s.exhaustive_limit, pinned);
    if (all.empty()) sq::fail("exhaustive: no assignment over {{{}}} fits the budgets", s.bits_set);
    double best = -1;
    int k = 0;
    sq::OracleOptions q = oo;
    q.progress = false;
    sq::QatOracle o(fp32, train, val, q);  // one oracle: validation set and folding made once
    for (const sq::BitConfig& c : all) {
      o.reset_model();  // every assignment starts from the same PTQ model
      double before = o.qat_epochs();
      double acc = o.train_and_evaluate(c, s.cycle_epochs, 0);
      double spent = o.qat_epochs() - before;
      search_epochs += spent;
      sq::CostReport cr = ce.evaluate(c);
      iterations.push_back({{"iter", k},
                            {"stage", "exhaustive"},
                            {"accuracy", acc},
                            {"avg_bits", sq::average_weight_bits(c, folded)},
                            {"cost", cost_summary(cr)},
                            {"budgets", sq::budgets_to_json(sq::check_budgets(cr, budgets))},
                            {"changes", json::array()},
                            {"qat_epochs", spent},
                            {"seconds", 0},
                            {"bits", bits_map(c, folded)}});
      if (acc > best) best = acc, bits = c;
      if (s.progress)
        fmt::print(stderr, "\rexhaustive: {}/{} assignments, best {:.2f}%", ++k, all.size(),
                   100 * best);
    }
    if (s.progress) fmt::print(stderr, "\n");
    log["exhaustive"] = {{"assignments", all.size()}, {"best_val_accuracy", best}};
  }
  double search_seconds = since(t_search);
  if (!iterations.empty()) log["iterations"] = iterations;
  sq::save_bits(path_in(dir, "bits.json"), bits, &folded);

  // ---- final QAT ----
  auto t_final = Clock::now();
  sq::QuantModel qm = start_model ? *start_model
                                  : sq::requantize_model(fp32, nullptr, bits, train,
                                                         s.calib_samples, s.seed);
  double ptq_test = sq::evaluate_quant(qm, data.test).accuracy;
  double final_epochs = 0;
  if (s.final_epochs > 0) {
    sq::TrainOptions t;
    sq::Dataset part;
    const sq::Dataset* use = &train;
    if (s.final_epochs < 1) {
      part = sq::take(train, std::max<int64_t>(s.batch_size,
                                               std::llround(s.final_epochs * train.size())));
      use = &part;
      t.epochs = 1;
      final_epochs = static_cast<double>(part.size()) / train.size();
    } else {
      t.epochs = static_cast<int>(std::lround(s.final_epochs));
      final_epochs = t.epochs;
    }
    t.lr = s.lr;
    t.batch_size = s.batch_size;
    t.seed = s.seed;
    t.progress = s.progress;
    t.label = "final QAT";
    t.checkpoint = path_in(dir, "final.ckpt");
    t.resume = s.resume;
    sq::qat(qm, *use, nullptr, t, {});
  }
  double final_seconds = since(t_final);
  double test_acc = sq::evaluate_quant(qm, data.test).accuracy;
  double val_acc = sq::evaluate_quant(qm, val).accuracy;
  qm.meta["eval"] = {{"data", data.test.name}, {"samples", data.test.size()},
                     {"accuracy", test_acc}, {"fp32_accuracy", fp32_test}};
  qm.meta["method"] = s.method;
  std::string model_path = path_in(dir, "model.sqg");
  sq::save_qmodel(model_path, qm);

  // ---- the log ----
  json layers = json::array();
  for (int i : folded.weight_layers()) {
    const sq::Node& n = folded.nodes[i];
    json L = {{"name", n.name},
              {"weights", n.params.at("weight").size()},
              {"sigma", sq::weight_std(n)},
              {"bits", bits.for_layer(n.name).wbits}};
    if (sigma_cluster.count(n.name)) L["cluster"] = sigma_cluster[n.name].second;
    if (phase1_bits.count(n.name)) L["phase1_bits"] = phase1_bits[n.name];
    if (final_kl.count(n.name)) L["kl"] = final_kl[n.name];
    layers.push_back(L);
  }
  log["layers"] = layers;
  sq::CostReport cr = ce.evaluate(bits);
  log["final"] = {{"accuracy", test_acc},
                  {"val_accuracy", val_acc},
                  {"ptq_accuracy", ptq_test},
                  {"avg_bits", sq::average_weight_bits(bits, folded)},
                  {"cost", cost_summary(cr)},
                  {"budgets", sq::budgets_to_json(sq::check_budgets(cr, budgets))},
                  {"search_qat_epochs", search_epochs},
                  {"search_seconds", search_seconds},
                  {"final_qat_epochs", final_epochs},
                  {"final_seconds", final_seconds},
                  {"qat_epochs_total", search_epochs + final_epochs},
                  {"seconds_total", since(t_start)},
                  {"bits_file", path_in(dir, "bits.json")},
                  {"model_file", model_path}};
  if (s.report) {
    std::string rp = path_in(dir, "report.html");
    sq::write_report(rp, log);
    log["final"]["report_file"] = rp;
  }
  // The finished log no longer points at the search model; the file goes after the log is safe.
  std::string search_model = log.value("search_model", "");
  log.erase("search_model");
  write_json(log_path, log);
  if (!search_model.empty()) std::remove(search_model.c_str());
  std::remove(path_in(dir, "final.ckpt").c_str());
  return log;
}

std::string summarize_run(const nlohmann::json& log) {
  const auto& f = log.at("final");
  const auto& m = log.at("model");
  std::string out = fmt::format(
      "{} on {} under {}: test accuracy {:.2f}% (FP32 {:.2f}%, before the final QAT {:.2f}%), "
      "{:.2f} average weight bits\n",
      log.at("method").get<std::string>(), m.at("name").get<std::string>(),
      log.at("target").at("name").get<std::string>(), 100 * f.at("accuracy").get<double>(),
      100 * m.at("fp32_accuracy").get<double>(), 100 * f.at("ptq_accuracy").get<double>(),
      f.at("avg_bits").get<double>());
  sq::Table t({"budget", "value", "limit", "fits"}, {sq::Align::Left, sq::Align::Right, sq::Align::Right, sq::Align::Left});
  for (const auto& b : f.at("budgets"))
    t.add({b.at("metric").get<std::string>(),
           fmt::format("{:.6g} {}", b.at("value").get<double>(), b.at("unit").get<std::string>()),
           fmt::format("{:.6g} {}", b.at("budget").get<double>(), b.at("unit").get<std::string>()),
           b.at("fits").get<bool>() ? "yes" : "NO"});
  out += t.str();
  out += fmt::format(
      "search: {:.2f} QAT epochs, {:.0f} s; final QAT: {:.2f} epochs, {:.0f} s; total {:.0f} s\n",
      f.at("search_qat_epochs").get<double>(), f.at("search_seconds").get<double>(),
      f.at("final_qat_epochs").get<double>(), f.at("final_seconds").get<double>(),
      f.at("seconds_total").get<double>());
  if (log.contains("phase2"))
    out += fmt::format("Phase 2 stopped: {} (best iteration {})\n",
                       log["phase2"].at("stop_reason").get<std::string>(),
                       log["phase2"].at("best_iteration").get<int>());
  out += fmt::format("bits: {}\nmodel: {}\n", f.at("bits_file").get<std::string>(),
                     f.at("model_file").get<std::string>());
  if (f.contains("report_file")) out += fmt::format("report: {}\n", f.at("report_file").get<std::string>());
  return out;
}

}  // namespace sqcli
