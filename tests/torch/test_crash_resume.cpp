// Crash safety, end to end: `sigmaquant train` (and `qat`) killed with SIGKILL after its first
// checkpoint, then run again with --resume, reaches exactly the result of an uninterrupted run
// (same seed, one thread), and no truncated file is ever left under a final name.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "sigmaquant/fileutil.h"
#include "sigmaquant/graph_io.h"
#include "sigmaquant/qmodel.h"
#include "test_util.h"

namespace {

using sqtest::have_fashion_mnist;

// The kill comes right after the first checkpoint, with kEpochs - 1 epochs still to run; the
// test asserts that it landed (the process died of SIGKILL) instead of passing when the run ends
// first.
constexpr int kEpochs = 8;

std::string joined(const std::vector<std::string>& args) {
  std::string s;
  for (const auto& a : args) s += (s.empty() ? "" : " ") + a;
  return s;
}

using sqtest::files_in;
using sqtest::spawn_cli;

// The "history" array of a checkpoint's meta.
nlohmann::json checkpoint_history(const std::string& path) {
  return sq::load_graph_file(path).meta["checkpoint"]["history"];
}

// Runs `job -o dir/full.sqg` to the end, then `job -o dir/run.sqg`, killed with SIGKILL as soon
// as its first checkpoint (written by rename) appears, then `job -o dir/run.sqg --resume --json`.
// Returns the resumed run's JSON with "checkpoint_epoch" (where the kill left it) added; checks
// along the way that the kill landed mid-run, that the checkpoint is whole, that no temporary is
// left, and that the resumed run carried the killed run's epochs over and completed the rest.
nlohmann::json kill_then_resume(const std::vector<std::string>& job, const std::string& dir) {
  nlohmann::json none;
  auto r = sqtest::run_cli(joined(job) + " -o " + dir + "/full.sqg");
  EXPECT_EQ(r.exit_code, 0) << r.output;

  const std::string out = dir + "/run.sqg", ckpt = out + ".ckpt";
  std::vector<std::string> args = job;
  args.insert(args.end(), {"-o", out});
  const pid_t pid = spawn_cli(args, dir + "/killed.log");
  EXPECT_GT(pid, 0);
  if (pid <= 0) return none;
  // Wait for the artefact, not for a time: the checkpoint appears under its final name only once
  // it is whole (temp file + rename). The deadline only bounds a run that never writes one.
  int status = 0;
  bool exited = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(5);
  while (!sq::file_exists(ckpt) && std::chrono::steady_clock::now() < deadline) {
    exited = ::waitpid(pid, &status, WNOHANG) == pid;
    if (exited) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  if (!exited) {
    ::kill(pid, SIGKILL);
    EXPECT_EQ(::waitpid(pid, &status, 0), pid);
  }
  // The run was still going and the signal ended it: it did not finish (or fail) before the kill.
  const bool killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
  EXPECT_TRUE(killed) << "the run was not killed mid-run (wait status " << status << "); log:\n"
                      << sq::read_file(dir + "/killed.log");
  EXPECT_TRUE(sq::file_exists(ckpt)) << "no checkpoint appeared; log:\n"
                                     << sq::read_file(dir + "/killed.log");
  if (!sq::file_exists(ckpt) || !killed) return none;
  EXPECT_FALSE(sq::file_exists(out)) << "the result is written only when training ends";

  // Whatever the moment of the kill, the checkpoint under its final name is whole: it loads.
  const sq::GraphFile ck = sq::load_graph_file(ckpt);
  const int epoch = ck.meta["checkpoint"]["epoch"].get<int>();
  const nlohmann::json killed_history = ck.meta["checkpoint"]["history"];
  EXPECT_GE(epoch, 1);
  EXPECT_LT(epoch, kEpochs);
  EXPECT_EQ(killed_history.size(), static_cast<size_t>(epoch));
  ::testing::Test::RecordProperty("killed_after_epoch", epoch);

  r = sqtest::run_cli(joined(args) + " --resume --json");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  const auto brace = r.output.find('{');
  EXPECT_NE(brace, std::string::npos) << r.output;
  if (r.exit_code != 0 || brace == std::string::npos) return none;
  EXPECT_TRUE(sq::file_exists(out));

  // The resumed run is complete: its last checkpoint is at the last epoch with every epoch's
  // record, and the killed run's records were carried over (timings included), not recomputed.
  const nlohmann::json history = checkpoint_history(ckpt);
  EXPECT_EQ(sq::load_graph_file(ckpt).meta["checkpoint"]["epoch"], kEpochs);
  EXPECT_EQ(history.size(), static_cast<size_t>(kEpochs));
  for (size_t e = 0; e < history.size(); ++e) {
    EXPECT_EQ(history[e]["epoch"], e + 1);
    if (e < killed_history.size()) {
      EXPECT_EQ(history[e], killed_history[e]) << "epoch " << e + 1;
    }
  }
  // The same losses as the uninterrupted run, epoch for epoch.
  const nlohmann::json full = checkpoint_history(dir + "/full.sqg.ckpt");
  EXPECT_EQ(full.size(), history.size());
  for (size_t e = 0; e < std::min(full.size(), history.size()); ++e) {
    EXPECT_EQ(full[e]["train_loss"], history[e]["train_loss"]) << "epoch " << e + 1;
    EXPECT_EQ(full[e]["train_accuracy"], history[e]["train_accuracy"]) << "epoch " << e + 1;
  }

  // No temporary is left, except one a SIGKILL cut off in the middle of a checkpoint write (the
  // killed process cannot remove it; it never replaces a final name).
  const std::string killed_tmp = "run.sqg.ckpt.tmp." + std::to_string(pid);
  for (const auto& name : files_in(dir))
    if (name.find(".tmp.") != std::string::npos && name != killed_tmp)
      ADD_FAILURE() << "temporary file left behind: " << name;
  nlohmann::json j = nlohmann::json::parse(r.output.substr(brace));
  j["checkpoint_epoch"] = epoch;
  return j;
}

void expect_same_weights(const sq::Graph& a, const sq::Graph& b) {
  ASSERT_EQ(a.nodes.size(), b.nodes.size());
  for (size_t i = 0; i < a.nodes.size(); ++i)
    EXPECT_EQ(a.nodes[i].params, b.nodes[i].params) << a.nodes[i].name;
  EXPECT_EQ(a.input_mean, b.input_mean);
  EXPECT_EQ(a.input_std, b.input_std);
}

const std::vector<std::string> kData = {"--batch-size", "32", "--limit-train", "384",
                                        "--limit-test", "64", "--threads",     "1",
                                        "--quiet"};

TEST(CrashSafety, TrainKilledThenResumedReachesTheUninterruptedWeights) {
  if (!have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  const std::string dir = sqtest::temp_dir("crash_train");
  std::vector<std::string> job = {"train",  "-m", "lenet5", "--epochs", std::to_string(kEpochs),
                                  "--seed", "7"};
  job.insert(job.end(), kData.begin(), kData.end());
  const nlohmann::json j = kill_then_resume(job, dir);
  ASSERT_FALSE(j.is_null());
  EXPECT_EQ(j["resumed_from_epoch"], j["checkpoint_epoch"]);
  EXPECT_EQ(j["history"].size(), static_cast<size_t>(kEpochs));
  expect_same_weights(sq::load_graph(dir + "/full.sqg"), sq::load_graph(dir + "/run.sqg"));
}

TEST(CrashSafety, QatKilledThenResumedReachesTheUninterruptedModel) {
  if (!have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  const std::string dir = sqtest::temp_dir("crash_qat");
  std::vector<std::string> fp32 = {"train", "-m", "lenet5",         "--epochs",
                                   "1",     "-o", dir + "/fp32.sqg"};
  fp32.insert(fp32.end(), kData.begin(), kData.end());
  const auto r = sqtest::run_cli(joined(fp32));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ::unlink((dir + "/fp32.sqg.ckpt").c_str());  // only run*/full* files in dir from here on

  std::vector<std::string> job = {"qat", "-m",       dir + "/fp32.sqg",       "--wbits",
                                  "4",   "--epochs", std::to_string(kEpochs), "--seed",
                                  "3"};
  job.insert(job.end(), kData.begin(), kData.end());
  const nlohmann::json j = kill_then_resume(job, dir);
  ASSERT_FALSE(j.is_null());
  const sq::QuantModel a = sq::load_qmodel(dir + "/full.sqg"),
                       b = sq::load_qmodel(dir + "/run.sqg");
  expect_same_weights(a.graph, b.graph);
  EXPECT_EQ(a.bits, b.bits);
  EXPECT_EQ(a.weight_scales, b.weight_scales);
  ASSERT_EQ(a.acts.size(), b.acts.size());
  for (const auto& [node, q] : a.acts) {
    ASSERT_TRUE(b.acts.count(node)) << node;
    const sq::ActQuant& p = b.acts.at(node);
    EXPECT_EQ(q.bits, p.bits) << node;
    EXPECT_EQ(q.scale, p.scale) << node;
    EXPECT_EQ(q.zero_point, p.zero_point) << node;
    EXPECT_EQ(q.lo, p.lo) << node;
    EXPECT_EQ(q.hi, p.hi) << node;
  }
  EXPECT_EQ(a.meta["eval"]["accuracy"], b.meta["eval"]["accuracy"]);
}

}  // namespace
