// The differentiable precision search (see include/sigmaquant/dnas.h): a QuantHook that mixes
// every candidate width by softmax(alpha / tau), the expected-cost regulariser, the alternating
// weight / alpha training, and lambda chosen to meet the budgets.
#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <numeric>
#include <random>

#include "dnas_internal.h"
#include "sigmaquant/error.h"
#include "sigmaquant/infeasible.h"
#include "sigmaquant/quantize.h"
#include "sigmaquant/search.h"
#include "train_internal.h"

namespace sq {
namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

}  // namespace

DnasHook::DnasHook(const DnasSpace& s, const QuantModel& qm8, double init_preference, double tau0)
    : space_(s), tau_(tau0) {
  const Graph& g = qm8.graph;
  if (!(init_preference > 0 && init_preference < 1))
    fail("dnas: initial preference {} (expected between 0 and 1)", init_preference);
  // alpha = tau0 x log(theta): at the first temperature the widest candidate starts at init_preference, the others share
  // the rest evenly (a warm start from the 8-bit model is then not thrown away at step one).
  auto init_logits = [&](size_t n, int64_t cols) {
    std::vector<float> v(n, 0.0f);
    if (n > 1) {
      const double rest = (1.0 - init_preference) / static_cast<double>(n - 1);
      for (size_t p = 0; p < n; ++p)
        v[p] = static_cast<float>(tau0 * std::log(p + 1 == n ? init_preference : rest));
    }
    return torch::tensor(v).reshape({static_cast<int64_t>(n), 1}).repeat({1, cols});
  };
  for (size_t l = 0; l < s.layers.size(); ++l) {
    const DnasSpace::Layer& L = s.layers[l];
    layer_of_node_[L.node] = static_cast<int>(l);
    torch::Tensor a = init_logits(L.wbits.size(), L.choices());
    alpha_w_.push_back(register_parameter(fmt::format("alpha_w{}", l), a));
  }
  std::map<int, int> point_of_node;
  for (size_t q = 0; q < s.points.size(); ++q) {
    point_of_node[s.points[q].node] = static_cast<int>(q);
    alpha_a_.push_back(register_parameter(fmt::format("alpha_a{}", q),
                                          init_logits(s.points[q].abits.size(), 1).flatten()));
  }
  // Every quantization point of the model: searched ones have their alpha; a residual add's
  // operands stay at 8 bits.
  for (const auto& [node, bits] : activation_quant_points(g, qm8.bits)) {
    const ActQuant& aq = qm8.acts.at(g.nodes[node].name);
    Act A;
    auto it = point_of_node.find(node);
    A.point = it == point_of_node.end() ? -1 : it->second;
    A.widths = A.point >= 0 ? s.points[A.point].abits : std::vector<int>{bits};
    A.lo = aq.lo;
    A.hi = aq.hi;
    A.unsigned_range = aq.zero_point == 0 && aq.lo >= 0;
    if (A.unsigned_range)
      A.clip = register_parameter(fmt::format("clip{}", node),
                                  torch::tensor(static_cast<float>(std::max(aq.hi, 1e-3))));
    acts_[node] = A;
  }
}

std::vector<torch::Tensor> DnasHook::alphas() const {
  std::vector<torch::Tensor> v = alpha_w_;
  v.insert(v.end(), alpha_a_.begin(), alpha_a_.end());
  return v;
}

bool DnasHook::is_alpha(const torch::Tensor& t) const {
  for (const torch::Tensor& a : alpha_w_)
    if (a.is_same(t)) return true;
  for (const torch::Tensor& a : alpha_a_)
    if (a.is_same(t)) return true;
  return false;
}

torch::Tensor DnasHook::theta_w(int l) const { return torch::softmax(alpha_w_[l] / tau_, 0); }
torch::Tensor DnasHook::theta_a(int q) const { return torch::softmax(alpha_a_[q] / tau_, 0); }

