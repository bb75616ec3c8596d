// Bit packing of signed integer weights at 0..8 bits. The bit order (documented once, in
// include/sigmaquant/engine.h): a little-endian bit stream, element i at stream bits
// [i·bits, (i+1)·bits), stream bit j = bit (j mod 8) of byte j / 8; bits == 1 stores a sign bit
// (0 → +1, 1 → −1); bits == 0 stores nothing.
#include <algorithm>

#include "sigmaquant/engine.h"
#include "sigmaquant/error.h"

namespace sq {

namespace {

void check_bits(int bits) {
  if (bits < 0 || bits > 8) fail("pack_bits: bits is {} (expected 0..8)", bits);
}

// The code word of v at `bits` (bits >= 1), or throws.
uint32_t encode(int32_t v, int bits, size_t i) {
  if (bits == 1) {
    if (v != 1 && v != -1)
      fail("pack_bits: value {} at index {} does not fit 1 bit (expected -1 or +1)", v, i);
    return v < 0 ? 1u : 0u;
  }
  const int32_t lo = -(1 << (bits - 1)), hi = (1 << (bits - 1)) - 1;
  if (v < lo || v > hi)
    fail("pack_bits: value {} at index {} does not fit {} bits (expected {}..{})", v, i, bits, lo,
         hi);
  return static_cast<uint32_t>(v) & ((1u << bits) - 1u);
}

int32_t decode(uint32_t code, int bits) {
  if (bits == 1) return code ? -1 : 1;
  // Sign-extend the low `bits` bits.
  const uint32_t sign = 1u << (bits - 1);
  return static_cast<int32_t>(code ^ sign) - static_cast<int32_t>(sign);
}

}  // namespace

size_t packed_bytes(size_t n, int bits) {
  check_bits(bits);
  return (n * static_cast<size_t>(bits) + 7) / 8;
}

void pack_bits(const int32_t* values, size_t n, int bits, uint8_t* out) {
  const size_t bytes = packed_bytes(n, bits);
  std::fill(out, out + bytes, uint8_t{0});
  if (bits == 0) {
    for (size_t i = 0; i < n; ++i)
      if (values[i] != 0)
        fail("pack_bits: value {} at index {} does not fit 0 bits (expected 0)", values[i], i);
    return;
  }
  size_t bit = 0;
  for (size_t i = 0; i < n; ++i, bit += static_cast<size_t>(bits)) {
    // A code word spans at most two bytes (bits <= 8).
    const uint32_t word = encode(values[i], bits, i) << (bit % 8);
    out[bit / 8] |= static_cast<uint8_t>(word & 0xFFu);
    if (word >> 8) out[bit / 8 + 1] |= static_cast<uint8_t>(word >> 8);
  }
}

std::vector<uint8_t> pack_bits(const std::vector<int32_t>& values, int bits) {
  std::vector<uint8_t> out(packed_bytes(values.size(), bits));
  pack_bits(values.data(), values.size(), bits, out.data());
  return out;
}

void unpack_bits(const uint8_t* packed, size_t n, int bits, int32_t* out) {
  check_bits(bits);
  if (bits == 0) {
    std::fill(out, out + n, 0);
    return;
  }
  const size_t bytes = packed_bytes(n, bits);
  const uint32_t mask = (1u << bits) - 1u;
  size_t bit = 0;
  for (size_t i = 0; i < n; ++i, bit += static_cast<size_t>(bits)) {
    const size_t b = bit / 8;
    uint32_t two = packed[b];
    if (b + 1 < bytes) two |= static_cast<uint32_t>(packed[b + 1]) << 8;
    out[i] = decode((two >> (bit % 8)) & mask, bits);
  }
}

std::vector<int32_t> unpack_bits(const std::vector<uint8_t>& packed, size_t n, int bits) {
  if (packed.size() < packed_bytes(n, bits))
    fail("unpack_bits: {} bytes hold fewer than {} elements at {} bits (expected {} bytes)",
         packed.size(), n, bits, packed_bytes(n, bits));
  std::vector<int32_t> out(n);
  unpack_bits(packed.data(), n, bits, out.data());
  return out;
}

PackedRows pack_rows(const std::vector<int32_t>& w, int64_t rows, int64_t cols,
                     const std::vector<int>& row_bits) {
  if (rows < 0 || cols < 0 || static_cast<int64_t>(w.size()) != rows * cols)
    fail("pack_rows: {} weights for {} rows x {} columns (expected rows·columns)", w.size(), rows,
         cols);
  if (static_cast<int64_t>(row_bits.size()) != rows)
    fail("pack_rows: {} row widths for {} rows (expected one per row)", row_bits.size(), rows);
  PackedRows p;
  p.rows = rows;
  p.cols = cols;
  p.offset.push_back(0);
  for (int64_t r = 0; r < rows; ++r) {
    check_bits(row_bits[r]);
    p.row_bits.push_back(static_cast<uint8_t>(row_bits[r]));
    p.offset.push_back(p.offset.back() + packed_bytes(static_cast<size_t>(cols), row_bits[r]));
  }
  p.data.resize(p.offset.back());
  for (int64_t r = 0; r < rows; ++r)
    pack_bits(w.data() + r * cols, static_cast<size_t>(cols), row_bits[r],
              p.data.data() + p.offset[r]);
  return p;
}

std::vector<int32_t> unpack_rows(const PackedRows& p) {
  if (p.offset.size() != static_cast<size_t>(p.rows) + 1 ||
      p.row_bits.size() != static_cast<size_t>(p.rows) || p.offset.back() != p.data.size())
    fail("unpack_rows: inconsistent packed rows ({} rows, {} offsets, {} widths, {} bytes)", p.rows,
         p.offset.size(), p.row_bits.size(), p.data.size());
  std::vector<int32_t> w(static_cast<size_t>(p.rows * p.cols));
  for (int64_t r = 0; r < p.rows; ++r) {
    if (p.offset[r] + packed_bytes(static_cast<size_t>(p.cols), p.row_bits[r]) > p.offset[r + 1])
      fail("unpack_rows: row {} is shorter than {} columns at {} bits", r, p.cols, p.row_bits[r]);
    unpack_bits(p.data.data() + p.offset[r], static_cast<size_t>(p.cols), p.row_bits[r],
                w.data() + r * p.cols);
  }
  return w;
}

}  // namespace sq
