/* SigmaQuant portable integer runtime (C99, no allocation, no floating point after the input).
 *
 * Written by `sigmaquant export --format c` next to model.h / model_data.c, and identical for
 * every model: model_data.c holds the constants and calls these kernels in order. The arithmetic is
 * the integer engine's (docs/quantization.md, "Integer arithmetic"; docs/engine.md):
 *
 *   activations   uint8 codes of an affine quantizer, value = scale · (q − zero_point), CHW
 *   weights       per output channel bit-packed at its own width (sq_unpack_row)
 *   conv/linear   acc = bias[c] + Σ w · (x − zp_x)          (int64)
 *                 y   = clamp(requantize(acc, M[c]) + zp_out, lo, hi)
 *   requantize    (acc · mult + offset + 2^(shift−1)) >> shift   (exact 128-bit product, round
 *                                                   half up, saturating to int32; offset: the part
 *                                                   of the float bias the int32 bias cannot hold)
 *   logits        (acc − bias[c]) · s_x · s_w[c] + b_float[c]     (double, then float)
 *
 * With SQ_TARGET_CORTEX_M_DSP defined (`export --c-target cortex-m-dsp` writes it at the top of
 * sq_runtime.c) the conv/linear dot products use the Cortex-M DSP extension (SMLAD); the integers
 * are the same (docs/mcu.md). */
#ifndef SQ_RUNTIME_H
#define SQ_RUNTIME_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A fixed-point multiplier M ≈ mult · 2^(−shift), mult in [2^30, 2^31) (or 0 for M = 0). */
typedef struct {
  int32_t mult;
  int32_t shift;
} sq_rq;

/* acc · mult · 2^(−shift) rounded half up (towards +inf) and saturated to int32, exactly like
 * sq::requantize. */
int32_t sq_requantize(int64_t acc, sq_rq m);

/* Unpacks n weights of one packed row (little-endian bit stream, least significant bit first;
 * bits 2..8: two's complement; bits 1: 0 -> +1, 1 -> -1; bits 0: all zero). */
void sq_unpack_row(const uint8_t* packed, int32_t n, int32_t bits, int8_t* out);

/* x' = (x − mean[c]) / std[c] (std <= 0 counts as 1; skipped if mean is NULL), then
 * q = clamp(rint(x' / scale) + zp, lo, hi) in float — the input quantization point. */
void sq_quantize_input(const float* x, int32_t channels, int32_t plane, const float* mean,
                       const float* std, float scale, int32_t zp, int32_t lo, int32_t hi,
                       uint8_t* y);

/* A convolution (groups >= 1, depthwise when groups = in_c) or a linear layer (a 1×1 conv over a
 * 1×1 image). Row r of the weights ([out_c][in_c/groups][kernel_h][kernel_w]) is w + w_off[r],
 * packed at w_bits[r] bits. Output pixel (oy, ox) reads input row oy·stride_h − pad_top +
 * ky·dilation_h and column ox·stride_w − pad_left + kx·dilation_w (outside the input: the
 * padding); the padding after the input (bottom, right) is implied by out_h, out_w. */
typedef struct {
  int32_t in_c, in_h, in_w, out_c, out_h, out_w;
  int32_t kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w;
  int32_t groups;
  int32_t in_zp;
  const uint8_t* w;
  const uint32_t* w_off;
  const uint8_t* w_bits;
  const int32_t* bias; /* in units of s_x · s_w[c] */
  const sq_rq* rq;     /* uint8 output: per channel; NULL for a float output */
  int32_t out_zp, lo, hi;
  /* Float output: y = (acc − bias[c]) · in_scale · w_scale[c] + b_float[c] (the float bias
   * exactly, the int32 bias's rounding undone), in double; y = acc · in_scale · w_scale[c] when
   * b_float is NULL. */
  float in_scale;
  const float* w_scale;
  const float* b_float;
} sq_conv_layer;

/* Scratch of the conv kernels: one output channel's unpacked weights (at least
 * (in_c / groups) · kernel_h · kernel_w entries) and its int32 dot products (at least
 * out_h · out_w). The reduction length (in_c / groups) · kernel_h · kernel_w must not exceed
 * SQ_MAX_TAPS, so that no dot product
 * can overflow int32 (255 · 128 · SQ_MAX_TAPS < 2^31). */
#define SQ_MAX_TAPS 65793
typedef struct {
  int8_t* row;
  int32_t* dot;
} sq_work;

void sq_conv_u8(const sq_conv_layer* L, const uint8_t* x, uint8_t* y, const sq_work* w);
void sq_conv_f32(const sq_conv_layer* L, const uint8_t* x, float* y, const sq_work* w);
/* The output layer as conv → ReLU (act 1) or ReLU6 (act 2) or nothing (0) → global average
 * pooling: y[c] = mean over the plane of act(sq_conv_f32's value), summed in double, one float
 * per channel (SqueezeNet's classifier). */
void sq_conv_gap_f32(const sq_conv_layer* L, int act, const uint8_t* x, float* y,
                     const sq_work* w);

