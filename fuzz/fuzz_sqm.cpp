// libFuzzer target: .sqm model files (sq::load_sqm), and the graph executor on what loads.
// Two input forms, so that mutations reach past the checksums and the compressed header:
//  - a whole file (starts with the .sqm magic): every section's CRC-32 whose table entry lies in
//    the file, and the trailing whole-file CRC-32, are recomputed before loading;
//  - otherwise "<JSON header>\0<u32 n><weights: n bytes><scales, bias: the rest, halved>": framed
//    into a valid file (magic, version, section table, deflated header, CRCs), so the header and
//    the tensors it describes are what gets fuzzed.
// A model that loads is prepared and run once on the integer engine when it is small (at most
// 2·10^6 multiply-accumulates), so prepare's checks and the kernels are fuzzed too.
#include <zlib.h>

#include <cstring>
#include <vector>

#include "fuzz_util.h"
#include "sigmaquant/engine.h"
#include "sigmaquant/sqm.h"

namespace {

const std::string kMagic("\x89SQM\r\n\x1a\n", 8);

uint32_t crc_of(const char* p, size_t n) {
  return static_cast<uint32_t>(
      crc32(crc32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(p), static_cast<uInt>(n)));
}

template <typename T>
void put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof(T));
}

std::string frame(const std::string& header, const std::string& weights, const std::string& scales,
                  const std::string& bias) {
  uLongf zlen = compressBound(static_cast<uLong>(header.size()));
  std::string z(zlen, '\0');
  compress(reinterpret_cast<Bytef*>(z.data()), &zlen, reinterpret_cast<const Bytef*>(header.data()),
           static_cast<uLong>(header.size()));
  z.resize(zlen);
  std::string head;
  put<uint32_t>(head, static_cast<uint32_t>(header.size()));
  head += z;
  const std::pair<const char*, const std::string*> sec[] = {
      {"header", &head}, {"weights", &weights}, {"scales", &scales}, {"bias", &bias}};
  std::string f = kMagic;
  put<uint32_t>(f, sq::kSqmVersion);
  put<uint32_t>(f, 4);
  uint64_t off = 16 + 4 * 32;
  for (const auto& [name, data] : sec) {
    char nm[12] = {};
    std::strncpy(nm, name, 11);
    f.append(nm, 12);
    put<uint32_t>(f, crc_of(data->data(), data->size()));
    put<uint64_t>(f, off);
    put<uint64_t>(f, data->size());
    off += data->size();
  }
  for (const auto& [name, data] : sec) f += *data;
  put<uint32_t>(f, crc_of(f.data(), f.size()));
  return f;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static sqfuzz::MemFile file("sqm");
  std::string in(reinterpret_cast<const char*>(data), size);
  std::string bytes;
  if (in.compare(0, 8, kMagic) == 0) {
    bytes = in;
    if (bytes.size() >= 20) {
      uint32_t n;
      std::memcpy(&n, &bytes[12], 4);
      for (uint64_t k = 0; k < n && 16 + 32 * (k + 1) <= bytes.size() - 4; ++k) {
        uint64_t off, len;
        std::memcpy(&off, &bytes[16 + 32 * k + 16], 8);
        std::memcpy(&len, &bytes[16 + 32 * k + 24], 8);
        if (off <= bytes.size() - 4 && len <= bytes.size() - 4 - off) {
          const uint32_t c = crc_of(bytes.data() + off, len);
          std::memcpy(&bytes[16 + 32 * k + 12], &c, 4);
        }
      }
      const uint32_t c = crc_of(bytes.data(), bytes.size() - 4);
      std::memcpy(&bytes[bytes.size() - 4], &c, 4);
    }
  } else {
    const size_t nul = in.find('\0');
    std::string rest = nul == std::string::npos ? "" : in.substr(nul + 1);
    uint32_t nw = 0;
    if (rest.size() >= 4) std::memcpy(&nw, rest.data(), 4);
    rest = rest.size() >= 4 ? rest.substr(4) : "";
    nw = std::min<uint32_t>(nw, static_cast<uint32_t>(rest.size()));
    const std::string weights = rest.substr(0, nw), tail = rest.substr(nw);
    bytes = frame(in.substr(0, nul), weights, tail.substr(0, tail.size() / 2),
                  tail.substr(tail.size() / 2));
  }
  file.write(bytes);
  sqfuzz::expect_ok_or_error([&] {
    const sq::SqmModel m = sq::load_sqm(file.path());
    if (m.graph.total_macs() > 2000000) return;
    sq::GraphExecutor ex = sq::GraphExecutor::prepare(m.graph, m.model);
    if (ex.arena_bytes() > (64u << 20)) return;
    std::vector<uint8_t> x(static_cast<size_t>(ex.input_size()), 1);
    std::vector<float> logits(static_cast<size_t>(ex.output_size()));
    ex.run_quantized(x.data(), logits.data());
  });
  return 0;
}
