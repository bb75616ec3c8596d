/* SigmaQuant portable integer runtime: see sq_runtime.h. Plain C99; no allocation; unsigned
 * arithmetic wherever C leaves signed behaviour to the implementation (right shifts of negative
 * values, overflow), so every compiler computes the same integers as the C++ engine. */
#include "sq_runtime.h"

#include <math.h>

/* floor(v / 2^s) for 0 <= s <= 62, without relying on >> of a negative value. */
static int64_t floor_shr(int64_t v, int s) {
  return v >= 0 ? (v >> s) : -(((-(v + 1)) >> s)) - 1;
}

/* Arithmetic right shift of a 64-bit two's complement word held in a uint64_t, 0 <= s <= 63. */
static uint64_t sar64(uint64_t v, int s) {
  uint64_t r = v >> s;
  if ((v >> 63) && s > 0) r |= ~(~(uint64_t)0 >> s);
  return r;
}

static int32_t clamp32(int64_t v, int32_t lo, int32_t hi) {
  return v < lo ? lo : (v > hi ? hi : (int32_t)v);
}

/* The output indices o in [*o0, *o1) whose tap o·stride + off (off = k·dilation − pad_before)
 * lies inside an input axis of n, of the m outputs (an empty range when none does). */
static void tap_range(int32_t off, int32_t stride, int32_t n, int32_t m, int32_t* o0, int32_t* o1) {
  const int32_t last = n - 1 - off; /* the largest o·stride that stays inside */
  *o0 = off < 0 ? (-off + stride - 1) / stride : 0;
  *o1 = last < 0 ? 0 : (last / stride + 1 < m ? last / stride + 1 : m);
  if (*o1 < *o0) *o1 = *o0;
}

int32_t sq_requantize(int64_t acc, sq_rq m) {
  uint64_t a, mm, a0, a1, t0, t1, lo, hi;
  const int neg = (acc < 0) != (m.mult < 0);
  int s = m.shift;
  /* The 128-bit product (hi:lo) = acc · mult, two's complement. */
  a = acc < 0 ? (uint64_t)0 - (uint64_t)acc : (uint64_t)acc;
  mm = m.mult < 0 ? (uint64_t)0 - (uint64_t)(int64_t)m.mult : (uint64_t)m.mult; /* <= 2^31 */
  a0 = a & 0xFFFFFFFFu;
  a1 = a >> 32;
  t0 = a0 * mm; /* each < 2^63 */
  t1 = a1 * mm;
  lo = t0 + (t1 << 32);
  hi = (t1 >> 32) + (lo < t0);
  if (neg) {
    lo = ~lo + 1;
    hi = ~hi + (lo == 0);
  }
  if (s >= 96) return 0; /* |product| < 2^95 <= 2^(s−1): rounds to 0 */
  if (s > 0) {
    /* + 2^(s−1), then an arithmetic shift right by s: round half up. */
    if (s - 1 < 64) {
      const uint64_t l2 = lo + ((uint64_t)1 << (s - 1));
      hi += l2 < lo;
      lo = l2;
    } else {
      hi += (uint64_t)1 << (s - 1 - 64);
    }
    if (s >= 64) {
      lo = sar64(hi, s - 64);
      hi = (hi >> 63) ? ~(uint64_t)0 : 0;
    } else {
      lo = (lo >> s) | (hi << (64 - s));
      hi = sar64(hi, s);
    }
  } else if (s < 0) {
    const int k = -s;
    if (hi == 0 && lo == 0) return 0;
    if (k >= 32) return (hi >> 63) ? INT32_MIN : INT32_MAX; /* |product| >= 2^30 */
    hi = (hi << k) | (lo >> (64 - k));
    lo <<= k;
  }
  if (hi == 0 && lo <= 0x7FFFFFFFu) return (int32_t)lo;
  if (hi == ~(uint64_t)0 && lo >= 0xFFFFFFFF80000000u) return (int32_t)(-(int64_t)(~lo) - 1);
  return (hi >> 63) ? INT32_MIN : INT32_MAX;
}