torch::Tensor DnasHook::weight(int node, const torch::Tensor& w) {
  const int l = layer_of_node_.at(node);
  const DnasSpace::Layer& L = space_.layers[l];
  std::vector<int64_t> bshape(static_cast<size_t>(w.dim()), 1);
  bshape[0] = w.size(0);
  const torch::Tensor absw = w.detach().abs().flatten(1);
  const torch::Tensor m = absw.amax(1).reshape(bshape).clamp_min(1e-12);
  const torch::Tensor theta = theta_w(l);  // [P, choices]
  torch::Tensor out = torch::zeros_like(w);
  for (size_t p = 0; p < L.wbits.size(); ++p) {
    const int b = L.wbits[p];
    if (b == 0) continue;  // Q_0(W) = 0: the pruned channel
    torch::Tensor q;
    if (b == 1) {
      torch::Tensor mean_abs = absw.mean(1).reshape(bshape).clamp_min(1e-12);
      torch::Tensor sign = torch::where(w >= 0, torch::ones_like(w), -torch::ones_like(w));
      q = ((sign - w).detach() + w) * mean_abs;
    } else {
      const double qmax = static_cast<double>((1 << (b - 1)) - 1);
      torch::Tensor s = m / qmax;
      q = round_ste(torch::clamp(w / s, -qmax, qmax)) * s;
    }
    torch::Tensor th = L.channelwise ? theta[static_cast<int64_t>(p)].reshape(bshape)
                                     : theta[static_cast<int64_t>(p)][0];
    out = out + th * q;
  }
  return out;
}

torch::Tensor DnasHook::act(int node, const torch::Tensor& x) {
  Act& A = acts_.at(node);
  torch::Tensor theta = A.point >= 0 ? theta_a(A.point) : torch::ones({1});
  torch::Tensor out = torch::zeros_like(x);
  torch::Tensor y, alpha;
  if (A.unsigned_range) {
    alpha = A.clip.abs().clamp_min(1e-6);
    y = torch::min(torch::relu(x), alpha);  // PACT: the clip learns through min()
  }
  for (size_t k = 0; k < A.widths.size(); ++k) {
    const double levels = static_cast<double>((1 << A.widths[k]) - 1);
    torch::Tensor q;
    if (A.unsigned_range) {
      torch::Tensor s = alpha / levels;
      q = round_ste(y / s) * s;
    } else {
      const double s = std::max(A.hi - A.lo, 1e-8) / levels;
      const double zp = std::nearbyint(-A.lo / s);
      q = (torch::clamp(round_ste(x / s) + zp, 0.0, levels) - zp) * s;
    }
    out = out + theta[static_cast<int64_t>(k)] * q;
  }
  return out;
}

torch::Tensor DnasHook::regulariser(const DnasCostTable& t, DnasPenalty penalty) const {
  // e_k = E[M_k] / B_k, the expected normalised cost of each metric; Cost sums them, Excess sums
  // what exceeds 1.
  const auto nm = static_cast<int64_t>(t.metrics.size());
  torch::Tensor e = torch::tensor(t.metric_reference, torch::kDouble);  // [K]
  for (size_t l = 0; l < space_.layers.size(); ++l) {
    const DnasSpace::Layer& L = space_.layers[l];
    const DnasCostTable::Layer& T = t.layers[l];
    const int64_t na = static_cast<int64_t>(space_.points[L.point].abits.size());
    const int64_t np = static_cast<int64_t>(L.wbits.size());
    torch::Tensor ta = theta_a(L.point).to(torch::kDouble);                    // [A]
    torch::Tensor n = theta_w(static_cast<int>(l)).to(torch::kDouble).sum(1);  // [P]
    if (!L.channelwise) n = n * static_cast<double>(L.channels);
    torch::Tensor fixed = torch::tensor(T.metric_fixed, torch::kDouble).reshape({nm, na});
    torch::Tensor per = torch::tensor(T.metric_per_channel, torch::kDouble).reshape({nm, na, np});
    e = e + (fixed + per.matmul(n)).matmul(ta);  // [K, A] x [A]
  }
  return penalty == DnasPenalty::Excess ? torch::relu(e - 1.0).sum() : e.sum();
}

DnasChoice DnasHook::argmax() const {
  torch::NoGradGuard ng;
  DnasChoice c;
  for (size_t l = 0; l < alpha_w_.size(); ++l) {
    torch::Tensor idx = alpha_w_[l].argmax(0).to(torch::kInt64).contiguous();
    c.w.emplace_back(idx.data_ptr<int64_t>(), idx.data_ptr<int64_t>() + idx.numel());
  }
  for (const torch::Tensor& a : alpha_a_) c.a.push_back(static_cast<int>(a.argmax().item<int64_t>()));
  return c;
}

