// Flags every command that trains accepts (train, qat, quantize, pareto): augmentation, and the
// one line that says what was chosen.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "sigmaquant/pipeline.h"
#include "sigmaquant/train.h"

namespace sqcli {

struct AugmentFlags {
  std::string augment = "auto";  // auto | on | off
  int pad = 2;
  bool no_augment = false;  // = --augment off
  bool flip = false, no_flip = false;
};
void add_augment_flags(CLI::App* cmd, AugmentFlags& f);
// The library's settings from the flags (lr and batch size are the caller's).
sq::TrainingSettings training_settings(const AugmentFlags& f);
// Resolves the augmentation for `data`, sets it on `o` and prints what was chosen (unless quiet).
void apply_augmentation(const AugmentFlags& f, const sq::Dataset& data, sq::TrainOptions& o,
                        bool print);

}  // namespace sqcli
