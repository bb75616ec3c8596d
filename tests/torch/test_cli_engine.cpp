// The integer engine from the command line: ptq on a tiny Fashion-MNIST subset, export to .sqm,
// run it with --compare against the simulated model, bench it; and the commands' errors.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

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

  r = run_cli("run -m " + dir + "/q.sqm --limit 100");  // the human-readable form
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("img/s"), std::string::npos) << r.output;

  r = run_cli("bench -m " + dir + "/q.sqm --qmodel " + dir + "/q.sqg --images 64 --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  j = json_of(r);
  ASSERT_EQ(j["results"].size(), 8u);  // engine and LibTorch × batch 1, 64 × threads 1, 2
  for (const auto& row : j["results"]) EXPECT_GT(row["images_per_second"].get<double>(), 0);
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
