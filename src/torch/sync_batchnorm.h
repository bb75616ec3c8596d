// Synchronised batch normalisation for data-parallel training (--sync-bn): the batch statistics
// of a training step are those of the global batch (every rank's share together), as torch's
// SyncBatchNorm computes them, and the backward pass is the one of the global batch.
//
// How: each rank sums x and x^2 per channel (in double: var = E[x^2] - mean^2 cancels otherwise)
// and counts its values; one all-reduce makes the global sums, from which mean and variance
// follow with ordinary differentiable ops. The all-reduce itself is an autograd function whose
// backward all-reduces the incoming gradient (the global sums are the sum of every rank's local
// sums, and the global loss the sum of every rank's loss), so autograd produces the global
// batch's gradient of x: in torch's SyncBatchNorm terms, the all-reduced sum_dy and sum_dy_xmu.
// The weight and bias gradients stay local and are reduced with the other parameters.
#pragma once

#include <torch/torch.h>

#include <string>

namespace sq {

class DistContext;

// y = batch_norm(x) over the global batch (training mode), updating the running statistics
// (momentum, unbiased variance) with the global mean and variance: equal on every rank. x: N x C
// (x ...). `contributes` false: this rank's x counts for nothing (a rank with no images runs the
// step on a blank one so that it takes part in every collective in the same order).
torch::Tensor sync_batch_norm(const torch::Tensor& x, const torch::Tensor& weight,
                              const torch::Tensor& bias, torch::Tensor& running_mean,
                              torch::Tensor& running_var, double momentum, double eps,
                              DistContext& dist, bool contributes, const std::string& name);

}  // namespace sq
