// A program that uses SigmaQuant as a library (docs/api.md): quantize an FP32 model under a
// hardware target, export it for the integer engine and run it there.
//
//   quantize_model MODEL.sqg TARGET OUT_DIR [TRAIN_LIMIT TEST_LIMIT [DATA_FORMAT [DATA_DIR]]]
//   quantize_model models/lenet5-fmnist.sqg targets/shiftadd.json runs/api 2000 1000
//
// TARGET: a target file or a builtin name (size, bops, shiftadd, mpic, mcu). Data: Fashion-MNIST
// by default (sq::load_data's formats otherwise), the first TRAIN_LIMIT / TEST_LIMIT images.
// The search is kept short (a demonstration, not a tuned run: see docs/method.md for settings).
#include <sigmaquant/data.h>
#include <sigmaquant/engine.h>
#include <sigmaquant/error.h>
#include <sigmaquant/graph_io.h>
#include <sigmaquant/integerize.h>
#include <sigmaquant/pipeline.h>
#include <sigmaquant/sqm.h>
#include <sigmaquant/train.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

namespace {

// The pipeline's news, printed as it comes.
class PrintObserver : public sq::Observer {
 public:
  void message(const std::string& line) override { std::printf("  %s\n", line.c_str()); }
  void iteration(const sq::RunIteration& it) override {
    std::printf("  %s step %d: validation accuracy %.2f%%, %.2f average weight bits\n",
                it.stage.c_str(), it.iter, 100 * it.accuracy, it.avg_bits);
  }
  void stage(const std::string& name) override { std::printf("[%s]\n", name.c_str()); }
};

// Top-1 accuracy of a .sqm model on the integer engine (no LibTorch involved).
double engine_accuracy(const std::string& sqm_path, const sq::Dataset& test) {
  const sq::SqmModel m = sq::load_sqm(sqm_path);
  sq::GraphExecutor ex = sq::GraphExecutor::prepare(m.graph, m.model);
  std::vector<float> logits(static_cast<size_t>(ex.output_size()));
  int64_t correct = 0;
  for (int64_t i = 0; i < test.size(); ++i) {
    ex.run(test.image(i), logits.data());
    correct += std::max_element(logits.begin(), logits.end()) - logits.begin() == test.labels[i];
  }
  return test.size() ? static_cast<double>(correct) / test.size() : 0.0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr,
                 "usage: %s MODEL.sqg TARGET OUT_DIR [TRAIN_LIMIT TEST_LIMIT [DATA_FORMAT "
                 "[DATA_DIR]]]\n",
                 argv[0]);
    return 2;
  }
  try {
    const std::string model_path = argv[1], out_dir = argv[3];
    sq::configure_runtime(/*threads=*/2);

    sq::DataSpec spec;  // Fashion-MNIST in its Debian location unless given
    if (argc > 6) spec.format = argv[6];
    if (argc > 7) spec.dir = argv[7];
    sq::DataBundle data = sq::load_data(spec);
    if (argc > 5) {
      data.train = sq::take(data.train, std::stoll(argv[4]));
      data.test = sq::take(data.test, std::stoll(argv[5]));
    }

    // 1. The request: model, target, method, budget, settings.
    sq::AllocationRequest req;
    req.model = sq::load_graph(model_path);
    req.model_path = model_path;
    req.target = sq::resolve_target(argv[2]);
    req.method = "sigmaquant";  // any of sq::method_names()
    req.avg_bits = 4;           // weight memory of 4 bits per weight on average
    req.max_drop = 0.01;        // fraction: at most 1 point below FP32 on validation
    req.final_epochs = 0.05;    // short settings for a demonstration
    req.cycle_epochs = 0.02;
    req.max_iterations = 1;
    req.val_samples = std::min<int64_t>(500, data.train.size() / 5);
    req.kl_samples = 128;
    req.calib_samples = 256;
    req.out_dir = out_dir;  // bits.json, model.sqg, log.json, report.html

    // 2. The run: every budget of the target holds for the returned model.
    PrintObserver observer;
    const sq::RunResult r = sq::run_allocation(req, data, &observer);
    std::printf("%s\n", sq::summarize_run(r.log).c_str());

    // 3. Export for the integer engine: weights bit-packed at each layer's width.
    const std::string sqm_path = out_dir + "/model.sqm";
    sq::save_sqm(sqm_path, r.model.graph, sq::integerize(r.model),
                 {{"model", r.model.graph.name}, {"source", model_path}});

    // 4. Run it on the integer engine.
    const double accuracy = engine_accuracy(sqm_path, data.test);
    std::printf(
        "%s: %.2f average weight bits; integer engine accuracy %.2f%% on %lld test "
        "images (simulated %.2f%%, FP32 %.2f%%)\n",
        sqm_path.c_str(), r.log.final->avg_bits, 100 * accuracy,
        static_cast<long long>(data.test.size()), 100 * r.log.final->accuracy,
        100 * r.log.fp32_accuracy);
    return 0;
  } catch (const std::exception& e) {  // sq::Error: names the file, the field, what was expected
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