void DnasHook::scores(std::vector<std::vector<std::vector<double>>>& w,
                      std::vector<std::vector<double>>& a) const {
  torch::NoGradGuard ng;
  w.clear();
  a.clear();
  for (size_t l = 0; l < alpha_w_.size(); ++l) {
    torch::Tensor th = theta_w(static_cast<int>(l)).t().contiguous();  // [choices, P]
    std::vector<std::vector<double>> per(static_cast<size_t>(th.size(0)));
    for (int64_t k = 0; k < th.size(0); ++k)
      for (int64_t p = 0; p < th.size(1); ++p) per[k].push_back(th[k][p].item<double>());
    w.push_back(std::move(per));
  }
  for (size_t q = 0; q < alpha_a_.size(); ++q) {
    torch::Tensor th = theta_a(static_cast<int>(q));
    std::vector<double> v;
    for (int64_t k = 0; k < th.numel(); ++k) v.push_back(th[k].item<double>());
    a.push_back(std::move(v));
  }
}

namespace {

struct Search {
  const Graph& folded;
  const Dataset& train;
  const Dataset& val;
  const DnasSpace& s;
  const DnasCostTable& t;
  const CostEvaluator& ce;
  const Budgets& budgets;
  const DnasOptions& o;
  const QuantModel& qm8;

  // The alpha learning rate: as given, or (0) room for the logits to travel twice the initial
  // gap between the widest candidate and the others over this search's alpha steps.
  double alpha_lr(int64_t n, int64_t bs) const {
    if (o.alpha_lr > 0) return o.alpha_lr;
    size_t widths = 2;
    for (const DnasSpace::Layer& L : s.layers) widths = std::max(widths, L.wbits.size());
    const double gap = o.tau0 * std::log(o.init_preference * static_cast<double>(widths - 1) /
                                         (1.0 - o.init_preference));
    const double na = std::max(1.0, std::round(o.alpha_fraction * static_cast<double>(n)));
    const double steps = std::ceil(na / static_cast<double>(bs)) * o.epochs;
    return std::max(0.05, 2.0 * std::fabs(gap) / steps);
  }

