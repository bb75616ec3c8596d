// The allocation-method registry and the built-in methods. A method turns the prepared problem
// (MethodContext) into an assignment that fits every budget, optionally with a trained model to
// start the final QAT from. Add one with register_method(); the built-ins are one table below.
#include <fmt/format.h>

#include <algorithm>
#include <mutex>
#include <random>

#include "pipeline_internal.h"
#include "sigmaquant/alloc.h"
#include "sigmaquant/distributed.h"
#include "sigmaquant/dnas.h"
#include "sigmaquant/error.h"
#include "sigmaquant/fileutil.h"
#include "sigmaquant/graph_io.h"
#include "sigmaquant/infeasible.h"
#include "sigmaquant/qmodel.h"
#include "sigmaquant/random.h"

namespace sq {
namespace {

// ---- searched activation widths (request.abits_set of two or more widths) ----

bool searches_activations(const AllocationRequest& r) { return r.abits_set.size() > 1; }

void log_activation_search(MethodContext& c, const ActivationSearchResult& s,
                           const std::string& damage) {
  c.log.settings["activation_search"] = {{"abits_set", c.request.abits_set},
                                         {"damage", damage},
                                         {"point_bits", s.point_bits},
                                         {"weight_damage", s.weight_damage},
                                         {"activation_damage", s.activation_damage},
                                         {"states_scored", s.evaluations}};
}

// ---- sigmaquant: Phase 1 from sigma, Phase 2 with short QAT cycles ----

// SigmaQuant with Phase 2 cycles of `cycle_epochs` (0: steps scored by PTQ alone).
MethodResult sigmaquant_with_cycles(MethodContext& c, double cycle_epochs) {
  const AllocationRequest& r = c.request;
  MethodResult out;
  Phase1Options o1;
  o1.candidate_bits = c.candidates;
  o1.abits = r.abits;
  o1.pinned = c.pinned;
  o1.budgets = c.budgets;
  Phase1Result p1;
  if (searches_activations(r)) {
    // Activation widths searched: sigma of the calibrated activations clusters the points.
    std::map<std::string, double> sigma;
    for (const auto& [name, st] :
         activation_statistics(c.fp32, c.train, r.calib_samples, r.abits_set))
      sigma[name] = st.sigma;
    ActivationSearchResult s;
    p1 = sigmaquant_phase1_with_activations(c.fp32, c.cost.target(), o1, r.abits_set, sigma, &s);
    log_activation_search(c, s, "phase 1 proxy: kappa n sigma^2 4^-a (sigma clusters)");
    c.log.settings["activation_search"]["point_sigma"] = sigma;
  } else {
    p1 = sigmaquant_phase1(c.fp32, c.cost.target(), o1);
  }
  for (const Phase1Layer& L : p1.layers) {
    out.phase1_bits[L.name] = L.bits;
    if (L.cluster >= 0) out.cluster[L.name] = L.cluster;  // -1: pinned, not clustered
  }
  c.log.clusters = {{"k", p1.k}, {"centers", p1.centers}, {"bits", p1.cluster_bits}};

  QatOracle oracle(c.fp32, c.train, c.val, c.oracle);
  Phase2Options o2;
  o2.target_accuracy = c.accuracy_target;
  o2.band = r.band;
  o2.minimize = r.minimize;
  o2.max_iterations = r.max_iterations;
  o2.cycle_epochs = cycle_epochs;
  o2.max_raises = r.max_raises;
  o2.candidate_bits = c.candidates;
  o2.pinned = c.pinned;
  if (searches_activations(r)) o2.abits_set = r.abits_set;  // Phase 2 moves points too

  // Resume: the recorded steps, and the model of the last one.
  std::vector<Phase2Step> done;
  std::optional<QuantModel> best_model;
  double best_acc = -1;
  if (c.previous && !c.previous->iterations.empty()) {
    for (const RunIteration& it : c.previous->iterations)
      done.push_back(step_from_iteration(it, c.folded, p1.bits, c.cost, c.budgets));
    const std::string& mp = c.previous->search_model;
    if (mp.empty() || !file_exists(mp))
      fail(
          "{}: the search model '{}' of the last step is missing; delete the directory to start "
          "afresh",
          c.request.out_dir, mp);
    oracle.set_model(load_qmodel(mp));
    std::string bp = path_in(r.out_dir, "search-best.sqg");
    if (file_exists(bp)) {
      best_model = load_qmodel(bp);
      for (const Phase2Step& s : done) best_acc = std::max(best_acc, s.accuracy);
    }
    c.observer.message(
        fmt::format("resuming the search after iteration {}", done.back().iteration));
    for (const Phase2Step& s : done) c.log.iterations.push_back(to_iteration(s, c.folded));
  }

  auto on_step = [&](const Phase2Step& st) {
    // Data parallel: the ranks decide from the same (all-reduced or handed-over) figures, so
    // they must hold the same assignment at every step; a divergence stops the run here.
    if (r.dist) {
      std::vector<double> wb;
      for (const auto& [name, b] : bits_map(st.bits, c.folded)) wb.push_back(b);
      dist_check_same(r.dist.get(), wb, fmt::format("Phase 2 step {}", st.iteration));
    }
    // The best state so far is kept (in memory and, with files, on disk) so that the final QAT
    // starts from the best validated model, not from the last one.
    if (st.accuracy > best_acc) {
      best_acc = st.accuracy;
      best_model = oracle.model();
      if (!r.out_dir.empty() && dist_rank(r.dist.get()) == 0)
        save_qmodel(path_in(r.out_dir, "search-best.sqg"), *best_model);
    }
    c.log.iterations.push_back(to_iteration(st, c.folded));
    c.checkpoint(&oracle.model());
    c.observer.iteration(c.log.iterations.back());
  };
  Phase2Result p2 =
      sigmaquant_phase2(c.folded, c.cost, c.budgets, p1.bits, oracle, o2, done, on_step);
  c.log.phase2_stop_reason = p2.stop_reason;
  c.log.phase2_best_iteration = p2.best_step;
  c.log.phase2_best_val_accuracy = p2.accuracy;
  out.bits = p2.bits;
  out.search_qat_epochs = p2.qat_epochs;
  // The best step's trained model carries exactly p2.bits; requantize only if it does not.
  const QuantModel* from = best_model ? &*best_model : &oracle.model();
  out.start_model = requantize_model(c.fp32, from, out.bits, c.train, r.calib_samples, r.seed);
  for (int i : c.folded.weight_layers()) {
    const std::string& n = c.folded.nodes[i].name;
    out.layer_kl[n] = oracle.layer_kl(n, out.bits.for_layer(n).wbits);
  }
  return out;
}

MethodResult run_sigmaquant(MethodContext& c) {
  return sigmaquant_with_cycles(c, c.request.cycle_epochs);
}

// SigmaQuant with Phase 2 scored by PTQ on the validation set instead of QAT cycles: the same
// Phase 1 and the same KL-guided moves, a search that trains nothing (issue 16: a cheaper
// search); the final QAT starts from the best step's PTQ model.
MethodResult run_sigmaquant_ptq(MethodContext& c) {
  c.log.settings["cycle_epochs"] = 0;
  return sigmaquant_with_cycles(c, 0);
}

MethodResult run_uniform(MethodContext& c) {
  MethodResult out;
  if (searches_activations(c.request)) {
    // The widest uniform weight width that fits with every activation at one width of the set,
    // and for it the widest activation width.
    std::vector<int> acts = c.request.abits_set;
    std::sort(acts.rbegin(), acts.rend());
    const std::vector<int> cand = candidate_widths(c.candidates, c.cost.target());
    int best_w = 0, best_a = 0;
    for (int a : acts)
      for (int w : cand)
        if (w > best_w && fits(c.cost, c.budgets, uniform_with_pins(c.folded, w, a, c.pinned)))
          best_w = w, best_a = a;
    if (best_w == 0)  // the reason, at the narrowest activations
      nearest_feasible_uniform(c.folded, c.cost, c.budgets, c.candidates, acts.back(), c.pinned);
    out.bits = uniform_with_pins(c.folded, best_w, best_a, c.pinned);
    c.log.settings["uniform_bits"] = best_w;
    std::map<std::string, int> points;
    for (const ActivationPoint& p : activation_points(c.folded, c.pinned))
      points[p.name] = best_a;  // uniform: pinned layers too
    c.log.settings["activation_search"] = {{"abits_set", c.request.abits_set},
                                           {"point_bits", points}};
    return out;
  }
  int b = nearest_feasible_uniform(c.folded, c.cost, c.budgets, c.candidates, c.request.abits,
                                   c.pinned);
  out.bits = uniform_with_pins(c.folded, b, c.request.abits, c.pinned);
  c.log.settings["uniform_bits"] = b;
  return out;
}

MethodResult run_adaptive(MethodContext& c) {
  const AllocationRequest& r = c.request;
  MethodResult out;
  std::map<std::string, double> p, t;
  adaptive_measure(c.fp32, c.train, r.adaptive_samples, r.adaptive_drop, r.seed, p, t);
  if (searches_activations(r)) {
    // Zhou's objective with activations as further noise sources: sum over layers and points of
    // p / t x quantization noise energy, minimised by the exact solver inside the search.
    auto stats = activation_statistics(c.fp32, c.train, r.adaptive_samples, r.abits_set);
    std::map<std::string, double> pa, ta;
    adaptive_measure_activations(c.fp32, c.train, r.adaptive_samples, r.adaptive_drop, r.seed,
                                 stats, pa, ta);
    std::map<std::pair<std::string, int>, double> cache;
    auto wdamage = [&](const std::string& n, int b) {
      auto key = std::make_pair(n, b);
      auto it = cache.find(key);
      if (it != cache.end()) return it->second;
      const double gain = std::max(p.at(n), 1e-30) / std::max(t.at(n), 1e-30);
      return cache[key] = gain * weight_quantization_error(c.folded.node(n), b);
    };
    auto adamage = [&](const std::string& q, int a) {
      return std::max(pa.at(q), 1e-30) / std::max(ta.at(q), 1e-30) * stats.at(q).noise.at(a);
    };
    ActivationSearchResult s = joint_exact_allocation(c.folded, c.cost, c.budgets, c.candidates,
                                                      c.pinned, r.abits_set, wdamage, adamage);
    out.bits = s.bits;
    log_activation_search(c, s, "p / t x noise energy (weights: ||Q(W) - W||^2)");
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [n, v] : p) m[n] = {{"p", v}, {"t", t[n]}};
    for (const auto& [n, v] : pa) m["point:" + n] = {{"p", v}, {"t", ta[n]}};
    c.log.measurements = m;
    return out;
  }
  out.bits =
      adaptive_allocation(c.folded, c.cost, c.budgets, p, t, c.candidates, r.abits, c.pinned);
  nlohmann::ordered_json m = nlohmann::ordered_json::object();
  for (const auto& [n, v] : p) m[n] = {{"p", v}, {"t", t[n]}};
  c.log.measurements = m;
  return out;
}

MethodResult run_hessian(MethodContext& c) {
  const AllocationRequest& r = c.request;
  MethodResult out;
  auto traces = hutchinson_traces(c.fp32, c.train, r.hessian_samples, r.hessian_probes, r.seed);
  if (searches_activations(r)) {
    // HAWQ-V2's activation sensitivity: the Hessian trace with respect to each point's
    // activations times its quantization noise energy, in the units of the weights' damage.
    auto stats = activation_statistics(c.fp32, c.train, r.hessian_samples, r.abits_set);
    auto atr =
        activation_hessian_traces(c.fp32, c.train, r.hessian_samples, r.hessian_probes, r.seed);
    std::map<std::pair<std::string, int>, double> cache;
    auto wdamage = [&](const std::string& n, int b) {
      auto key = std::make_pair(n, b);
      auto it = cache.find(key);
      if (it != cache.end()) return it->second;
      const Node& node = c.folded.node(n);
      const double avg = traces.at(n) / static_cast<double>(node.params.at("weight").size());
      return cache[key] = avg * weight_quantization_error(node, b);
    };
    auto adamage = [&](const std::string& q, int a) {
      const ActivationStats& st = stats.at(q);
      return std::max(atr.at(q), 0.0) / static_cast<double>(st.elements) * st.noise.at(a);
    };
    ActivationSearchResult s = joint_exact_allocation(c.folded, c.cost, c.budgets, c.candidates,
                                                      c.pinned, r.abits_set, wdamage, adamage);
    out.bits = s.bits;
    log_activation_search(c, s, "trace / n x noise energy");
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [n, v] : traces) m[n] = {{"trace", v}};
    for (const auto& [n, v] : atr) m["point:" + n] = {{"trace", v}};
    c.log.measurements = m;
    return out;
  }
  out.bits =
      hessian_allocation(c.folded, c.cost, c.budgets, traces, c.candidates, r.abits, c.pinned);
  nlohmann::ordered_json m = nlohmann::ordered_json::object();
  for (const auto& [n, v] : traces) m[n] = {{"trace", v}};
  c.log.measurements = m;
  return out;
}

