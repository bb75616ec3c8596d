// Mode names and the per-data-set augmentation default.
#include <fmt/format.h>

#include <algorithm>

#include "sigmaquant/error.h"
#include "sigmaquant/pipeline.h"

namespace sq {

const char* augment_mode_name(AugmentMode m) {
  switch (m) {
    case AugmentMode::Auto: return "auto";
    case AugmentMode::On: return "on";
    case AugmentMode::Off: return "off";
  }
  return "?";
}

AugmentMode parse_augment_mode(const std::string& s, const std::string& where) {
  if (s == "auto") return AugmentMode::Auto;
  if (s == "on") return AugmentMode::On;
  if (s == "off") return AugmentMode::Off;
  fail("{} '{}': expected auto, on or off", where, s);
}

const char* kl_mode_name(KlMode m) { return m == KlMode::Output ? "output" : "weight"; }

KlMode parse_kl_mode(const std::string& s, const std::string& where) {
  if (s == "output") return KlMode::Output;
  if (s == "weight") return KlMode::Weight;
  fail("{} '{}': expected output or weight", where, s);
}

const char* final_start_name(FinalStart f) { return f == FinalStart::Search ? "search" : "ptq"; }

FinalStart parse_final_start(const std::string& s, const std::string& where) {
  if (s == "search") return FinalStart::Search;
  if (s == "ptq") return FinalStart::Ptq;
  fail("{} '{}': expected search or ptq", where, s);
}

Augmentation resolve_augmentation(const TrainingSettings& t, const Dataset& d) {
  // Natural images whose class survives a mirror and a small shift; digits survive a shift only.
  const std::string& n = d.name;
  const bool natural = n == "fashion-mnist" || n == "cifar10" || n == "cifar100";
  const bool digits = n == "mnist";
  int64_t side = d.image_shape.size() == 3 ? std::min(d.image_shape[1], d.image_shape[2]) : 0;
  const int cap = static_cast<int>(std::max<int64_t>(0, side / 8));
  Augmentation a;
  switch (t.augment) {
    case AugmentMode::Off:
      a.why = "off (asked)";
      return a;
    case AugmentMode::On:
      a.on = true;
      a.pad = t.augment_pad;
      a.flip = t.flip.value_or(natural);
      a.why = "on (asked)";
      break;
    case AugmentMode::Auto:
      if (!natural && !digits) {
        a.why = fmt::format(
            "off: '{}' data is not a natural-image set the project knows, and a mirror or a shift "
            "may change its class (ask for augmentation \"on\" to use it)",
            n);
        return a;
      }
      a.on = true;
      a.pad = std::min(t.augment_pad, cap);
      a.flip = t.flip.value_or(natural);
      a.why = fmt::format("on: the default for {}", n);
      break;
  }
  if (a.pad <= 0 && !a.flip) {
    a.on = false;
    a.why += " (nothing to do: no shift on this image size, no flip)";
  }
  return a;
}

void apply(const Augmentation& a, TrainOptions& o) {
  o.augment = a.on;
  o.augment_pad = a.pad;
  o.augment_flip = a.flip;
}

std::string describe(const Augmentation& a) {
  if (!a.on) return "augmentation " + a.why;
  std::string what = a.pad > 0 ? fmt::format("random shift by up to {} px", a.pad) : "";
  if (a.flip) what += std::string(what.empty() ? "" : " + ") + "horizontal flip";
  return fmt::format("augmentation {}: {}", a.why, what);
}

}  // namespace sq
