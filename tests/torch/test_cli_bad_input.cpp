// The command-line program on bad input: wrong flags, empty datasets, a model that does not fit
// the data or the bit configuration, unwritable outputs, corrupt model files. Each must end with a
// clear message naming what was wrong and a non-zero exit — never a crash or an "internal error"
// (exit 2).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "sigmaquant/fileutil.h"
#include "sigmaquant/graph_io.h"
#include "sigmaquant/zoo.h"
#include "test_util.h"

namespace {

using sqtest::run_cli;

// A .npy file: preamble, header dict padded to 64 bytes, then the raw data.
std::string npy(const std::string& descr, const std::string& shape, const std::string& data) {
  std::string header =
      "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string out = "\x93NUMPY\x01";
  out.push_back('\0');
  out.push_back(static_cast<char>(header.size() & 0xff));
  out.push_back(static_cast<char>(header.size() >> 8));
  return out + header + data;
}

// An npy dataset directory of n 1x28x28 images per split, labels 0..9 in turn.
std::string npy_dataset(const std::string& tag, int n) {
  const std::string dir = sqtest::temp_dir(tag);
  std::string pixels(static_cast<size_t>(n) * 28 * 28, '\x40'), labels;
  for (int i = 0; i < n; ++i) labels.push_back(static_cast<char>(i % 10));
  const std::string shape = "(" + std::to_string(n) + ", 28, 28)";
  const std::string lshape = "(" + std::to_string(n) + ",)";
  for (const char* split : {"train", "test"}) {
    sqtest::write_temp(dir, std::string(split) + "_images.npy", npy("|u1", shape, pixels));
    sqtest::write_temp(dir, std::string(split) + "_labels.npy", npy("|u1", lshape, labels));
  }
  return dir;
}

// Runs the program and checks: a user error (exit 1, or CLI11's code for a bad flag), never a
// signal or an internal error, and a message that contains every one of `expected`.
void expect_clear_failure(const std::string& args, const std::vector<std::string>& expected,
                          bool flag_error = false) {
  SCOPED_TRACE(args);
  const auto r = run_cli(args);
  if (flag_error) {
    EXPECT_NE(r.exit_code, 0) << r.output;
    EXPECT_NE(r.exit_code, 2) << r.output;
    EXPECT_LT(r.exit_code, 128) << r.output;
  } else {
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("error: "), std::string::npos) << r.output;
  }
  for (const auto& e : expected) EXPECT_NE(r.output.find(e), std::string::npos) << r.output;
}

const std::string kFast = " --epochs 1 --batch-size 8 --threads 1 --quiet";  // train
const std::string kEval = " --threads 1 --quiet";

TEST(CliBadInput, WrongFlags) {
  const std::string data = " --data npy --data-dir " + npy_dataset("flags", 16);
  expect_clear_failure("train -m lenet5 --epochs abc", {"--epochs", "abc"}, true);
  expect_clear_failure("train -m lenet5 --no-such-flag", {"--no-such-flag"}, true);
  expect_clear_failure("eval", {"--model is required"}, true);
  expect_clear_failure("frobnicate", {"unknown subcommand 'frobnicate'", "train, eval"}, true);
  expect_clear_failure("train -m lenet5 --lr -1", {"--lr", "must be a positive number (got -1)"},
                       true);
  expect_clear_failure("eval -m lenet5 --threads 0", {"--threads", "must be a positive number"},
                       true);
  expect_clear_failure("train -m lenet5 --batch-size 0 --epochs 1 --threads 1" + data,
                       {"--batch-size must be at least 1 (got 0)"});
  expect_clear_failure("train -m lenet5 --optimizer rmsprop" + kFast + data,
                       {"--optimizer 'rmsprop'", "expected sgd or adam"});
  expect_clear_failure("train -m lenet5 --schedule steps" + kFast + data,
                       {"--schedule 'steps'", "expected cosine or constant"});
  expect_clear_failure("train -m lenet5 --val-fraction 1.5" + kFast + data,
                       {"validation fraction 1.5"});
  expect_clear_failure("eval -m lenet5 --device tpu" + kEval + data, {"--device 'tpu'"});
  expect_clear_failure("eval -m lenet5 --limit-test -3" + kEval + data, {"--limit-test"});
  expect_clear_failure("eval -m lenet5 --data imagenet", {"unknown data format 'imagenet'"});
  expect_clear_failure("info -m lenet5 --input-shape 1,28", {"--input-shape '1,28'"});
}

