// libFuzzer target: CIFAR binary batches (sq::load_cifar), raw or gzip, read both as CIFAR-10 and
// as CIFAR-100.
#include "fuzz_util.h"
#include "sigmaquant/data.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static sqfuzz::MemFile batch("cifar_batch");
  batch.write(data, size);
  for (bool cifar100 : {false, true})
    sqfuzz::expect_ok_or_error([&] { sq::load_cifar({batch.path()}, cifar100); });
  return 0;
}