MethodResult run_random(MethodContext& c) {
  MethodResult out;
  if (searches_activations(c.request)) {
    // Point widths drawn uniformly from the set (random points lowered while no weights fit),
    // then random weights at those widths.
    const std::vector<ActivationPoint> points = activation_points(c.folded, c.pinned);
    std::vector<int> acts = c.request.abits_set;
    std::sort(acts.begin(), acts.end());
    std::mt19937_64 rng(c.request.seed ^ 0x9e3779b97f4a7c15ULL);
    std::map<std::string, int> w;
    std::vector<std::string> movable;
    for (const ActivationPoint& p : points) {
      w[p.name] = p.fixed ? acts.back() : acts[uniform_index(rng, acts.size())];
      if (!p.fixed) movable.push_back(p.name);
    }
    auto layers = [&] { return point_widths_to_layers(points, w, acts.back()); };
    while (!AssignmentSolver(c.folded, c.cost, c.budgets, c.candidates, layers(), c.pinned)
                .feasible()) {
      std::vector<std::string> lowerable;
      for (const std::string& n : movable)
        if (w[n] > acts.front()) lowerable.push_back(n);
      if (lowerable.empty())
        AssignmentSolver(c.folded, c.cost, c.budgets, c.candidates, layers(), c.pinned)
            .require_feasible("random");
      std::string n = lowerable[uniform_index(rng, lowerable.size())];
      w[n] = *(std::lower_bound(acts.begin(), acts.end(), w[n]) - 1);
    }
    out.bits = random_allocation(c.folded, c.cost, c.budgets, c.candidates, layers(),
                                 c.request.seed, c.pinned);
    c.log.settings["activation_search"] = {{"abits_set", c.request.abits_set},
                                           {"point_bits", w}};
    return out;
  }
  out.bits = random_allocation(c.folded, c.cost, c.budgets, c.candidates, c.request.abits,
                               c.request.seed, c.pinned);
  return out;
}

