// Issue 11 from the command line: bad inputs refused with the file and the field named (NaN
// weights, a stray label, a duplicate key, a negative weight scale), and models with non-global
// average pooling after a float conv or a batchnorm right after the input going through
// ptq → export (sqm, c) → run.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "sigmaquant/fileutil.h"
#include "sigmaquant/graph_io.h"
#include "sigmaquant/qmodel.h"
#include "test_util.h"

namespace {

using sqtest::run_cli;

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

void expect_refused(const sqtest::CliResult& r, const std::vector<std::string>& parts) {
  EXPECT_EQ(r.exit_code, 1) << r.output;
  for (const auto& p : parts)
    EXPECT_TRUE(has(r.output, p)) << "missing '" << p << "' in:\n" << r.output;
}

std::string npy(const std::string& shape, const std::string& data) {
  std::string header = "{'descr': '|u1', 'fortran_order': False, 'shape': " + shape + ", }";
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string out = "\x93NUMPY\x01";
  out.push_back('\0');
  out.push_back(static_cast<char>(header.size() & 0xff));
  out.push_back(static_cast<char>(header.size() >> 8));
  return out + header + data;
}

// An npy dataset of the learnable synthetic 1x12x12 images (test_util.h), n per split.
std::string synthetic_npy(const std::string& tag, int n, int stray_index = -1, int stray = 0) {
  const std::string dir = sqtest::temp_dir(tag);
  for (const char* split : {"train", "test"}) {
    const sq::Dataset d = sqtest::synthetic_dataset(n, split[1] == 'r' ? 1 : 2);
    std::string pixels, labels;
    for (float v : d.images) pixels.push_back(static_cast<char>(std::lround(v * 255)));
    for (int32_t l : d.labels) labels.push_back(static_cast<char>(l));
    if (split[1] == 'r' && stray_index >= 0) labels[stray_index] = static_cast<char>(stray);
    sqtest::write_temp(dir, std::string(split) + "_images.npy",
                       npy("(" + std::to_string(n) + ", 1, 12, 12)", pixels));
    sqtest::write_temp(dir, std::string(split) + "_labels.npy",
                       npy("(" + std::to_string(n) + ",)", labels));
  }
  return dir;
}

sq::Graph small_cnn(bool bn_first, bool avgpools) {
  sq::Graph g(avgpools ? "avgpools" : "bnfirst", {1, 12, 12}, 10);
  int x = g.input();
  if (bn_first) x = g.batchnorm("bn0", x);
  x = g.relu("r1", g.conv2d("c1", x, 8, 3, 1, 1, 1, true));
  x = avgpools ? g.avgpool("p1", x, 2, 2, 0) : g.maxpool("p1", x, 2, 2, 0);  // 6x6
  x = g.relu("r2", g.conv2d("c2", x, 8, 3, 1, 1, 1, true));
  if (avgpools) x = g.avgpool("adaptive2x2", x, 3, 3, 0);  // AdaptiveAvgPool2d(2) of 6x6
  g.linear("fc", g.flatten("flat", x), 10);
  g.infer_shapes();
  g.init_params(3);
  g.input_mean = {0.2f};  // as `train` records them
  g.input_std = {0.3f};
  if (bn_first) {
    sq::Node& bn = g.nodes[g.index_of("bn0")];
    bn.params["weight"].data = {1.5f};
    bn.params["bias"].data = {0.2f};
    bn.params["running_mean"].data = {0.3f};
    bn.params["running_var"].data = {0.2f};
  }
  return g;
}

TEST(CliHardening, AvgPoolAndLeadingBatchNormModelsExportAndRun) {
  const std::string data = synthetic_npy("hard_data", 200);
  const std::string flags = " --data npy --data-dir " + data + " --threads 1 -q";
  for (bool bn_first : {false, true}) {
    const std::string dir = sqtest::temp_dir(bn_first ? "hard_bn" : "hard_avg");
    sq::save_graph(dir + "/f.sqg", small_cnn(bn_first, !bn_first));
    auto r = run_cli("ptq -m " + dir + "/f.sqg --wbits 8 --abits 8 --calib-samples 64" + flags +
                     " -o " + dir + "/q.sqg");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = run_cli("export -m " + dir + "/q.sqg --format sqm -o " + dir + "/q.sqm");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = run_cli("run -m " + dir + "/q.sqm --limit 100 --compare " + dir + "/q.sqg --json" + flags);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const nlohmann::json j = sqtest::json_of(r);
    EXPECT_EQ(j["samples"], 100);
    // An untrained model has close logits; the engine still agrees with its simulation.
    EXPECT_GE(j["compare"]["agreement"].get<double>(), 0.9) << j.dump();
    r = run_cli("export -m " + dir + "/q.sqg --format c -o " + dir + "/c");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(sqtest::files_in(dir + "/c").size(), 6u);
  }
}

TEST(CliHardening, NanWeightsAreRefusedAtLoad) {
  const std::string dir = sqtest::temp_dir("hard_nan");
  sq::Graph g = small_cnn(false, true);
  g.nodes[g.index_of("c2")].params.at("weight").data[7] = std::nanf("");
  sq::save_graph(dir + "/nan.sqg", g);
  const std::string data = synthetic_npy("hard_nan_data", 20);
  const std::vector<std::string> cmds = {"eval", "ptq --wbits 8 -o " + dir + "/q.sqg"};
  for (const std::string& cmd : cmds)
    expect_refused(run_cli(cmd + " -m " + dir + "/nan.sqg --data npy --data-dir " + data +
                           " --threads 1 -q"),
                   {dir + "/nan.sqg", "tensor c2.weight", "NaN", "element 7"});
  EXPECT_FALSE(sq::file_exists(dir + "/q.sqg"));
}

TEST(CliHardening, StrayLabelIsNamedAndClassesFlagAcceptsIt) {
  const std::string data = synthetic_npy("hard_label", 40, 17, 12);
  auto r = run_cli("eval -m lenet5 --data npy --data-dir " + data + " --threads 1 -q");
  expect_refused(r, {data + "/train_labels.npy", "class 10, 11", "largest label is 12",
                     "index 17", "--classes"});
  EXPECT_FALSE(has(r.output, "256")) << r.output;
  // --classes says the count: the zoo model gets 13 outputs (its count comes from the data).
  r = run_cli("train -m mlp --epochs 1 --data npy --data-dir " + data +
              " --classes 13 --threads 1 -q -o " + sqtest::temp_dir("hard_label_out2") + "/m.sqg");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  // A model with fewer outputs than the labels: eval names the model, the data and the label.
  const std::string dir = sqtest::temp_dir("hard_label_model");
  sq::save_graph(dir + "/ten.sqg", small_cnn(false, true));
  r = run_cli("eval -m " + dir + "/ten.sqg --data npy --data-dir " + data +
              " --classes 13 --threads 1 -q");
  expect_refused(r, {dir + "/ten.sqg", "10 outputs", "13 classes"});
}

TEST(CliHardening, DuplicateKeyInABitsFileIsNamed) {
  const std::string dir = sqtest::temp_dir("hard_dup");
  const std::string bits = sqtest::write_temp(
      dir, "dup.json",
      R"({"format": "sigmaquant-bits", "version": 1, "default": {"wbits": 4, "abits": 8},
          "layers": {"conv1": {"wbits": 4}, "conv1": {"wbits": 2}}})");
  expect_refused(run_cli("cost -m lenet5 --bits " + bits), {bits, "duplicate key 'conv1'"});
}

TEST(CliHardening, NegativeWeightScaleIsRefusedBeforeExport) {
  const std::string data = synthetic_npy("hard_scale_data", 64);
  const std::string dir = sqtest::temp_dir("hard_scale");
  sq::save_graph(dir + "/f.sqg", small_cnn(false, true));
  auto r = run_cli("ptq -m " + dir + "/f.sqg --wbits 8 --abits 8 --calib-samples 32 --data npy "
                   "--data-dir " + data + " --threads 1 -q -o " + dir + "/q.sqg");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  sq::QuantModel qm = sq::load_qmodel(dir + "/q.sqg");
  qm.weight_scales["c2"][0] = -0.02f;
  sq::save_qmodel(dir + "/neg.sqg", qm);
  for (const char* format : {"sqm", "c", "onnx"}) {
    r = run_cli("export -m " + dir + "/neg.sqg --format " + format + " -o " + dir + "/out_" +
                format);
    expect_refused(r, {dir + "/neg.sqg", "weight_scales.c2[0]", "-0.02"});
    EXPECT_FALSE(sq::file_exists(dir + "/out_" + format));
  }
}

}  // namespace
