#include "training_flags.h"

#include <fmt/format.h>

#include "sigmaquant/error.h"

namespace sqcli {

void add_training_flags(CLI::App* cmd, TrainingFlags& f) {
  cmd->add_option("--augment", f.augment,
                  "data augmentation: auto (shift + flip on fashion-mnist/cifar, shift on mnist, "
                  "none on idx/npy data), on or off")
      ->capture_default_str();
  cmd->add_flag("--no-augment", f.no_augment, "same as --augment off");
  cmd->add_option("--augment-pad", f.pad, "largest random shift in pixels (auto caps it at H/8)")
      ->capture_default_str();
  cmd->add_flag("--flip", f.flip, "random horizontal flips (default: the data set's)");
  cmd->add_flag("--no-flip", f.no_flip, "no random horizontal flips");
  cmd->add_option("--memory-limit", f.memory_limit,
                  "memory training may use (e.g. 16G): a batch whose step would not fit is "
                  "refused before training, naming the largest that fits; auto = what the "
                  "machine (or its cgroup) has, off = no check")
      ->capture_default_str();
}

sq::TrainingSettings training_settings(const TrainingFlags& f) {
  if (f.flip && f.no_flip) sq::fail("--flip and --no-flip contradict each other");
  if (f.pad < 0) sq::fail("--augment-pad {}: must be >= 0", f.pad);
  sq::TrainingSettings t;
  t.augment = f.no_augment ? sq::AugmentMode::Off : sq::parse_augment_mode(f.augment, "--augment");
  t.augment_pad = f.pad;
  t.memory_limit = sq::parse_memory_size(f.memory_limit, "--memory-limit");
  if (f.flip) t.flip = true;
  if (f.no_flip) t.flip = false;
  return t;
}

void apply_training_flags(const TrainingFlags& f, const sq::Dataset& data, sq::TrainOptions& o,
                          bool print) {
  const sq::TrainingSettings t = training_settings(f);
  sq::Augmentation a = sq::resolve_augmentation(t, data);
  sq::apply(a, o);
  o.memory_limit = t.memory_limit;
  if (print) fmt::print(stderr, "{}\n", sq::describe(a));
}

}  // namespace sqcli
