// Grouped and depthwise convolutions in optimized plans: conv2d_u8_ref's integers, computed a
// row of output pixels at a time. For each tap the range of output columns whose input lies
// inside the image is worked out once, so the inner loop — acc[ox] += w · (x[ox·sw + off] − zp)
// over int32 lanes — has no bounds checks and vectorizes; the epilogue is the reference's
// (IntLayer::output on bias + acc), inlined in 64-bit arithmetic where the product fits
// (Requantizer, op.h). |w| <= 127 and |x − zp| <= 255, so int32 holds any window
// of fewer than 2^31 / 32,385 = 66,310 taps (icg · kh · kw); a bigger one stays on the reference.
#include <algorithm>

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

// Rows pay a fixed cost per (output channel, row, tap) and stream a row's pixels; patches pay a
// gather per (pixel, tap) and reuse it for the group's ocg outputs. Per group and output row,
// in rough cycles on AVX2 (8 int32 lanes): rows ocg · taps · (8 + ow / 8), patches
// ow · taps · (1.5 + ocg / 8). Patches for short rows: depthwise below ~5 pixels, 8 outputs per
// group below ~40.
GroupedMethod choose(const ConvShape& s) {
  const int64_t taps = s.in_c / s.groups * s.window.kernel_h * s.window.kernel_w;
  if (taps > kMaxPatch) return GroupedMethod::Rows;
  if (s.window.kernel_w > kMaxKw) return GroupedMethod::Patches;
  const double ocg = static_cast<double>(s.out_c / s.groups), ow = static_cast<double>(s.out_w());
  return ow * (1.5 + ocg / 8) < ocg * (8 + ow / 8) ? GroupedMethod::Patches : GroupedMethod::Rows;
}

// The method that runs for shape s when m is asked for: Auto picks by the estimate; each method
// takes only what it can (grouped_conv_fits: at least one of them).
GroupedMethod resolve(const ConvShape& s, GroupedMethod m) {
  if (m == GroupedMethod::Auto) m = choose(s);
  if (s.window.kernel_w > kMaxKw) m = GroupedMethod::Patches;
  if (s.in_c / s.groups * s.window.kernel_h * s.window.kernel_w > kMaxPatch) m = GroupedMethod::Rows;
  return m;
}

__attribute__((always_inline)) inline void grouped_any(const ConvShape& s, const IntLayer& L,
                                                        const uint8_t* x, uint8_t* y,
                                                        GroupedMethod m) {
  if (m == GroupedMethod::Patches) return grouped_patches(s, L, x, y);
  grouped_rows(s, L, x, y);
}

void grouped_portable(const ConvShape& s, const IntLayer& L, const uint8_t* x, uint8_t* y,
                      GroupedMethod m) {
  grouped_any(s, L, x, y, m);
}

// The method is chosen at prepare (grouped_conv_step: one step type per method), so the plan
// names it and a run does not re-derive it.
void eval_grouped_rows(const Run& r, const Step& st) {
  grouped_portable(st.conv, r.layers[st.layer], r.in(st), r.out(st), GroupedMethod::Rows);
}
void eval_grouped_patches(const Run& r, const Step& st) {
  grouped_portable(st.conv, r.layers[st.layer], r.in(st), r.out(st), GroupedMethod::Patches);
}

const StepType kGroupedRows{Step::Kind::ConvRef, "conv(grouped rows)", eval_grouped_rows};
const StepType kGroupedPatches{Step::Kind::ConvRef, "conv(grouped patches)", eval_grouped_patches};

#ifdef __x86_64__
__attribute__((target("avx2"))) void grouped_avx2(const ConvShape& s, const IntLayer& L,
                                                  const uint8_t* x, uint8_t* y, GroupedMethod m) {
  grouped_any(s, L, x, y, m);
}

void eval_grouped_rows_avx2(const Run& r, const Step& st) {
  grouped_avx2(st.conv, r.layers[st.layer], r.in(st), r.out(st), GroupedMethod::Rows);
}
void eval_grouped_patches_avx2(const Run& r, const Step& st) {
  grouped_avx2(st.conv, r.layers[st.layer], r.in(st), r.out(st), GroupedMethod::Patches);
}

const StepType kGroupedRowsAvx2{Step::Kind::ConvRef, "conv(grouped rows, avx2)",
                                eval_grouped_rows_avx2};
const StepType kGroupedPatchesAvx2{Step::Kind::ConvRef, "conv(grouped patches, avx2)",
                                   eval_grouped_patches_avx2};
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
#ifdef __x86_64__
  if (isa != Isa::Portable && isa != Isa::Reference && cpu_has_avx2())
    return grouped_avx2(s, L, x, y, m);
#endif
  grouped_portable(s, L, x, y, m);
}

const StepType* grouped_conv_step(const Context& c, const ConvShape& s) {
  if (c.isa == Isa::Reference || s.groups == 1 || !grouped_conv_fits(s)) return nullptr;
  const bool patches = resolve(s, GroupedMethod::Auto) == GroupedMethod::Patches;
#ifdef __x86_64__
  const Isa isa = c.isa == Isa::Auto ? best_isa() : c.isa;
  if (isa != Isa::Portable && cpu_has_avx2()) return patches ? &kGroupedPatchesAvx2 : &kGroupedRowsAvx2;
#endif
  return patches ? &kGroupedPatches : &kGroupedRows;
}

}  // namespace sq::ops
