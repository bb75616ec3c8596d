#include "sigmaquant/calibrate.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "sigmaquant/error.h"

namespace sq {

const char* calib_name(Calib c) {
  switch (c) {
    case Calib::MinMax: return "minmax";
    case Calib::Percentile: return "percentile";
    case Calib::MSE: return "mse";
    case Calib::KL: return "kl";
  }
  return "?";
}

Calib calib_from_name(const std::string& name) {
  for (Calib c : {Calib::MinMax, Calib::Percentile, Calib::MSE, Calib::KL})
    if (name == calib_name(c)) return c;
  fail("--calib '{}' is not a calibration method (expected minmax, percentile, mse or kl)", name);
}

Histogram::Histogram(double lo, double hi, int bins)
    : lo_(std::min(lo, 0.0)), hi_(std::max(hi, 0.0)), counts_(static_cast<size_t>(bins), 0.0) {
  if (hi_ - lo_ < 1e-12) hi_ = lo_ + 1e-12;
}

void Histogram::add(const float* x, int64_t n) {
  const double inv = bins() / (hi_ - lo_);
  const int last = bins() - 1;
  // Four sub-histograms, elements k ≡ 0..3 (mod 4): runs of one bin (the zeros after a ReLU) no
  // longer wait on the previous increment of the same counter. Counts are integers (exact in
  // double up to 2^53), so the sums are the same in any order.
  const size_t nb = counts_.size();
  std::vector<double> part(4 * nb, 0.0);
  auto bin = [&](float v) {
    return static_cast<size_t>(std::clamp(static_cast<int>((v - lo_) * inv), 0, last));
  };
  int64_t k = 0;
  for (; k + 4 <= n; k += 4) {
    part[bin(x[k])] += 1;
    part[nb + bin(x[k + 1])] += 1;
    part[2 * nb + bin(x[k + 2])] += 1;
    part[3 * nb + bin(x[k + 3])] += 1;
  }
  for (; k < n; ++k) part[bin(x[k])] += 1;
  for (size_t b = 0; b < nb; ++b)
    counts_[b] += part[b] + part[nb + b] + part[2 * nb + b] + part[3 * nb + b];
}

double Histogram::total() const { return std::accumulate(counts_.begin(), counts_.end(), 0.0); }

namespace {

// Expected squared quantization error of the histogram under range [a, b] with 2^bits levels.
double mse_of(const Histogram& h, double a, double b, int bits) {
  double s = (b - a) / ((1 << bits) - 1);
  double err = 0;
  for (int i = 0; i < h.bins(); ++i) {
    double c = h.counts()[i];
    if (c == 0) continue;
    double v = h.center(i);
    double clipped = std::clamp(v, a, b);
    err += c * ((v - clipped) * (v - clipped) + (v == clipped ? s * s / 12 : 0));
  }
  return err;
}

// KL(P || Q): P is the histogram restricted to the bins of [a, b] with the mass outside added to
// the edge bins; Q merges P into 2^bits equal groups and spreads each group's mass evenly over
// the group's non-empty bins.
double kl_of(const Histogram& h, double a, double b, int bits) {
  const double w = h.bin_width();
  int i0 = std::clamp(static_cast<int>(std::floor((a - h.lo()) / w)), 0, h.bins() - 1);
  int i1 = std::clamp(static_cast<int>(std::ceil((b - h.lo()) / w)) - 1, i0, h.bins() - 1);
  // Q is built from the bins inside the range only; P also carries the clipped mass in its edge
  // bins. That difference is what makes clipping cost something (as in TensorRT).
  const std::vector<double> inside(h.counts().begin() + i0, h.counts().begin() + i1 + 1);
  std::vector<double> p = inside;
  for (int i = 0; i < i0; ++i) p.front() += h.counts()[i];
  for (int i = i1 + 1; i < h.bins(); ++i) p.back() += h.counts()[i];
  const int n = static_cast<int>(p.size());
  const int levels = 1 << bits;
  std::vector<double> q(p.size(), 0.0);
  for (int l = 0; l < levels; ++l) {
    int s = static_cast<int>(static_cast<int64_t>(l) * n / levels);
    int e = static_cast<int>(static_cast<int64_t>(l + 1) * n / levels);
    double mass = 0;
    int nonzero = 0;
    for (int i = s; i < e; ++i) {
      mass += inside[i];
      nonzero += inside[i] > 0;
    }
    for (int i = s; i < e; ++i)
      if (inside[i] > 0) q[i] = mass / nonzero;
  }
  // Normalise both; a P bin whose Q is empty (only clipped mass landed there) gets a small
  // floor instead of an infinite divergence.
  double tp = std::accumulate(p.begin(), p.end(), 0.0);
  double tq = std::accumulate(q.begin(), q.end(), 0.0);
  if (tq <= 0) return INFINITY;
  double kl = 0;
  for (int i = 0; i < n; ++i)
    if (p[i] > 0) kl += p[i] / tp * std::log((p[i] / tp) / std::max(q[i] / tq, 1e-12));
  return kl;
}

double percentile_of(const Histogram& h, double frac_below, bool from_top) {
  double target = h.total() * frac_below, acc = 0;
  if (from_top) {
    for (int i = h.bins() - 1; i >= 0; --i) {
      acc += h.counts()[i];
      if (acc >= target) return h.lo() + (i + 1) * h.bin_width();
    }
    return h.lo();
  }
  for (int i = 0; i < h.bins(); ++i) {
    acc += h.counts()[i];
    if (acc >= target) return h.lo() + i * h.bin_width();
  }
  return h.hi();
}

}  // namespace

Range choose_range(const Histogram& h, int bits, Calib method, double percentile) {
  Range full{h.lo(), h.hi()};
  if (method == Calib::MinMax || h.total() == 0) return full;
  if (method == Calib::Percentile) {
    double tail = (100.0 - percentile) / 100.0;
    Range r{full.lo < 0 ? percentile_of(h, tail, false) : 0.0, percentile_of(h, tail, true)};
    r.lo = std::min(r.lo, 0.0);
    r.hi = std::max(r.hi, r.lo + h.bin_width());
    return r;
  }
  // mse / kl: scan shrink factors c in (0, 1]. KL needs at least 2^bits bins inside the range.
  const int steps = 200;
  double best = INFINITY;
  Range best_r = full;
  for (int k = steps; k >= 1; --k) {
    double c = static_cast<double>(k) / steps;
    double a = c * full.lo, b = c * full.hi;
    if (method == Calib::KL && (b - a) / h.bin_width() < (1 << bits)) break;
    double score = method == Calib::MSE ? mse_of(h, a, b, bits) : kl_of(h, a, b, bits);
    if (score < best) {
      best = score;
      best_r = {a, b};
    }
  }
  return best_r;
}

ActQuant act_quant_from_range(Range r, int bits) {
  ActQuant q;
  q.bits = bits;
  q.lo = std::min(r.lo, 0.0);
  q.hi = std::max(r.hi, 0.0);
  if (q.hi - q.lo < 1e-8) q.hi = q.lo + 1e-8;
  q.scale = static_cast<float>((q.hi - q.lo) / q.qmax());
  q.zero_point = q.lo >= 0 ? 0
                           : std::clamp(static_cast<int32_t>(std::nearbyint(-q.lo / q.scale)), 0,
                                        q.qmax());
  return q;
}

}  // namespace sq
