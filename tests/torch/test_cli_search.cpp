// `sigmaquant quantize` and `sigmaquant pareto` end to end on the shipped lenet5 and small subsets
// of Fashion-MNIST: every method writes its outputs and holds every budget at every recorded
// step, an impossible budget is named with its excess, the Pareto table and report appear, and a
// search killed with SIGKILL then resumed ends exactly where an uninterrupted one does.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "sigmaquant/fileutil.h"
#include "test_util.h"

namespace {

using sqtest::have_fashion_mnist;

using nlohmann::json;
using sqtest::run_cli;

const std::string kSrc = SQ_SOURCE_DIR;

std::string small(const std::string& extra = "", const std::string& cycle = "0.2") {
  return " -m " + kSrc + "/models/lenet5-fmnist.sqg -t " + kSrc +
         "/targets/shiftadd.json --limit-train 1200 --limit-test 300 --val-samples 300 "
         "--kl-samples 128 --adaptive-samples 200 --hessian-samples 128 --cycle-epochs " +
         cycle + " --final-epochs 0.2 --calib-samples 256 --threads 1 --quiet " + extra;
}

json read_json(const std::string& path) { return json::parse(sq::read_file(path)); }

void expect_fits(const json& budgets, const std::string& where) {
  ASSERT_TRUE(budgets.is_array()) << where;
  EXPECT_FALSE(budgets.empty()) << where;
  for (const auto& b : budgets) EXPECT_TRUE(b.at("fits").get<bool>()) << where << ": " << b.dump();
}

using sqtest::files_in;

TEST(CliSearch, SigmaQuantWritesItsOutputsAndHoldsEveryBudgetAtEveryStep) {
  if (!have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  const std::string dir = sqtest::temp_dir("quantize_sq");
  auto r = run_cli("quantize" + small("--avg-bits 3 --max-iterations 2 --json -o " + dir));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* f : {"log.json", "bits.json", "model.sqg", "report.html"})
    EXPECT_TRUE(sq::file_exists(dir + "/" + f)) << f;
  for (const auto& name : files_in(dir)) {
    EXPECT_EQ(name.find(".tmp"), std::string::npos) << name;
    EXPECT_EQ(name.find("search-model"), std::string::npos) << "left behind: " << name;
  }
  json log = read_json(dir + "/log.json");
  EXPECT_EQ(log["format"], "sigmaquant-run");
  EXPECT_EQ(log["method"], "sigmaquant");
  ASSERT_GE(log["iterations"].size(), 1u);
  EXPECT_EQ(log["iterations"][0]["stage"], "phase1");
  for (const auto& it : log["iterations"]) {
    expect_fits(it["budgets"], "iteration " + it["iter"].dump());
    EXPECT_GT(it["accuracy"].get<double>(), 0.3);
    EXPECT_EQ(it["kl"].size(), 5u);  // lenet5's weight layers
  }
  expect_fits(log["final"]["budgets"], "final");
  EXPECT_LE(log["final"]["avg_bits"].get<double>(), 3.0 + 1e-9 + 0.5);  // scales count too
  EXPECT_GT(log["final"]["accuracy"].get<double>(), 0.6);
  EXPECT_GT(log["final"]["search_qat_epochs"].get<double>(), 0);
  EXPECT_FALSE(log["clusters"].is_null());
  EXPECT_NE(sq::read_file(dir + "/report.html").find("<svg"), std::string::npos);
  // The bits file is a valid input of the other commands.
  auto c = run_cli("cost -m " + kSrc + "/models/lenet5-fmnist.sqg -t " + kSrc +
                   "/targets/shiftadd.json --bits " + dir + "/bits.json");
  EXPECT_EQ(c.exit_code, 0) << c.output;
}

// A network with channel concat and squeeze-excitation (the zoo's squeezese: fire modules and
// SE blocks with hardsigmoid gates) through the whole command-line flow on a slice of
// Fashion-MNIST: train briefly, allocate (Phase 1), quantize (SigmaQuant with QAT cycles) under
// a budget that holds at every step, then export to .sqm, C and QDQ ONNX.
TEST(CliSearch, ConcatAndSqueezeExcitationNetworkEndToEnd) {
  if (!have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  const std::string dir = sqtest::temp_dir("quantize_squeezese");
  auto r = run_cli("train -m squeezese --epochs 1 --batch-size 32 --limit-train 1200 "
                   "--limit-test 300 --threads 1 --quiet --json -o " + dir + "/m.sqg");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto a = run_cli("allocate -m " + dir + "/m.sqg -t " + kSrc +
                   "/targets/shiftadd.json --json -o " + dir + "/p1.bits.json");
  ASSERT_EQ(a.exit_code, 0) << a.output;
  const std::string q = dir + "/q";
  r = run_cli("quantize -m " + dir + "/m.sqg -t " + kSrc +
              "/targets/shiftadd.json --limit-train 1200 --limit-test 300 --val-samples 300 "
              "--kl-samples 128 --cycle-epochs 0.2 --final-epochs 0.2 --calib-samples 256 "
              "--threads 1 --quiet --avg-bits 4 --max-iterations 1 --no-report --json -o " + q);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  json log = read_json(q + "/log.json");
  for (const auto& it : log["iterations"]) expect_fits(it["budgets"], "iteration " + it["iter"].dump());
  expect_fits(log["final"]["budgets"], "final");
  EXPECT_EQ(log["iterations"][0]["kl"].size(), 13u);  // squeezese's weight layers
  EXPECT_GT(log["final"]["accuracy"].get<double>(), 0.2);  // 10 classes: chance is 0.1
  for (const char* fmt_ext : {"sqm:/q.sqm", "c:/c", "onnx:/q.onnx"}) {
    const std::string spec = fmt_ext, f = spec.substr(0, spec.find(':'));
    auto e = run_cli("export -m " + q + "/model.sqg --format " + f + " -o " + dir +
                     spec.substr(spec.find(':') + 1));
    EXPECT_EQ(e.exit_code, 0) << f << "\n" << e.output;
  }
}

TEST(CliSearch, EveryBaselineFitsTheSameBudget) {
  if (!have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  for (const char* m : {"uniform", "adaptive", "hessian", "random"}) {
    const std::string dir = sqtest::temp_dir(std::string("quantize_") + m);
    auto r = run_cli("quantize --method " + std::string(m) +
                     small("--avg-bits 2.5 --no-report --json -o " + dir));
    ASSERT_EQ(r.exit_code, 0) << m << "\n" << r.output;
    json log = read_json(dir + "/log.json");
    EXPECT_EQ(log["method"], m);
    expect_fits(log["final"]["budgets"], m);
    EXPECT_GT(log["final"]["accuracy"].get<double>(), 0.3) << m;
    if (std::string(m) == "uniform") {
      EXPECT_EQ(log["settings"]["uniform_bits"], 2);
    } else if (std::string(m) != "random") {
      EXPECT_EQ(log["measurements"].size(), 5u) << m;  // one per weight layer
    }
  }
}

TEST(CliSearch, ExhaustiveTriesEveryFeasibleAssignmentAndRefusesTooMany) {
  if (!have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  const std::string dir = sqtest::temp_dir("quantize_exh");
  // First and last layers pinned at 8: 3 free layers x {2,4,8} = 27 assignments at most.
  auto r = run_cli("quantize --method exhaustive --bits-set 2,4,8 --first-last-bits 8" +
                   small("--avg-bits 4 --no-report --json -o " + dir, "0.05"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  json log = read_json(dir + "/log.json");
  size_t n = log["settings"]["exhaustive_assignments"].get<size_t>();
  EXPECT_GE(n, 2u);
  EXPECT_LE(n, 27u);
  EXPECT_EQ(log["iterations"].size(), n);
  double best = -1;
  json best_bits;
  for (const auto& it : log["iterations"]) {
    expect_fits(it["budgets"], "assignment");
    if (it["accuracy"].get<double>() > best) best = it["accuracy"], best_bits = it["bits"];
  }
  // The returned assignment is the best validated one.
  for (const auto& L : log["layers"])
    EXPECT_EQ(L["bits"], best_bits[L["name"].get<std::string>()]) << L["name"];

  auto e = run_cli("quantize --method exhaustive --exhaustive-limit 10" +
                   small("--avg-bits 4 -o " + dir + "/x"));
  EXPECT_NE(e.exit_code, 0);
  EXPECT_NE(e.output.find("limit 10"), std::string::npos) << e.output;
}

TEST(CliSearch, ImpossibleBudgetNamesTheBudgetAndTheExcess) {
  if (!have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  const std::string dir = sqtest::temp_dir("quantize_impossible");
  for (const char* m : {"sigmaquant", "uniform", "hessian"}) {
    auto r = run_cli("quantize --method " + std::string(m) + " --bits-set 2,4,8" +
                     small("--avg-bits 1.2 -o " + dir + "/" + m));
    EXPECT_NE(r.exit_code, 0) << m;
    EXPECT_NE(r.output.find("weight memory"), std::string::npos) << m << ": " << r.output;
    EXPECT_FALSE(sq::file_exists(dir + "/" + m + "/model.sqg"));
  }
  auto r = run_cli("quantize --method nonsense" + small("--avg-bits 3 -o " + dir + "/n"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("--method 'nonsense'"), std::string::npos) << r.output;
  r = run_cli("quantize -m " + kSrc + "/models/lenet5-fmnist.sqg -t size --limit-train 500 "
              "--limit-test 100 --quiet -o " + dir + "/nb");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("no budgets"), std::string::npos) << r.output;
}

TEST(CliSearch, ParetoWritesTheTableAndTheReport) {
  if (!have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  const std::string dir = sqtest::temp_dir("pareto");
  auto r = run_cli("pareto --methods sigmaquant,uniform --budgets 3,4" +
                   small("--max-iterations 1 -o " + dir));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  json p = read_json(dir + "/pareto.json");
  EXPECT_EQ(p["format"], "sigmaquant-pareto");
  ASSERT_EQ(p["points"].size(), 4u);
  std::string csv = sq::read_file(dir + "/pareto.csv");
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 5);  // header + 4 points
  std::string html = sq::read_file(dir + "/report.html");
  EXPECT_NE(html.find("<svg"), std::string::npos);
  // A second run reuses every finished run (no training: fast, same table).
  auto again = run_cli("pareto --methods sigmaquant,uniform --budgets 3,4 --resume --json" +
                       small("--max-iterations 1 -o " + dir));
  ASSERT_EQ(again.exit_code, 0) << again.output;
  json q = json::parse(again.output.substr(again.output.find('{')));
  EXPECT_EQ(q["points"], p["points"]);
}

TEST(CliSearch, ParetoOverSeedsSummarisesWithErrorBars) {
  if (!have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  const std::string dir = sqtest::temp_dir("pareto_seeds");
  // sigmaquant-ptq: Phase 2 scored by PTQ (no QAT cycle), the cheap variant.
  auto r = run_cli("pareto --methods sigmaquant-ptq,uniform --budgets 3 --seeds 1,2" +
                   small("--max-iterations 1 -o " + dir));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  json p = read_json(dir + "/pareto.json");
  ASSERT_EQ(p["points"].size(), 4u);
  std::set<uint64_t> seeds;
  for (const json& q : p["points"]) {
    seeds.insert(q["seed"].get<uint64_t>());
    EXPECT_NE(q["run_dir"].get<std::string>().find("/seed"), std::string::npos);
  }
  EXPECT_EQ(seeds, (std::set<uint64_t>{1, 2}));
  for (const json& q : p["points"]) {
    if (q["method"] == "sigmaquant-ptq") {
      EXPECT_EQ(q["search_qat_epochs"], 0) << q.dump();
    }
  }
  // The two seeds draw different validation splits: the runs are not copies of each other.
  json s = read_json(dir + "/summary.json");
  EXPECT_EQ(s["format"], "sigmaquant-pareto-summary");
  ASSERT_EQ(s["cells"].size(), 2u);
  for (const json& c : s["cells"]) EXPECT_EQ(c["accuracy"]["n"], 2);
  const std::string md = sq::read_file(dir + "/summary.md");
  EXPECT_NE(md.find("| 3 bits |"), std::string::npos) << md;
  EXPECT_NE(r.output.find("Welch"), std::string::npos);
  // The report draws means over the seeds (error bars where the seeds differ: the unit test
  // Report.SeedsBecomeMeansWithErrorBars counts them).
  EXPECT_NE(sq::read_file(dir + "/report.html").find("Welch"), std::string::npos);
  // A seed listed twice is refused before anything runs.
  auto bad = run_cli("pareto --methods uniform --budgets 3 --seeds 1,1" + small("-o " + dir + "x"));
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.output.find("seed 1 is listed twice"), std::string::npos) << bad.output;
  auto junk = run_cli("pareto --methods uniform --budgets 3 --seeds 1,x" + small("-o " + dir + "y"));
  EXPECT_NE(junk.exit_code, 0);
  EXPECT_NE(junk.output.find("--seeds"), std::string::npos) << junk.output;
}

// A method that proves it cannot meet a budget is a result of the sweep, not its end: the
// refusal is listed (pareto.json, the summary, the report, the table) with the method's reason,
// the other runs go on, and a resume reads the refusal back instead of rerunning it.
TEST(CliSearch, ParetoRecordsARefusedBudgetAndGoesOn) {
  if (!have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  const std::string dir = sqtest::temp_dir("pareto_refused");
  // 1.5 average bits under widths {2,4,8}: no assignment fits; 4 bits: every method fits.
  const std::string job = "pareto --methods sigmaquant-ptq,uniform --budgets 1.5,4 --seeds 1" +
                          small("--bits-set 2,4,8 --max-iterations 1 -o " + dir);
  auto r = run_cli(job);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  json p = read_json(dir + "/pareto.json");
  ASSERT_EQ(p["points"].size(), 2u);
  for (const json& q : p["points"]) EXPECT_EQ(q["budget"], "4 bits") << q.dump();
  ASSERT_EQ(p["refused"].size(), 2u);
  std::set<std::string> who;
  for (const json& q : p["refused"]) {
    EXPECT_EQ(q["budget"], "1.5 bits");
    EXPECT_EQ(q["seed"], 1);
    EXPECT_NE(q["reason"].get<std::string>().find("weight memory"), std::string::npos) << q.dump();
    EXPECT_TRUE(sq::file_exists(q["run_dir"].get<std::string>() + "/refused.json"));
    who.insert(q["method"].get<std::string>());
  }
  EXPECT_EQ(who, (std::set<std::string>{"sigmaquant-ptq", "uniform"}));
  EXPECT_NE(sq::read_file(dir + "/summary.md").find("- uniform at 1.5 bits (seeds 1): uniform: "),
            std::string::npos);
  EXPECT_NE(sq::read_file(dir + "/report.html").find("pareto-refused"), std::string::npos);
  EXPECT_NE(r.output.find("Refused"), std::string::npos) << r.output;
  // Resumed: the refusals are read back (the recorded reason, not a new run), the points reused.
  auto again = run_cli(job + " --resume --json");
  ASSERT_EQ(again.exit_code, 0) << again.output;
  json q = json::parse(again.output.substr(again.output.find('{')));
  EXPECT_EQ(q["points"], p["points"]);
  EXPECT_EQ(q["refused"], p["refused"]);
  // Every run refused: nothing to compare, a non-zero exit that says why, no table written.
  auto none = run_cli("pareto --methods uniform --budgets 1.5" +
                      small("--bits-set 2,4,8 -o " + dir + "/none"));
  EXPECT_NE(none.exit_code, 0);
  EXPECT_NE(none.output.find("every method refused every budget"), std::string::npos)
      << none.output;
  EXPECT_FALSE(sq::file_exists(dir + "/none/pareto.json"));
}

// The words of an argument string (the tests' arguments hold no quoted spaces).
std::vector<std::string> words(const std::string& s) {
  std::vector<std::string> w;
  std::istringstream in(s);
  for (std::string x; in >> x;) w.push_back(x);
  return w;
}

TEST(CliSearch, KilledSearchResumesToTheUninterruptedResult) {
  if (!have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  const std::string dir = sqtest::temp_dir("search_kill");
  const std::string job = "quantize" + small("--avg-bits 3 --max-iterations 3 --no-report --json");
  auto full = run_cli(job + " -o " + dir + "/full");
  ASSERT_EQ(full.exit_code, 0) << full.output;

  const std::string killed = dir + "/killed";
  const pid_t pid = sqtest::spawn_cli(words(job + " -o " + killed), dir + "/killed.log");
  ASSERT_GT(pid, 0);
  int status = 0;
  bool exited = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(3);
  // Kill once the first search step is on disk (log.json written after search-model-0.sqg).
  while (!exited && std::chrono::steady_clock::now() < deadline) {
    if (sq::file_exists(killed + "/log.json") &&
        sq::read_file(killed + "/log.json").find("\"iterations\"") != std::string::npos)
      break;
    exited = ::waitpid(pid, &status, WNOHANG) == pid;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (!exited) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
  }
  ASSERT_TRUE(sq::file_exists(killed + "/log.json")) << sq::read_file(dir + "/killed.log");
  EXPECT_FALSE(sq::file_exists(killed + "/model.sqg")) << "killed before the end";
  json partial = read_json(killed + "/log.json");  // whole: written by rename
  EXPECT_FALSE(partial.contains("final"));

  auto resumed = run_cli(job + " --resume -o " + killed);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  json a = read_json(dir + "/full/log.json"), b = read_json(killed + "/log.json");
  // The recorded steps were taken over, not measured again.
  ASSERT_GE(partial["iterations"].size(), 1u);
  for (size_t i = 0; i < partial["iterations"].size(); ++i)
    EXPECT_EQ(partial["iterations"][i], b["iterations"][i]) << i;
  ASSERT_EQ(a["iterations"].size(), b["iterations"].size());
  for (size_t i = 0; i < a["iterations"].size(); ++i) {
    EXPECT_EQ(a["iterations"][i]["bits"], b["iterations"][i]["bits"]) << i;
    EXPECT_EQ(a["iterations"][i]["accuracy"], b["iterations"][i]["accuracy"]) << i;
  }
  EXPECT_EQ(a["final"]["accuracy"], b["final"]["accuracy"]);
  EXPECT_EQ(sq::read_file(dir + "/full/bits.json"), sq::read_file(killed + "/bits.json"));
}

}  // namespace
