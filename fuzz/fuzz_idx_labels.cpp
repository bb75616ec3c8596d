// libFuzzer target: idx1 label files (sq::load_idx), raw or gzip, with and without a given class
// count. The images file is generated (1 x 1 pixels) to match the label count in the fuzzed header.
#include "fuzz_util.h"
#include "sigmaquant/data.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static sqfuzz::MemFile images("idx_images"), labels("idx_labels");
  labels.write(data, size);
  uint32_t n = size >= 8 ? sqfuzz::be32(data + 4) : 1;
  if (n == 0 || n > (1u << 16)) n = 1;
  std::string img = sqfuzz::be32_bytes(0x803) + sqfuzz::be32_bytes(n) + sqfuzz::be32_bytes(1) +
                    sqfuzz::be32_bytes(1) + std::string(n, '\x7f');
  images.write(img);
  for (int64_t classes : {0, 10})
    sqfuzz::expect_ok_or_error([&] { sq::load_idx(images.path(), labels.path(), classes); });
  return 0;
}
