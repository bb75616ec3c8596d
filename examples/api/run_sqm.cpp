// The deployment side alone: a .sqm model on the integer engine, torch-free (links only
// sigmaquant_engine and sigmaquant_core; builds with pkg-config too, docs/api.md).
//
//   run_sqm MODEL.sqm [TEST_LIMIT [DATA_FORMAT [DATA_DIR]]]
#include <sigmaquant/data.h>
#include <sigmaquant/engine.h>
#include <sigmaquant/sqm.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL.sqm [TEST_LIMIT [DATA_FORMAT [DATA_DIR]]]\n", argv[0]);
    return 2;
  }
  try {
    const sq::SqmModel m = sq::load_sqm(argv[1]);
    sq::DataSpec spec;
    if (argc > 3) spec.format = argv[3];
    if (argc > 4) spec.dir = argv[4];
    const sq::Dataset test = sq::take(sq::load_data(spec).test, argc > 2 ? std::stoll(argv[2]) : 0);

    sq::GraphExecutor ex = sq::GraphExecutor::prepare(m.graph, m.model);  // plans memory once
    std::vector<float> logits(static_cast<size_t>(ex.output_size()));
    int64_t correct = 0;
    for (int64_t i = 0; i < test.size(); ++i) {
      ex.run(test.image(i), logits.data());  // raw [0, 1] image in, float logits out
      correct += std::max_element(logits.begin(), logits.end()) - logits.begin() == test.labels[i];
    }
    std::printf("%s on %lld %s test images: accuracy %.2f%% (integer engine)\n",
                m.graph.name.c_str(), static_cast<long long>(test.size()), test.name.c_str(),
                test.size() ? 100.0 * correct / test.size() : 0.0);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