  // One search at strength lambda from the warm start; returns the trial and the trained graph.
  DnasTrial run(double lambda, Graph& trained, int index) const {
    auto t0 = Clock::now();
    DnasTrial tr;
    tr.lambda = lambda;
    torch::manual_seed(o.seed);
    GraphModule m(folded);
    auto hook = std::make_shared<DnasHook>(s, qm8, o.init_preference, o.tau0);
    m.set_quant(hook);
    std::vector<torch::Tensor> alphas = hook->alphas(), weights;
    for (const torch::Tensor& p : m.parameters())
      if (!hook->is_alpha(p)) weights.push_back(p);
    torch::optim::Adam wopt(weights, torch::optim::AdamOptions(o.weight_lr));
    const int64_t n = train.size();
    const int64_t bs = std::max<int64_t>(1, std::min(o.batch_size, n));
    // Adam's two moments of the weights (the logits are few).
    if (index == 0) check_training_memory(m, train, bs, 2, o.memory_limit, "dnas search");
    std::unique_ptr<torch::optim::Optimizer> aopt;
    const double alr = alpha_lr(n, bs);
    if (o.alpha_optimizer == "sgd")
      aopt = std::make_unique<torch::optim::SGD>(
          alphas, torch::optim::SGDOptions(alr).momentum(o.alpha_momentum));
    else
      aopt = std::make_unique<torch::optim::Adam>(alphas, torch::optim::AdamOptions(alr));
    const uint64_t order_seed = o.seed * 7919 + static_cast<uint64_t>(index) * 1000003;
    std::mt19937_64 aug_rng(o.seed * 104729 + static_cast<uint64_t>(index));
    const Batcher batcher{train, folded};
    auto batch = [&](const int64_t* idx, int64_t k) {
      return std::make_pair(
          batcher.images(idx, k, o.augment ? &aug_rng : nullptr, o.augment_pad, o.augment_flip),
          batcher.labels(idx, k));
    };
    m.train();
    for (int e = 0; e < o.epochs; ++e) {
      std::vector<int64_t> perm = permutation(n, order_seed + static_cast<uint64_t>(e));
      // The first alpha_fraction of this epoch's order updates alpha, the rest the weights;
      // the two kinds of step interleave in proportion.
      const int64_t na = std::max<int64_t>(1, static_cast<int64_t>(std::llround(o.alpha_fraction * n)));
      const int64_t nw = n - na;
      const int64_t wsteps = std::max<int64_t>(1, (nw + bs - 1) / bs);
      const int64_t asteps = std::max<int64_t>(1, (na + bs - 1) / bs);
      int64_t wi = 0, ai = 0;
      double task_sum = 0;
      int64_t task_n = 0;
      for (int64_t step = 0; step < wsteps + asteps; ++step) {
        // The paper's schedule is per epoch; with tau_end it moves every step.
        hook->set_tau(dnas_temperature(
            o, e, static_cast<double>(step) / static_cast<double>(wsteps + asteps)));
        // alpha steps spread evenly among the weight steps
        bool alpha_step = ai < asteps && (wi >= wsteps || ai * wsteps <= wi * asteps);
        if (alpha_step) {
          int64_t first = ai * bs, k = std::min(bs, na - first);
          ++ai;
          if (k <= 0) continue;
          auto [x, y] = batch(perm.data() + first, k);
          torch::Tensor loss = torch::cross_entropy_loss(m.forward(x), y) +
                               lambda * hook->regulariser(t, o.penalty).to(torch::kFloat);
          aopt->zero_grad();
          wopt.zero_grad();
          loss.backward();
          aopt->step();
        } else {
          int64_t first = na + wi * bs, k = std::min(bs, n - first);
          ++wi;
          if (k <= 0) continue;
          auto [x, y] = batch(perm.data() + first, k);
          torch::Tensor loss = torch::cross_entropy_loss(m.forward(x), y);
          aopt->zero_grad();
          wopt.zero_grad();
          loss.backward();
          wopt.step();
          task_sum += loss.item<double>() * static_cast<double>(k);
          task_n += k;
        }
      }
      if (o.progress)
        fmt::print(stderr,
                   "dnas lambda {:.4g}: epoch {}/{}, task loss {:.4f}, regulariser ({}) {:.4f}\n",
                   lambda, e + 1, o.epochs, task_n ? task_sum / task_n : 0.0,
                   dnas_penalty_name(o.penalty), hook->regulariser(t, o.penalty).item<double>());
    }
    tr.epochs = o.epochs;

    // The argmax, repaired when it does not fit, evaluated with PTQ scales on the trained weights.
    // With channel groups the argmax is first snapped to them in theta's order (the snapped
    // argmax is what `fits` reports), and the repair keeps it snapped.
    DnasChoice c = hook->argmax();
    std::vector<std::vector<std::vector<double>>> ws;
    std::vector<std::vector<double>> as;
    hook->scores(ws, as);
    snap_channel_groups(s, ws, o.channel_group, c);
    tr.fits = fits_budgets(ce.evaluate(dnas_bits(s, folded, c)), budgets);
    if (!tr.fits && !repair_choice(s, folded, ce, budgets, t, ws, as, c, o.channel_group)) {
      const std::string why = narrowest_choice_breaks(s, folded, ce, budgets);
      fail_infeasible(
          "dnas: no assignment over the candidate widths fits the budgets{}{}",
          why.empty() ? "" : " even with every channel and activation at its narrowest width: ",
          why);
    }
    trained = folded;
    m.export_to(trained);
    tr.argmax_avg_bits = average_weight_bits(dnas_bits(s, folded, c), folded);
    // Budget mode: what the argmax leaves of the budgets goes to the channels whose quantization
    // damage (in the searched weights) falls most per unit of cost, then to activation widths.
    if (o.fill && o.lambda == 0)
      fill_choice(s, folded, ce, budgets, t, channel_damage_scores(s, trained), c, o.channel_group,
                  true);
    tr.bits = dnas_bits(s, folded, c);
    const CostReport cr = ce.evaluate(tr.bits);
    tr.cost = measured_cost(t, cr);
    tr.avg_bits = average_weight_bits(tr.bits, folded);
    if (o.select_epochs > 0) {
      QatOracle q(trained, train, val, o.select_qat);
      tr.val_accuracy = q.train_and_evaluate(tr.bits, o.select_epochs, index);
      tr.epochs += q.qat_epochs();
    } else {
      QuantModel qm = requantize_model(trained, nullptr, tr.bits, train, o.calib_samples, o.seed);
      tr.val_accuracy = evaluate_quant(qm, val).accuracy;
    }
    tr.seconds = since(t0);
    return tr;
  }
};

}  // namespace

