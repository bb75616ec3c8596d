// Running the integer engine over many images on several threads, one GraphExecutor per thread
// (an executor runs one sample at a time): shared by `run` and `bench`.
#pragma once

#include <algorithm>
#include <thread>
#include <vector>

#include "sigmaquant/engine.h"

namespace sqcli {

// Images [0, n) (C·H·W floats each, as stored in the Dataset) → logits [n][output_size], split
// into one contiguous share per executor; the calling thread runs the first share.
inline void run_engine(std::vector<sq::GraphExecutor>& ex, const float* images, int64_t n,
                       float* logits) {
  const int64_t t = std::min<int64_t>(static_cast<int64_t>(ex.size()), n);
  const int64_t in = ex[0].input_size(), out = ex[0].output_size();
  auto share = [&](int64_t k) {
    for (int64_t i = n * k / t, e = n * (k + 1) / t; i < e; ++i)
      ex[k].run(images + i * in, logits + i * out);
  };
  std::vector<std::thread> workers;
  for (int64_t k = 1; k < t; ++k) workers.emplace_back(share, k);
  if (t > 0) share(0);
  for (auto& w : workers) w.join();
}

}  // namespace sqcli