// Every feasible assignment gets the same short QAT cycle from the same PTQ start; the best
// validated one wins (the first of equals, in the order of feasible_assignments).
// Data parallel (request.dist): the candidates are independent, so they are shared out in rounds
// of W: in a round starting at candidate k, rank r trains candidate k + r in one process (rank r
// takes r, r + W, ... of a fresh run). After each round the accuracies are all-reduced, so every
// rank records the same results and takes the same winner; rank 0 checkpoints the log. A resume
// skips the candidates the log records. The winner's owner hands its trained model to every rank
// (re-training it when it was recorded before a resume: the cycle is deterministic).
MethodResult run_exhaustive(MethodContext& c) {
  const AllocationRequest& r = c.request;
  MethodResult out;
  AssignmentSolver(c.folded, c.cost, c.budgets, c.candidates, r.abits, c.pinned)
      .require_feasible("exhaustive");
  std::vector<BitConfig> all = feasible_assignments(c.folded, c.cost, c.budgets, c.candidates,
                                                    r.abits, r.exhaustive_limit, c.pinned);
  if (all.empty())
    fail_infeasible("exhaustive: no assignment over the candidate widths fits the budgets");
  DistContext* dist = r.dist.get();
  const int world = dist_world_size(dist), rank = dist_rank(dist);
  OracleOptions q = c.oracle;
  q.progress = false;
  q.dist = nullptr;  // each candidate trains in one process, with the global batch
  q.batch_size *= world;
  QatOracle o(c.fp32, c.train, c.val, q);  // one oracle: validation set and folding made once
  auto record = [&](size_t k, double acc, double epochs) {
    RunIteration it;
    it.iter = static_cast<int>(k);
    it.stage = "exhaustive";
    it.accuracy = acc;
    it.avg_bits = average_weight_bits(all[k], c.folded);
    CostReport cr = c.cost.evaluate(all[k]);
    it.cost = summarize_cost(cr);
    it.budgets = check_budgets(cr, c.budgets);
    it.qat_epochs = epochs;
    it.bits = bits_map(all[k], c.folded);
    out.search_qat_epochs += epochs;
    c.log.iterations.push_back(it);
  };
  // Resume: the candidates recorded before (in order, the same assignments).
  size_t start = 0;
  double best = -1;
  size_t best_k = 0;
  if (c.previous)
    for (const RunIteration& it : c.previous->iterations) {
      if (start >= all.size() || it.stage != "exhaustive" || it.iter != static_cast<int>(start) ||
          it.bits != bits_map(all[start], c.folded))
        fail(
            "{}: iteration {} of the log is not candidate {} of this exhaustive search (other "
            "settings?); delete the directory to start afresh",
            r.out_dir, it.iter, start);
      record(start, it.accuracy, it.qat_epochs);
      if (it.accuracy > best) best = it.accuracy, best_k = start;
      ++start;
    }
  if (start > 0) c.observer.message(fmt::format("resuming exhaustive after {} candidates", start));
  std::optional<QuantModel> best_model;  // the winner so far, if this rank trained it here
  const size_t w = static_cast<size_t>(world);
  for (size_t round = start; round < all.size(); round += w) {
    // [accuracy, QAT epochs] of candidate round + i at 2i, 2i + 1 (zeros from the other ranks)
    std::vector<double> res(2 * w, 0.0);
    std::optional<QuantModel> mine;
    const size_t k = round + static_cast<size_t>(rank);
    if (k < all.size()) {
      o.reset_model();
      const double before = o.qat_epochs();
      res[2 * rank] = o.train_and_evaluate(all[k], r.cycle_epochs, 0);
      res[2 * rank + 1] = o.qat_epochs() - before;
      mine = o.model();
    }
    dist_allreduce_sum(dist, res, "exhaustive: gathering the round's accuracies");
    for (size_t i = 0; i < w && round + i < all.size(); ++i) {
      record(round + i, res[2 * i], res[2 * i + 1]);
      c.observer.iteration(c.log.iterations.back());
      if (res[2 * i] > best) {
        best = res[2 * i];
        best_k = round + i;
        best_model.reset();
        if (static_cast<int>(i) == rank) best_model = mine;
      }
    }
    c.checkpoint(nullptr);  // the log with the finished candidates (rank 0 writes it)
    if (r.progress && rank == 0)
      fmt::print(stderr, "\rexhaustive: {}/{} assignments, best {:.2f}%",
                 std::min(all.size(), round + w), all.size(), 100 * best);
  }
  if (r.progress && rank == 0) fmt::print(stderr, "\n");
  // The winner's trained model on every rank, from its owner.
  const int owner = best_k < start ? 0 : static_cast<int>((best_k - start) % w);
  if (rank == owner && !best_model) {  // recorded before a resume: train it again
    o.reset_model();
    const double before = o.qat_epochs();
    o.train_and_evaluate(all[best_k], r.cycle_epochs, 0);
    out.search_qat_epochs += o.qat_epochs() - before;
    best_model = o.model();
  }
  if (dist) {
    const std::string bytes = dist_share_from(
        dist, owner, "exhaustive-winner",
        rank == owner ? graph_file_bytes(to_graph_file(*best_model), "exhaustive winner") : "");
    if (rank != owner)
      best_model = from_graph_file(
          parse_graph_file(bytes, "exhaustive winner from rank " + std::to_string(owner)),
          "exhaustive winner");
  }
  out.bits = all[best_k];
  out.start_model = std::move(best_model);
  c.log.settings["exhaustive_assignments"] = all.size();
  if (world > 1) c.log.settings["exhaustive_ranks"] = world;
  return out;
}