double dnas_temperature(const DnasOptions& o, int epoch, double within) {
  if (o.tau_end > 0)
    return o.tau0 * std::pow(o.tau_end / o.tau0, (static_cast<double>(epoch) + within) /
                                                     static_cast<double>(std::max(1, o.epochs)));
  return o.tau0 * std::exp(-o.tau_decay * static_cast<double>(epoch));
}

DnasOutcome dnas_search(const Graph& folded, const Dataset& train, const Dataset& val,
                        const DnasSpace& s, const DnasCostTable& t, const CostEvaluator& ce,
                        const Budgets& budgets, const DnasOptions& o,
                        const std::function<void(const DnasTrial&)>& on_trial) {
  if (o.epochs < 1) fail("dnas: epochs {} (expected at least 1)", o.epochs);
  if (o.lambda < 0 || !std::isfinite(o.lambda))
    fail("dnas: lambda {} (expected >= 0; 0 = choose it to meet the budgets)", o.lambda);
  if (!(o.alpha_fraction > 0 && o.alpha_fraction < 1))
    fail("dnas: alpha fraction {} (expected between 0 and 1)", o.alpha_fraction);
  if (o.alpha_optimizer != "adam" && o.alpha_optimizer != "sgd")
    fail("dnas: alpha optimizer '{}' (expected adam or sgd)", o.alpha_optimizer);
  if (!(o.tau_end >= 0) || !std::isfinite(o.tau_end))
    fail("dnas: final temperature {} (expected > 0, or 0 for the per-epoch schedule)", o.tau_end);
  if (!(o.alpha_lr >= 0) || !(o.tau0 > 0))
    fail("dnas: alpha learning rate {} (0 = automatic) and initial temperature {} (> 0)",
         o.alpha_lr, o.tau0);
  if (train.size() < 2) fail("dnas: training set '{}' has {} images (expected at least 2)", train.name, train.size());
  // The warm start: the 8-bit model's activation ranges (the weights are the float ones).
  QuantModel qm8 = requantize_model(folded, nullptr, BitConfig::uniform(folded, 8, 8), train,
                                    o.calib_samples, o.seed);
  Search S{folded, train, val, s, t, ce, budgets, o, qm8};
  DnasOutcome out;
  std::vector<Graph> weights;  // per trial, its searched weights
  int index = 0;
  auto trial = [&](double lambda) {
    weights.emplace_back();
    DnasTrial tr = S.run(lambda, weights.back(), index++);
    out.epochs += tr.epochs;
    out.trials.push_back(tr);
    if (on_trial) on_trial(tr);
    return tr.fits;
  };
  // The kept trial (choose_dnas_trial): its assignment and weights.
  auto finish = [&]() {
    const size_t k = choose_dnas_trial(out.trials, val.size());
    out.bits = out.trials[k].bits;
    out.trained = std::move(weights[k]);
    out.lambda = out.trials[k].lambda;
    out.val_accuracy = out.trials[k].val_accuracy;
    return std::move(out);
  };
  if (o.lambda > 0) {
    trial(o.lambda);
    return finish();
  }
  // Budget mode: bracket lambda by factors of 8 from 1 (the cost is normalised by the budgets,
  // so 1 weighs a budget's worth of cost like one nat of task loss), then bisect in log space.
  // Every lambda tried yields a fitting assignment (repaired if its argmax did not fit);
  // choose_dnas_trial keeps one.
  double lo = 0, hi = 0;
  double lambda = 1;
  if (trial(lambda)) {
    hi = lambda;
    for (int k = 0; k < 3 && lo == 0; ++k) {
      lambda /= 8;
      if (trial(lambda))
        hi = lambda;
      else
        lo = lambda;
    }
  } else {
    lo = lambda;
    for (int k = 0; k < 4 && hi == 0; ++k) {
      lambda *= 8;
      if (trial(lambda))
        hi = lambda;
      else
        lo = lambda;
    }
  }
  if (lo > 0 && hi > 0)
    for (int k = 0; k < o.bisect_steps; ++k) {
      double mid = std::sqrt(lo * hi);
      if (trial(mid))
        hi = mid;
      else
        lo = mid;
    }
  return finish();
}

}  // namespace sq
