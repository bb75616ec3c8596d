// The integer engine from the command line: ptq on a tiny Fashion-MNIST subset, export to .sqm,
// run it with --compare against the simulated model, bench it; and the commands' errors.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>

#include "sigmaquant/engine.h"
#include "sigmaquant/fileutil.h"
#include "sigmaquant/sqm.h"
#include "test_util.h"

namespace {

using sqtest::have_fashion_mnist;
using sqtest::json_of;

using sqtest::run_cli;

const std::string kSrc = SQ_SOURCE_DIR;

TEST(CliEngine, PtqExportRunCompareBench) {
  if (!have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  const std::string dir = sqtest::temp_dir("cli_engine");
  auto r = run_cli("ptq -m " + kSrc +
                   "/models/lenet5-fmnist.sqg --wbits 4 --abits 6 "
                   "--first-last-bits 8 --limit-train 512 --calib-samples 256 --limit-test 256 "
                   "--threads 1 -q -o " +
                   dir + "/q.sqg");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_cli("export -m " + dir + "/q.sqg --format sqm -o " + dir + "/q.sqm --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(json_of(r)["bytes"], sq::read_file(dir + "/q.sqm").size());
  EXPECT_EQ(sq::load_sqm(dir + "/q.sqm").graph.name, "lenet5");

  r = run_cli("run -m " + dir + "/q.sqm --limit 500 --threads 2 --compare " + dir +
              "/q.sqg --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto j = json_of(r);
  EXPECT_EQ(j["samples"], 500);
  EXPECT_GT(j["accuracy"].get<double>(), 0.6);
  EXPECT_GE(j["compare"]["agreement"].get<double>(), 0.995) << j.dump();
  EXPECT_NEAR(j["accuracy"].get<double>(), j["compare"]["simulated_accuracy"].get<double>(), 0.01);

  // --logits: the engine's, the simulated model's (eval of a quantized .sqg) and the FP32
  // model's logits as raw float32, images x classes; the engine's top-1 is the simulation's on
  // (almost) every image, and eval of the quantized model reports its simulated accuracy.
  r = run_cli("run -m " + dir + "/q.sqm --limit-test 200 --threads 1 -q --logits " + dir +
              "/engine.f32");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_cli("eval -m " + dir + "/q.sqg --limit-test 200 --threads 1 --json --logits " + dir +
              "/sim.f32");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(json_of(r)["quantized"].get<bool>());
  const double sim_acc = json_of(r)["accuracy"].get<double>();
  r = run_cli("eval -m " + kSrc + "/models/lenet5-fmnist.sqg --limit-test 200 --threads 1 -q "
              "--logits " + dir + "/fp32.f32");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  {
    const std::string e = sq::read_file(dir + "/engine.f32"), s = sq::read_file(dir + "/sim.f32"),
                      f = sq::read_file(dir + "/fp32.f32");
    ASSERT_EQ(e.size(), 200u * 10 * sizeof(float));
    ASSERT_EQ(s.size(), e.size());
    ASSERT_EQ(f.size(), e.size());
    auto top1 = [](const std::string& b, int i) {
      const float* p = reinterpret_cast<const float*>(b.data()) + i * 10;
      return std::max_element(p, p + 10) - p;
    };
    int agree = 0, fp32_agree = 0;
    for (int i = 0; i < 200; ++i) {
      agree += top1(e, i) == top1(s, i);
      fp32_agree += top1(f, i) == top1(s, i);
    }
    EXPECT_GE(agree, 198);
    EXPECT_GE(fp32_agree, 180);  // 4-bit weights move some predictions, not most
    EXPECT_NE(s, f);             // the quantized model's logits are not the FP32 ones
    EXPECT_GT(sim_acc, 0.6);
  }

  r = run_cli("run -m " + dir + "/q.sqm --limit 100");  // the human-readable form
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("img/s"), std::string::npos) << r.output;

  // --plan: the engine's steps without data, one per line (JSON: a list), conv steps naming
  // their kernel; the JSON plan is what the library's describe() gives.
  r = run_cli("run -m " + dir + "/q.sqm --plan --data-dir /nonexistent");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("conv"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("arena: "), std::string::npos) << r.output;
  r = run_cli("run -m " + dir + "/q.sqm --plan --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  {
    const sq::SqmModel m = sq::load_sqm(dir + "/q.sqm");
    const auto want = sq::GraphExecutor::prepare(m.graph, m.model).describe();
    EXPECT_EQ(json_of(r)["plan"].get<std::vector<std::string>>(), want);
  }

  // --trace: one image's codes at every step (PREFIX.u8) with their index (PREFIX.json); the
  // logits it records are the engine's for that image (run --logits above, same order).
  r = run_cli("run -m " + dir + "/q.sqm --trace " + dir + "/tr --trace-image 3");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  {
    const auto t = nlohmann::json::parse(sq::read_file(dir + "/tr.json"));
    const std::string codes = sq::read_file(dir + "/tr.u8");
    EXPECT_EQ(t["image"], 3);
    ASSERT_FALSE(t["steps"].empty());
    EXPECT_EQ(t["steps"][0]["node"], "input");  // the input's codes first (step -1)
    EXPECT_EQ(t["steps"][0]["step"], -1);
    EXPECT_EQ(t["steps"][0]["bytes"], 28 * 28);
    size_t at = 0;
    for (const auto& st : t["steps"]) {
      EXPECT_EQ(st["offset"].get<size_t>(), at);
      at += st["bytes"].get<size_t>();
    }
    EXPECT_EQ(at, codes.size());
    const std::string e = sq::read_file(dir + "/engine.f32");
    const float* want = reinterpret_cast<const float*>(e.data()) + 3 * 10;
    const auto got = t["logits"].get<std::vector<float>>();
    ASSERT_EQ(got.size(), 10u);
    for (int k = 0; k < 10; ++k) EXPECT_FLOAT_EQ(got[k], want[k]);
  }
  r = run_cli("run -m " + dir + "/q.sqm --limit 5 --trace " + dir + "/bad --trace-image 5");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("--trace-image 5 is out of range"), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(dir + "/bad.json"));

  r = run_cli("bench -m " + dir + "/q.sqm --qmodel " + dir + "/q.sqg --images 64 --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  j = json_of(r);
  ASSERT_EQ(j["results"].size(), 8u);  // engine and LibTorch × batch 1, 64 × threads 1, 2
  for (const auto& row : j["results"]) EXPECT_GT(row["images_per_second"].get<double>(), 0);
  r = run_cli("bench -m " + dir + "/q.sqm --images 64 --repeats 1 --threads 1 --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  j = json_of(r);
  ASSERT_EQ(j["results"].size(), 2u);  // the engine at batch 1 and 64, one thread
  for (const auto& row : j["results"]) EXPECT_EQ(row["threads"], 1);
  r = run_cli("bench -m " + dir + "/q.sqm --threads 0");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("--threads: 0 is not a thread count"), std::string::npos) << r.output;
}

TEST(CliEngine, ErrorsNameWhatIsWrong) {
  const std::string dir = sqtest::temp_dir("cli_engine_bad");
  const std::string junk = sqtest::write_temp(dir, "junk.sqm", "not a model at all, clearly");
  auto r = run_cli("run -m " + junk);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find(junk + ": bad magic"), std::string::npos) << r.output;
  r = run_cli("bench -m " + junk);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("bad magic"), std::string::npos) << r.output;
  r = run_cli("export -m " + kSrc + "/models/lenet5-fmnist.sqg --format sqm -o " + dir + "/x.sqm");
  EXPECT_EQ(r.exit_code, 1);  // an FP32 model, not a quantized one
  EXPECT_NE(r.output.find("lenet5-fmnist.sqg"), std::string::npos) << r.output;
  r = run_cli("export -m " + kSrc + "/models/lenet5-fmnist.sqg --format tflite -o " + dir + "/x");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("--format 'tflite' is not supported (expected one of: c, onnx, sqm)"),
            std::string::npos)
      << r.output;
}

}  // namespace
