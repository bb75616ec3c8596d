#include "sync_batchnorm.h"

#include "distributed_internal.h"
#include "sigmaquant/error.h"

namespace sq {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Sum over the ranks, differentiable: d(global loss)/d(local) = sum over ranks of
// d(rank's loss)/d(global), i.e. the all-reduced incoming gradient.
struct AllReduceSum : public torch::autograd::Function<AllReduceSum> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& local, int64_t dist,
                               const std::string& what) {
    ctx->saved_data["dist"] = dist;
    ctx->saved_data["what"] = what;
    torch::Tensor s = local.detach().contiguous().clone();
    reinterpret_cast<DistContext*>(dist)->allreduce(s, what);
    return s;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    auto* dist = reinterpret_cast<DistContext*>(ctx->saved_data["dist"].toInt());
    torch::Tensor g = grad[0].contiguous().clone();
    dist->allreduce(g, ctx->saved_data["what"].toStringRef() + " (backward)");
    return {g, torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor sync_batch_norm(const torch::Tensor& x, const torch::Tensor& weight,
                              const torch::Tensor& bias, torch::Tensor& running_mean,
                              torch::Tensor& running_var, double momentum, double eps,
                              DistContext& dist, bool contributes, const std::string& name) {
  if (x.dim() < 2)
    fail("batch norm '{}': expected N x C (x ...) inputs, got {} dims", name, x.dim());
  const int64_t c = x.size(1);
  std::vector<int64_t> dims{0}, shape(static_cast<size_t>(x.dim()), 1);
  for (int64_t d = 2; d < x.dim(); ++d) dims.push_back(d);
  shape[1] = c;
  const torch::Tensor xd = x.to(torch::kDouble);
  const double count = contributes ? static_cast<double>(x.numel() / std::max<int64_t>(1, c)) : 0;
  torch::Tensor local =
      torch::cat({xd.sum(dims), (xd * xd).sum(dims), torch::full({1}, count, xd.options())});
  if (!contributes) local = local * 0.0;
  const torch::Tensor global =
      AllReduceSum::apply(local, reinterpret_cast<int64_t>(&dist),
                          fmt::format("rank {}: synchronised batch norm '{}'", dist.rank(), name));
  const double n = global[2 * c].item<double>();
  if (n <= 1)
    fail("batch norm '{}': {} value(s) per channel in the global batch; training needs more", name,
         n);
  const torch::Tensor mean = global.slice(0, 0, c) / n;
  const torch::Tensor var = (global.slice(0, c, 2 * c) / n - mean * mean).clamp_min(0);
  const torch::Tensor invstd = (var + eps).rsqrt();
  {
    torch::NoGradGuard ng;
    running_mean.mul_(1 - momentum).add_(mean.to(running_mean.scalar_type()), momentum);
    running_var.mul_(1 - momentum)
        .add_((var * (n / (n - 1))).to(running_var.scalar_type()), momentum);
  }
  const auto f = x.scalar_type();
  return (x - mean.to(f).view(shape)) * (invstd.to(f) * weight).view(shape) + bias.view(shape);
}

}  // namespace sq
