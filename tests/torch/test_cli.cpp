// End-to-end runs of the command-line program on a tiny Fashion-MNIST subset, and its errors.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "sigmaquant/bits.h"
#include "sigmaquant/fileutil.h"
#include "sigmaquant/graph_io.h"
#include "sigmaquant/zoo.h"
#include "test_util.h"

namespace {

using sqtest::have_fashion_mnist;
using sqtest::json_of;

using sqtest::run_cli;

TEST(Cli, InfoReportsPerLayerCounts) {
  auto r = run_cli("info -m resnet20 --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto j = json_of(r);
  EXPECT_EQ(j["total_params"], 272186);
  EXPECT_EQ(j["total_macs"], 31021952);
  EXPECT_EQ(j["layers"][1]["name"], "stem.conv");
  EXPECT_EQ(j["layers"][1]["output_shape"], nlohmann::json({16, 28, 28}));
  EXPECT_TRUE(j["layers"][1].contains("weight_std"));
  r = run_cli("info -m lenet5 --input-shape 3,32,32 --classes 100");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("weight σ"), std::string::npos);
  EXPECT_NE(r.output.find("[100]"), std::string::npos);
}

TEST(Cli, TrainThenEvalOnATinySubset) {
  if (!have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  std::string dir = sqtest::temp_dir("cli_train");
  auto r = run_cli("train -m lenet5 --epochs 1 --batch-size 16 --limit-train 512 --limit-test 256 --threads 1 "
                   "--quiet --json -o " + dir + "/m.sqg");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto j = json_of(r);
  EXPECT_EQ(j["train_samples"], 512);
  EXPECT_EQ(j["test_samples"], 256);
  EXPECT_GT(j["test_accuracy"].get<double>(), 0.2);  // 10 classes: chance is 0.1
  sq::GraphFile f = sq::load_graph_file(dir + "/m.sqg");
  EXPECT_EQ(f.meta["train"]["test_accuracy"], j["test_accuracy"]);
  EXPECT_EQ(f.graph.input_mean.size(), 1u);

  auto e = run_cli("eval -m " + dir + "/m.sqg --limit-test 256 --threads 1 --json");
  ASSERT_EQ(e.exit_code, 0) << e.output;
  EXPECT_DOUBLE_EQ(json_of(e)["accuracy"].get<double>(), j["test_accuracy"].get<double>());
}

TEST(Cli, ErrorsAreClearAndNonZero) {
  auto r = run_cli("info -m resnet99");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("--model 'resnet99': no such file, and not a zoo model"),
            std::string::npos)
      << r.output;
  r = run_cli("eval -m lenet5 --data idx --data-dir /nonexistent/dir");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("/nonexistent/dir"), std::string::npos) << r.output;
  r = run_cli("eval -m lenet5 --data imagenet");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("imagenet"), std::string::npos) << r.output;
  r = run_cli("train -m lenet5 --epochs 0 --limit-train 10");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("--epochs must be at least 1"), std::string::npos) << r.output;
  r = run_cli("info -m lenet5 --input-shape 1,x,28");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("--input-shape '1,x,28'"), std::string::npos) << r.output;
  r = run_cli("info --no-such-flag");
  EXPECT_NE(r.exit_code, 0);
  r = run_cli("frobnicate");
  EXPECT_NE(r.exit_code, 0);
  std::string dir = sqtest::temp_dir("cli_err");
  sqtest::write_temp(dir, "junk.sqg", "not a model");
  r = run_cli("info -m " + dir + "/junk.sqg");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("junk.sqg: truncated"), std::string::npos) << r.output;
}

}  // namespace

namespace {

TEST(Cli, AllocateFitsTheBudgetOrSaysWhichCannotBeMet) {
  std::string dir = sqtest::temp_dir("cli_alloc");
  auto r = run_cli("allocate -m resnet20 --target " + std::string(SQ_SOURCE_DIR) +
                   "/targets/size.json --bits-set 2,4,8 --json -o " + dir + "/a.bits.json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto j = json_of(r);
  ASSERT_EQ(j["budgets"].size(), 2u);  // weight and activation memory
  for (const auto& b : j["budgets"]) EXPECT_TRUE(b["fits"].get<bool>()) << b.dump();
  sq::Graph g = sq::make_zoo_model("resnet20", {1, 28, 28}, 10);
  sq::BitConfig bits = sq::load_bits(dir + "/a.bits.json");
  EXPECT_NO_THROW(sq::validate_bits(bits, g, "a.bits.json"));
  for (int i : g.weight_layers()) {
    int b = bits.for_layer(g.nodes[i].name).wbits;
    EXPECT_TRUE(b == 2 || b == 4 || b == 8) << b;
  }

  std::string tiny = sqtest::write_temp(
      dir, "tiny.json",
      R"({"format": "sigmaquant-target", "version": 1, "name": "tiny", "model": "size",
          "budgets": {"weight_kib": 8}})");
  r = run_cli("allocate -m resnet20 --target " + tiny + " --bits-set 2,4,8");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("weight memory budget"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("cannot be met"), std::string::npos) << r.output;
}

}  // namespace
