// Helpers shared by the dataset loaders in src/data/ (not a public header).
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "sigmaquant/data.h"

namespace sq::data_detail {

// Reads a whole file, gunzipping it if it is gzip-compressed (zlib reads raw files as is).
// Throws sq::Error "PATH: missing file", "PATH: cannot open (...)", "PATH: truncated gzip stream".
std::string read_maybe_gzip(const std::string& path);

// Checks labels against [0, num_classes) when num_classes > 0, else sets num_classes to
// max(label) + 1, at least 2. `what` names the file in messages.
void finish_labels(const std::string& what, const std::vector<int32_t>& labels,
                   int64_t& num_classes);

// pixel / 255 for every byte value: exact (255 -> 1.0f) and faster than dividing per pixel.
const float* u8_to_unit_table();

// a * b, or UINT64_MAX when that overflows (no file can be that large, so size checks fail).
inline uint64_t mul_sat(uint64_t a, uint64_t b) {
  return a != 0 && b > UINT64_MAX / a ? UINT64_MAX : a * b;
}

// A uniform integer in [0, n) from a 64-bit engine by rejection, so results depend only on the
// engine's output (std::uniform_int_distribution differs between standard libraries).
inline uint64_t uniform_below(std::mt19937_64& rng, uint64_t n) {
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;  // values >= limit would bias the result
  uint64_t r;
  do r = rng();
  while (r >= limit);
  return r % n;
}

}  // namespace sq::data_detail
