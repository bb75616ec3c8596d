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

#include "../kernels.h"
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
// row, tap) for a handful of pixels. At prepare the layer's constants are packed once
// (pack_depthwise, DepthwiseLayout): the weights as [tap][channel] int16, per channel
// bias' = bias − zp·Σw, and the epilogue's. At run time the input goes into a zp-bordered HWC
// scratch of depthwise_scratch_bytes(s); each output pixel is then a sum over taps of contiguous
// channel runs (int16 × uint8 into int32 lanes), then the epilogue per channel. Padding holds
// zp, which adds w·0. Channels are padded to a multiple of 16 (weights 0 there) in the weights
// and the scratch, so every run is whole 16-lane vector steps: a run of 40 channels had compiled
// to the scalar loop.
constexpr int64_t kChannelBlock = 64, kChannelStep = 16;

bool depthwise(const ConvShape& s) { return s.in_c == s.groups && s.out_c == s.groups; }

int64_t padded_channels(int64_t c) { return (c + kChannelStep - 1) / kChannelStep * kChannelStep; }

int64_t depthwise_scratch_bytes(const ConvShape& s) {
  const Window2d& w = s.window;
  return (s.in_h + w.pad_top + w.pad_bottom) * (s.in_w + w.pad_left + w.pad_right) *
         padded_channels(s.in_c);
}

// Where pack_depthwise puts each array (byte offsets, each 8-aligned). The epilogue: where every
// channel of a 64-channel block allows it (32 <= shift <= 62 or M = 0, and bias' + acc within
// int32: q32[block]), conv_fast.cpp's int32 epilogue — t = (bias' + acc) · M + 2^(shift−1) in
// int64, its high half, >> (shift − 32) — in loops the compiler vectorizes (qb = bias' as int32,
// qm = M, qs = shift − 32, qr = 2^(shift−1)); other blocks take the reference's Requantizer.
// em / er: M and 2^(shift−1) per 16 channels in the AVX-512 kernel's epilogue order (EpilogueQ32:
// the 8 even channels, then the 8 odd ones).
struct DepthwiseLayout {
  int64_t taps, nc, ncp;  // ncp: channels padded to kChannelStep (weights [tap][ncp])
  size_t wt, bias, qb, qm, qs, qr, em, er, q32, bytes;
  explicit DepthwiseLayout(const ConvShape& s)
      : taps(s.window.kernel_h * s.window.kernel_w), nc(s.in_c), ncp(padded_channels(s.in_c)) {
    auto up8 = [](size_t b) { return (b + 7) / 8 * 8; };
    const auto c = static_cast<size_t>(ncp);  // the epilogue's arrays padded too (zeros)
    wt = 0;
    bias = up8(static_cast<size_t>(taps * ncp) * 2);
    qb = bias + c * 8;
    qm = qb + up8(c * 4);
    qs = qm + up8(c * 4);
    qr = qs + up8(c * 4);
    em = qr + c * 8;
    er = em + c * 8;
    q32 = er + c * 8;
    bytes = q32 + static_cast<size_t>((nc + kChannelBlock - 1) / kChannelBlock);
  }
};

