// LibTorch executor of the IR: one torch::nn::Module whose forward() interprets the graph with
// functional ops. Parameters are registered as "n<index>_<param>" (torch names cannot hold '.').
#pragma once

#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "fake_quant.h"
#include "sigmaquant/graph.h"

namespace sq {

class DistContext;

class GraphModule : public torch::nn::Module {
 public:
  explicit GraphModule(const Graph& g);

  // x: N x C x H x W, already normalized. Returns N x classes logits.
  torch::Tensor forward(const torch::Tensor& x);
  // forward() in parts: runs nodes [from, to) on input x over v (one value per node), which must
  // hold every earlier node's output that a node from `from` on reads — what the run up to `from`
  // left there (a value is dropped after its last reader). Copies of v share the tensors, so the
  // rest of the network can run from one cut several times (forward() = run_nodes(x, v, 0, all)).
  void run_nodes(const torch::Tensor& x, std::vector<torch::Tensor>& v, size_t from, size_t to);

  // Copies the current parameters and batchnorm statistics back into g (same structure).
  void export_to(Graph& g) const;
  // Loads parameters from g (same structure) into this module.
  void import_from(const Graph& g);

  // Simulated quantization of weights and activations (nullptr: plain FP32).
  void set_quant(std::shared_ptr<QuantHook> q);
  QuantHook* quant() { return quant_.get(); }
  // Called with every node's output (before activation fake-quant), e.g. to calibrate ranges.
  std::function<void(int, const torch::Tensor&)> observer;

  // Synchronised batch norm (sync_batchnorm.h) in training mode: batch statistics over every
  // rank of `dist` (nullptr: this rank's own batch, as torch::batch_norm). `contributes` false:
  // this rank's batch counts for nothing (a blank stand-in for an empty share).
  void set_sync_bn(DistContext* dist, bool contributes = true) {
    sync_bn_ = dist;
    sync_bn_contributes_ = contributes;
  }

  const Graph& graph() const { return graph_; }
  torch::Tensor& param(int node, const std::string& name) { return params_[node].at(name); }

 private:
  Graph graph_;  // structure (parameters are the torch tensors below)
  std::vector<std::map<std::string, torch::Tensor>> params_;
  std::vector<int> last_use_;
  std::shared_ptr<QuantHook> quant_;  // per node: the last node reading its output (-1: none)
  DistContext* sync_bn_ = nullptr;
  bool sync_bn_contributes_ = true;
};

torch::Tensor to_torch(const Tensor& t);
Tensor from_torch(const torch::Tensor& t);

}  // namespace sq
