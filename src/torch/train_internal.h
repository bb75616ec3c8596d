// Training and evaluation of an already-built GraphModule (FP32 or with simulated quantization).
// `train()` and `qat()` are thin wrappers that build the module and say how a checkpoint
// snapshots and restores it.
#pragma once

#include <functional>

#include "graph_module.h"
#include "sigmaquant/graph_io.h"
#include "sigmaquant/train.h"

namespace sq {

struct CheckpointHooks {
  std::function<GraphFile()> snapshot;                  // the model as a file (weights, quant)
  std::function<void(const GraphFile&)> restore;        // load it back into the module
};

TrainResult train_module(GraphModule& m, const Dataset& train, const Dataset* val,
                         const TrainOptions& o, const CheckpointHooks& hooks);
EvalResult evaluate_module(GraphModule& m, const Dataset& data, const EvalOptions& o);

}  // namespace sq