std::vector<uint8_t> pack_depthwise(const ConvShape& s, const IntLayer& L) {
  const DepthwiseLayout lay(s);
  std::vector<uint8_t> k(lay.bytes, 0);
  auto* wt = reinterpret_cast<int16_t*>(k.data() + lay.wt);
  auto* bias = reinterpret_cast<int64_t*>(k.data() + lay.bias);
  auto* qb = reinterpret_cast<int32_t*>(k.data() + lay.qb);
  auto* qm = reinterpret_cast<int32_t*>(k.data() + lay.qm);
  auto* qs = reinterpret_cast<int32_t*>(k.data() + lay.qs);
  auto* qr = reinterpret_cast<int64_t*>(k.data() + lay.qr);
  auto* em = reinterpret_cast<int64_t*>(k.data() + lay.em);
  auto* er = reinterpret_cast<int64_t*>(k.data() + lay.er);
  uint8_t* q32 = k.data() + lay.q32;
  const int64_t taps = lay.taps, nc = lay.nc, dot_max = taps * 128 * 255;
  for (int64_t c = 0; c < nc; ++c) {
    int64_t sum = 0;
    for (int64_t t = 0; t < taps; ++t) {
      const int32_t v = L.weights[static_cast<size_t>(c * taps + t)];
      wt[t * lay.ncp + c] = static_cast<int16_t>(v);
      sum += v;
    }
    const int64_t b = int64_t{L.bias[static_cast<size_t>(c)]} - int64_t{L.in_zero_point} * sum;
    const Requant& r = L.requant[static_cast<size_t>(c)];
    const bool ok = (r.multiplier == 0 || (r.shift >= 32 && r.shift <= 62)) &&
                    (b < 0 ? -b : b) + dot_max < (int64_t{1} << 31);
    bias[c] = b;
    qb[c] = ok ? static_cast<int32_t>(b) : 0;
    qm[c] = r.multiplier;
    qs[c] = ok && r.multiplier != 0 ? r.shift - 32 : 0;
    qr[c] = ok && r.multiplier != 0 ? int64_t{1} << (r.shift - 1) : 0;
    const int64_t slot = c / 16 * 16 + (c % 2) * 8 + (c % 16) / 2;
    em[slot] = ok ? qm[c] : 0;
    er[slot] = qr[c];
    if (c % kChannelBlock == 0) q32[c / kChannelBlock] = 1;
    if (!ok) q32[c / kChannelBlock] = 0;
  }
  return k;
}

__attribute__((always_inline)) inline void grouped_channels(const ConvShape& s, const IntLayer& L,
                                                            const uint8_t* k, const uint8_t* x,
                                                            uint8_t* y, uint8_t* xs) {
  const DepthwiseLayout lay(s);
  const auto* wt = reinterpret_cast<const int16_t*>(k + lay.wt);
  const auto* bias = reinterpret_cast<const int64_t*>(k + lay.bias);
  const auto* qb = reinterpret_cast<const int32_t*>(k + lay.qb);
  const auto* qm = reinterpret_cast<const int32_t*>(k + lay.qm);
  const auto* qs = reinterpret_cast<const int32_t*>(k + lay.qs);
  const auto* qr = reinterpret_cast<const int64_t*>(k + lay.qr);
  const uint8_t* q32 = k + lay.q32;
  const Window2d& w = s.window;
  const int64_t kh = w.kernel_h, kw = w.kernel_w, nc = s.in_c, ncp = lay.ncp;
  const int64_t in_w = s.in_w, oh = s.out_h(), ow = s.out_w(), pix = oh * ow;
  const int64_t wp = in_w + w.pad_left + w.pad_right;
  std::memset(xs, L.in_zero_point, static_cast<size_t>(depthwise_scratch_bytes(s)));
  kernels::to_hwc_u8(s, x, ncp, xs);
  const int32_t zp_out = L.out_zero_point, lo = L.out_lo, hi = L.out_hi;
  for (int64_t c0 = 0; c0 < nc; c0 += kChannelBlock) {
    const int64_t cb = std::min(kChannelBlock, nc - c0);
    const int64_t cbp = padded_channels(cb);  // whole vector steps (weights 0 past nc)
    const bool vector_epilogue = q32[c0 / kChannelBlock] != 0;
    for (int64_t oy = 0; oy < oh; ++oy)
      for (int64_t ox = 0; ox < ow; ++ox) {
        int32_t acc[kChannelBlock] = {};
        for (int64_t ky = 0; ky < kh; ++ky)
          for (int64_t kx = 0; kx < kw; ++kx) {
            const uint8_t* __restrict xr =
                xs +
                ((oy * w.stride_h + ky * w.dilation_h) * wp + ox * w.stride_w + kx * w.dilation_w) *
                    ncp +
                c0;
            const int16_t* __restrict wr = wt + (ky * kw + kx) * ncp + c0;
            for (int64_t c = 0; c < cbp; c += kChannelStep)
              for (int64_t j = c; j < c + kChannelStep; ++j)
                acc[j] += static_cast<int32_t>(wr[j]) * static_cast<int32_t>(xr[j]);
          }
        uint8_t* yp = y + c0 * pix + oy * ow + ox;
        if (!vector_epilogue) {
          for (int64_t c = 0; c < cb; ++c)
            yp[c * pix] = Requantizer(L.requant[static_cast<size_t>(c0 + c)], zp_out, lo,
                                      hi)(bias[c0 + c] + acc[c]);
          continue;
        }
        uint8_t codes[kChannelBlock];
        for (int64_t c = 0; c < cbp; c += kChannelStep)
          for (int64_t j = c; j < c + kChannelStep; ++j) {
            const int64_t t = int64_t{qb[c0 + j] + acc[j]} * qm[c0 + j] + qr[c0 + j];
            const int32_t v = (static_cast<int32_t>(t >> 32) >> qs[c0 + j]) + zp_out;
            codes[j] = static_cast<uint8_t>(v < lo ? lo : v > hi ? hi : v);
          }
        for (int64_t c = 0; c < cb; ++c) yp[c * pix] = codes[c];
      }
  }
}

