// A conv/linear layer run as channel groups (engine.h's GroupedConv2d): per-channel weight bits
// give each output channel its own largest |w|, and so possibly a cheaper kernel than the layer's
// widest channel needs; pruned (all-zero) channels need no kernel at all.
//
// Planning: the computed channels sorted by largest |w|, widest first, are cut into consecutive
// runs; a run is computed by the kernel its widest channel needs (choose_kernel), which supports
// every narrower channel of the run too. The cut minimizes, by dynamic programming over the cut
// points, the estimated cost in µops
//   Σ_runs  tiles(run) · 16 · pixels_padded · taps / 32 · µops(kernel)  +  staging(kernel)
//           + 16 · pixels_padded
// with µops(kernel) its multiplier µops per 32 MACs (docs/engine.md, "Low bits"): 1 + 1/flush for
// the int16-accumulating kernel, 1 for vpdpbusd, 2 for the others; and staging(kernel) the copy
// of the input each group makes for itself (PreparedConv2d::staging_uops: cheap for the uint8
// transposes, dear element by element). A layer whose channels all want the same kernel stays
// one group, exactly as prepare_conv2d_u8 prepares it.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "kernels.h"
#include "sigmaquant/error.h"

namespace sq {

namespace {

using kernels::kMr;

// Multiplier µops per 32 MACs (the instruction arithmetic of docs/engine.md, "Low bits").
double kernel_uops(const ConvMicroKernel& k, int32_t w_max, int32_t x_max) {
  const int64_t flush = k.flush(w_max, x_max);
  if (flush > 0) return 1.0 + 1.0 / static_cast<double>(flush);
  if (k.isa == Isa::AvxVnni || k.isa == Isa::Avx512Vnni) return 1.0;
  return 2.0;
}

}  // namespace

GroupedConv2d prepare_conv2d_grouped(const ConvShape& s, const IntLayer& L, Isa isa, int in_bits,
                                     bool split) {
  check_conv(s, &L);
  if (s.groups != 1)
    fail("prepare_conv2d_grouped: layer '{}' has {} groups (expected 1; use conv2d_u8_ref)", L.name,
         s.groups);
  if (L.out_node < 0)
    fail("prepare_conv2d_grouped: layer '{}' has a float output (expected a quantized one)",
         L.name);
  const int64_t rows = s.out_c, cols = s.weights() / s.out_c;
  std::vector<int32_t> wmax(static_cast<size_t>(rows), 0);
  int32_t layer_max = 0;
  for (int64_t c = 0; c < rows; ++c) {
    for (int64_t k = 0; k < cols; ++k) {
      const int32_t w = L.weights[c * cols + k];
      if (w < -128 || w > 127)
        fail("prepare_conv2d_grouped: layer '{}' has weight {} (expected 8 bits)", L.name, w);
      wmax[c] = std::max(wmax[c], w < 0 ? -w : w);
    }
    layer_max = std::max(layer_max, wmax[c]);
  }
  // The whole layer's kernel: checks the tier, the CPU and the activation bits up front, even
  // when every channel is pruned.
  kernels::choose_kernel(isa, layer_max, in_bits);
  const int32_t x_max = (1 << in_bits) - 1;
  if (L.in_zero_point < 0 || L.in_zero_point > x_max)
    fail("prepare_conv2d_grouped: layer '{}' input zero point {} (expected 0..{})", L.name,
         L.in_zero_point, x_max);
  if (L.out_lo < 0 || L.out_hi > 255 || L.out_lo > L.out_hi)
    fail("prepare_conv2d_grouped: layer '{}' output range {}..{} (expected within 0..255)", L.name,
         L.out_lo, L.out_hi);

  GroupedConv2d gc;
  gc.s_ = s;
  if (!split) {
    gc.groups_.push_back(prepare_conv2d_u8(s, L, isa, in_bits));
    gc.group_ch_.emplace_back(static_cast<size_t>(rows));
    std::iota(gc.group_ch_[0].begin(), gc.group_ch_[0].end(), 0);
    return gc;
  }
  std::vector<int64_t> live;  // computed channels, widest first (stable: by index within a width)
  for (int64_t c = 0; c < rows; ++c) {
    if (wmax[c] == 0) {
      // No weight: acc = bias[c] for every pixel.
      gc.const_ch_.push_back(c);
      gc.const_val_.push_back(static_cast<uint8_t>(L.output(c, L.bias[c])));
    } else {
      live.push_back(c);
    }
  }
  std::stable_sort(live.begin(), live.end(),
                   [&](int64_t a, int64_t b) { return wmax[a] > wmax[b]; });
  const int64_t n = static_cast<int64_t>(live.size());
  if (n == 0) return gc;

  // Per start position, the kernel a run beginning there takes and its cost per tile.
  const double taps = static_cast<double>(cols), pix = static_cast<double>(s.out_h() * s.out_w());
  std::vector<const ConvMicroKernel*> kern(static_cast<size_t>(n));
  std::vector<double> tile_cost(static_cast<size_t>(n)), staging(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const int32_t w = wmax[live[i]];
    if (i > 0 && w == wmax[live[i - 1]]) {
      kern[i] = kern[i - 1];
      tile_cost[i] = tile_cost[i - 1];
      staging[i] = staging[i - 1];
      continue;
    }
    kern[i] = &kernels::choose_kernel(isa, w, in_bits);
    const double nr = kern[i]->nr, pix_pad = std::ceil(pix / nr) * nr;
    tile_cost[i] = kMr * pix_pad * taps / 32.0 * kernel_uops(*kern[i], w, x_max);
    // The staging depends on the kernel's layout and the shape, not on the channels: one.
    // Plus a group's fixed cost (its loops, tile calls and epilogue set-up): about one µop per
    // output of one tile, set, like staging_uops' factors, from resnet20's layers.
    staging[i] =
        prepare_conv2d_u8(s, L, *kern[i], in_bits, {live[i]}).staging_uops() + kMr * pix_pad;
  }
  // best[j]: the cheapest plan of live[0, j); from[j]: where its last run starts. Any cut is
  // allowed: narrow channels may fill a wider run's last tile, which is computed anyway. Ties
  // keep the earlier start, i.e. fewer runs.
  std::vector<double> best(static_cast<size_t>(n + 1), 0.0);
  std::vector<int64_t> from(static_cast<size_t>(n + 1), 0);
  for (int64_t j = 1; j <= n; ++j) {
    best[j] = -1;
    for (int64_t i = 0; i < j; ++i) {
      const double tiles = static_cast<double>((j - i + kMr - 1) / kMr);
      const double c = best[i] + tiles * tile_cost[i] + staging[i];
      if (best[j] < 0 || c < best[j]) {
        best[j] = c;
        from[j] = i;
      }
    }
  }
  std::vector<std::pair<int64_t, int64_t>> runs;
  for (int64_t j = n; j > 0; j = from[j]) runs.push_back({from[j], j});
  std::reverse(runs.begin(), runs.end());
  for (const auto& [a, b] : runs) {
    std::vector<int64_t> ch(live.begin() + a, live.begin() + b);
    std::sort(ch.begin(), ch.end());
    if (runs.size() == 1 && gc.const_ch_.empty()) {
      gc.groups_.push_back(prepare_conv2d_u8(s, L, *kern[a], in_bits));  // the whole layer
    } else {
      gc.groups_.push_back(prepare_conv2d_u8(s, L, *kern[a], in_bits, ch));
    }
    gc.group_ch_.push_back(std::move(ch));
  }
  return gc;
}

size_t GroupedConv2d::weight_bytes() const {
  size_t b = 0;
  for (const PreparedConv2d& p : groups_) b += p.weight_bytes();
  return b;
}

size_t GroupedConv2d::scratch_bytes() const {
  size_t b = 0;
  for (const PreparedConv2d& p : groups_) b += p.scratch_bytes();
  return b;
}

std::string GroupedConv2d::kernel_names() const {
  if (!in_off_.empty())  // "avx512vnni_dpbusd, 13 tiles of 2 groups"
    return fmt::format("{}, {} tiles of {} group{}", groups_[0].kernel_name(), groups_.size(),
                       slice_groups_, slice_groups_ > 1 ? "s" : "");
  if (groups_.size() == 1 && const_ch_.empty()) return groups_[0].kernel_name();
  std::string s;
  for (size_t g = 0; g < groups_.size(); ++g)
    s += fmt::format("{}{} x{}", s.empty() ? "" : " + ", groups_[g].kernel_name(),
                     group_ch_[g].size());
  if (!const_ch_.empty())
    s += fmt::format("{}pruned x{}", s.empty() ? "" : " + ", const_ch_.size());
  return s;
}

GroupedConv2d prepare_conv2d_grouped_acc(const ConvShape& s, const IntLayer& L, Isa isa,
                                         int in_bits) {
  GroupedConv2d g;
  g.s_ = s;
  g.groups_.push_back(prepare_conv2d_acc(s, L, isa, in_bits));
  std::vector<int64_t> all(static_cast<size_t>(s.out_c));
  for (int64_t c = 0; c < s.out_c; ++c) all[static_cast<size_t>(c)] = c;
  g.group_ch_.push_back(std::move(all));
  return g;
}

GroupedConv2d prepare_conv2d_group_tiles(const ConvShape& s, const IntLayer& L, Isa isa,
                                         int in_bits) {
  check_conv(s, &L);
  if (s.groups < 2)
    fail("prepare_conv2d_group_tiles: layer '{}' has {} groups (expected 2 or more)", L.name,
         s.groups);
  if (L.out_node < 0)
    fail("prepare_conv2d_group_tiles: layer '{}' has a float output (expected a quantized one)",
         L.name);
  const int64_t icg = s.in_c / s.groups, ocg = s.out_c / s.groups;
  const int64_t kk = s.window.kernel_h * s.window.kernel_w, plane = s.in_h * s.in_w;
  const int64_t pix = s.out_h() * s.out_w();
  const int64_t per = std::max<int64_t>(1, kMr / ocg);  // groups a part
  GroupedConv2d gc;
  gc.s_ = s;
  gc.slice_groups_ = per;
  for (int64_t g0 = 0; g0 < s.groups; g0 += per) {
    const int64_t ng = std::min(per, s.groups - g0);
    ConvShape ps = s;
    ps.in_c = ng * icg;
    ps.out_c = ng * ocg;
    ps.groups = 1;
    IntLayer part = kernels::layer_without_channels(L);
    part.weights.assign(static_cast<size_t>(ps.out_c * ps.in_c * kk), 0);
    std::vector<int64_t> ch;
    for (int64_t o = 0; o < ps.out_c; ++o) {
      const int64_t oc = g0 * ocg + o, local_g = o / ocg;
      ch.push_back(oc);
      // Row o: [input channel of the part][tap]; its own group's block, zeros elsewhere.
      for (int64_t i = 0; i < icg; ++i)
        for (int64_t t = 0; t < kk; ++t)
          part.weights[static_cast<size_t>((o * ps.in_c + local_g * icg + i) * kk + t)] =
              L.weights[static_cast<size_t>((oc * icg + i) * kk + t)];
      kernels::append_channel(part, L, oc, s.out_c);
    }
    gc.groups_.push_back(prepare_conv2d_u8(ps, part, isa, in_bits));
    gc.group_ch_.push_back(std::move(ch));
    gc.in_off_.push_back(g0 * icg * plane);
    gc.out_off_.push_back(g0 * ocg * pix);
  }
  return gc;
}

void GroupedConv2d::run_acc(const uint8_t* x, int64_t* acc) {
  for (PreparedConv2d& g : groups_) g.run_acc(x, acc);
}

void GroupedConv2d::run(const uint8_t* x, uint8_t* y) {
  const auto pix = static_cast<size_t>(s_.out_h() * s_.out_w());
  for (size_t k = 0; k < const_ch_.size(); ++k)
    std::memset(y + static_cast<size_t>(const_ch_[k]) * pix, const_val_[k], pix);
  if (!in_off_.empty()) {  // group tiles: each part on its slices of x and y
    for (size_t g = 0; g < groups_.size(); ++g) groups_[g].run(x + in_off_[g], y + out_off_[g]);
    return;
  }
  for (PreparedConv2d& g : groups_) g.run(x, y);
}

}  // namespace sq
