// Crash safety, end to end: `sigmaquant train` (and `qat`) killed with SIGKILL after its first
// checkpoint, then run again with --resume, reaches exactly the result of an uninterrupted run
// (same seed, one thread), and no truncated file is ever left under a final name.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

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

constexpr int kEpochs = 8;  // enough that a kill after the first checkpoint lands mid-run

std::string joined(const std::vector<std::string>& args) {
  std::string s;
  for (const auto& a : args) s += (s.empty() ? "" : " ") + a;
  return s;
}

using sqtest::files_in;
using sqtest::spawn_cli;

// Runs `job -o dir/full.sqg` to the end, then `job -o dir/run.sqg` killed with SIGKILL as soon as
// its first checkpoint (written by rename) appears, then `job -o dir/run.sqg --resume --json`.
// Returns the resumed run's JSON; checks the checkpoint and the temporaries along the way.
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
  int status = 0;
  bool exited = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(2);
  while (!sq::file_exists(ckpt) && !exited && std::chrono::steady_clock::now() < deadline) {
    exited = ::waitpid(pid, &status, WNOHANG) == pid;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  if (!exited) {
    ::kill(pid, SIGKILL);
    EXPECT_EQ(::waitpid(pid, &status, 0), pid);
  }
  EXPECT_TRUE(sq::file_exists(ckpt)) << "no checkpoint appeared; log:\n"
                                     << sq::read_file(dir + "/killed.log");
  if (!sq::file_exists(ckpt)) return none;
  const bool killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;

  // Whatever the moment of the kill, the checkpoint under its final name is whole: it loads.
  const sq::GraphFile ck = sq::load_graph_file(ckpt);
  const int epoch = ck.meta["checkpoint"]["epoch"].get<int>();
  EXPECT_GE(epoch, 1);
  ::testing::Test::RecordProperty("killed_after_epoch", epoch);
  if (killed) {
    EXPECT_LT(epoch, kEpochs);
    EXPECT_FALSE(sq::file_exists(out)) << "the result is written only when training ends";
  } else {  // the run outpaced the poll: resuming must still give the same result (a no-op)
    std::cerr << "note: the run finished before the kill (exit status " << status << ")\n";
  }

  r = sqtest::run_cli(joined(args) + " --resume --json");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  const auto brace = r.output.find('{');
  EXPECT_NE(brace, std::string::npos) << r.output;
  if (r.exit_code != 0 || brace == std::string::npos) return none;

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