void sq_unpack_row(const uint8_t* packed, int32_t n, int32_t bits, int8_t* out) {
  int32_t i;
  uint32_t pos = 0;
  if (bits == 0) {
    for (i = 0; i < n; ++i) out[i] = 0;
    return;
  }
  for (i = 0; i < n; ++i, pos += (uint32_t)bits) {
    /* Two bytes cover any element of <= 8 bits at any bit offset. */
    const uint32_t byte = pos >> 3, off = pos & 7u;
    uint32_t word = packed[byte];
    uint32_t code;
    if (off + (uint32_t)bits > 8) word |= (uint32_t)packed[byte + 1] << 8;
    code = (word >> off) & ((1u << bits) - 1u);
    if (bits == 1)
      out[i] = code ? -1 : 1;
    else /* sign-extend the low `bits` bits */
      out[i] = (int8_t)((int32_t)(code ^ (1u << (bits - 1))) - (int32_t)(1u << (bits - 1)));
  }
}

void sq_quantize_input(const float* x, int32_t channels, int32_t plane, const float* mean,
                       const float* std, float scale, int32_t zp, int32_t lo, int32_t hi,
                       uint8_t* y) {
  int32_t c, p;
  for (c = 0; c < channels; ++c) {
    const float m = mean ? mean[c] : 0.0f;
    const float sd = std && std[c] > 0.0f ? std[c] : 1.0f;
    for (p = 0; p < plane; ++p) {
      const float v = mean ? (x[c * plane + p] - m) / sd : x[c * plane + p];
      /* rintf rounds half to even under the default rounding mode, like std::nearbyint. */
      const float q = rintf(v / scale) + (float)zp;
      y[c * plane + p] = (uint8_t)(q < (float)lo ? lo : (q > (float)hi ? hi : (int32_t)q));
    }
  }
}

#if defined(SQ_TARGET_CORTEX_M_DSP)
/* Exported with --c-target cortex-m-dsp: the dot products use the Cortex-M DSP extension's dual
 * 16-bit multiply-accumulate (SMLAD: acc + a.lo·b.lo + a.hi·b.hi), as CMSIS-NN does. Both
 * operands fit 16 bits (x − zp_x in [−255, 255], w in [−128, 127]) and no partial sum can leave
 * int32 (SQ_MAX_TAPS), so every dot product is the same integer as the portable loop's, in any
 * order: the logits stay bit-identical. */
#if !defined(__ARM_FEATURE_DSP)
#error "exported with --c-target cortex-m-dsp: compile for a DSP-extension core (-mcpu=cortex-m4)"
#endif
#include <arm_acle.h>
#include <string.h>

static uint32_t ror8(uint32_t v) { return (v >> 8) | (v << 24); }
/* Two 16-bit lanes: lo in bits 0..15, hi in bits 16..31. */
static int16x2_t pair16(int32_t lo, int32_t hi) {
  return (int16x2_t)(((uint32_t)lo & 0xFFFFu) | ((uint32_t)hi << 16));
}

/* Σ w[i] · (x[i] − zp) over n taps, four at a time: one word of activations and one of weights
 * split into their even and odd bytes (UXTB16 / SXTB16), the zero point subtracted from both
 * lanes at once (SSUB16), two SMLADs. */
static int32_t dot_dsp(const uint8_t* x, const int8_t* w, int32_t n, int32_t zp) {
  const int16x2_t zz = pair16(zp, zp);
  int32_t acc = 0, i = 0;
  for (; i + 4 <= n; i += 4) {
    uint32_t xv, wv;
    memcpy(&xv, x + i, 4); /* an unaligned LDR on ARMv7E-M */
    memcpy(&wv, w + i, 4);
    acc = __smlad(__ssub16((int16x2_t)__uxtb16(xv), zz), __sxtb16((int8x4_t)wv), acc);
    acc = __smlad(__ssub16((int16x2_t)__uxtb16(ror8(xv)), zz), __sxtb16((int8x4_t)ror8(wv)), acc);
  }
  for (; i < n; ++i) acc += w[i] * ((int32_t)x[i] - zp);
  return acc;
}

/* conv_dots (below) with the reduction taken two input channels at a time: for channels i and
 * i+1 at the same (ky, kx) the output pixels whose input lies inside the image are the same, so
 * the portable loop's bounds hold and each pixel costs one SMLAD for two taps. Linear layers
 * (a 1×1 input plane, 1×1 kernel) take dot_dsp over the whole row. */
