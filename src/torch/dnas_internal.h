// The differentiable search's quantizer (not installed): exposed for the tests of the
// regulariser's gradients, the temperature schedule and the argmax.
#pragma once

#include <torch/torch.h>

#include <map>
#include <vector>

#include "fake_quant.h"
#include "sigmaquant/dnas.h"
#include "sigmaquant/qmodel.h"

namespace sq {

// Weights: W_hat_c = sum_p theta_{p,c} Q_p(W_c), Q_p symmetric per channel with max|W_c| scales
// (STE through the rounding), Q_0 = 0, Q_1 = sign x mean|W_c|. Activations: x_hat = sum_a
// theta_a Q_a(x); after a ReLU (unsigned range) Q_a is PACT with one learned clip shared by all
// widths, otherwise the calibrated 8-bit range re-divided at a bits. theta = softmax(alpha / tau).
class DnasHook : public QuantHook {
 public:
  // qm8: the 8-bit model of the same (folded) graph: its quantization points and ranges.
  DnasHook(const DnasSpace& s, const QuantModel& qm8, double init_preference, double tau0 = 5);

  bool quantizes_weight(int node) const override { return layer_of_node_.count(node) > 0; }
  bool quantizes_act(int node) const override { return acts_.count(node) > 0; }
  torch::Tensor weight(int node, const torch::Tensor& w) override;
  torch::Tensor act(int node, const torch::Tensor& x) override;

  double tau() const { return tau_; }
  void set_tau(double t) { tau_ = t; }
  std::vector<torch::Tensor> alphas() const;  // the architecture parameters
  bool is_alpha(const torch::Tensor& t) const;
  torch::Tensor& alpha_w(int layer) { return alpha_w_[layer]; }  // [widths, choices]
  torch::Tensor& alpha_a(int point) { return alpha_a_[point]; }  // [widths]
  torch::Tensor theta_w(int layer) const;
  torch::Tensor theta_a(int point) const;
  // R(theta) (a double scalar), differentiable in alpha: the expected normalised cost (Cost), or
  // the sum of each metric's expected excess over its budget (Excess; include/sigmaquant/dnas.h).
  torch::Tensor regulariser(const DnasCostTable& t, DnasPenalty p = DnasPenalty::Cost) const;
  DnasChoice argmax() const;
  // theta as plain numbers: w[layer][choice][width], a[point][width] (the repair step's scores).
  void scores(std::vector<std::vector<std::vector<double>>>& w,
              std::vector<std::vector<double>>& a) const;

 private:
  struct Act {
    int point = -1;  // -1: not searched
    std::vector<int> widths;
    double lo = 0, hi = 0;
    bool unsigned_range = true;
    torch::Tensor clip;  // PACT clip (unsigned points)
  };
  DnasSpace space_;
  double tau_;
  std::map<int, int> layer_of_node_;
  std::vector<torch::Tensor> alpha_w_, alpha_a_;
  std::map<int, Act> acts_;
};

}  // namespace sq
