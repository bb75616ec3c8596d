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
// Refuses (sq::Error) a training step at `batch` images that would not fit in memory: the step's
// bytes measured on two small batches of d (memory_check.cpp), plus `optimizer_copies` copies of
// the trainable parameters, against available_memory_bytes(memory_limit). Leaves m as it was.
// memory_limit < 0: no check. `what` starts the message ("QAT", "dnas search").
void check_training_memory(GraphModule& m, const Dataset& d, int64_t batch, int optimizer_copies,
                           int64_t memory_limit, const std::string& what);
// Whether trainings with options o are checked: memory_limit >= 0, one process, the CPU.
bool checks_memory(const TrainOptions& o);
// The same for train_module's step with options o (its optimizer's state, batch_size capped at
// the data's size); nothing for data-parallel runs or a device other than the CPU.
void check_training_memory(GraphModule& m, const Dataset& d, const TrainOptions& o,
                           const std::string& what);
// The batch, at most `batch`, for a forward pass without gradients (evaluation, calibration) that
// fits in the machine's available memory: `batch` itself unless it would not fit (then malloc
// goes lean, or the batch shrinks). The results do not depend on the batch.
// memory_limit as TrainOptions::memory_limit (0: the machine's).
int64_t inference_batch(GraphModule& m, const Dataset& d, int64_t batch, int64_t memory_limit = 0);
// The same for another pass in eval mode (the Hessian traces' double backward): `pass(x, y)` on
// a batch of d, measured at 4 and 8 images (it must leave the module as it found it; buffers,
// gradients and LibTorch's RNG are restored around it). `kind` names it in the cache.
int64_t batch_that_fits(
    GraphModule& m, const Dataset& d, int64_t batch, const std::string& kind,
    const std::function<void(const torch::Tensor&, const torch::Tensor&)>& pass);
// The estimate behind both (o.memory_limit gives `available`).
MemoryEstimate estimate_training_memory(GraphModule& m, const Dataset& d, const TrainOptions& o);
// Samples [first, first + n) of d, normalized with g's input statistics, as N x C x H x W.
torch::Tensor normalized_batch(const Dataset& d, const Graph& g, int64_t first, int64_t n);

}  // namespace sq
