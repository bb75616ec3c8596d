// Memory: a training batch that would not fit is refused before the first step, naming the
// largest batch that fits; the measurement behind it leaves the model and the run untouched.
#include <gtest/gtest.h>

#include <regex>
#include <string>

#include "sigmaquant/error.h"
#include "sigmaquant/quantize.h"
#include "sigmaquant/train.h"
#include "sigmaquant/zoo.h"
#include "test_util.h"
#include "torch/graph_module.h"
#include "torch/train_internal.h"

namespace {

constexpr int64_t kMiB = 1024 * 1024;

sq::TrainOptions options(int64_t batch) {
  sq::TrainOptions o;
  o.epochs = 1;
  o.batch_size = batch;
  o.lr = 0.05;
  o.progress = false;
  o.record_step_losses = true;
  return o;
}

// n images of 1 x side x side, labels 0..9 in turn: large enough that a batch's bytes dwarf what a
// run leaves behind in the process.
sq::Dataset images(int64_t n, int64_t side, uint64_t seed) {
  sq::Dataset d = sqtest::synthetic_dataset(n, seed);
  d.image_shape = {1, side, side};
  d.images.resize(static_cast<size_t>(n * side * side));
  for (size_t i = 0; i < d.images.size(); ++i)
    d.images[i] = static_cast<float>((i * 2654435761u + seed) % 64) / 255.0f;
  return d;
}

sq::Graph model(const sq::Dataset& d, uint64_t seed, const std::string& name) {
  sq::Graph g = sq::make_zoo_model("resnet8", d.image_shape, 10, seed);
  g.name = name;  // measurements are cached per model and input
  sq::channel_stats(d, g.input_mean, g.input_std);
  return g;
}

// A limit (TrainOptions::memory_limit, the whole process) that leaves `room` bytes to training.
int64_t limit_leaving(double room) {
  const int64_t probe = int64_t{1} << 40;
  const int64_t used = probe - sq::available_memory_bytes(probe);
  return used + static_cast<int64_t>(room);
}

TEST(Memory, SizesParseAsUsersWriteThem) {
  EXPECT_EQ(sq::parse_memory_size("512M", "--memory-limit"), 512 * kMiB);
  EXPECT_EQ(sq::parse_memory_size("16G", "--memory-limit"), 16 * 1024 * kMiB);
  EXPECT_EQ(sq::parse_memory_size("16GiB", "--memory-limit"), 16 * 1024 * kMiB);
  EXPECT_EQ(sq::parse_memory_size("16gb", "--memory-limit"), 16 * 1024 * kMiB);
  EXPECT_EQ(sq::parse_memory_size("1.5K", "--memory-limit"), 1536);
  EXPECT_EQ(sq::parse_memory_size("4096", "--memory-limit"), 4096);
  EXPECT_EQ(sq::parse_memory_size("auto", "--memory-limit"), 0);
  EXPECT_EQ(sq::parse_memory_size("off", "--memory-limit"), -1);
  for (const char* bad : {"", "G", "12X", "-1G", "0", "1e30T", "16 G"}) {
    const std::string msg = sqtest::error_of([&] { sq::parse_memory_size(bad, "--memory-limit"); });
    EXPECT_NE(msg.find("--memory-limit"), std::string::npos) << bad;
    EXPECT_NE(msg.find("16G"), std::string::npos) << bad;
  }
}

TEST(Memory, TheMachineHasSomeAndALimitCountsWhatTheProcessHolds) {
  const int64_t machine = sq::available_memory_bytes();
  EXPECT_GT(machine, 0);
  const int64_t big = int64_t{1} << 40;
  const int64_t held = big - sq::available_memory_bytes(big);
  EXPECT_GT(held, 0);  // the program, LibTorch's libraries
  EXPECT_LT(held, big / 2);
}

TEST(Memory, TheEstimateGrowsWithTheImageAndTheBatch) {
  sq::configure_runtime(1);
  const sq::Dataset small = sqtest::synthetic_dataset(16, 3);  // 1 x 12 x 12
  sq::Dataset large = small;                                   // 1 x 24 x 24, same count
  large.image_shape = {1, 24, 24};
  large.images.assign(static_cast<size_t>(large.size()) * 24 * 24, 0.25f);
  const sq::Graph gs = sq::make_zoo_model("resnet8", small.image_shape, 10, 1);
  sq::Graph gl = sq::make_zoo_model("resnet8", large.image_shape, 10, 1);
  gl.name = "resnet8-large";  // measurements are cached per model and input
  const sq::MemoryEstimate es = sq::estimate_training_memory(gs, small, options(32));
  const sq::MemoryEstimate el = sq::estimate_training_memory(gl, large, options(32));
  ASSERT_GT(es.per_image, 0);
  // A convolutional network's activations scale with the pixels: 4x the area, about 4x the bytes.
  EXPECT_GT(el.per_image / es.per_image, 3.0);
  EXPECT_LT(el.per_image / es.per_image, 5.0);
  EXPECT_GT(es.fixed, 0);  // at least the gradients and SGD's momentum
  EXPECT_NEAR(es.bytes(64) - es.bytes(32), 32 * es.per_image, 1.0);
  EXPECT_GT(es.available, 0);
  EXPECT_GT(es.largest_batch(), 64);
}

TEST(Memory, ABatchThatDoesNotFitIsRefusedNamingOneThatDoes) {
  sq::configure_runtime(1);
  const sq::Dataset d = images(96, 48, 4);
  const sq::Graph g = model(d, 1, "resnet8-refused");
  const sq::MemoryEstimate e = sq::estimate_training_memory(g, d, options(64));
  ASSERT_GT(e.per_image, 0);
  // Room for about 24 images: batch 64 must be refused, before any step.
  sq::TrainOptions o = options(64);
  o.memory_limit = limit_leaving(e.bytes(24));
  sq::Graph a = g;
  const std::string msg = sqtest::error_of([&] { sq::train(a, d, nullptr, o); });
  ASSERT_NE(msg, "");
  EXPECT_NE(msg.find("training: a training step at batch 64 needs about"), std::string::npos)
      << msg;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(msg, m,
                                std::regex("at most (\\d+) images per batch fit — pass "
                                           "--batch-size (\\d+) or less")))
      << msg;
  const int64_t fits = std::stoll(m[1]);
  EXPECT_EQ(fits, std::stoll(m[2]));
  EXPECT_GE(fits, 16) << msg;
  EXPECT_LE(fits, 32) << msg;
  // What it names trains under the same limit (with a margin for what the first run left).
  o.batch_size = fits * 3 / 4;
  sq::Graph b = g;
  EXPECT_NO_THROW(sq::train(b, d, nullptr, o));
  // A limit below even one image's step says so.
  o.memory_limit = limit_leaving(0);
  const std::string none = sqtest::error_of([&] { sq::train(b, d, nullptr, o); });
  EXPECT_NE(none.find("does not fit in memory even at batch 1"), std::string::npos) << none;
  // off: no check at all.
  o.memory_limit = -1;
  o.batch_size = 64;
  EXPECT_NO_THROW(sq::train(b, d, nullptr, o));
}