/* Residual add of two 8-bit operands, exactly as the simulation computes it in float32
 * (engine.h, AddParams): ta, tb hold every operand code's value fl((q − zp)·s) as a multiple of one
 * power of two, so the sum t = ta[a] + tb[b] is exact, and
 *   y = lo + the number of k in lo+1 … hi with t >= thr[k]
 * (thr[k]: the least sum whose simulated code is at least k; non-decreasing in k). ta = 0 (scales
 * too far apart for int64): each operand rescaled in a 2^−16-LSB fixed point, rounded half up once:
 *   t = rq((a − zp_a) · 2^16, m_a) + rq((b − zp_b) · 2^16, m_b)
 *   y = clamp(((t + 2^15) >> 16) + zp_out, lo, hi) */
typedef struct {
  int32_t zp_a, zp_b, zp_out, lo, hi;
  sq_rq m_a, m_b;
  const int64_t *ta, *tb, *thr; /* 256, 256, 257 entries, or all 0 */
} sq_add_params;
void sq_add_u8(const sq_add_params* p, const uint8_t* a, const uint8_t* b, int32_t n, uint8_t* y);

/* Element-wise product (squeeze-excitation's x · gate), b broadcast: element i of a meets
 * element i / per of b:  y = clamp(rq((a − zp_a) · (b − zp_b), m) + zp_out, lo, hi) */
typedef struct {
  int32_t zp_a, zp_b, zp_out, lo, hi, per;
  sq_rq m;
} sq_mul_params;
void sq_mul_u8(const sq_mul_params* p, const uint8_t* a, const uint8_t* b, int32_t n, uint8_t* y);

/* Channel shuffle (ShuffleNet): output channel j·groups + i is input channel i·(c/groups) + j. */
void sq_channel_shuffle_u8(int32_t c, int32_t groups, int32_t plane, const uint8_t* x, uint8_t* y);

/* A pooling window (no dilation): output pixel (oy, ox) reads rows oy·stride_h − pad_top + ky,
 * ky < kernel_h, and columns ox·stride_w − pad_left + kx, kx < kernel_w. */
typedef struct {
  int32_t c, in_h, in_w, out_h, out_w, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left;
} sq_pool_shape;

/* Max pooling on the codes; padded positions are ignored. */
void sq_maxpool_u8(const sq_pool_shape* s, const uint8_t* x, uint8_t* y);

/* Average pooling (count_include_pad: padded taps count as zeros) and global average pooling:
 * an integer window sum rescaled to the output point in one fixed-point multiply,
 *   y = clamp(rq(Σ_window (x − zp_in), m) + zp_out, lo, hi),  m = s_in / (s_out · window) */
typedef struct {
  int32_t zp_in, zp_out, lo, hi;
  sq_rq m;
} sq_avgpool_params;
void sq_avgpool_u8(const sq_pool_shape* s, const sq_avgpool_params* p, const uint8_t* x,
                   uint8_t* y);
void sq_global_avgpool_u8(int32_t c, int32_t hw, const sq_avgpool_params* p, const uint8_t* x,
                          uint8_t* y);

/* conv → ReLU/ReLU6 → global average pooling with no quantization point in between: per channel,
 * v = acc · 2^8 (2^−8 accumulator units), clamped at 0 (relu) and at cap[c] (ReLU6's 6 in the same
 * units), summed over the pixels, y = clamp(rq(Σ v, m[c]) + zp_out, lo, hi). */
typedef struct {
  int32_t relu;
  const int64_t* cap; /* NULL: no upper bound */
  const sq_rq* m;
  int32_t zp_out, lo, hi;
} sq_conv_gap_params;
void sq_conv_gap_u8(const sq_conv_layer* L, const sq_conv_gap_params* p, const uint8_t* x,
                    uint8_t* y, const sq_work* w);

/* conv → ReLU/ReLU6 → average pooling (not global) with no quantization point in between: v as in
 * sq_conv_gap_u8 per conv output pixel, then per window of s (over the conv's output plane; padded
 * taps add 0 and count, m[c] = s_x · s_w[c] / (2^8 · kernel_h · kernel_w · s_out))
 * y = clamp(rq(Σ_window v, m[c]) + zp_out, lo, hi), written [out_c][s->out_h][s->out_w]. */
void sq_conv_avgpool_u8(const sq_conv_layer* L, const sq_conv_gap_params* p,
                        const sq_pool_shape* s, const uint8_t* x, uint8_t* y, const sq_work* w);

/* y[i] = table[x[i]]: a ReLU/ReLU6 on codes, or a rescale from one quantization point to another
 * (the table is built at export time). */
void sq_lut_u8(const uint8_t* table, const uint8_t* x, int32_t n, uint8_t* y);

/* A standalone batchnorm (built at export time: the simulation's batchnorm, the ReLU after it and
 * the output point): channel ch of c, `plane` codes, maps through tables[ch·256 …]. */
void sq_channel_lut_u8(const uint8_t* tables, int32_t c, int32_t plane, const uint8_t* x,
                       uint8_t* y);

#ifdef __cplusplus
}
#endif

#endif /* SQ_RUNTIME_H */