#ifdef __x86_64__
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// Depthwise by channels on AVX-512 where every 64-channel block takes the int32 epilogue: per 16
// channels and 16 consecutive output pixels, each pixel's sum over taps in one zmm (16 int32
// lanes: u8 × int16 widened, vpmulld), then the AVX-512 conv kernel's own epilogue on the tile
// (requantized in zmm, transposed to channel-major, one masked store per channel: the output
// is CHW). Returns false, computing nothing, where some block does not take it.
__attribute__((target("avx512f,avx512bw,avx512vl"))) bool grouped_channels_zmm(
    const ConvShape& s, const IntLayer& L, const uint8_t* k, const uint8_t* x, uint8_t* y,
    uint8_t* xs, ConvEpilogueFn epilogue) {
  const DepthwiseLayout lay(s);
  const uint8_t* q32 = k + lay.q32;
  for (int64_t b = 0; b < (lay.nc + kChannelBlock - 1) / kChannelBlock; ++b)
    if (!q32[b]) return false;
  const auto* wt = reinterpret_cast<const int16_t*>(k + lay.wt);
  const auto* qb = reinterpret_cast<const int32_t*>(k + lay.qb);
  const auto* qs = reinterpret_cast<const int32_t*>(k + lay.qs);
  const auto* em = reinterpret_cast<const int64_t*>(k + lay.em);
  const auto* er = reinterpret_cast<const int64_t*>(k + lay.er);
  const Window2d& w = s.window;
  const int64_t nc = lay.nc, ncp = lay.ncp, taps = lay.taps;
  const int64_t ow = s.out_w(), pix = s.out_h() * ow;
  const int64_t wp = s.in_w + w.pad_left + w.pad_right;
  std::memset(xs, L.in_zero_point, static_cast<size_t>(depthwise_scratch_bytes(s)));
  kernels::to_hwc_u8(s, x, ncp, xs);
  int64_t tap_off[kMaxPatch];  // taps <= kMaxPatch (resolve)
  for (int64_t ky = 0, t = 0; ky < w.kernel_h; ++ky)
    for (int64_t kx = 0; kx < w.kernel_w; ++kx, ++t)
      tap_off[t] = (ky * w.dilation_h * wp + kx * w.dilation_w) * ncp;
  alignas(64) int32_t acc[16 * 16];
  int64_t ch[16];
  for (int64_t c0 = 0; c0 < nc; c0 += 16) {
    const int64_t noc = std::min<int64_t>(16, nc - c0);
    for (int64_t o = 0; o < 16; ++o) ch[o] = c0 + o;
    const EpilogueQ32 q{qb + c0, qs + c0, em + c0, er + c0, L.out_zero_point, L.out_lo, L.out_hi};
    const int16_t* wc = wt + c0;
    for (int64_t p0 = 0; p0 < pix; p0 += 16) {
      const int64_t np = std::min<int64_t>(16, pix - p0);
      for (int64_t p = 0; p < np; ++p) {
        const int64_t oy = (p0 + p) / ow, ox = (p0 + p) % ow;
        const uint8_t* base = xs + (oy * w.stride_h * wp + ox * w.stride_w) * ncp + c0;
        __m512i a = _mm512_setzero_si512();
        for (int64_t t = 0; t < taps; ++t) {
          const __m512i xv = _mm512_cvtepu8_epi32(
              _mm_loadu_si128(reinterpret_cast<const __m128i*>(base + tap_off[t])));
          const __m512i wv = _mm512_cvtepi16_epi32(
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wc + t * ncp)));
          a = _mm512_add_epi32(a, _mm512_mullo_epi32(xv, wv));
        }
        _mm512_store_si512(acc + p * 16, a);
      }
      epilogue(acc, q, ch, noc, np, pix, y + p0);
    }
  }
  return true;
}
#pragma GCC diagnostic pop
#endif

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

