// Training and evaluation of an already-built GraphModule (FP32 or with simulated quantization).
// `train()` and `qat()` are thin wrappers that build the module and say how a checkpoint
// snapshots and restores it.
#pragma once

#include <functional>
#include <random>
#include <vector>

#include "graph_module.h"
#include "sigmaquant/graph_io.h"
#include "sigmaquant/train.h"

namespace sq {

// A seeded permutation of 0..n-1 (Fisher–Yates with our own RNG: std::shuffle's algorithm is
// library-specific).
std::vector<int64_t> permutation(int64_t n, uint64_t seed);

// Builds one normalized (and optionally augmented) batch of d on the CPU, with g's input
// statistics.
struct Batcher {
  const Dataset& d;
  const Graph& g;
  torch::Tensor images(const int64_t* idx, int64_t n, std::mt19937_64* aug_rng, int pad,
                       bool flip) const;
  torch::Tensor labels(const int64_t* idx, int64_t n) const;
};

struct CheckpointHooks {
  std::function<GraphFile()> snapshot;                  // the model as a file (weights, quant)
  std::function<void(const GraphFile&)> restore;        // load it back into the module
};

TrainResult train_module(GraphModule& m, const Dataset& train, const Dataset* val,
                         const TrainOptions& o, const CheckpointHooks& hooks);
EvalResult evaluate_module(GraphModule& m, const Dataset& data, const EvalOptions& o);
// Logits (row-major n x classes) of samples [0, n) (n <= 0: all), on the CPU.
std::vector<float> predict_module(GraphModule& m, const Dataset& data, int64_t n);
// Samples [first, first + n) of d, normalized with g's input statistics, as N x C x H x W.
torch::Tensor normalized_batch(const Dataset& d, const Graph& g, int64_t first, int64_t n);

}  // namespace sq
