// Post-training quantization and quantization-aware training (implemented with LibTorch in
// src/torch/; this header is torch-free).
//
//   sq::BitConfig bits = sq::BitConfig::uniform(g, 8, 8);
//   sq::PtqOptions p;  p.calib = sq::Calib::MSE;
//   sq::QuantModel qm = sq::ptq(g, bits, calib_set, p);     // fold BN, scales, ranges
//   sq::EvalResult r = sq::evaluate_quant(qm, test_set);     // simulated-quantization accuracy
//   sq::qat(qm, train_set, nullptr, train_opts, {});         // fine-tune with fake quantization
#pragma once

#include <string>

#include "sigmaquant/qmodel.h"
#include "sigmaquant/train.h"

namespace sq {

struct PtqOptions {
  Calib calib = Calib::MSE;  // the best of the four on resnet20 W8A8 (docs/results.md)
  double percentile = 99.99;
  int64_t calib_samples = 2048;  // drawn (seeded) from the calibration set
  uint64_t seed = 1;
  bool fold_bn = true;
  bool cle = false;              // cross-layer equalization (after folding)
  bool bias_correction = false;  // remove the mean output shift the weight rounding causes
  int hist_bins = 2048;
  int64_t batch_size = 256;
};

QuantModel ptq(const Graph& fp32, const BitConfig& bits, const Dataset& calib,
               const PtqOptions& o);

EvalResult evaluate_quant(const QuantModel& qm, const Dataset& data, const EvalOptions& o = {});
// Logits of the simulated quantized model for samples [0, n) (n <= 0: all).
std::vector<float> predict_quant(const QuantModel& qm, const Dataset& data, int64_t n = 0);

struct QatOptions {
  std::string weight_mode = "lsq";  // lsq | ste | fixed
  std::string act_mode = "lsq";     // lsq | pact | fixed
};

// Fine-tunes qm's weights (and learned scales) with simulated quantization; qm is updated.
// Checkpoints and --resume work as in train().
TrainResult qat(QuantModel& qm, const Dataset& train, const Dataset* val, const TrainOptions& o,
                const QatOptions& q = {});
// What qat() checks before its first step, on its own: refuses (sq::Error, naming the largest
// batch that fits) QAT of qm at o.batch_size that would not fit in memory (TrainOptions::
// memory_limit). A long pipeline calls it first, so that it fails in seconds rather than at its
// first training step. Nothing for data-parallel runs, other devices or memory_limit < 0.
void check_qat_memory(const QuantModel& qm, const Dataset& train, const TrainOptions& o,
                      const QatOptions& q = {});
// What QAT of qm on `train` with o needs (MemoryEstimate, train.h).
MemoryEstimate estimate_qat_memory(const QuantModel& qm, const Dataset& train,
                                   const TrainOptions& o, const QatOptions& q = {});

}  // namespace sq
