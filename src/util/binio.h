// Little helpers of the binary file formats (.sqg, .sqm): raw little-endian values in and out of a
// byte string, zlib's CRC-32 over any length, and their JSON headers parsed with a nesting limit.
// Internal to the library.
#pragma once

#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>

#include "sigmaquant/error.h"

namespace sq::binio {

template <typename T>
void put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof(T));
}

// The caller checks that [off, off + sizeof(T)) lies inside s.
template <typename T>
T get_at(const std::string& s, size_t off) {
  T v;
  std::memcpy(&v, s.data() + off, sizeof(T));
  return v;
}

inline uint32_t crc32_of(const char* p, size_t n) {
  uLong c = crc32(0L, Z_NULL, 0);
  while (n > 0) {  // zlib takes uInt lengths
    uInt chunk = static_cast<uInt>(std::min<size_t>(n, 1u << 30));
    c = crc32(c, reinterpret_cast<const Bytef*>(p), chunk);
    p += chunk;
    n -= chunk;
  }
  return static_cast<uint32_t>(c);
}

// Parses a file's JSON header [first, last). Copying or printing JSON recurses once per nesting
// level, so a header nested deeper than max_depth (e.g. in 'meta') is refused here rather than
// overflowing the stack later. Errors name `path`.
template <typename It>
nlohmann::json parse_header(It first, It last, const std::string& path, int max_depth = 256) {
  try {
    const auto depth_limit = [&](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
      if (depth > max_depth)
        fail("{}: header nests deeper than {} levels (not written by SigmaQuant)", path,
             max_depth);
      return true;
    };
    return nlohmann::json::parse(first, last, depth_limit);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    fail("{}: header is not valid JSON ({})", path, e.what());
  }
}

}  // namespace sq::binio
