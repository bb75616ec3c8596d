// Subsets, seeded splits, per-channel normalization and training-time augmentation.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>

#include "data/data_util.h"
#include "sigmaquant/data.h"
#include "sigmaquant/error.h"

namespace sq {
namespace {

// The samples of d at `indices`, in that order.
Dataset subset(const Dataset& d, const std::vector<int64_t>& indices) {
  Dataset s;
  s.name = d.name;
  s.image_shape = d.image_shape;
  s.num_classes = d.num_classes;
  const int64_t per = d.image_numel();
  s.images.resize(indices.size() * per);
  s.labels.resize(indices.size());
  for (size_t k = 0; k < indices.size(); ++k) {
    std::memcpy(s.images.data() + k * per, d.image(indices[k]), per * sizeof(float));
    s.labels[k] = d.labels[indices[k]];
  }
  return s;
}

// Moves row `src` of a w-wide plane to row `dst` shifted left by dx (out[x] = in[x + dx]),
// zero-filling what comes from outside. src and dst may be the same row.
void shift_row(float* dst, const float* src, int64_t w, int64_t dx) {
  if (dx >= w || -dx >= w) {
    std::fill(dst, dst + w, 0.0f);
  } else if (dx >= 0) {
    std::memmove(dst, src + dx, (w - dx) * sizeof(float));
    std::fill(dst + (w - dx), dst + w, 0.0f);
  } else {
    std::memmove(dst - dx, src, (w + dx) * sizeof(float));
    std::fill(dst, dst - dx, 0.0f);
  }
}

}  // namespace

Dataset take(const Dataset& d, int64_t n) {
  if (n <= 0 || n >= d.size()) return d;
  return take_range(d, 0, n);
}

Dataset take_range(const Dataset& d, int64_t from, int64_t to) {
  if (from < 0 || to < from || to > d.size())
    fail("{}: samples [{}, {}) of {} (expected 0 <= from <= to <= size)", d.name, from, to,
         d.size());
  Dataset s;
  s.name = d.name;
  s.image_shape = d.image_shape;
  s.num_classes = d.num_classes;
  const int64_t in = d.image_numel();
  s.images.assign(d.images.begin() + from * in, d.images.begin() + to * in);
  s.labels.assign(d.labels.begin() + from, d.labels.begin() + to);
  return s;
}

Dataset uniform_dataset(const Shape& image_shape, int64_t classes, int64_t n, uint64_t seed) {
  if (n < 0 || classes < 1)
    fail("uniform_dataset: {} images of {} classes (expected n >= 0, classes >= 1)", n, classes);
  Dataset d;
  d.name = "random";
  d.image_shape = image_shape;
  d.num_classes = classes;
  d.images.resize(static_cast<size_t>(n * numel(image_shape)));
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  for (float& v : d.images) v = u(rng);
  for (int64_t i = 0; i < n; ++i) d.labels.push_back(static_cast<int32_t>(i % classes));
  return d;
}

std::pair<Dataset, Dataset> split(const Dataset& d, double val_fraction, uint64_t seed) {
  if (!(val_fraction >= 0.0 && val_fraction < 1.0))
    fail("{}: validation fraction {} out of range (expected 0 <= fraction < 1)", d.name,
         val_fraction);
  const int64_t n = d.size();
  const int64_t n_val = std::llround(val_fraction * static_cast<double>(n));
  if (n > 0 && n_val >= n)
    fail(
        "{}: validation fraction {} of {} samples leaves no training samples (expected a "
        "smaller fraction)",
        d.name, val_fraction, n);
  // Fisher-Yates with our own bounded draw: the same seed gives the same split everywhere.
  std::vector<int64_t> perm(static_cast<size_t>(n));
  std::iota(perm.begin(), perm.end(), int64_t{0});
  std::mt19937_64 rng(seed);
  for (int64_t i = n - 1; i > 0; --i)
    std::swap(perm[i], perm[data_detail::uniform_below(rng, static_cast<uint64_t>(i) + 1)]);
  // Each part keeps the original sample order: a split, not a shuffle.
  std::vector<int64_t> val(perm.begin(), perm.begin() + n_val);
  std::vector<int64_t> train(perm.begin() + n_val, perm.end());
  std::sort(val.begin(), val.end());
  std::sort(train.begin(), train.end());
  return {subset(d, train), subset(d, val)};
}

void channel_stats(const Dataset& d, std::vector<float>& mean, std::vector<float>& stddev) {
  if (d.image_shape.size() != 3)
    fail("{}: image shape {} (expected C x H x W)", d.name, shape_str(d.image_shape));
  if (d.size() == 0) fail("{}: channel statistics of an empty dataset (expected samples)", d.name);
  const int64_t c = d.image_shape[0];
  const int64_t plane = d.image_shape[1] * d.image_shape[2];
  // Sums in double: 60000 x 784 single-precision additions would lose digits.
  std::vector<double> sum(c, 0.0), sum_sq(c, 0.0);
  for (int64_t i = 0; i < d.size(); ++i) {
    const float* img = d.image(i);
    for (int64_t ch = 0; ch < c; ++ch) {
      double s = 0.0, ss = 0.0;
      for (int64_t p = 0; p < plane; ++p) {
        const double v = img[ch * plane + p];
        s += v;
        ss += v * v;
      }
      sum[ch] += s;
      sum_sq[ch] += ss;
    }
  }
  const double count = static_cast<double>(d.size()) * static_cast<double>(plane);
  mean.assign(c, 0.0f);
  stddev.assign(c, 0.0f);
  for (int64_t ch = 0; ch < c; ++ch) {
    const double m = sum[ch] / count;
    mean[ch] = static_cast<float>(m);
    // Population variance; clamp the tiny negatives that rounding can leave.
    stddev[ch] = static_cast<float>(std::sqrt(std::max(0.0, sum_sq[ch] / count - m * m)));
  }
}

void normalized_image(const Dataset& d, int64_t i, const std::vector<float>& mean,
                      const std::vector<float>& stddev, float* dst) {
  if (i < 0 || i >= d.size())
    fail("{}: image index {} out of range (expected 0..{})", d.name, i, d.size() - 1);
  const int64_t c = d.image_shape.empty() ? 0 : d.image_shape[0];
  if (static_cast<int64_t>(mean.size()) != c || static_cast<int64_t>(stddev.size()) != c)
    fail("{}: normalization has {} means and {} standard deviations (expected {}, one per channel)",
         d.name, mean.size(), stddev.size(), c);
  const int64_t plane = c ? d.image_numel() / c : 0;
  const float* src = d.image(i);
  for (int64_t ch = 0; ch < c; ++ch) {
    const float m = mean[ch];
    const float s = stddev[ch] > 0.0f ? stddev[ch] : 1.0f;  // a constant channel: only centred
    for (int64_t p = 0; p < plane; ++p) dst[ch * plane + p] = (src[ch * plane + p] - m) / s;
  }
}

void augment_image(float* chw, const Shape& image_shape, int pad, bool flip, std::mt19937_64& rng) {
  if (image_shape.size() != 3)
    fail("augment_image: image shape {} (expected C x H x W)", shape_str(image_shape));
  if (pad < 0) fail("augment_image: pad {} (expected >= 0)", pad);
  const int64_t c = image_shape[0], h = image_shape[1], w = image_shape[2];
  if (pad > 0) {
    // A crop at (oy, ox) of the image zero-padded by `pad`: out[y][x] = in[y + dy][x + dx].
    const int64_t span = 2 * int64_t{pad} + 1;
    const int64_t dy = static_cast<int64_t>(data_detail::uniform_below(rng, span)) - pad;
    const int64_t dx = static_cast<int64_t>(data_detail::uniform_below(rng, span)) - pad;
    if (dy != 0 || dx != 0) {
      for (int64_t ch = 0; ch < c; ++ch) {
        float* plane = chw + ch * h * w;
        // In place: walk rows in the direction that reads each source row before it is written.
        for (int64_t k = 0; k < h; ++k) {
          const int64_t y = dy >= 0 ? k : h - 1 - k;
          const int64_t sy = y + dy;
          if (sy < 0 || sy >= h)
            std::fill(plane + y * w, plane + (y + 1) * w, 0.0f);
          else
            shift_row(plane + y * w, plane + sy * w, w, dx);
        }
      }
    }
  }
  if (flip && data_detail::uniform_below(rng, 2) == 1) {
    for (int64_t row = 0; row < c * h; ++row) std::reverse(chw + row * w, chw + (row + 1) * w);
  }
}

}  // namespace sq