static void conv_dots_dsp(const sq_conv_layer* L, const uint8_t* x, int32_t oc, const sq_work* w) {
  const int32_t icg = L->in_c / L->groups, kh = L->kernel_h, kw = L->kernel_w;
  const int32_t sh = L->stride_h, sw = L->stride_w, pt = L->pad_top, pl = L->pad_left;
  const int32_t dh = L->dilation_h, dw = L->dilation_w;
  const int32_t pix = L->out_h * L->out_w, plane = L->in_h * L->in_w, zp = L->in_zp;
  const int32_t in_h = L->in_h, in_w = L->in_w, out_h = L->out_h, out_w = L->out_w;
  const int16x2_t zz = pair16(zp, zp);
  const uint8_t* xg = x + (int64_t)(oc / (L->out_c / L->groups)) * icg * plane;
  const int8_t* row = w->row;
  int32_t* dot = w->dot;
  int32_t i, ky, kx, oy, ox, p;
  /* An 8-bit row is already int8 two's complement bytes: read in place (CMSIS-NN's int8 weights);
   * narrower rows are unpacked once per output channel. */
  if (L->w_bits[oc] == 8)
    row = (const int8_t*)(L->w + L->w_off[oc]);
  else
    sq_unpack_row(L->w + L->w_off[oc], icg * kh * kw, L->w_bits[oc], w->row);
  if (plane == 1 && pix == 1 && kh == 1 && kw == 1 && pt == 0 && pl == 0) { /* linear */
    dot[0] = dot_dsp(xg, row, icg, zp);
    return;
  }
  for (p = 0; p < pix; ++p) dot[p] = 0;
  for (i = 0; i < icg; i += 2) {
    const uint8_t* x0 = xg + (int64_t)i * plane;
    const uint8_t* x1 = x0 + plane;
    const int pair = i + 1 < icg;
    for (ky = 0; ky < kh; ++ky) {
      int32_t oy0, oy1, ox0, ox1;
      tap_range(ky * dh - pt, sh, in_h, out_h, &oy0, &oy1);
      for (kx = 0; kx < kw; ++kx) {
        const int32_t w0 = row[(i * kh + ky) * kw + kx];
        const int32_t w1 = pair ? row[((i + 1) * kh + ky) * kw + kx] : 0;
        tap_range(kx * dw - pl, sw, in_w, out_w, &ox0, &ox1);
        if (w0 == 0 && w1 == 0) continue;
        for (oy = oy0; oy < oy1; ++oy) {
          const int32_t base = (oy * sh - pt + ky * dh) * in_w + kx * dw - pl; /* + ox·sw >= 0 */
          int32_t* d = dot + oy * out_w;
          if (!pair) {
            for (ox = ox0; ox < ox1; ++ox) d[ox] += w0 * ((int32_t)x0[base + ox * sw] - zp);
          } else {
            const int16x2_t wp = pair16(w0, w1);
            for (ox = ox0; ox < ox1; ++ox) {
              const int32_t q = base + ox * sw;
              d[ox] = __smlad(__ssub16(pair16(x0[q], x1[q]), zz), wp, d[ox]);
            }
          }
        }
      }
    }
  }
}
#endif

/* dot[p] = Σ w · (x − zp_x) over the taps of every output pixel p of channel oc, weight-stationary:
 * for each tap, the range of output pixels whose input lies inside the image, then a plain loop
 * over them (padded taps are the input zero point, the real value 0: they add nothing). Zero
 * weights (pruned channels, many low-bit ones) are skipped. */
