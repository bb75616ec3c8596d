// Canonical signed digit (CSD) digit counting — the cost of one shift-add multiplication by a
// constant when zero digits are skipped.
#include "sigmaquant/cost.h"

namespace sq {

int csd_digits(int64_t v) {
  // |v| without overflow for INT64_MIN.
  uint64_t x = v < 0 ? ~static_cast<uint64_t>(v) + 1 : static_cast<uint64_t>(v);
  if (x < (uint64_t{1} << 62)) {
    // The non-adjacent form of x has a non-zero digit at position i exactly where bit i+1 of
    // (3x XOR x) is set (Reitwiesner; e.g. Joye & Yen, "Optimal left-to-right binary
    // signed-digit recoding", 2000), so its weight is popcount(3x ^ x).
    return __builtin_popcountll((3 * x) ^ x);
  }
  // Wide values (not reachable from <= 32-bit weights): the plain digit-by-digit recoding.
  int n = 0;
  unsigned __int128 y = x;
  while (y) {
    if (y & 1) {
      ++n;
      if ((y & 3) == 3)
        y += 1;  // digit -1: ...11 -> carry up
      else
        y -= 1;  // digit +1
    }
    y >>= 1;
  }
  return n;
}

}  // namespace sq
