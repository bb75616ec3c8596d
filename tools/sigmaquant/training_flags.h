// Flags every command that trains accepts (train, qat, quantize, pareto): augmentation (and the
// one line that says what was chosen) and the memory a training step may use.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "sigmaquant/pipeline.h"
#include "sigmaquant/train.h"

namespace sqcli {

struct TrainingFlags {
  std::string augment = "auto";  // auto | on | off
  int pad = 2;
  bool no_augment = false;  // = --augment off
  bool flip = false, no_flip = false;
  std::string memory_limit = "auto";  // sq::parse_memory_size
};
void add_training_flags(CLI::App* cmd, TrainingFlags& f);
// The library's settings from the flags (lr and batch size are the caller's).
sq::TrainingSettings training_settings(const TrainingFlags& f);
// Resolves the augmentation for `data`, sets it and the memory limit on `o` and prints what was
// chosen (unless quiet).
void apply_training_flags(const TrainingFlags& f, const sq::Dataset& data, sq::TrainOptions& o,
                          bool print);

}  // namespace sqcli
