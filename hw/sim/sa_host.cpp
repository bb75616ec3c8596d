// Host side of the shift-add accelerator: layer programs and the matching cost-model target.
#include "sa_host.h"

#include <algorithm>

#include "sigmaquant/error.h"

namespace sqhw {

LayerProgram compile_layer(const HwConfig& hw, const sq::ConvShape& s, const sq::IntLayer& L,
                           const uint8_t* x, int abits, bool csd) {
  sq::check_conv(s, &L);
  if (s.groups != 1)
    sq::fail("hw: layer '{}' has groups = {} (the RTL runs groups = 1)", L.name, s.groups);
  if (abits < hw.amin || abits > hw.amax)
    sq::fail("hw: layer '{}' reads {}-bit activations (the RTL supports {}..{})", L.name, abits,
             hw.amin, hw.amax);
  LayerProgram p;
  p.csd = csd;
  p.abits = abits;
  p.npos = s.out_h() * s.out_w();
  p.K = s.taps();
  p.out_c = s.out_c;
  // im2col: row k = (ci, ky, kx) as in the weights [out][in][kh][kw]; padding holds zp_x (the
  // real 0). Any window: tap (ky, kx) of pixel (oy, ox) is input (oy·sh − pt + ky·dh, ...).
  p.im2col.assign(static_cast<size_t>(p.K * p.npos), static_cast<uint8_t>(L.in_zero_point));
  const int64_t ow = s.out_w();
  const sq::Window2d& w = s.window;
  for (int64_t ci = 0; ci < s.in_c; ++ci)
    for (int64_t ky = 0; ky < w.kernel_h; ++ky)
      for (int64_t kx = 0; kx < w.kernel_w; ++kx) {
        const int64_t k = (ci * w.kernel_h + ky) * w.kernel_w + kx;
        for (int64_t pos = 0; pos < p.npos; ++pos) {
          const int64_t iy = pos / ow * w.stride_h - w.pad_top + ky * w.dilation_h;
          const int64_t ix = pos % ow * w.stride_w - w.pad_left + kx * w.dilation_w;
          if (iy < 0 || iy >= s.in_h || ix < 0 || ix >= s.in_w) continue;
          const uint8_t v = x[(ci * s.in_h + iy) * s.in_w + ix];
          if (v >> abits)
            sq::fail("hw: layer '{}' input code {} does not fit {} bits", L.name, int(v), abits);
          p.im2col[static_cast<size_t>(k * p.npos + pos)] = v;
        }
      }
  p.desc.assign(static_cast<size_t>(hw.datapaths), {});
  p.entries.assign(static_cast<size_t>(hw.datapaths), {});
  for (int64_t c = 0; c < s.out_c; ++c) {
    const int b = L.channel_bits[static_cast<size_t>(c)];
    if (b == 0) continue;  // pruned: its output is its bias, nothing to compute
    if (b < hw.wmin || b > hw.wmax)
      sq::fail("hw: layer '{}' channel {} has {}-bit weights (the RTL supports {}..{})", L.name, c,
               b, hw.wmin, hw.wmax);
    if (abits + b + hw.guard_bits > hw.datapath_bits)
      sq::fail("hw: layer '{}': a {}-bit lane does not fit the {}-bit datapath", L.name,
               abits + b + hw.guard_bits, hw.datapath_bits);
    const size_t dp = p.active.size() % static_cast<size_t>(hw.datapaths);
    p.active.push_back(static_cast<int>(c));
    Descriptor d;
    d.channel = static_cast<int>(c);
    d.wbits = b;
    d.ebase = static_cast<int>(p.entries[dp].size());
    int64_t sum_w = 0;
    for (int64_t k = 0; k < p.K; ++k) {
      const int w = L.weights[static_cast<size_t>(c * p.K + k)];
      sum_w += w;
      if (csd && w == 0) continue;  // zero-skipping: the weight list holds non-zero weights only
      p.entries[dp].push_back({static_cast<int>(k), w});
    }
    d.ecount = static_cast<int>(p.entries[dp].size()) - d.ebase;
    const int64_t init = static_cast<int64_t>(L.bias[static_cast<size_t>(c)]) -
                         static_cast<int64_t>(L.in_zero_point) * sum_w;
    if (init < INT32_MIN || init > INT32_MAX)
      sq::fail("hw: layer '{}' channel {}: accumulator start value {} overflows int32", L.name, c,
               init);
    d.init = static_cast<int32_t>(init);
    p.desc[dp].push_back(d);
  }
  return p;
}

sq::Target shiftadd_target(const HwConfig& hw, bool csd, bool round_robin) {
  sq::Target t = sq::builtin_target(csd ? "shiftadd-csd" : "shiftadd");
  t.shiftadd.datapaths = hw.datapaths;
  t.shiftadd.datapath_bits = hw.datapath_bits;
  t.shiftadd.guard_bits = hw.guard_bits;
  t.shiftadd.subword = sq::SubwordRule::Product;
  t.shiftadd.schedule = round_robin ? sq::ShiftAddSchedule::RoundRobin : sq::ShiftAddSchedule::Even;
  return t;
}

sq::BitConfig hardware_bits(const sq::QuantModel& qm, const sq::IntModel& im) {
  sq::BitConfig b = qm.bits;
  for (const sq::IntLayer& L : im.layers) {
    auto it = b.layers.find(L.name);
    if (it == b.layers.end()) {
      if (!b.default_bits) sq::fail("hw: layer '{}' has no bits", L.name);
      it = b.layers.emplace(L.name, *b.default_bits).first;
    }
    it->second.abits = im.points.at(L.in_node).bits;
  }
  return b;
}

sq::QuantizedWeightSet integer_weights(const sq::QuantModel& qm, const sq::IntModel& im) {
  sq::QuantizedWeightSet q;
  for (const sq::IntLayer& L : im.layers) {
    sq::QuantizedTensor t;
    t.shape = qm.graph.nodes[static_cast<size_t>(L.node)].params.at("weight").shape;
    t.values = L.weights;
    t.channel_bits = L.channel_bits;
    t.scales = L.weight_scales;
    q.emplace(L.name, std::move(t));
  }
  return q;
}

}  // namespace sqhw
