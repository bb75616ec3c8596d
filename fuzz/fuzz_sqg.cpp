// libFuzzer target: .sqg graph files (sq::load_graph_file).
// Two input forms, so that mutations reach past the checksum and the length fields:
//  - a whole file (starts with "SQGRAPH\0"): the trailing CRC-32 is recomputed before loading;
//  - otherwise "<JSON header>\0<payload>": framed into a valid file (magic, version, header
//    length, CRC), so the JSON header and the payload offsets it names are what gets fuzzed.
#include <zlib.h>

#include <cstring>

#include "fuzz_util.h"
#include "sigmaquant/graph_io.h"

namespace {

uint32_t crc_of(const std::string& s, size_t n) {
  return static_cast<uint32_t>(
      crc32(crc32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(s.data()), static_cast<uInt>(n)));
}

template <typename T>
void put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof(T));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static sqfuzz::MemFile file("sqg");
  std::string in(reinterpret_cast<const char*>(data), size);
  std::string bytes;
  if (in.compare(0, 8, std::string("SQGRAPH\0", 8)) == 0) {
    bytes = in;
    if (bytes.size() >= 28) {
      const uint32_t c = crc_of(bytes, bytes.size() - 4);
      std::memcpy(&bytes[bytes.size() - 4], &c, 4);
    }
  } else {
    const size_t nul = in.find('\0');
    const std::string header = in.substr(0, nul);
    const std::string payload = nul == std::string::npos ? "" : in.substr(nul + 1);
    bytes = std::string("SQGRAPH\0", 8);
    put<uint32_t>(bytes, sq::kGraphFormatVersion);
    put<uint32_t>(bytes, 0);
    put<uint64_t>(bytes, header.size());
    bytes += header;
    bytes += payload;
    put<uint32_t>(bytes, crc_of(bytes, bytes.size()));
  }
  file.write(bytes);
  sqfuzz::expect_ok_or_error([&] { sq::load_graph_file(file.path()); });
  return 0;
}