// Channels only: k = pack_depthwise(s, L), scratch of depthwise_scratch_bytes(s).
__attribute__((always_inline)) inline void grouped_any(const ConvShape& s, const IntLayer& L,
                                                       const uint8_t* x, uint8_t* y,
                                                       GroupedMethod m, const uint8_t* k,
                                                       uint8_t* scratch) {
  if (m == GroupedMethod::Channels) return grouped_channels(s, L, k, x, y, scratch);
  if (m == GroupedMethod::Patches) return grouped_patches(s, L, x, y);
  grouped_rows(s, L, x, y);
}

void grouped_portable(const ConvShape& s, const IntLayer& L, const uint8_t* x, uint8_t* y,
                      GroupedMethod m, const uint8_t* k = nullptr, uint8_t* scratch = nullptr) {
  grouped_any(s, L, x, y, m, k, scratch);
}

// The method is chosen at prepare (grouped_conv_step: one step type per method), so the plan
// names it and a run does not re-derive it.
void eval_grouped_rows(const Run& r, const Step& st) {
  grouped_portable(st.conv, r.layers[st.layer], r.in(st), r.out(st), GroupedMethod::Rows);
}
void eval_grouped_patches(const Run& r, const Step& st) {
  grouped_portable(st.conv, r.layers[st.layer], r.in(st), r.out(st), GroupedMethod::Patches);
}

// Channels: its packed constants are consts[table], its scratch the step's second input, a
// buffer of depthwise_scratch_bytes alive for this step only (the memory plan places it).
void eval_grouped_channels(const Run& r, const Step& st) {
  grouped_portable(st.conv, r.layers[st.layer], r.in(st), r.out(st), GroupedMethod::Channels,
                   r.consts[st.table].data(), r.buf(st.in2));
}

const StepType kGroupedRows{Step::Kind::ConvRef, "conv(grouped rows)", eval_grouped_rows};
const StepType kGroupedPatches{Step::Kind::ConvRef, "conv(grouped patches)", eval_grouped_patches};
const StepType kGroupedChannels{Step::Kind::ConvRef, "conv(depthwise channels)",
                                eval_grouped_channels};

#ifdef __x86_64__
__attribute__((target("avx2"))) void grouped_avx2(const ConvShape& s, const IntLayer& L,
                                                  const uint8_t* x, uint8_t* y, GroupedMethod m,
                                                  const uint8_t* k = nullptr,
                                                  uint8_t* scratch = nullptr) {
  grouped_any(s, L, x, y, m, k, scratch);
}

void eval_grouped_rows_avx2(const Run& r, const Step& st) {
  grouped_avx2(st.conv, r.layers[st.layer], r.in(st), r.out(st), GroupedMethod::Rows);
}
void eval_grouped_patches_avx2(const Run& r, const Step& st) {
  grouped_avx2(st.conv, r.layers[st.layer], r.in(st), r.out(st), GroupedMethod::Patches);
}

void eval_grouped_channels_avx2(const Run& r, const Step& st) {
  grouped_avx2(st.conv, r.layers[st.layer], r.in(st), r.out(st), GroupedMethod::Channels,
               r.consts[st.table].data(), r.buf(st.in2));
}

const StepType kGroupedRowsAvx2{Step::Kind::ConvRef, "conv(grouped rows, avx2)",
                                eval_grouped_rows_avx2};
