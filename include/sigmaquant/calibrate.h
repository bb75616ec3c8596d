// Activation range calibration (torch-free): from a histogram of a tensor's values over the
// calibration data, choose the clipping range [lo, hi] that quantization will cover.
//
//   sq::Histogram h(min_seen, max_seen, 2048);  h.add(values, n);
//   sq::Range r = sq::choose_range(h, /*bits=*/8, sq::Calib::KL);
//   sq::ActQuant q = sq::act_quant_from_range(r, 8);   // scale and zero point
//
// Candidate ranges are the observed [min, max] shrunk by a factor c in (0, 1] towards 0 — for a
// post-ReLU tensor (min >= 0) that is a threshold [0, c·max]. The methods differ in how they
// score a candidate (docs/quantization.md):
//   minmax      c = 1 (no clipping)
//   percentile  the p-th percentile of |x| on each side (p = 99.99 by default)
//   mse         minimises the expected squared error: clipping error outside, s²/12 inside
//   kl          minimises KL(P || Q) between the clipped histogram P and its 2^bits-level
//               quantized version Q (the TensorRT entropy calibration, generalised to signed data)
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sq {

enum class Calib { MinMax, Percentile, MSE, KL };
const char* calib_name(Calib c);
Calib calib_from_name(const std::string& name);  // throws sq::Error listing the valid names

class Histogram {
 public:
  Histogram() = default;
  Histogram(double lo, double hi, int bins);  // lo <= 0 <= hi is enforced by widening
  void add(const float* x, int64_t n);         // values outside [lo, hi] go to the edge bins
  double lo() const { return lo_; }
  double hi() const { return hi_; }
  int bins() const { return static_cast<int>(counts_.size()); }
  double bin_width() const { return (hi_ - lo_) / bins(); }
  double center(int i) const { return lo_ + (i + 0.5) * bin_width(); }
  const std::vector<double>& counts() const { return counts_; }
  double total() const;

 private:
  double lo_ = 0, hi_ = 0;
  std::vector<double> counts_;
};

struct Range {
  double lo = 0, hi = 0;
};

Range choose_range(const Histogram& h, int bits, Calib method, double percentile = 99.99);

// Affine activation quantization: q = clamp(round(x / scale) + zero_point, 0, 2^bits - 1),
// x ≈ scale · (q − zero_point). A range with lo >= 0 is unsigned with zero_point 0; otherwise the
// zero point is round(−lo / scale), so that 0 is exactly representable.
struct ActQuant {
  int bits = 8;
  double lo = 0, hi = 0;  // the calibrated range
  float scale = 1;
  int32_t zero_point = 0;
  int32_t qmax() const { return (1 << bits) - 1; }
};
ActQuant act_quant_from_range(Range r, int bits);

}  // namespace sq