TEST(Memory, TheMeasurementLeavesTheRunAsItWouldHaveBeen) {
  sq::configure_runtime(1);
  const sq::Dataset d = sqtest::synthetic_dataset(64, 5);
  // resnet8 has batch norm (running statistics) and the run draws from LibTorch's RNG.
  sq::Graph checked = sq::make_zoo_model("resnet8", d.image_shape, 10, 2);
  checked.name = "resnet8-untouched";  // a fresh measurement, not a cached one
  sq::Graph unchecked = checked;
  sq::TrainOptions o = options(16);
  o.epochs = 2;
  o.memory_limit = 0;  // measure and check against the machine
  const sq::TrainResult rc = sq::train(checked, d, nullptr, o);
  o.memory_limit = -1;
  const sq::TrainResult ru = sq::train(unchecked, d, nullptr, o);
  EXPECT_EQ(rc.step_losses, ru.step_losses);
  ASSERT_EQ(checked.nodes.size(), unchecked.nodes.size());
  for (size_t i = 0; i < checked.nodes.size(); ++i)
    for (const auto& [name, t] : checked.nodes[i].params)
      EXPECT_EQ(t.data, unchecked.nodes[i].params.at(name).data) << checked.nodes[i].name << name;
}

TEST(Memory, QatIsCheckedBeforeItsFirstStep) {
  sq::configure_runtime(1);
  const sq::Dataset d = images(64, 32, 6);
  const sq::Graph g = model(d, 3, "resnet8-qat");
  sq::PtqOptions p;
  p.calib_samples = 16;
  const sq::QuantModel qm = sq::ptq(g, sq::BitConfig::uniform(g, 4, 8), d, p);
  sq::TrainOptions o = options(64);
  const sq::MemoryEstimate fp32 = sq::estimate_training_memory(g, d, o);
  const sq::MemoryEstimate e = sq::estimate_qat_memory(qm, d, o);
  // Fake quantization keeps more tensors per layer for the backward pass than FP32 training.
  EXPECT_GT(e.per_image, fp32.per_image);
  o.memory_limit = limit_leaving(e.bytes(8));
  const std::string msg = sqtest::error_of([&] { sq::check_qat_memory(qm, d, o); });
  EXPECT_NE(msg.find("QAT: a training step at batch 64"), std::string::npos) << msg;
  sq::QuantModel trained = qm;
  const std::string msg2 = sqtest::error_of([&] { sq::qat(trained, d, nullptr, o); });
  EXPECT_NE(msg2.find("at batch 64 needs about"), std::string::npos) << msg2;
}

}  // namespace

namespace {

TEST(Memory, EvaluationShrinksItsBatchToWhatFitsAndGetsTheSameResult) {
  sq::configure_runtime(1);
  const sq::Dataset d = images(96, 48, 7);
  const sq::Graph g = model(d, 4, "resnet8-eval");
  sq::GraphModule m(g);
  m.eval();
  // Without pressure the batch is the one asked for (capped at the data).
  EXPECT_EQ(sq::inference_batch(m, d, 512), 96);
  EXPECT_EQ(sq::inference_batch(m, d, 32), 32);
  // Room for a couple of dozen images' forward pass: a smaller batch, never below one.
  sq::TrainOptions o = options(64);
  const sq::MemoryEstimate train = sq::estimate_training_memory(g, d, o);
  const int64_t tight = limit_leaving(train.bytes(8));
  const int64_t b = sq::inference_batch(m, d, 512, tight);
  EXPECT_GE(b, 1);
  EXPECT_LT(b, 96);
  EXPECT_EQ(sq::inference_batch(m, d, 512, limit_leaving(0)), 1);
  // What is evaluated does not depend on the batch.
  sq::EvalOptions small, large;
  small.batch_size = 7;
  large.batch_size = 96;
  small.progress = large.progress = false;
  const sq::EvalResult rs = sq::evaluate(g, d, small), rl = sq::evaluate(g, d, large);
  EXPECT_EQ(rs.accuracy, rl.accuracy);
  EXPECT_NEAR(rs.loss, rl.loss, 1e-5);
}

}  // namespace