const StepType kGroupedPatchesAvx2{Step::Kind::ConvRef, "conv(grouped patches, avx2)",
                                   eval_grouped_patches_avx2};
const StepType kGroupedChannelsAvx2{Step::Kind::ConvRef, "conv(depthwise channels, avx2)",
                                    eval_grouped_channels_avx2};

// Depthwise by channels compiled for AVX-512 (zmm: 16 int32 lanes over 64-channel runs).
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,prefer-vector-width=512"))) void
channels_loops_avx512(const ConvShape& s, const IntLayer& L, const uint8_t* k, const uint8_t* x,
                      uint8_t* y, uint8_t* scratch) {
  grouped_channels(s, L, k, x, y, scratch);
}

// Depthwise by channels on the AVX-512 tier (k = pack_depthwise(s, L)): the zmm form with the
// conv kernel's epilogue where every block takes the int32 epilogue, else the loops above.
void channels_avx512(const ConvShape& s, const IntLayer& L, const uint8_t* k, const uint8_t* x,
                     uint8_t* y, uint8_t* scratch) {
  static const ConvEpilogueFn epilogue = conv_kernel("avx512vnni_dpbusd").epilogue;
  if (!grouped_channels_zmm(s, L, k, x, y, scratch, epilogue))
    channels_loops_avx512(s, L, k, x, y, scratch);
}

void eval_grouped_channels_avx512(const Run& r, const Step& st) {
  channels_avx512(st.conv, r.layers[st.layer], r.consts[st.table].data(), r.in(st), r.out(st),
                  r.buf(st.in2));
}

const StepType kGroupedChannelsAvx512{Step::Kind::ConvRef, "conv(depthwise channels, avx512)",
                                      eval_grouped_channels_avx512};
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
  const bool channels = m == GroupedMethod::Channels;
  const std::vector<uint8_t> k = channels ? pack_depthwise(s, L) : std::vector<uint8_t>();
  std::vector<uint8_t> scratch(channels ? static_cast<size_t>(depthwise_scratch_bytes(s)) : 0);
#ifdef __x86_64__
  if (isa == Isa::Avx512Vnni && cpu_has_avx512vnni() && channels)
    return channels_avx512(s, L, k.data(), x, y, scratch.data());
  if (isa != Isa::Portable && isa != Isa::Reference && cpu_has_avx2())
    return grouped_avx2(s, L, x, y, m, k.data(), scratch.data());
#endif
  grouped_portable(s, L, x, y, m, k.data(), scratch.data());
}

const StepType* grouped_conv_step(Context& c, Step& st) {
  const ConvShape& s = st.conv;
  if (c.isa == Isa::Reference || s.groups == 1 || !grouped_conv_fits(s)) return nullptr;
  // On AVX-512 depthwise by channels (its zmm form) beats rows at every row length: MnasNet 1.0
  // at 64², rows (32-pixel rows) + channels 339 → 188 µs an image, all by channels.
  const GroupedMethod m = resolve(
      s, c.isa == Isa::Avx512Vnni && depthwise(s) ? GroupedMethod::Channels : GroupedMethod::Auto);
  if (m == GroupedMethod::Channels) {
    st.table = c.add_consts(pack_depthwise(s, c.layer(st.layer)));
    st.in2 = c.new_buffer(depthwise_scratch_bytes(s));
  }
#ifdef __x86_64__
  // AVX-512 for channels only: the rows' and patches' loops run short column ranges, whose
  // scalar remainders grow with the vector width (MnasNet's rows: 172 → 254-295 µs on zmm).
  if (c.isa == Isa::Avx512Vnni && m == GroupedMethod::Channels) return &kGroupedChannelsAvx512;
  if (c.isa != Isa::Portable && cpu_has_avx2())
    return m == GroupedMethod::Channels  ? &kGroupedChannelsAvx2
           : m == GroupedMethod::Patches ? &kGroupedPatchesAvx2
                                         : &kGroupedRowsAvx2;
#endif
  return m == GroupedMethod::Channels  ? &kGroupedChannels
         : m == GroupedMethod::Patches ? &kGroupedPatches
                                       : &kGroupedRows;
}

}  // namespace sq::ops
