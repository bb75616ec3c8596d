// Grouped and depthwise convolutions in optimized plans: conv2d_u8_ref's integers, computed a
// row of output pixels at a time. For each tap the range of output columns whose input lies
// inside the image is worked out once, so the inner loop — acc[ox] += w · (x[ox·sw + off] − zp)
// over int32 lanes — has no bounds checks and vectorizes; the epilogue is the reference's
// (IntLayer::output on bias + acc), inlined in 64-bit arithmetic where the product fits
// (Requantizer, op.h). |w| <= 127 and |x − zp| <= 255, so int32 holds any window
// of fewer than 2^31 / 32,385 = 66,310 taps (icg · kh · kw); a bigger one stays on the reference.
#include <algorithm>
#include <cstring>
#include <vector>

#include "op.h"

namespace sq::ops {

namespace {

constexpr int64_t kCols = 256;  // output columns per accumulator block (on the stack)
constexpr int64_t kMaxKw = 64;  // kernel widths the rows method takes (wider: patches, or ref)

// The epilogue, IntLayer::output(c, acc), is op.h's Requantizer on the channel's Requant:
// requantize's int32 saturation cannot change a value clamped to 0..255.

__attribute__((always_inline)) inline void grouped_rows(const ConvShape& s, const IntLayer& L,
                                                         const uint8_t* x, uint8_t* y) {
  const Window2d& w = s.window;
  const int64_t oh = s.out_h(), ow = s.out_w(), kh = w.kernel_h, kw = w.kernel_w;
  const int64_t icg = s.in_c / s.groups, ocg = s.out_c / s.groups;
  const int64_t in_h = s.in_h, in_w = s.in_w, sw = w.stride_w, pix = oh * ow;
  const int32_t zp = L.in_zero_point;
  int32_t acc[kCols];
  for (int64_t oc = 0; oc < s.out_c; ++oc) {
    const int64_t g = oc / ocg;
    const int32_t* wc = L.weights.data() + oc * icg * kh * kw;
    const int64_t bias = L.bias[oc];
    const Requantizer out(L.requant[oc], L.out_zero_point, L.out_lo, L.out_hi);
    uint8_t* yc = y + oc * pix;
    for (int64_t oy = 0; oy < oh; ++oy)
      for (int64_t c0 = 0; c0 < ow; c0 += kCols) {
        const int64_t c1 = std::min(ow, c0 + kCols);
        for (int64_t k = 0; k < c1 - c0; ++k) acc[k] = 0;
        // Per kernel column: input column ox·sw + off, inside the row for ox in [lo, hi] (the
        // same for every channel and kernel row: computed once per block).
        int64_t offs[kMaxKw], los[kMaxKw], his[kMaxKw];
        for (int64_t kx = 0; kx < kw; ++kx) {
          const int64_t off = kx * w.dilation_w - w.pad_left;
          offs[kx] = off;
          los[kx] = std::max(c0, off >= 0 ? int64_t{0} : (-off + sw - 1) / sw);
          his[kx] = std::min(c1 - 1, in_w - 1 - off < 0 ? int64_t{-1} : (in_w - 1 - off) / sw);
        }
        for (int64_t i = 0; i < icg; ++i) {
          const uint8_t* xi = x + (g * icg + i) * in_h * in_w;
          for (int64_t ky = 0; ky < kh; ++ky) {
            const int64_t iy = oy * w.stride_h - w.pad_top + ky * w.dilation_h;
            if (iy < 0 || iy >= in_h) continue;  // padding: the zero point, adds nothing
            const uint8_t* __restrict row = xi + iy * in_w;
            for (int64_t kx = 0; kx < kw; ++kx) {
              const int32_t wv = wc[(i * kh + ky) * kw + kx];
              if (wv == 0) continue;
              const int64_t off = offs[kx], lo = los[kx], hi = his[kx];
              int32_t* __restrict a = acc - c0;
              if (sw == 1) {
                const uint8_t* __restrict r = row + off;
                for (int64_t ox = lo; ox <= hi; ++ox) a[ox] += wv * (static_cast<int32_t>(r[ox]) - zp);
              } else {
                for (int64_t ox = lo; ox <= hi; ++ox)
                  a[ox] += wv * (static_cast<int32_t>(row[ox * sw + off]) - zp);
              }
            }
          }
        }
        uint8_t* yr = yc + oy * ow;
        for (int64_t ox = c0; ox < c1; ++ox) yr[ox] = out(bias + acc[ox - c0]);
      }
  }
}

// The other order, for short rows with several outputs per group (RegNet's and ResNeXt's group
// convs on small maps): per output pixel the group's patch is gathered once as x − zp (padding
// 0) into int32 scratch, then each of the group's output channels is one int32 dot product over
// it (vectorized). Needs taps <= kMaxPatch.
constexpr int64_t kMaxPatch = 4096;

__attribute__((always_inline)) inline void grouped_patches(const ConvShape& s, const IntLayer& L,
                                                            const uint8_t* x, uint8_t* y) {
  const int64_t oh = s.out_h(), ow = s.out_w(), pix = oh * ow;
  const int64_t ocg = s.out_c / s.groups;
  const int64_t taps = s.in_c / s.groups * s.window.kernel_h * s.window.kernel_w;
  int32_t col[kMaxPatch];
  for (int64_t g = 0; g < s.groups; ++g)
    for (int64_t oy = 0; oy < oh; ++oy)
      for (int64_t ox = 0; ox < ow; ++ox) {
        gather_patch(s, x, L.in_zero_point, g, oy, ox, col);
        for (int64_t oc = g * ocg; oc < (g + 1) * ocg; ++oc) {
          const int32_t* __restrict wr = L.weights.data() + oc * taps;
          const int32_t* __restrict cr = col;
          int32_t dot = 0;
          for (int64_t k = 0; k < taps; ++k) dot += wr[k] * cr[k];
          y[oc * pix + oy * ow + ox] = Requantizer(L.requant[oc], L.out_zero_point, L.out_lo,
                                                   L.out_hi)(int64_t{L.bias[oc]} + dot);
        }
      }
}

// Depthwise convolutions (one input and one output channel per group) vectorized over channels,
// for the short rows of late feature maps, where a row method pays its fixed cost per (channel,
// row, tap) for a handful of pixels: in a scratch of channels_scratch_bytes(s) — the weights as
// [tap][channel] int16, per channel bias − zp·Σw, and the input as a zp-bordered HWC copy — each
// output pixel is a sum over taps of contiguous channel runs (int16 × uint8 into int32 lanes),
// then the reference's epilogue per channel. Padding holds zp, which adds w·0.
constexpr int64_t kChannelBlock = 64;

bool depthwise(const ConvShape& s) { return s.in_c == s.groups && s.out_c == s.groups; }

int64_t channels_scratch_bytes(const ConvShape& s) {
  const Window2d& w = s.window;
  const int64_t taps = w.kernel_h * w.kernel_w, c = s.in_c;
  const int64_t hp = s.in_h + w.pad_top + w.pad_bottom, wp = s.in_w + w.pad_left + w.pad_right;
  return (taps * c * 2 + 7) / 8 * 8 + c * 8 + hp * wp * c;
}

__attribute__((always_inline)) inline void grouped_channels(const ConvShape& s, const IntLayer& L,
                                                            const uint8_t* x, uint8_t* y,
                                                            uint8_t* scratch) {
  const Window2d& w = s.window;
  const int64_t kh = w.kernel_h, kw = w.kernel_w, taps = kh * kw, nc = s.in_c;
  const int64_t in_h = s.in_h, in_w = s.in_w, oh = s.out_h(), ow = s.out_w(), pix = oh * ow;
  const int64_t hp = in_h + w.pad_top + w.pad_bottom, wp = in_w + w.pad_left + w.pad_right;
  const int32_t zp = L.in_zero_point;
  int16_t* wt = reinterpret_cast<int16_t*>(scratch);
  int64_t* bias = reinterpret_cast<int64_t*>(scratch + (taps * nc * 2 + 7) / 8 * 8);
  uint8_t* xs = scratch + (taps * nc * 2 + 7) / 8 * 8 + nc * 8;
  for (int64_t c = 0; c < nc; ++c) {
    int64_t sum = 0;
    for (int64_t t = 0; t < taps; ++t) {
      const int32_t v = L.weights[static_cast<size_t>(c * taps + t)];
      wt[t * nc + c] = static_cast<int16_t>(v);
      sum += v;
    }
    bias[c] = int64_t{L.bias[static_cast<size_t>(c)]} - int64_t{zp} * sum;
  }
  std::memset(xs, zp, static_cast<size_t>(hp * wp * nc));
  for (int64_t iy = 0; iy < in_h; ++iy)
    for (int64_t ix = 0; ix < in_w; ++ix) {
      uint8_t* d = xs + ((iy + w.pad_top) * wp + ix + w.pad_left) * nc;
      const uint8_t* src = x + iy * in_w + ix;
      for (int64_t c = 0; c < nc; ++c) d[c] = src[c * in_h * in_w];
    }
  for (int64_t c0 = 0; c0 < nc; c0 += kChannelBlock) {
    const int64_t cb = std::min(kChannelBlock, nc - c0);
    Requantizer out[kChannelBlock];  // the block's epilogues, set up once for all its pixels
    // And, where every channel of the block allows it (32 <= shift <= 62 or M = 0, and bias + acc
    // within int32), the same arithmetic as conv_fast.cpp's int32 epilogue, in loops the compiler
    // vectorizes: t = a · M + 2^(shift−1) in int64, its high half, >> (shift − 32).
    int32_t qb[kChannelBlock], qm[kChannelBlock], qs[kChannelBlock];
    int64_t qr[kChannelBlock];
    bool q32 = true;
    const int64_t dot_max = taps * 127 * 255;
    for (int64_t c = 0; c < cb; ++c) {
      const Requant& r = L.requant[static_cast<size_t>(c0 + c)];
      out[c] = Requantizer(r, L.out_zero_point, L.out_lo, L.out_hi);
      const int64_t b = bias[c0 + c];
      q32 = q32 && (r.multiplier == 0 || (r.shift >= 32 && r.shift <= 62)) &&
            (b < 0 ? -b : b) + dot_max < (int64_t{1} << 31);
      qb[c] = static_cast<int32_t>(q32 ? b : 0);
      qm[c] = r.multiplier;
      qs[c] = r.multiplier == 0 ? 0 : r.shift - 32;
      qr[c] = r.multiplier == 0 ? 0 : int64_t{1} << (r.shift - 1);
    }
    const int32_t zp_out = L.out_zero_point, lo = L.out_lo, hi = L.out_hi;
    for (int64_t oy = 0; oy < oh; ++oy)
      for (int64_t ox = 0; ox < ow; ++ox) {
        int32_t acc[kChannelBlock] = {};
        for (int64_t ky = 0; ky < kh; ++ky)
          for (int64_t kx = 0; kx < kw; ++kx) {
            const uint8_t* __restrict xr =
                xs +
                ((oy * w.stride_h + ky * w.dilation_h) * wp + ox * w.stride_w + kx * w.dilation_w) *
                    nc +
                c0;
            const int16_t* __restrict wr = wt + (ky * kw + kx) * nc + c0;
            for (int64_t c = 0; c < cb; ++c)
              acc[c] += static_cast<int32_t>(wr[c]) * static_cast<int32_t>(xr[c]);
          }
        uint8_t* yp = y + c0 * pix + oy * ow + ox;
        if (!q32) {
          for (int64_t c = 0; c < cb; ++c) yp[c * pix] = out[c](bias[c0 + c] + acc[c]);
          continue;
        }
        uint8_t codes[kChannelBlock];
        for (int64_t c = 0; c < cb; ++c) {
          const int64_t t = int64_t{qb[c] + acc[c]} * qm[c] + qr[c];
          const int32_t v = (static_cast<int32_t>(t >> 32) >> qs[c]) + zp_out;
          codes[c] = static_cast<uint8_t>(v < lo ? lo : v > hi ? hi : v);
        }
        for (int64_t c = 0; c < cb; ++c) yp[c * pix] = codes[c];
      }
  }
}

// Rows pay a fixed cost per (output channel, row, tap) and stream a row's pixels; patches pay a
// gather per (pixel, tap) and reuse it for the group's ocg outputs. Per group and output row,
// in rough cycles on AVX2 (8 int32 lanes): rows ocg · taps · (8 + ow / 8), patches
// ow · taps · (1.5 + ocg / 8). Patches for short rows: depthwise below ~5 pixels, 8 outputs per
// group below ~40.
// Depthwise by channels, per output and tap about 1/4 (a quarter of a 16-channel vector step),
// plus the HWC copy, ~1.5 per staged input element: below rows' 8 / ow + 1/8 for rows up to ~30
// pixels at stride 1; a strided row is gathered element by element (8 / ow + 1), so strided
// depthwise convs take channels at any width.
GroupedMethod choose(const ConvShape& s) {
  const int64_t taps = s.in_c / s.groups * s.window.kernel_h * s.window.kernel_w;
  if (taps > kMaxPatch) return GroupedMethod::Rows;
  const double ocg = static_cast<double>(s.out_c / s.groups), ow = static_cast<double>(s.out_w());
  if (depthwise(s)) {
    const Window2d& w = s.window;
    const double staged = static_cast<double>((s.in_h + w.pad_top + w.pad_bottom) *
                                              (s.in_w + w.pad_left + w.pad_right)) /
                          static_cast<double>(s.out_h() * s.out_w());
    const double per_tap = 8 / ow + (w.stride_w == 1 ? 0.125 : 1.0);
    if (static_cast<double>(taps) * 0.25 + 1.5 * staged < static_cast<double>(taps) * per_tap)
      return GroupedMethod::Channels;
  }
  if (s.window.kernel_w > kMaxKw) return GroupedMethod::Patches;
  return ow * (1.5 + ocg / 8) < ocg * (8 + ow / 8) ? GroupedMethod::Patches : GroupedMethod::Rows;
}

// The method that runs for shape s when m is asked for: Auto picks by the estimate; each method
// takes only what it can (grouped_conv_fits: at least one of them).
GroupedMethod resolve(const ConvShape& s, GroupedMethod m) {
  if (m == GroupedMethod::Auto) m = choose(s);
  if (m == GroupedMethod::Channels) {
    if (depthwise(s)) return m;
    m = GroupedMethod::Rows;
  }
  if (s.window.kernel_w > kMaxKw) m = GroupedMethod::Patches;
  if (s.in_c / s.groups * s.window.kernel_h * s.window.kernel_w > kMaxPatch) m = GroupedMethod::Rows;
  return m;
}

// scratch: channels_scratch_bytes(s) for Channels, else unused.
__attribute__((always_inline)) inline void grouped_any(const ConvShape& s, const IntLayer& L,
                                                       const uint8_t* x, uint8_t* y,
                                                       GroupedMethod m, uint8_t* scratch) {
  if (m == GroupedMethod::Channels) return grouped_channels(s, L, x, y, scratch);
  if (m == GroupedMethod::Patches) return grouped_patches(s, L, x, y);
  grouped_rows(s, L, x, y);
}

void grouped_portable(const ConvShape& s, const IntLayer& L, const uint8_t* x, uint8_t* y,
                      GroupedMethod m, uint8_t* scratch = nullptr) {
  grouped_any(s, L, x, y, m, scratch);
}

// The method is chosen at prepare (grouped_conv_step: one step type per method), so the plan
// names it and a run does not re-derive it.
void eval_grouped_rows(const Run& r, const Step& st) {
  grouped_portable(st.conv, r.layers[st.layer], r.in(st), r.out(st), GroupedMethod::Rows);
}
void eval_grouped_patches(const Run& r, const Step& st) {
  grouped_portable(st.conv, r.layers[st.layer], r.in(st), r.out(st), GroupedMethod::Patches);
}

// Channels: its scratch is the step's second input, a buffer of channels_scratch_bytes alive for
// this step only (the memory plan places it).
void eval_grouped_channels(const Run& r, const Step& st) {
  grouped_portable(st.conv, r.layers[st.layer], r.in(st), r.out(st), GroupedMethod::Channels,
                   r.buf(st.in2));
}

const StepType kGroupedRows{Step::Kind::ConvRef, "conv(grouped rows)", eval_grouped_rows};
const StepType kGroupedPatches{Step::Kind::ConvRef, "conv(grouped patches)", eval_grouped_patches};
const StepType kGroupedChannels{Step::Kind::ConvRef, "conv(depthwise channels)",
                                eval_grouped_channels};

#ifdef __x86_64__
__attribute__((target("avx2"))) void grouped_avx2(const ConvShape& s, const IntLayer& L,
                                                  const uint8_t* x, uint8_t* y, GroupedMethod m,
                                                  uint8_t* scratch = nullptr) {
  grouped_any(s, L, x, y, m, scratch);
}

void eval_grouped_rows_avx2(const Run& r, const Step& st) {
  grouped_avx2(st.conv, r.layers[st.layer], r.in(st), r.out(st), GroupedMethod::Rows);
}
void eval_grouped_patches_avx2(const Run& r, const Step& st) {
  grouped_avx2(st.conv, r.layers[st.layer], r.in(st), r.out(st), GroupedMethod::Patches);
}

void eval_grouped_channels_avx2(const Run& r, const Step& st) {
  grouped_avx2(st.conv, r.layers[st.layer], r.in(st), r.out(st), GroupedMethod::Channels,
               r.buf(st.in2));
}

const StepType kGroupedRowsAvx2{Step::Kind::ConvRef, "conv(grouped rows, avx2)",
                                eval_grouped_rows_avx2};
const StepType kGroupedPatchesAvx2{Step::Kind::ConvRef, "conv(grouped patches, avx2)",
                                   eval_grouped_patches_avx2};
const StepType kGroupedChannelsAvx2{Step::Kind::ConvRef, "conv(depthwise channels, avx2)",
                                    eval_grouped_channels_avx2};
#endif

}  // namespace

bool grouped_conv_fits(const ConvShape& s) {
  const int64_t taps = s.in_c / s.groups * s.window.kernel_h * s.window.kernel_w;
  return taps < 66310 && (s.window.kernel_w <= kMaxKw || taps <= kMaxPatch);
}

void grouped_conv_u8_fast(const ConvShape& s, const IntLayer& L, const uint8_t* x, uint8_t* y,
                          Isa isa, GroupedMethod m) {
  if (isa == Isa::Auto) isa = best_isa();
  m = resolve(s, m);
  std::vector<uint8_t> scratch(
      m == GroupedMethod::Channels ? static_cast<size_t>(channels_scratch_bytes(s)) : 0);
#ifdef __x86_64__
  if (isa != Isa::Portable && isa != Isa::Reference && cpu_has_avx2())
    return grouped_avx2(s, L, x, y, m, scratch.data());
#endif
  grouped_portable(s, L, x, y, m, scratch.data());
}

const StepType* grouped_conv_step(Context& c, Step& st) {
  const ConvShape& s = st.conv;
  if (c.isa == Isa::Reference || s.groups == 1 || !grouped_conv_fits(s)) return nullptr;
  const GroupedMethod m = resolve(s, GroupedMethod::Auto);
  if (m == GroupedMethod::Channels) st.in2 = c.new_buffer(channels_scratch_bytes(s));
#ifdef __x86_64__
  const Isa isa = c.isa == Isa::Auto ? best_isa() : c.isa;
  if (isa != Isa::Portable && cpu_has_avx2())
    return m == GroupedMethod::Channels  ? &kGroupedChannelsAvx2
           : m == GroupedMethod::Patches ? &kGroupedPatchesAvx2
                                         : &kGroupedRowsAvx2;
#endif
  return m == GroupedMethod::Channels  ? &kGroupedChannels
         : m == GroupedMethod::Patches ? &kGroupedPatches
                                       : &kGroupedRows;
}

}  // namespace sq::ops
