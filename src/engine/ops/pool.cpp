// Pooling on codes: max-pool (max commutes with the quantizer: input and output share the point;
// padded taps ignored, ceil_mode's taps past the input skipped) and average / global average
// pooling (integer window sum, one fixed-point multiplier to the next point downstream).
#include <algorithm>

#include "op.h"
#include "sigmaquant/error.h"

namespace sq::ops {

namespace {

void eval_maxpool(const Run& r, const Step& st) { maxpool_u8_ref(st.pool, r.in(st), r.out(st)); }

void eval_maxpool_fast(const Run& r, const Step& st) {
  maxpool_u8_fast(st.pool, r.in(st), r.out(st));
}

void eval_avgpool(const Run& r, const Step& st) {
  avgpool_u8_ref(st.pool, st.avg, r.in(st), r.out(st));
}

void eval_gap(const Run& r, const Step& st) {
  global_avgpool_u8_ref(st.pool.c, st.pool.in_h * st.pool.in_w, st.avg, r.in(st), r.out(st));
}

const StepType kMaxPool{Step::Kind::MaxPool, "maxpool(ref)", eval_maxpool};
const StepType kMaxPoolFast{Step::Kind::MaxPool, "maxpool", eval_maxpool_fast};
const StepType kAvgPool{Step::Kind::AvgPool, "avgpool", eval_avgpool};
const StepType kGap{Step::Kind::Gap, "gap", eval_gap};

}  // namespace

namespace {

uint8_t window_max(const uint8_t* r, int64_t x0, int64_t x1) {
  uint8_t m = 0;
  for (int64_t ix = x0; ix < x1; ++ix) m = std::max(m, r[ix]);
  return m;
}

// One output row from the row maxima r: windows inside the row with a fixed width K (no loop,
// no branch), the few at the padded edges by window_max.
template <int K>
void row_windows(const uint8_t* r, int64_t in_w, int64_t ow, int64_t sw, int64_t pl,
                 uint8_t* out) {
  const int64_t lo = std::min(ow, (pl + sw - 1) / sw);  // first window starting at x >= 0
  const int64_t hi = in_w + pl >= K ? std::clamp<int64_t>((in_w + pl - K) / sw + 1, lo, ow) : lo;
  for (int64_t ox = 0; ox < lo; ++ox)
    out[ox] = window_max(r, 0, std::min(in_w, ox * sw - pl + K));
  for (int64_t ox = lo; ox < hi; ++ox) {
    const uint8_t* p = r + ox * sw - pl;
    uint8_t m = p[0];
    for (int k = 1; k < K; ++k) m = std::max(m, p[k]);
    out[ox] = m;
  }
  for (int64_t ox = hi; ox < ow; ++ox)
    out[ox] = window_max(r, std::max<int64_t>(0, ox * sw - pl), std::min(in_w, ox * sw - pl + K));
}

}  // namespace

void maxpool_u8_fast(const PoolShape& s, const uint8_t* x, uint8_t* y) {
  constexpr int64_t kRow = 4096;  // widest input row taken through the row maxima
  const Window2d& w = s.window;
  if (w.dilation_h != 1 || w.dilation_w != 1 || s.in_w > kRow) return maxpool_u8_ref(s, x, y);
  // Every size in a local: the byte stores below may alias anything, so sizes read through
  // `s` would be reloaded after each store and the loops would not vectorize.
  const int64_t oh = s.out_h(), ow = s.out_w(), in_h = s.in_h, in_w = s.in_w, channels = s.c;
  const int64_t kh = w.kernel_h, kw = w.kernel_w, sh = w.stride_h, sw = w.stride_w;
  const int64_t pt = w.pad_top, pl = w.pad_left;
  uint8_t rowmax[kRow];
  for (int64_t c = 0; c < channels; ++c) {
    const uint8_t* plane = x + c * in_h * in_w;
    for (int64_t oy = 0; oy < oh; ++oy) {
      // The window's rows inside the input (padded rows are ignored: −∞; there is at least
      // one), maxed column by column, then each output column's window over those maxima.
      const int64_t y0 = std::max<int64_t>(0, oy * sh - pt);
      const int64_t y1 = std::min(in_h, oy * sh - pt + kh);
      const uint8_t* r = plane + y0 * in_w;
      if (y1 - y0 > 1) {
        const uint8_t* r1 = r + in_w;
        for (int64_t ix = 0; ix < in_w; ++ix) rowmax[ix] = std::max(r[ix], r1[ix]);
        for (int64_t iy = y0 + 2; iy < y1; ++iy) {
          const uint8_t* row = plane + iy * in_w;
          for (int64_t ix = 0; ix < in_w; ++ix) rowmax[ix] = std::max(rowmax[ix], row[ix]);
        }
        r = rowmax;
      }
      uint8_t* out = y + (c * oh + oy) * ow;
      if (kw == 2) {
        row_windows<2>(r, in_w, ow, sw, pl, out);
      } else if (kw == 3) {
        row_windows<3>(r, in_w, ow, sw, pl, out);
      } else {
        for (int64_t ox = 0; ox < ow; ++ox)
          out[ox] = window_max(r, std::max<int64_t>(0, ox * sw - pl),
                               std::min(in_w, ox * sw - pl + kw));
      }
    }
  }
}

int push_maxpool(Context& c, int node, int in_buf) {
  const Node& m = c.g.nodes[node];
  const Shape& in = c.g.nodes[m.inputs[0]].out_shape;
  Step st;
  st.name = m.name;
  st.in = in_buf;
  st.pool = PoolShape{in.at(0), in.at(1), in.at(2), m.window, m.ceil_mode};
  const Window2d& mw = m.window;
  if (std::max(mw.pad_top, mw.pad_bottom) >= mw.kernel_h ||
      std::max(mw.pad_left, mw.pad_right) >= mw.kernel_w)
    fail("engine: max-pool '{}' window {} pads as much as its kernel", m.name, window_str(mw));
  st.out = c.new_buffer(c.numel(node));
  const int out = st.out;
  c.push(std::move(st), c.isa == Isa::Reference ? kMaxPool : kMaxPoolFast);
  return out;
}

// A max-pool not walked over by its producer: on the codes of the point it reads.
void prepare_maxpool(Context& c, int node) {
  const Context::Val in = c.input(c.g.nodes[node].inputs.at(0), node);
  Walk w;
  w.point = in.point;
  w.path = {node};
  c.emit_path(w, in.buf);
  c.ensure_point(node);
}

void prepare_avgpool(Context& c, int node) {
  const Node& n = c.g.nodes[node];
  const Context::Val& in = c.input(n.inputs.at(0), node);
  Walk w = c.walk(node);
  if (w.point < 0) fail("engine: average pooling '{}' reaches no quantization point", n.name);
  const ActQuant &p = c.point(in.point), &q = c.point(w.point);
  const auto [lo, hi] = act_range(q, w.relu, w.relu6);
  const Shape& s = c.g.nodes[n.inputs[0]].out_shape;
  if (s.size() != 3) fail("engine: pooling '{}' reads rank {} (expected C,H,W)", n.name, s.size());
  Step st;
  st.name = n.name;
  st.in = in.buf;
  const StepType* type = &kAvgPool;
  if (n.op == Op::AvgPool) {
    st.pool = PoolShape{s[0], s[1], s[2], n.window};
    st.avg = make_avgpool_params(p.scale, p.zero_point, q.scale, q.zero_point, n.window.taps(),
                                 lo, hi);
  } else {
    type = &kGap;
    st.pool = PoolShape{s[0], s[1], s[2], 1, 1, 0};
    st.avg = make_avgpool_params(p.scale, p.zero_point, q.scale, q.zero_point, s[1] * s[2], lo, hi);
  }
  c.push_output(node, std::move(st), *type, w, c.numel(node));
}

}  // namespace sq::ops