TEST(CliBadInput, EmptyOrMissingDataset) {
  const std::string empty = npy_dataset("empty", 0);
  expect_clear_failure("train -m lenet5 --data npy --data-dir " + empty + kFast,
                       {"train_images.npy", "no images"});
  expect_clear_failure("eval -m lenet5" + kEval + " --data npy --data-dir " + empty,
                       {"train_images.npy", "no images"});
  const std::string none = sqtest::temp_dir("nodata");
  expect_clear_failure("eval -m lenet5 --data npy --data-dir " + none,
                       {"train_images.npy: missing file"});
  expect_clear_failure("eval -m lenet5 --data cifar10 --data-dir " + none + "/nowhere",
                       {"nowhere: missing directory"});
  for (const char* f : {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                        "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"})
    sqtest::write_temp(none, f, "");
  expect_clear_failure("eval -m lenet5 --data idx --data-dir " + none,
                       {"train-images-idx3-ubyte: truncated"});
}

TEST(CliBadInput, ModelThatDoesNotFitTheData) {
  const std::string dir = sqtest::temp_dir("mismatch");
  sq::save_graph(dir + "/rgb.sqg", sq::make_zoo_model("lenet5", {3, 32, 32}, 10, 1));
  sq::save_graph(dir + "/five.sqg", sq::make_zoo_model("lenet5", {1, 28, 28}, 5, 1));
  const std::string data = " --data npy --data-dir " + npy_dataset("mismatch_data", 16);
  for (const std::string& cmd : {"eval" + kEval, "train" + kFast + " -o " + dir + "/out.sqg"}) {
    expect_clear_failure(cmd + " -m " + dir + "/rgb.sqg" + data,
                         {"expects inputs of shape [3, 32, 32]", "[1, 28, 28]"});
    expect_clear_failure(cmd + " -m " + dir + "/five.sqg" + data, {"has 5 outputs", "10 classes"});
  }
  EXPECT_FALSE(sq::file_exists(dir + "/out.sqg"));
  if (sq::file_exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"))
    expect_clear_failure("eval -m " + dir + "/rgb.sqg --threads 1 --limit-test 16",
                         {"expects inputs of shape [3, 32, 32]", "fashion-mnist"});
}

TEST(CliBadInput, BitConfigThatDoesNotFitTheModel) {
  const std::string dir = sqtest::temp_dir("bits");
  const std::string r20 = std::string(SQ_SOURCE_DIR) + "/examples/resnet20-mixed.bits.json";
  expect_clear_failure("cost -m lenet5 --bits " + r20,
                       {"resnet20-mixed.bits.json", "model 'lenet5' has no layer named"});
  sqtest::write_temp(dir, "nine.json", R"({"format": "sigmaquant-bits", "version": 1,
      "layers": {"conv1": {"wbits": 9, "abits": 8}}})");
  expect_clear_failure("cost -m lenet5 --bits " + dir + "/nine.json",
                       {"nine.json", "layers.conv1.wbits", "1..8", "got 9"});
  sqtest::write_temp(dir, "broken.json", R"({"format": "sigmaquant-bits", "version": 1,)");
  expect_clear_failure("cost -m lenet5 --bits " + dir + "/broken.json",
                       {"broken.json: not valid JSON"});
  expect_clear_failure("cost -m lenet5 --bits " + dir + "/missing.json", {"missing.json"});
}

