// Mean ± std, Welch's t-test (Student's t distribution from Boost.Math) and the Pareto summary.
#include "sigmaquant/stats.h"

#include <fmt/format.h>

#include <algorithm>
#include <boost/math/distributions/students_t.hpp>
#include <cmath>
#include <limits>
#include <map>
#include <utility>

#include "sigmaquant/run_log.h"

namespace sq {

MeanStd mean_std(const std::vector<double>& x) {
  MeanStd r;
  r.n = static_cast<int>(x.size());
  if (x.empty()) return r;
  double s = 0;
  for (double v : x) s += v;
  r.mean = s / r.n;
  if (r.n < 2) return r;
  double ss = 0;
  for (double v : x) ss += (v - r.mean) * (v - r.mean);
  r.std = std::sqrt(ss / (r.n - 1));
  return r;
}

WelchTest welch_t_test(const std::vector<double>& a, const std::vector<double>& b) {
  WelchTest w;
  if (a.size() < 2 || b.size() < 2) return w;
  w.defined = true;
  const MeanStd x = mean_std(a), y = mean_std(b);
  const double va = x.std * x.std / x.n, vb = y.std * y.std / y.n;
  const double diff = x.mean - y.mean;
  if (va + vb == 0) {  // both samples constant
    w.t = diff == 0 ? 0 : std::copysign(std::numeric_limits<double>::infinity(), diff);
    w.df = x.n + y.n - 2;
    w.p = diff == 0 ? 1 : 0;
    return w;
  }
  w.t = diff / std::sqrt(va + vb);
  w.df = (va + vb) * (va + vb) /
         ((va > 0 ? va * va / (x.n - 1) : 0) + (vb > 0 ? vb * vb / (y.n - 1) : 0));
  const boost::math::students_t dist(w.df);
  w.p = std::min(1.0, 2 * boost::math::cdf(boost::math::complement(dist, std::fabs(w.t))));
  return w;
}

namespace {

std::vector<double> collect(const std::vector<const ParetoPoint*>& pts, double ParetoPoint::*f) {
  std::vector<double> v;
  for (const ParetoPoint* p : pts) v.push_back(p->*f);
  return v;
}

std::optional<MeanStd> collect_opt(const std::vector<const ParetoPoint*>& pts,
                                   std::optional<double> ParetoPoint::*f) {
  std::vector<double> v;
  for (const ParetoPoint* p : pts)
    if (p->*f) v.push_back(*(p->*f));
  if (v.empty()) return std::nullopt;
  return mean_std(v);
}

// The reference's front: (memory, accuracy) of its cells, cheapest first, keeping only points
// that raise accuracy (a dearer point that is no more accurate is dominated).
std::vector<std::pair<double, double>> reference_front(const std::vector<ParetoCell>& cells,
                                                       const std::string& reference) {
  std::vector<std::pair<double, double>> pts;
  for (const ParetoCell& c : cells)
    if (c.method == reference) pts.emplace_back(c.weight_bytes.mean, c.accuracy.mean);
  std::sort(pts.begin(), pts.end());
  std::vector<std::pair<double, double>> front;
  for (const auto& p : pts)
    if (front.empty() || p.second > front.back().second) front.push_back(p);
  return front;
}

void iso_saving(ParetoCell& c, const std::vector<std::pair<double, double>>& front,
                const std::string& reference) {
  if (front.empty()) {
    c.iso_note = fmt::format("no {} runs", reference);
    return;
  }
  const double a = c.accuracy.mean;
  if (a > front.back().second) {
    c.iso_note = fmt::format("{} never reaches this accuracy", reference);
    return;
  }
  if (a < front.front().second) {
    c.iso_note = fmt::format("below {}'s cheapest point", reference);
    return;
  }
  double mem = front.front().first;
  for (size_t i = 1; i < front.size(); ++i) {
    const auto& [m0, a0] = front[i - 1];
    const auto& [m1, a1] = front[i];
    if (a <= a1) {
      mem = a <= a0 ? m0 : m0 + (m1 - m0) * (a - a0) / (a1 - a0);
      break;
    }
  }
  c.iso_memory_saving = 1 - c.weight_bytes.mean / mem;
}

nlohmann::ordered_json ms_json(const MeanStd& m) {
  return {{"mean", m.mean}, {"std", m.std}, {"n", m.n}};
}

std::string pm(const MeanStd& m, double scale, int decimals) {
  if (m.n < 2) return fmt::format("{:.{}f}", scale * m.mean, decimals);
  return fmt::format("{:.{}f} ± {:.{}f}", scale * m.mean, decimals, scale * m.std, decimals);
}

}  // namespace

ParetoSummary summarize_pareto(const ParetoResult& p, const std::string& reference, double alpha) {
  ParetoSummary s;
  s.model = p.model, s.target = p.target, s.reference = reference;
  s.fp32_accuracy = p.fp32_accuracy, s.alpha = alpha;
  std::vector<std::string> budgets, methods;
  std::map<std::pair<std::string, std::string>, std::vector<const ParetoPoint*>> groups;
  for (const ParetoPoint& q : p.points) {
    if (std::find(budgets.begin(), budgets.end(), q.budget) == budgets.end())
      budgets.push_back(q.budget);
    if (std::find(methods.begin(), methods.end(), q.method) == methods.end())
      methods.push_back(q.method);
    groups[{q.budget, q.method}].push_back(&q);
  }
  for (const std::string& b : budgets)
    for (const std::string& m : methods) {
      auto it = groups.find({b, m});
      if (it == groups.end()) continue;
      const auto& pts = it->second;
      ParetoCell c;
      c.method = m, c.budget = b;
      for (const ParetoPoint* q : pts) c.seeds.push_back(q->seed);
      c.accuracies = collect(pts, &ParetoPoint::accuracy);
      c.accuracy = mean_std(c.accuracies);
      c.avg_bits = mean_std(collect(pts, &ParetoPoint::avg_bits));
      c.weight_bytes = mean_std(collect(pts, &ParetoPoint::weight_bytes));
      c.search_seconds = mean_std(collect(pts, &ParetoPoint::search_seconds));
      c.search_qat_epochs = mean_std(collect(pts, &ParetoPoint::search_qat_epochs));
      c.seconds = mean_std(collect(pts, &ParetoPoint::seconds));
      c.energy_j = collect_opt(pts, &ParetoPoint::energy_j);
      c.latency_s = collect_opt(pts, &ParetoPoint::latency_s);
      std::vector<double> eq;
      for (const ParetoPoint* q : pts)
        if (q->final_seconds > 0 && q->final_qat_epochs > 0)
          eq.push_back(q->search_seconds / (q->final_seconds / q->final_qat_epochs));
      if (!eq.empty()) c.search_epoch_equivalents = mean_std(eq);
      s.cells.push_back(std::move(c));
    }
  // Significance against each budget's best method.
  for (const std::string& b : budgets) {
    ParetoCell* best = nullptr;
    for (ParetoCell& c : s.cells)
      if (c.budget == b && (!best || c.accuracy.mean > best->accuracy.mean)) best = &c;
    best->best = true;
    for (ParetoCell& c : s.cells) {
      if (c.budget != b || &c == best) continue;
      c.vs_best = welch_t_test(c.accuracies, best->accuracies);
      c.significantly_worse = c.vs_best->defined && c.vs_best->p < alpha;
    }
  }
  const auto front = reference_front(s.cells, reference);
  for (ParetoCell& c : s.cells) iso_saving(c, front, reference);
  for (const ParetoRefusal& r : p.refused) {
    auto it = std::find_if(s.refused.begin(), s.refused.end(), [&](const ParetoRefusedCell& c) {
      return c.method == r.method && c.budget == r.budget;
    });
    if (it == s.refused.end())
      it = s.refused.insert(s.refused.end(), {r.method, r.budget, {}, r.reason});
    it->seeds.push_back(r.seed);
  }
  return s;
}

nlohmann::ordered_json ParetoSummary::to_json() const {
  nlohmann::ordered_json cs = nlohmann::ordered_json::array();
  for (const ParetoCell& c : cells) {
    nlohmann::ordered_json j = {{"method", c.method},
                                {"budget", c.budget},
                                {"seeds", c.seeds},
                                {"accuracies", c.accuracies},
                                {"accuracy", ms_json(c.accuracy)},
                                {"avg_bits", ms_json(c.avg_bits)},
                                {"weight_bytes", ms_json(c.weight_bytes)}};
    if (c.energy_j) j["energy_j"] = ms_json(*c.energy_j);
    if (c.latency_s) j["latency_s"] = ms_json(*c.latency_s);
    j["search_seconds"] = ms_json(c.search_seconds);
    j["search_qat_epochs"] = ms_json(c.search_qat_epochs);
    if (c.search_epoch_equivalents)
      j["search_epoch_equivalents"] = ms_json(*c.search_epoch_equivalents);
    j["seconds"] = ms_json(c.seconds);
    j["best"] = c.best;
    if (c.vs_best && c.vs_best->defined)
      j["vs_best"] = {{"t", std::isfinite(c.vs_best->t) ? nlohmann::ordered_json(c.vs_best->t)
                                                        : nlohmann::ordered_json(nullptr)},
                      {"df", c.vs_best->df},
                      {"p", c.vs_best->p},
                      {"significantly_worse", c.significantly_worse}};
    if (c.iso_memory_saving)
      j["iso_memory_saving"] = *c.iso_memory_saving;
    else
      j["iso_note"] = c.iso_note;
    cs.push_back(j);
  }
  nlohmann::ordered_json rs = nlohmann::ordered_json::array();
  for (const ParetoRefusedCell& r : refused)
    rs.push_back(
        {{"method", r.method}, {"budget", r.budget}, {"seeds", r.seeds}, {"reason", r.reason}});
  return {{"format", "sigmaquant-pareto-summary"},
          {"version", 1},
          {"model", model},
          {"target", target},
          {"reference", reference},
          {"alpha", alpha},
          {"fp32_accuracy", fp32_accuracy},
          {"cells", cs},
          {"refused", rs}};
}

std::string pareto_summary_markdown(const ParetoSummary& s) {
  std::string out = fmt::format(
      "{} under {} (FP32 {:.2f} %); mean ± std over seeds (n per cell); p: Welch's t-test against "
      "the best method of the budget (bold), * = significantly worse at p < {:g}; memory saving "
      "against {} at equal mean accuracy (interpolated on its front).\n\n",
      s.model, s.target, 100 * s.fp32_accuracy, s.alpha, s.reference);
  out +=
      "| budget | method | n | avg bits | test accuracy (%) | p vs best | weight KiB | "
      "energy µJ | latency ms | memory saved vs " +
      s.reference +
      " at equal accuracy | search s | search (QAT-epoch equiv.) |\n"
      "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const ParetoCell& c : s.cells) {
    std::string p = "—";
    if (c.vs_best && c.vs_best->defined)
      p = fmt::format("{:.3f}{}", c.vs_best->p, c.significantly_worse ? " *" : "");
    std::string name = c.best ? "**" + c.method + "**" : c.method;
    out += fmt::format("| {} | {} | {} | {:.2f} | {} | {} | {:.2f} | {} | {} | {} | {} | {} |\n",
                       c.budget, name, c.accuracy.n, c.avg_bits.mean, pm(c.accuracy, 100, 2), p,
                       c.weight_bytes.mean / 1024,
                       c.energy_j ? fmt::format("{:.2f}", 1e6 * c.energy_j->mean) : "—",
                       c.latency_s ? fmt::format("{:.2f}", 1e3 * c.latency_s->mean) : "—",
                       c.iso_memory_saving ? fmt::format("{:.1f} %", 100 * *c.iso_memory_saving)
                                           : "— (" + c.iso_note + ")",
                       pm(c.search_seconds, 1, 0),
                       c.search_epoch_equivalents ? pm(*c.search_epoch_equivalents, 1, 2) : "—");
  }
  if (!s.refused.empty()) {
    out += "\nRefused (the method proved that no assignment of its widths meets the budget):\n";
    for (const ParetoRefusedCell& r : s.refused) {
      std::string seeds;
      for (uint64_t x : r.seeds)
        if (x) seeds += (seeds.empty() ? "" : ",") + std::to_string(x);
      out += fmt::format("- {} at {}{}: {}\n", r.method, r.budget,
                         seeds.empty() ? "" : " (seeds " + seeds + ")", r.reason);
    }
  }
  return out;
}

}  // namespace sq