static void conv_dots(const sq_conv_layer* L, const uint8_t* x, int32_t oc, const sq_work* w) {
  const int32_t icg = L->in_c / L->groups, kh = L->kernel_h, kw = L->kernel_w;
  const int32_t sh = L->stride_h, sw = L->stride_w, pt = L->pad_top, pl = L->pad_left;
  const int32_t dh = L->dilation_h, dw = L->dilation_w;
  const int32_t pix = L->out_h * L->out_w, plane = L->in_h * L->in_w;
  const uint8_t* xg = x + (int64_t)(oc / (L->out_c / L->groups)) * icg * plane;
  int32_t* dot = w->dot;
  int32_t i, ky, kx, oy, ox, p;
  if (L->w_bits[oc] == 0) { /* a pruned channel: no weights, no products */
    for (p = 0; p < pix; ++p) dot[p] = 0;
    return;
  }
#if defined(SQ_TARGET_CORTEX_M_DSP)
  conv_dots_dsp(L, x, oc, w);
  return;
#endif
  sq_unpack_row(L->w + L->w_off[oc], icg * kh * kw, L->w_bits[oc], w->row);
  for (p = 0; p < pix; ++p) dot[p] = 0;
  if (kh == 1 && kw == 1 && sh == 1 && sw == 1 && pt == 0 && pl == 0 && L->out_h == L->in_h &&
      L->out_w == L->in_w) { /* 1×1 convolutions and linear layers: no bounds */
    for (i = 0; i < icg; ++i) {
      const uint8_t* xi = xg + (int64_t)i * plane;
      const int32_t wv = w->row[i];
      if (wv == 0) continue;
      for (p = 0; p < pix; ++p) dot[p] += wv * ((int32_t)xi[p] - L->in_zp);
    }
    return;
  }
  for (i = 0; i < icg; ++i) {
    const uint8_t* xi = xg + (int64_t)i * plane;
    for (ky = 0; ky < kh; ++ky) {
      /* Output rows whose input row oy·sh − pt + ky·dh lies in [0, in_h). */
      int32_t oy0, oy1, ox0, ox1;
      tap_range(ky * dh - pt, sh, L->in_h, L->out_h, &oy0, &oy1);
      for (kx = 0; kx < kw; ++kx) {
        const int32_t wv = w->row[(i * kh + ky) * kw + kx];
        tap_range(kx * dw - pl, sw, L->in_w, L->out_w, &ox0, &ox1);
        if (wv == 0) continue;
        for (oy = oy0; oy < oy1; ++oy) {
          const int32_t base = (oy * sh - pt + ky * dh) * L->in_w + kx * dw - pl; /* + ox·sw >= 0 */
          int32_t* d = dot + oy * L->out_w;
          for (ox = ox0; ox < ox1; ++ox) d[ox] += wv * ((int32_t)xi[base + ox * sw] - L->in_zp);
        }
      }
    }
  }
}

void sq_conv_u8(const sq_conv_layer* L, const uint8_t* x, uint8_t* y, const sq_work* w) {
  const int32_t pix = L->out_h * L->out_w;
  int32_t oc, p;
  for (oc = 0; oc < L->out_c; ++oc) {
    const sq_rq m = L->rq[oc];
    if (L->w_bits[oc] == 0) { /* a pruned channel: its bias's output, one value for the plane */
      const uint8_t v = (uint8_t)clamp32((int64_t)sq_requantize(L->bias[oc], m) + L->out_zp, L->lo,
                                         L->hi);
      for (p = 0; p < pix; ++p) *y++ = v;
      continue;
    }
    conv_dots(L, x, oc, w);
    for (p = 0; p < pix; ++p) {
      const int64_t acc = (int64_t)L->bias[oc] + w->dot[p];
      *y++ = (uint8_t)clamp32((int64_t)sq_requantize(acc, m) + L->out_zp, L->lo, L->hi);
    }
  }
}

void sq_conv_f32(const sq_conv_layer* L, const uint8_t* x, float* y, const sq_work* w) {
  const int32_t pix = L->out_h * L->out_w;
  int32_t oc, p;
  for (oc = 0; oc < L->out_c; ++oc) {
    const double unit = (double)L->in_scale * (double)L->w_scale[oc];
    conv_dots(L, x, oc, w);
    for (p = 0; p < pix; ++p) {
      const int64_t acc = (int64_t)L->bias[oc] + w->dot[p];
      if (L->b_float) /* as sq::conv2d_f32_ref, operation for operation */
        *y++ = (float)((double)(acc - L->bias[oc]) * unit + (double)L->b_float[oc]);
      else
        *y++ = (float)((double)acc * unit);
    }
  }
}