TEST(CliBadInput, UnwritableOutputFailsBeforeTraining) {
  const std::string dir = sqtest::temp_dir("unwritable");
  const std::string file = sqtest::write_temp(dir, "plainfile", "x");
  const std::string data = " --data npy --data-dir " + npy_dataset("unwritable_data", 16);
  // Root ignores file modes, so the unwritable places are under a regular file, and a directory.
  expect_clear_failure("train -m lenet5" + kFast + data + " -o " + file + "/x.sqg",
                       {"--out '" + file + "/x.sqg' cannot be written", "not a directory"});
  expect_clear_failure("train -m lenet5" + kFast + data + " -o " + dir,
                       {"--out '" + dir + "' cannot be written", "is a directory"});
  expect_clear_failure(
      "train -m lenet5" + kFast + data + " -o " + dir + "/m.sqg --checkpoint " + file + "/ck",
      {"--checkpoint '" + file + "/ck' cannot be written"});
  expect_clear_failure("train -m lenet5" + kFast + data + " -o /proc/sq-no-such/m.sqg",
                       {"--out '/proc/sq-no-such/m.sqg' cannot be written"});
  // Nothing was trained or left behind.
  EXPECT_FALSE(sq::file_exists(dir + "/m.sqg"));
  EXPECT_EQ(sq::read_file(file), "x");
}

TEST(CliBadInput, ABatchThatCannotFitInMemoryIsRefusedBeforeAnyWork) {
  const std::string dir = sqtest::temp_dir("memory");
  const std::string data = " --data npy --data-dir " + npy_dataset("memory_data", 32);
  expect_clear_failure("train -m lenet5" + kFast + data + " --memory-limit 12X",
                       {"--memory-limit '12X'", "16G"});
  // 1 KiB for the whole process: not even one image, and nothing written.
  expect_clear_failure("train -m lenet5" + kFast + data + " --memory-limit 1K -o " + dir + "/m.sqg",
                       {"training: a training step does not fit in memory even at batch 1",
                        "--memory-limit off skips this check"});
  EXPECT_FALSE(sq::file_exists(dir + "/m.sqg"));
  // quantize checks its QAT before the search starts.
  expect_clear_failure(
      "quantize -m " + std::string(SQ_SOURCE_DIR) +
          "/models/lenet5-fmnist.sqg --avg-bits 4 --memory-limit 1K --threads 1 --quiet"
          " --no-report" +
          data + " -o " + dir + "/q",
      {"QAT: a training step does not fit in memory even at batch 1"});
  EXPECT_FALSE(sq::file_exists(dir + "/q/model.sqg"));
}

TEST(CliBadInput, CorruptModelFiles) {
  const std::string dir = sqtest::temp_dir("corrupt");
  sq::save_graph(dir + "/good.sqg", sq::make_zoo_model("lenet5", {1, 28, 28}, 10, 1));
  const std::string good = sq::read_file(dir + "/good.sqg");
  std::string flipped = good;
  flipped[flipped.size() / 2] ^= 0x20;
  sqtest::write_temp(dir, "flipped.sqg", flipped);
  sqtest::write_temp(dir, "cut.sqg", good.substr(0, good.size() / 3));
  sqtest::write_temp(dir, "empty.sqg", "");
  sqtest::write_temp(dir, "text.sqg", "{\"graph\": {\"name\": \"a model in the wrong format\"}}\n");
  expect_clear_failure("info -m " + dir + "/flipped.sqg", {"flipped.sqg: checksum mismatch"});
  expect_clear_failure("info -m " + dir + "/cut.sqg", {"cut.sqg: checksum mismatch"});
  expect_clear_failure("info -m " + dir + "/empty.sqg", {"empty.sqg: truncated"});
  expect_clear_failure("info -m " + dir + "/text.sqg", {"text.sqg: bad magic"});
  expect_clear_failure("eval -m " + dir + "/flipped.sqg" + kEval, {"flipped.sqg: checksum"});

  // A corrupt checkpoint is named when resuming, and is not silently replaced by a fresh run.
  const std::string data = " --data npy --data-dir " + npy_dataset("corrupt_data", 16);
  sqtest::write_temp(dir, "m.sqg.ckpt", good.substr(0, good.size() / 2));
  expect_clear_failure("train -m lenet5 --resume" + kFast + data + " -o " + dir + "/m.sqg",
                       {"m.sqg.ckpt: checksum mismatch"});
  EXPECT_FALSE(sq::file_exists(dir + "/m.sqg"));
}

}  // namespace
