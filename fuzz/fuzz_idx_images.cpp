// libFuzzer target: idx3 image files (sq::load_idx), raw or gzip. The labels file is generated to
// match the image count in the fuzzed header, so that well-formed inputs run the loader to the end.
#include "fuzz_util.h"
#include "sigmaquant/data.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static sqfuzz::MemFile images("idx_images"), labels("idx_labels");
  images.write(data, size);
  uint32_t n = size >= 8 ? sqfuzz::be32(data + 4) : 1;
  if (n > (1u << 16)) n = 1;  // too many images for any input of this size: any labels will do
  std::string lab = sqfuzz::be32_bytes(0x801) + sqfuzz::be32_bytes(n);
  for (uint32_t i = 0; i < n; ++i) lab.push_back(static_cast<char>(i % 10));
  labels.write(lab);
  sqfuzz::expect_ok_or_error([&] { sq::load_idx(images.path(), labels.path(), 0); });
  return 0;
}
