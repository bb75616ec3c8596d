/* The Cortex-M DSP kernels against the portable ones, exactly (mcu/kernel_test.sh, docs/mcu.md).
 *
 * sq_runtime.c is compiled twice into this program: once portable with every public symbol
 * renamed ref_* (the oracle: the same loops the host tests check against the C++ engine), once
 * with SQ_TARGET_CORTEX_M_DSP (the SMLAD kernels). Random layers — 1..9 input channels, grouped and
 * depthwise, kernel 1..5 × 1..5, stride 1..3 per axis, padding up to kernel−1 per side, dilation
 * 1..2 per axis, planes 1..12 (1×1: the linear path,
 * 1..70 inputs so that every tail of the 4-wide loop occurs), per-channel weight bits 0..8 with
 * random and extreme weights, random input codes and zero points — run through both. sq_conv_f32
 * with unit scales and no float bias returns each int32 accumulator exactly (< 2^24), so the dot
 * products are compared one by one; sq_conv_u8 and sq_conv_gap_u8 compare the requantized bytes.
 * Prints the first difference and exits 1, else prints the counts and exits 0. */
#include <stdio.h>
#include <string.h>

#include "semihost.h"
#include "sq_runtime.h"

void ref_sq_conv_u8(const sq_conv_layer* L, const uint8_t* x, uint8_t* y, const sq_work* w);
void ref_sq_conv_f32(const sq_conv_layer* L, const uint8_t* x, float* y, const sq_work* w);
void ref_sq_conv_gap_u8(const sq_conv_layer* L, const sq_conv_gap_params* p, const uint8_t* x,
                        uint8_t* y, const sq_work* w);

#define MAX_C 9
#define MAX_HW 12
#define MAX_K 5
#define MAX_OUT 6
#define MAX_LIN 70
/* Output planes: padding up to kernel − 1 makes them larger than the input. */
#define MAX_PIX ((MAX_HW + 2 * MAX_K) * (MAX_HW + 2 * MAX_K))

static uint32_t rng = 12345u;
static uint32_t rnd(void) { /* xorshift32 */
  rng ^= rng << 13;
  rng ^= rng >> 17;
  rng ^= rng << 5;
  return rng;
}
static int32_t range(int32_t lo, int32_t hi) {
  return lo + (int32_t)(rnd() % (uint32_t)(hi - lo + 1));
}

/* Packs n values at `bits` into the runtime's little-endian bit stream (sq_unpack_row's format). */
static void pack(const int8_t* v, int32_t n, int32_t bits, uint8_t* out) {
  int32_t i;
  uint32_t pos = 0;
  memset(out, 0, (size_t)((n * bits + 7) / 8));
  if (bits == 0) return;
  for (i = 0; i < n; ++i, pos += (uint32_t)bits) {
    const uint32_t code =
        bits == 1 ? (v[i] < 0 ? 1u : 0u) : ((uint32_t)(int32_t)v[i] & ((1u << bits) - 1u));
    const uint32_t word = code << (pos & 7u);
    out[pos >> 3] |= (uint8_t)word;
    if ((pos & 7u) + (uint32_t)bits > 8) out[(pos >> 3) + 1] |= (uint8_t)(word >> 8);
  }
}

static int8_t row_ref[MAX_LIN * MAX_K * MAX_K], row_dsp[MAX_LIN * MAX_K * MAX_K];
static int32_t dot_ref[MAX_PIX], dot_dsp[MAX_PIX];
static uint8_t x[MAX_LIN * MAX_HW * MAX_HW];
static uint8_t wpack[MAX_OUT * MAX_LIN * MAX_K * MAX_K];
static uint32_t w_off[MAX_OUT];
static uint8_t w_bits[MAX_OUT];
static int32_t bias[MAX_OUT];
static sq_rq rq[MAX_OUT];
static float w_scale[MAX_OUT];
static int64_t gap_cap[MAX_OUT];
static sq_rq gap_m[MAX_OUT];
static float f_ref[MAX_OUT * MAX_PIX], f_dsp[MAX_OUT * MAX_PIX];
static uint8_t u_ref[MAX_OUT * MAX_PIX], u_dsp[MAX_OUT * MAX_PIX];