// ---- dnas: the channel-wise (or layer-wise) differentiable search of Risso et al. ----

MethodResult run_dnas(MethodContext& c, bool channelwise) {
  const AllocationRequest& r = c.request;
  MethodResult out;
  const std::vector<int> abits = r.abits_set.empty() ? std::vector<int>{r.abits} : r.abits_set;
  DnasSpace space = make_dnas_space(c.folded, r.dnas_wbits, abits, c.pinned, channelwise);
  DnasCostTable table = make_dnas_cost(space, c.folded, c.cost, c.budgets);
  DnasOptions o;
  o.epochs = r.dnas_epochs;
  o.lambda = r.dnas_lambda;
  o.bisect_steps = r.dnas_bisect_steps;
  o.penalty = r.dnas_penalty;
  o.tau_end = r.dnas_tau_end;
  o.fill = r.dnas_fill;
  o.select_epochs = r.dnas_select_epochs;
  o.select_qat = c.oracle;  // the run's QAT settings, one process (the search is not distributed)
  o.select_qat.progress = false;
  o.select_qat.dist = nullptr;
  o.batch_size = c.oracle.batch_size;
  o.memory_limit = c.oracle.memory_limit;
  o.calib_samples = r.calib_samples;
  o.seed = r.seed;
  o.augment = c.oracle.augment;
  o.augment_pad = c.oracle.augment_pad;
  o.augment_flip = c.oracle.augment_flip;
  o.progress = r.progress;
  o.channel_group = channelwise ? r.channel_group : 1;
  c.log.settings["dnas"] = {
      {"granularity", channelwise ? "channel" : "layer"},
      {"channel_group", o.channel_group},
      {"wbits", r.dnas_wbits},
      {"abits", abits},
      {"epochs", r.dnas_epochs},
      {"lambda", r.dnas_lambda > 0 ? nlohmann::json(r.dnas_lambda) : nlohmann::json("budget")},
      {"select_epochs", r.dnas_select_epochs},
      {"penalty", dnas_penalty_name(r.dnas_penalty)},
      {"tau_end", r.dnas_tau_end},
      {"fill", r.dnas_fill},
      {"cost_metrics", table.metrics}};
  int k = 0;
  auto on_trial = [&](const DnasTrial& tr) {
    RunIteration it;
    it.iter = k++;
    it.stage = fmt::format("dnas lambda={:.4g}{}{}", tr.lambda, tr.fits ? "" : " (repaired)",
                           tr.avg_bits > tr.argmax_avg_bits + 1e-9
                               ? fmt::format(" (filled from {:.2f} bits)", tr.argmax_avg_bits)
                               : "");
    it.accuracy = tr.val_accuracy;
    it.avg_bits = tr.avg_bits;
    CostReport cr = c.cost.evaluate(tr.bits);
    it.cost = summarize_cost(cr);
    it.budgets = check_budgets(cr, c.budgets);
    it.qat_epochs = tr.epochs;
    it.seconds = tr.seconds;
    it.bits = bits_map(tr.bits, c.folded);
    c.log.iterations.push_back(it);
    c.observer.iteration(it);
  };
  DnasOutcome res =
      dnas_search(c.folded, c.train, c.val, space, table, c.cost, c.budgets, o, on_trial);
  out.bits = res.bits;
  out.search_qat_epochs = res.epochs;
  c.log.settings["dnas"]["chosen_lambda"] = res.lambda;
  // The final QAT fine-tunes the searched weights at the chosen widths.
  out.start_model =
      requantize_model(res.trained, nullptr, out.bits, c.train, r.calib_samples, r.seed);
  return out;
}