void sq_conv_gap_f32(const sq_conv_layer* L, int act, const uint8_t* x, float* y,
                     const sq_work* w) {
  const int32_t pix = L->out_h * L->out_w;
  int32_t oc, p;
  for (oc = 0; oc < L->out_c; ++oc) {
    const double unit = (double)L->in_scale * (double)L->w_scale[oc];
    double sum = 0;
    conv_dots(L, x, oc, w);
    for (p = 0; p < pix; ++p) {
      const int64_t acc = (int64_t)L->bias[oc] + w->dot[p];
      /* as the engine's ConvGapF32 step, operation for operation */
      double v = L->b_float ? (double)(acc - L->bias[oc]) * unit + (double)L->b_float[oc]
                            : (double)acc * unit;
      if (act && v < 0) v = 0;
      if (act == 2 && v > 6) v = 6;
      sum += v;
    }
    y[oc] = (float)(sum / (double)pix);
  }
}

void sq_conv_gap_u8(const sq_conv_layer* L, const sq_conv_gap_params* p, const uint8_t* x,
                    uint8_t* y, const sq_work* w) {
  const int32_t pix = L->out_h * L->out_w;
  int32_t oc, q;
  for (oc = 0; oc < L->out_c; ++oc) {
    int64_t sum = 0;
    conv_dots(L, x, oc, w);
    for (q = 0; q < pix; ++q) {
      /* 2^−8 accumulator units (as the engine) */
      int64_t v = ((int64_t)L->bias[oc] + w->dot[q]) * 256;
      if (p->relu && v < 0) v = 0;
      if (p->cap && v > p->cap[oc]) v = p->cap[oc];
      sum += v;
    }
    y[oc] = (uint8_t)clamp32((int64_t)sq_requantize(sum, p->m[oc]) + p->zp_out, p->lo, p->hi);
  }
}

/* The activation of one conv output of channel oc in 2^−8 accumulator units (sq_conv_gap_u8). */
static int64_t gap_value(const sq_conv_layer* L, const sq_conv_gap_params* p, int32_t oc,
                         int32_t dot) {
  int64_t v = ((int64_t)L->bias[oc] + dot) * 256;
  if (p->relu && v < 0) v = 0;
  if (p->cap && v > p->cap[oc]) v = p->cap[oc];
  return v;
}

void sq_conv_avgpool_u8(const sq_conv_layer* L, const sq_conv_gap_params* p,
                        const sq_pool_shape* s, const uint8_t* x, uint8_t* y, const sq_work* w) {
  int32_t oc, oy, ox, ky, kx;
  for (oc = 0; oc < L->out_c; ++oc) {
    conv_dots(L, x, oc, w);
    for (oy = 0; oy < s->out_h; ++oy)
      for (ox = 0; ox < s->out_w; ++ox) {
        int64_t sum = 0;
        for (ky = 0; ky < s->kernel_h; ++ky)
          for (kx = 0; kx < s->kernel_w; ++kx) {
            const int32_t iy = oy * s->stride_h - s->pad_top + ky;
            const int32_t ix = ox * s->stride_w - s->pad_left + kx;
            if (iy < 0 || iy >= s->in_h || ix < 0 || ix >= s->in_w) continue;
            sum += gap_value(L, p, oc, w->dot[iy * s->in_w + ix]);
          }
        *y++ = (uint8_t)clamp32((int64_t)sq_requantize(sum, p->m[oc]) + p->zp_out, p->lo, p->hi);
      }
  }
}

void sq_add_u8(const sq_add_params* p, const uint8_t* a, const uint8_t* b, int32_t n, uint8_t* y) {
  int32_t i;
  for (i = 0; i < n; ++i) {
    if (p->ta) {
      const int64_t t = p->ta[a[i]] + p->tb[b[i]];
      int32_t q = p->lo, step;
      for (step = 128; step > 0; step >>= 1)
        if (q + step <= p->hi && t >= p->thr[q + step]) q += step;
      y[i] = (uint8_t)q;
    } else {
      const int64_t ta = sq_requantize(((int64_t)a[i] - p->zp_a) * 65536, p->m_a);
      const int64_t tb = sq_requantize(((int64_t)b[i] - p->zp_b) * 65536, p->m_b);
      y[i] = (uint8_t)clamp32(floor_shr(ta + tb + 32768, 16) + p->zp_out, p->lo, p->hi);
    }
  }
}