static void describe(const sq_conv_layer* L) {
  int32_t c;
  printf(
      "layer: in %ldx%ldx%ld out %ldx%ldx%ld k %ldx%ld s %ld,%ld p %ld,%ld d %ld,%ld groups %ld "
      "zp %ld bits",
      (long)L->in_c, (long)L->in_h, (long)L->in_w, (long)L->out_c, (long)L->out_h, (long)L->out_w,
      (long)L->kernel_h, (long)L->kernel_w, (long)L->stride_h, (long)L->stride_w, (long)L->pad_top,
      (long)L->pad_left, (long)L->dilation_h, (long)L->dilation_w, (long)L->groups, (long)L->in_zp);
  for (c = 0; c < L->out_c; ++c) printf(" %d", L->w_bits[c]);
  printf("\n");
}

/* One random layer through both kernels; returns 0 when everything is equal. */
static int one(long t) {
  sq_conv_layer L;
  sq_conv_gap_params gp;
  sq_work wr, wd;
  int8_t vals[MAX_LIN * MAX_K * MAX_K];
  int32_t c, i, n, off = 0, taps, pix, pad_bottom = 0, pad_right = 0, ext_h, ext_w;
  const int linear = rnd() % 4 == 0;
  memset(&L, 0, sizeof L);
  if (linear) {
    L.in_c = range(1, MAX_LIN);
    L.in_h = L.in_w = 1;
    L.kernel_h = L.kernel_w = 1;
    L.stride_h = L.stride_w = 1;
    L.dilation_h = L.dilation_w = 1;
    L.groups = 1;
    L.out_c = range(1, MAX_OUT);
  } else {
    L.groups = 1;
    L.in_c = range(1, MAX_C);
    L.kernel_h = range(1, MAX_K);
    L.kernel_w = range(1, MAX_K);
    L.stride_h = range(1, 3);
    L.stride_w = range(1, 3);
    L.dilation_h = range(1, 2);
    L.dilation_w = range(1, 2);
    L.pad_top = range(0, L.kernel_h - 1);
    L.pad_left = range(0, L.kernel_w - 1);
    pad_bottom = range(0, L.kernel_h - 1);
    pad_right = range(0, L.kernel_w - 1);
    L.in_h = range(1, MAX_HW);
    L.in_w = range(1, MAX_HW);
    ext_h = L.dilation_h * (L.kernel_h - 1) + 1;
    ext_w = L.dilation_w * (L.kernel_w - 1) + 1;
    if (L.in_h + L.pad_top + pad_bottom < ext_h) L.in_h = ext_h;
    if (L.in_w + L.pad_left + pad_right < ext_w) L.in_w = ext_w;
    switch (rnd() % 3) {
      case 0:
        L.out_c = range(1, MAX_OUT);
        break;
      case 1:
        L.groups = L.out_c = L.in_c > MAX_OUT ? MAX_OUT : L.in_c;
        L.in_c = L.groups;
        break;
      default:
        L.groups = L.in_c % 3 == 0 ? 3 : (L.in_c % 2 == 0 ? 2 : 1);
        L.out_c = L.groups * range(1, MAX_OUT / L.groups);
    }
  }
  ext_h = L.dilation_h * (L.kernel_h - 1) + 1;
  ext_w = L.dilation_w * (L.kernel_w - 1) + 1;
  L.out_h = (L.in_h + L.pad_top + pad_bottom - ext_h) / L.stride_h + 1;
  L.out_w = (L.in_w + L.pad_left + pad_right - ext_w) / L.stride_w + 1;
  L.in_zp = rnd() % 8 == 0 ? 0 : range(0, 255);
  taps = L.in_c / L.groups * L.kernel_h * L.kernel_w;
  pix = L.out_h * L.out_w;
  for (i = 0; i < L.in_c * L.in_h * L.in_w; ++i) x[i] = (uint8_t)(rnd() % 16 == 0 ? 255 : rnd());
  for (c = 0; c < L.out_c; ++c) {
    const int32_t b = range(0, 8);
    const int32_t lo = b <= 1 ? -1 : -(1 << (b - 1)), hi = b <= 1 ? 1 : (1 << (b - 1)) - 1;
    for (i = 0; i < taps; ++i) {
      const uint32_t r = rnd() % 8;
      if (b == 0)
        vals[i] = 0;
      else if (b == 1)
        vals[i] = rnd() & 1 ? 1 : -1;
      else
        vals[i] = (int8_t)(r == 0 ? lo : r == 1 ? hi : r == 2 ? 0 : range(lo, hi));
    }
    w_bits[c] = (uint8_t)b;
    w_off[c] = (uint32_t)off;
    pack(vals, taps, b, wpack + off);
    off += (taps * b + 7) / 8;
    bias[c] = range(-100000, 100000);
    rq[c].mult = (int32_t)(0x40000000u + (rnd() & 0x3FFFFFFFu));
    rq[c].shift = range(30, 44);
    w_scale[c] = 1.0f;
    gap_cap[c] = (int64_t)range(0, 1 << 20) * 256;
    gap_m[c].mult = rq[c].mult;
    gap_m[c].shift = rq[c].shift + 12;
  }
  L.w = wpack;
  L.w_off = w_off;
  L.w_bits = w_bits;
  L.bias = bias;
  L.rq = rq;
  L.out_zp = range(0, 255);
  L.lo = 0;
  L.hi = 255;
  L.in_scale = 1.0f;
  L.w_scale = w_scale;
  L.b_float = 0;
  wr.row = row_ref;
  wr.dot = dot_ref;
  wd.row = row_dsp;
  wd.dot = dot_dsp;
  n = L.out_c * pix;
  /* Dot products, exactly: bias + dot with unit scales and no float bias (< 2^24 in magnitude). */
  ref_sq_conv_f32(&L, x, f_ref, &wr);
  sq_conv_f32(&L, x, f_dsp, &wd);
  for (i = 0; i < n; ++i)
    if (memcmp(&f_ref[i], &f_dsp[i], sizeof(float)) != 0) {
      printf("kernel_test: case %ld: dot product %ld (channel %ld) is %.1f, portable %.1f\n", t,
             (long)i, (long)(i / pix), (double)f_dsp[i], (double)f_ref[i]);
      describe(&L);
      return 1;
    }
  ref_sq_conv_u8(&L, x, u_ref, &wr);
  sq_conv_u8(&L, x, u_dsp, &wd);
  if (memcmp(u_ref, u_dsp, (size_t)n) != 0) {
    printf("kernel_test: case %ld: sq_conv_u8 outputs differ\n", t);
    describe(&L);
    return 1;
  }
  gp.relu = 1;
  gp.cap = rnd() & 1 ? gap_cap : 0;
  gp.m = gap_m;
  gp.zp_out = L.out_zp;
  gp.lo = 0;
  gp.hi = 255;
  ref_sq_conv_gap_u8(&L, &gp, x, u_ref, &wr);
  sq_conv_gap_u8(&L, &gp, x, u_dsp, &wd);
  if (memcmp(u_ref, u_dsp, (size_t)L.out_c) != 0) {
    printf("kernel_test: case %ld: sq_conv_gap_u8 outputs differ\n", t);
    describe(&L);
    return 1;
  }
  return 0;
}

int main(void) {
  char* argv[4];
  const int argc = mcu_cmdline(argv, 4);
  long cases = 2000, t;
  if (argc >= 2 && sscanf(argv[1], "%ld", &cases) != 1) {
    fprintf(stderr, "usage: kernel_test [cases]\n");
    return 2;
  }
  for (t = 0; t < cases; ++t)
    if (one(t) != 0) return 1;
  printf("kernel_test: %ld random layers, DSP kernels equal to the portable ones exactly\n", cases);
  return 0;
}