MethodResult run_dnas_channel(MethodContext& c) { return run_dnas(c, true); }

// ---- sigmaquant-channel: Phase 1 per output channel, then the final QAT ----

MethodResult sigmaquant_channel_with(MethodContext& c, const std::vector<int>& candidates) {
  MethodResult out;
  ChannelPhase1Result p1 =
      sigmaquant_channel_phase1(c.folded, c.cost, c.budgets, candidates, c.request.abits,
                                c.pinned, c.request.channel_group);
  if (p1.k > 0)  // 0: one width, nothing clustered
    c.log.clusters = {{"k", p1.k},
                      {"centers", p1.centers},
                      {"bits", p1.cluster_bits},
                      {"channels", p1.channels},
                      {"channel_group", c.request.channel_group}};
  out.bits = p1.bits;
  return out;
}

MethodResult run_sigmaquant_channel(MethodContext& c) {
  return sigmaquant_channel_with(c, c.candidates);
}

// sigmaquant-prune: the same with 0 (a pruned channel) added to the candidate widths.
MethodResult run_sigmaquant_prune(MethodContext& c) {
  std::vector<int> cands = c.candidates;
  if (std::find(cands.begin(), cands.end(), 0) == cands.end()) cands.insert(cands.begin(), 0);
  return sigmaquant_channel_with(c, cands);
}
MethodResult run_dnas_layer(MethodContext& c) { return run_dnas(c, false); }

