// Flags shared by the subcommands that quantize: the bit assignment and the PTQ recipe.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "sigmaquant/bits.h"
#include "sigmaquant/quantize.h"

namespace sqcli {

struct BitsFlags {
  std::string file;  // --bits config.json
  int wbits = 0;     // --wbits N (uniform shorthand)
  int abits = 8;
  int first_last = 0;  // --first-last-bits N: pin the first and last weight layers
  bool per_tensor = false;
};
void add_bits_flags(CLI::App* app, BitsFlags& f);
// The bit assignment for g: from --bits, or uniform --wbits/--abits; validated against g.
sq::BitConfig resolve_bits(const BitsFlags& f, const sq::Graph& g);

struct PtqFlags {
  std::string calib = "mse";
  sq::PtqOptions opts;
  bool no_fold_bn = false;
};
void add_ptq_flags(CLI::App* app, PtqFlags& f);
sq::PtqOptions ptq_options(const PtqFlags& f, uint64_t seed);

}  // namespace sqcli