void sq_mul_u8(const sq_mul_params* p, const uint8_t* a, const uint8_t* b, int32_t n, uint8_t* y) {
  int32_t i;
  for (i = 0; i < n; ++i) {
    const int64_t prod = ((int64_t)a[i] - p->zp_a) * ((int64_t)b[i / p->per] - p->zp_b);
    y[i] = (uint8_t)clamp32((int64_t)sq_requantize(prod, p->m) + p->zp_out, p->lo, p->hi);
  }
}

void sq_channel_shuffle_u8(int32_t c, int32_t groups, int32_t plane, const uint8_t* x, uint8_t* y) {
  const int32_t per = c / groups;
  int32_t i, j, k;
  for (i = 0; i < groups; ++i)
    for (j = 0; j < per; ++j)
      for (k = 0; k < plane; ++k)
        y[((int64_t)j * groups + i) * plane + k] = x[((int64_t)i * per + j) * plane + k];
}

void sq_maxpool_u8(const sq_pool_shape* s, const uint8_t* x, uint8_t* y) {
  int32_t c, oy, ox, ky, kx;
  for (c = 0; c < s->c; ++c)
    for (oy = 0; oy < s->out_h; ++oy)
      for (ox = 0; ox < s->out_w; ++ox) {
        int32_t m = 0;
        for (ky = 0; ky < s->kernel_h; ++ky)
          for (kx = 0; kx < s->kernel_w; ++kx) {
            const int32_t iy = oy * s->stride_h - s->pad_top + ky;
            const int32_t ix = ox * s->stride_w - s->pad_left + kx;
            if (iy < 0 || iy >= s->in_h || ix < 0 || ix >= s->in_w) continue;
            if (x[((int64_t)c * s->in_h + iy) * s->in_w + ix] > m)
              m = x[((int64_t)c * s->in_h + iy) * s->in_w + ix];
          }
        y[((int64_t)c * s->out_h + oy) * s->out_w + ox] = (uint8_t)m;
      }
}

static uint8_t rescale1(const sq_avgpool_params* p, int64_t sum) {
  return (uint8_t)clamp32((int64_t)sq_requantize(sum, p->m) + p->zp_out, p->lo, p->hi);
}

void sq_avgpool_u8(const sq_pool_shape* s, const sq_avgpool_params* p, const uint8_t* x,
                   uint8_t* y) {
  int32_t c, oy, ox, ky, kx;
  for (c = 0; c < s->c; ++c)
    for (oy = 0; oy < s->out_h; ++oy)
      for (ox = 0; ox < s->out_w; ++ox) {
        int64_t sum = 0; /* padded taps are x = zp_in: they add 0 but count in the window */
        for (ky = 0; ky < s->kernel_h; ++ky)
          for (kx = 0; kx < s->kernel_w; ++kx) {
            const int32_t iy = oy * s->stride_h - s->pad_top + ky;
            const int32_t ix = ox * s->stride_w - s->pad_left + kx;
            if (iy < 0 || iy >= s->in_h || ix < 0 || ix >= s->in_w) continue;
            sum += (int64_t)x[((int64_t)c * s->in_h + iy) * s->in_w + ix] - p->zp_in;
          }
        y[((int64_t)c * s->out_h + oy) * s->out_w + ox] = rescale1(p, sum);
      }
}

void sq_global_avgpool_u8(int32_t c, int32_t hw, const sq_avgpool_params* p, const uint8_t* x,
                          uint8_t* y) {
  int32_t ch, i;
  for (ch = 0; ch < c; ++ch) {
    int64_t sum = 0;
    for (i = 0; i < hw; ++i) sum += (int64_t)x[(int64_t)ch * hw + i] - p->zp_in;
    y[ch] = rescale1(p, sum);
  }
}

void sq_lut_u8(const uint8_t* table, const uint8_t* x, int32_t n, uint8_t* y) {
  int32_t i;
  for (i = 0; i < n; ++i) y[i] = table[x[i]];
}

void sq_channel_lut_u8(const uint8_t* tables, int32_t c, int32_t plane, const uint8_t* x,
                       uint8_t* y) {
  int32_t ch, i;
  for (ch = 0; ch < c; ++ch) {
    const uint8_t* t = tables + ch * 256;
    for (i = 0; i < plane; ++i) y[ch * plane + i] = t[x[ch * plane + i]];
  }
}