struct Registry {
  std::mutex mu;
  std::vector<MethodInfo> methods;
};

Registry& registry() {
  static Registry* r = [] {
    auto* reg = new Registry;
    reg->methods = {
        {"sigmaquant",
         "Phase 1 (adaptive k-means over weight sigma) + Phase 2 (KL-guided QAT cycles)", true,
         run_sigmaquant, true},
        {"sigmaquant-ptq",
         "SigmaQuant with Phase 2 steps scored by PTQ validation accuracy "
         "(no QAT cycles): a search that trains nothing",
         false, run_sigmaquant_ptq, true},
        {"uniform", "the widest uniform width that fits every budget", false, run_uniform, true},
        {"adaptive", "Zhou et al., AAAI 2018: bits from measured noise gain and robustness", false,
         run_adaptive, true},
        {"hessian", "Hessian-aware: Hutchinson traces, exact integer program under every budget",
         false, run_hessian, true},
        {"random", "a random assignment that fits (control)", false, run_random, true},
        {"exhaustive", "every feasible assignment, each after one short QAT cycle (small networks)",
         true, run_exhaustive},
        {"sigmaquant-channel",
         "SigmaQuant Phase 1 per output channel (sigma per channel, "
         "k-means, budget fitting per channel); no Phase 2",
         false, run_sigmaquant_channel},
        {"sigmaquant-prune",
         "sigmaquant-channel with width 0 among the candidates: the smallest-sigma channels "
         "pruned where the budget needs it",
         false, run_sigmaquant_prune},
        {"dnas",
         "Risso et al., IGSC 2022: differentiable search of per-channel weight widths "
         "(0 = pruned) and activation widths, lambda chosen to meet the budgets",
         true, run_dnas_channel, true},
        {"dnas-layer", "the same search with one weight width per layer (the paper's baseline)",
         true, run_dnas_layer, true},
    };
    return reg;
  }();
  return *r;
}

}  // namespace

void register_method(MethodInfo m) {
  if (m.name.empty() || !m.run) fail("register_method: a method needs a name and a function");
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  for (MethodInfo& e : r.methods)
    if (e.name == m.name) {
      e = std::move(m);
      return;
    }
  r.methods.push_back(std::move(m));
}

std::vector<std::string> method_names() {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  std::vector<std::string> out;
  for (const MethodInfo& m : r.methods) out.push_back(m.name);
  return out;
}

const MethodInfo& find_method(const std::string& name) {
  Registry& r = registry();
  {
    std::lock_guard<std::mutex> lock(r.mu);
    for (const MethodInfo& m : r.methods)
      if (m.name == name) return m;
  }
  std::string known;
  for (const std::string& n : method_names()) known += (known.empty() ? "" : ", ") + n;
  fail("method '{}': expected one of {}", name, known);
}

}  // namespace sq
