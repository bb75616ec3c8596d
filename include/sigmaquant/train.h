// Training and evaluation of IR graphs (implemented with LibTorch in src/torch/; this header is
// torch-free so that the command-line program and other callers do not pay for LibTorch headers).
//
//   sq::Graph g = sq::make_zoo_model("resnet20", {1, 28, 28}, 10);
//   sq::TrainOptions o;  o.epochs = 30;  o.checkpoint = "runs/r20.ckpt";
//   sq::TrainResult r = sq::train(g, data.train, &val, o);   // g now holds the trained weights
//   sq::EvalResult e = sq::evaluate(g, data.test, {});
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "sigmaquant/data.h"
#include "sigmaquant/distributed.h"
#include "sigmaquant/graph.h"

namespace sq {

// Process-wide runtime set-up: LibTorch's intra-op threads, deterministic algorithms, and glibc
// malloc tuning (large tensors otherwise page-fault on every step: ~2x per epoch measured here).
void configure_runtime(int threads, bool deterministic = true);

struct TrainOptions {
  int epochs = 10;
  int64_t batch_size = 128;
  std::string optimizer = "sgd";  // "sgd" (Nesterov momentum) | "adam"
  double lr = 0.1;
  double momentum = 0.9;
  double weight_decay = 5e-4;
  std::string schedule = "cosine";  // "cosine" | "constant"
  int warmup_epochs = 0;
  uint64_t seed = 1;
  bool augment = true;       // random shift (pad) and, if flip, horizontal flip
  int augment_pad = 2;
  bool augment_flip = true;
  std::string device = "cpu";  // "cpu" | "cuda" (when LibTorch was built with CUDA)
  std::string checkpoint;      // written atomically after every epoch ("" = none)
  bool resume = false;         // continue from `checkpoint` if it exists
  int stop_after_epoch = 0;    // > 0: return after this epoch (checkpoint written), to train in
                               // slices; the schedule still spans `epochs`
  bool progress = true;        // progress bar on stderr
  bool record_step_losses = false;
  int64_t eval_batch_size = 512;
  std::string label = "epoch";  // progress-bar label
  // Data parallelism (include/sigmaquant/distributed.h; nullptr: one process). batch_size is then
  // per rank: the global batch is batch_size x world size, and rank r trains on positions
  // [r * batch_size, (r + 1) * batch_size) of every global batch of the epoch's permutation (the
  // same permutation on every rank), so a run on W ranks sees the batches of a one-process run
  // with batch_size x W. lr is used as given (no scaling with the world size). Only rank 0
  // writes the checkpoint; a resume reads rank 0's.
  std::shared_ptr<DistContext> dist;
  // With dist: batch norm normalises with the global batch's statistics (every rank's share
  // together; sums all-reduced in the forward pass, and in the backward pass for the gradient),
  // and the running statistics stay equal on every rank, so W ranks train like one process with
  // the W-times larger batch. false: each rank's own share (torch's DDP without SyncBatchNorm).
  bool sync_bn = false;
  // Memory a training step may use: 0 = what the machine has (MemAvailable, or the cgroup's limit
  // when lower), > 0 = this many bytes for the whole process, < 0 = no check. A batch whose step
  // would not fit is refused before training starts, naming the largest batch that fits (one
  // process on the CPU; not checked for data-parallel runs or on a GPU).
  int64_t memory_limit = 0;
};

struct EpochStats {
  int epoch = 0;  // 1-based
  double lr = 0;
  double train_loss = 0;
  double train_accuracy = 0;  // on the (augmented) training batches
  double val_accuracy = -1;   // -1 when there is no validation set
  double seconds = 0;
  double images_per_second = 0;
};

struct TrainResult {
  std::vector<EpochStats> epochs;   // including the ones restored from a checkpoint
  std::vector<double> step_losses;  // when record_step_losses
  int resumed_from_epoch = 0;       // 0: started fresh
};

// Trains g in place. When `val` is non-null, its accuracy is reported after each epoch.
// Sets g.input_mean / g.input_std from `train` unless already set.
TrainResult train(Graph& g, const Dataset& train, const Dataset* val, const TrainOptions& opts);

struct EvalOptions {
  int64_t batch_size = 512;
  std::string device = "cpu";
  bool progress = false;
  // Data parallel: each rank evaluates its contiguous share of the images and the counts are
  // all-reduced, so every rank returns the same figures (the model must be the same on every
  // rank: parameters and batch-norm statistics). nullptr: every image here.
  DistContext* dist = nullptr;
};
struct EvalResult {
  int64_t samples = 0;
  double accuracy = 0;  // top-1, in [0, 1]
  double loss = 0;      // mean cross-entropy
  double seconds = 0;
  double images_per_second = 0;
};
EvalResult evaluate(const Graph& g, const Dataset& data, const EvalOptions& opts = {});
// LibTorch FP32 inference throughput (images/s) over data in batches of `batch`, after a warm-up
// batch, on `threads` threads used one of two ways (docs/engine.md, "Fair baselines"): split =
// false, one forward of each batch on `threads` intra-op (OpenMP) threads; split = true,
// `threads` threads each forwarding its contiguous share in batches of batch/threads on one
// intra-op thread — no OpenMP team, so no thread waits at a barrier for another (the engine's
// way of using threads; wall time of the whole set). Sets the calling thread's intra-op count.
double inference_throughput(const Graph& g, const Dataset& data, int64_t batch, int threads,
                            bool split);

// Logits of the model for samples [0, n) of data (n <= 0: all), row-major n x classes.
std::vector<float> predict(const Graph& g, const Dataset& data, int64_t n = 0);

// A memory size as users write it: 512M, 16G, 16GiB, 1.5T (binary units), a plain byte count,
// "auto" (0: what the machine has) or "off" (-1: no check) — TrainOptions::memory_limit's values.
// `where` names the flag or field in the error.
int64_t parse_memory_size(const std::string& s, const std::string& where);
// What a training step of g on d with options o needs (src/torch/memory_check.cpp): measured on
// two small batches (live tensor bytes, linear in the batch, times an allowance for what the
// process holds besides tensors), plus the optimizer's state.
struct MemoryEstimate {
  double per_image = 0;    // bytes per image of the batch
  double fixed = 0;        // bytes whatever the batch: gradients, optimizer state, the rest
  int64_t available = -1;  // available_memory_bytes(o.memory_limit); -1 unknown
  double bytes(int64_t batch) const { return fixed + per_image * static_cast<double>(batch); }
  // The largest batch whose step fits in `available` (0: not even one image; -1: unknown).
  int64_t largest_batch() const;
};
MemoryEstimate estimate_training_memory(const Graph& g, const Dataset& d, const TrainOptions& o);
// Bytes the process can still use: `limit` (> 0) less what it holds now, or (limit 0) the
// machine's MemAvailable, capped by the cgroup's limit; both plus the freed memory malloc keeps
// for reuse. -1 when unknown.
int64_t available_memory_bytes(int64_t limit = 0);

}  // namespace sq
