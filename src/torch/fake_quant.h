// Simulated ("fake") quantization inside the LibTorch executor: weights and activations are
// quantized and dequantized in the forward pass, so training sees the quantization error, while
// gradients pass through the rounding by the straight-through estimator (STE).
//
// Weight modes:  fixed  — scales from the QuantModel (PTQ evaluation)
//                ste    — max|w| scales recomputed every step, STE through round
//                lsq    — learned step size per output channel (Esser et al. 2020), gradient
//                         scaled by 1 / sqrt(weights per channel · qmax)
// Activation modes: fixed — calibrated scale and zero point (torch's fake_quantize_per_tensor_affine)
//                   lsq   — learned scale, fixed zero point
//                   pact  — learned clipping level alpha for unsigned points (Choi et al. 2018);
//                           signed points use lsq
#pragma once

#include <torch/torch.h>

#include <map>
#include <string>

#include "sigmaquant/qmodel.h"

namespace sq {

enum class WeightMode { Fixed, STE, LSQ };
enum class ActMode { Fixed, LSQ, PACT };
WeightMode weight_mode_from_name(const std::string& s);
ActMode act_mode_from_name(const std::string& s);

// What GraphModule asks while it runs the graph: which weights and node outputs are quantized,
// and their simulated quantized values. QuantSim (one width per channel and point) and the
// differentiable search's mixture (src/torch/dnas.cpp) implement it.
class QuantHook : public torch::nn::Module {
 public:
  virtual bool quantizes_weight(int node) const = 0;
  virtual bool quantizes_act(int node) const = 0;
  virtual torch::Tensor weight(int node, const torch::Tensor& w) = 0;
  virtual torch::Tensor act(int node, const torch::Tensor& x) = 0;
  // The bias a weight layer adds, called after weight(node, ·): as given here; QuantSim rounds it
  // to the accumulator's unit s_x · s_w[c] (the int32 bias of every integer runtime).
  virtual torch::Tensor bias(int node, int input_node, const torch::Tensor& b) {
    (void)node, (void)input_node;
    return b;
  }
  // Global batch / this rank's batch in data-parallel training (1 otherwise): LSQ's activation
  // gradient scale 1/sqrt(numel * qmax) counts the global batch's elements, so that W ranks
  // train exactly like one process with the W-times larger batch.
  double batch_factor = 1.0;
};

// The fused CPU activation quantizer's element loops (QuantSim::act on CPU floats), for tests:
// y = (min(max(nearbyint(x / s) + zp, 0), qmax) − zp) · s, and its backward's terms — gx = g inside
// the range, else 0; ts (nullptr: not wanted) = g · (round(x/s) − x/s inside, clamp − zp outside).
// vector: the AVX2 form where the CPU has it (act_fake_quant_has_vector), else the scalar one;
// both give the same bits.
bool act_fake_quant_has_vector();
void act_fake_quant(const float* x, float* y, int64_t n, float s, float zp, float qmax,
                    bool vector);
void act_fake_quant_grad(const float* x, const float* g, float* gx, float* ts, int64_t n, float s,
                         float zp, float qmax, bool vector);

// Rounding with the straight-through estimator: forward round(x), backward identity.
torch::Tensor round_ste(const torch::Tensor& x);

class QuantSim : public QuantHook {
 public:
  // with_acts = false: weights only (used while calibrating the activation ranges).
  QuantSim(const QuantModel& qm, WeightMode wm, ActMode am, bool with_acts = true);

  bool quantizes_weight(int node) const override { return weights_.count(node) > 0; }
  bool quantizes_act(int node) const override { return acts_.count(node) > 0; }
  torch::Tensor weight(int node, const torch::Tensor& w) override;
  torch::Tensor act(int node, const torch::Tensor& x) override;
  // With fixed scales (the quantized model as it runs: evaluation, PTQ, Phase 2's KL):
  // round(b / unit) · unit per output channel, unit = s_x · s_w[c] (s_w = 1 for a pruned
  // channel), s_x the input point's scale, s_w the layer's (fixed) weight scale; the
  // straight-through estimator passes b's gradient. b as given while scales are learned (QAT:
  // see fake_quant.cpp) or when the input is not a quantized point (weights-only calibration).
  torch::Tensor bias(int node, int input_node, const torch::Tensor& b) override;
  // Writes the current (possibly learned) scales into qm.
  void export_to(QuantModel& qm) const;
  // Loads qm's scales into this module's tensors (in place, so optimizer state stays attached).
  void import_from(const QuantModel& qm);

 private:
  struct W {
    torch::Tensor scale;  // [out, 1, ...]: buffer (fixed) or parameter (lsq)
    torch::Tensor qmax;   // [out, 1, ...] float: 2^(b-1)-1 per channel, 0 = pruned
    torch::Tensor binary;  // [out, 1, ...] bool: 1-bit channels (sign quantization)
    bool per_channel = true;
    double grad_scale = 1;
  };
  struct A {
    torch::Tensor scale;  // scalar tensor; parameter in lsq, alpha in pact
    double scale_value = 1;  // the fixed scale, on the host
    int64_t zero_point = 0, qmax = 255;
    bool pact = false;
    double grad_scale = 1;
  };
  WeightMode wm_;
  ActMode am_;
  std::map<int, W> weights_;
  std::map<int, A> acts_;
  std::vector<std::string> names_;
};

}  // namespace sq
