// libFuzzer target: NumPy .npy image and label files (sq::load_npy), raw or gzip.
// Input layout: <u16 LE length L><L bytes: the images file><the rest: the labels file>, so that
// both files (and their agreement) are fuzzed; fuzz/make_seeds.cpp writes seeds in this layout.
#include <algorithm>

#include "fuzz_util.h"
#include "sigmaquant/data.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static sqfuzz::MemFile images("npy_images"), labels("npy_labels");
  if (size < 2) return 0;
  const size_t len = std::min<size_t>(data[0] | size_t{data[1]} << 8, size - 2);
  images.write(data + 2, len);
  labels.write(data + 2 + len, size - 2 - len);
  for (int64_t classes : {0, 10})
    sqfuzz::expect_ok_or_error([&] { sq::load_npy(images.path(), labels.path(), classes); });
  return 0;
}
