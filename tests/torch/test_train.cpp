// Training: the executor computes what the IR says, runs are reproducible, resume is exact.
#include <gtest/gtest.h>

#include <cmath>

#include "sigmaquant/error.h"
#include "sigmaquant/graph_io.h"
#include "sigmaquant/train.h"
#include "sigmaquant/zoo.h"
#include "test_util.h"

namespace {

using sqtest::synthetic_dataset;
sq::Dataset synthetic(int64_t n, uint64_t seed) { return synthetic_dataset(n, seed); }

sq::TrainOptions tiny_options() {
  sq::TrainOptions o;
  o.epochs = 2;
  o.batch_size = 32;
  o.lr = 0.05;
  o.progress = false;
  o.record_step_losses = true;
  return o;
}

TEST(Executor, LinearModelComputesWxPlusB) {
  sq::configure_runtime(1);
  sq::Graph g("lin", {1, 2, 2}, 3);
  g.linear("fc", g.flatten("flat", g.input()), 3);
  g.infer_shapes();
  g.init_params(1);
  g.input_mean = {0.0f};
  g.input_std = {1.0f};
  auto& w = g.nodes[2].params["weight"].data;
  auto& b = g.nodes[2].params["bias"].data;
  for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>(i) * 0.5f - 1.0f;
  b = {0.25f, -0.5f, 1.0f};
  sq::Dataset d;
  d.name = "one";
  d.image_shape = {1, 2, 2};
  d.num_classes = 3;
  d.images = {0.1f, 0.2f, 0.3f, 0.4f};
  d.labels = {0};
  std::vector<float> logits = sq::predict(g, d);
  ASSERT_EQ(logits.size(), 3u);
  for (int o = 0; o < 3; ++o) {
    double want = b[o];
    for (int i = 0; i < 4; ++i) want += w[o * 4 + i] * d.images[i];
    EXPECT_NEAR(logits[o], want, 1e-6);
  }
}

TEST(Train, SameSeedOneThreadGivesIdenticalLosses) {
  sq::configure_runtime(1);
  sq::Dataset d = synthetic(128, 5);
  sq::Graph a = sq::make_zoo_model("resnet8", d.image_shape, 10, 11);
  sq::Graph b = a;
  sq::TrainResult ra = sq::train(a, d, nullptr, tiny_options());
  sq::TrainResult rb = sq::train(b, d, nullptr, tiny_options());
  ASSERT_EQ(ra.step_losses.size(), 8u);
  EXPECT_EQ(ra.step_losses, rb.step_losses);
  EXPECT_EQ(a.node("fc").params.at("weight"), b.node("fc").params.at("weight"));

  sq::Graph c = sq::make_zoo_model("resnet8", d.image_shape, 10, 11);
  sq::TrainOptions other = tiny_options();
  other.seed = 2;
  sq::TrainResult rc = sq::train(c, d, nullptr, other);
  EXPECT_NE(ra.step_losses, rc.step_losses);
}

TEST(Train, LearnsTheSyntheticTask) {
  sq::configure_runtime(1);
  sq::Dataset d = synthetic(400, 1);
  sq::Graph g = sq::make_zoo_model("lenet5", d.image_shape, 10, 1);
  sq::TrainOptions o = tiny_options();
  o.epochs = 6;
  o.lr = 0.05;
  o.augment = false;
  sq::train(g, d, nullptr, o);
  sq::EvalResult e = sq::evaluate(g, synthetic(200, 2));
  EXPECT_GT(e.accuracy, 0.9);
  EXPECT_EQ(e.samples, 200);
}

// inference_throughput (sigmaquant bench's LibTorch rows): both ways of using threads measure a
// positive rate over the whole set; bad batch sizes and thread counts are refused.
TEST(Train, InferenceThroughputBothWays) {
  sq::configure_runtime(1);
  const sq::Dataset d = synthetic(32, 3);
  sq::Graph g = sq::make_zoo_model("lenet5", d.image_shape, 10, 1);
  g.input_mean = {0.5f};  // as a trained model has them
  g.input_std = {0.25f};
  EXPECT_GT(sq::inference_throughput(g, d, 8, 1, false), 0.0);
  EXPECT_GT(sq::inference_throughput(g, d, 8, 2, true), 0.0);
  EXPECT_THROW(sq::inference_throughput(g, d, 0, 1, false), sq::Error);
  EXPECT_THROW(sq::inference_throughput(g, d, 64, 1, true), sq::Error);
  EXPECT_THROW(sq::inference_throughput(g, d, 8, 0, true), sq::Error);
}

TEST(Train, ResumeFromACheckpointReachesTheSameWeights) {
  sq::configure_runtime(1);
  std::string dir = sqtest::temp_dir("resume");
  sq::Dataset d = synthetic(96, 3);
  const sq::Graph init = sq::make_zoo_model("resnet8", d.image_shape, 10, 4);
  sq::TrainOptions o = tiny_options();
  o.epochs = 3;

  sq::Graph full = init;
  sq::TrainResult rf = sq::train(full, d, nullptr, o);

  // The same job, interrupted after epoch 1 (its checkpoint written), then resumed.
  sq::TrainOptions ck = o;
  ck.checkpoint = dir + "/ck.sqg";
  ck.stop_after_epoch = 1;
  sq::Graph part = init;
  sq::TrainResult r1 = sq::train(part, d, nullptr, ck);
  EXPECT_EQ(r1.epochs.size(), 1u);
  EXPECT_EQ(sq::load_graph_file(ck.checkpoint).meta["checkpoint"]["epoch"], 1);

  ck.stop_after_epoch = 0;
  ck.resume = true;
  sq::Graph resumed = init;  // weights come from the checkpoint
  sq::TrainResult r2 = sq::train(resumed, d, nullptr, ck);
  EXPECT_EQ(r2.resumed_from_epoch, 1);
  EXPECT_EQ(r2.epochs.size(), 3u);
  for (const auto& n : full.nodes) EXPECT_EQ(resumed.node(n.name).params, n.params) << n.name;
  std::vector<double> tail(rf.step_losses.begin() + 3, rf.step_losses.end());
  EXPECT_EQ(r2.step_losses, tail);

  // Resuming with other options is refused rather than silently mixing two schedules.
  ck.lr = 0.5;
  sq::Graph again = init;
  EXPECT_THROW(sq::train(again, d, nullptr, ck), sq::Error);
}

}  // namespace
