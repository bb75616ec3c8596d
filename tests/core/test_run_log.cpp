// The typed run log and Pareto table: JSON round trips, and errors that name file and field.
#include <gtest/gtest.h>

#include "sigmaquant/run_log.h"
#include "test_util.h"

namespace {

sq::RunLog sample_log() {
  sq::RunLog log;
  log.method = "hessian";
  log.model_name = "lenet5";
  log.model_path = "m.sqg";
  log.fp32_accuracy = 0.9;
  log.target_name = "mcu";
  log.cost_model = "mcu";
  sq::BudgetCheck b;
  b.metric = "latency";
  b.key = "latency_ms";
  b.unit = "s";
  b.budget = 0.01;
  b.value = 0.009;
  log.target_budgets = {b};
  log.settings = {{"bits_set", "2,4,8"}};
  log.measurements = {{"conv1", {{"trace", 3.5}}}};
  sq::RunLayer L;
  L.name = "conv1";
  L.weights = 150;
  L.sigma = 0.2;
  L.bits = 4;
  log.layers = {L};
  sq::RunFinal f;
  f.accuracy = 0.88;
  f.val_accuracy = 0.89;
  f.ptq_accuracy = 0.87;
  f.ptq_val_accuracy = 0.89;
  f.qat_val_accuracy = 0.85;
  f.kept = "before final QAT";
  f.avg_bits = 4;
  f.cost.weight_bytes = 1000;
  f.cost.latency_s = 0.009;
  f.budgets = {b};
  log.final = f;
  sq::RunIteration it;
  it.iter = 1;
  it.stage = "phase2";
  it.bits = {{"conv1", 4}};
  it.abits = {{"conv1", 2}};
  sq::BitChange c{"pool1", 4, 2, "pay: smallest KL per cost"};
  c.activation = true;
  it.changes = {c, {"conv1", 2, 4, "raise: largest KL per cost"}};
  log.iterations = {it};
  return log;
}

TEST(RunLog, JsonRoundTrip) {
  const sq::RunLog log = sample_log();
  const std::string dir = sqtest::temp_dir("runlog");
  sq::write_run_log(dir + "/log.json", log);
  const sq::RunLog back = sq::read_run_log(dir + "/log.json");
  EXPECT_EQ(back.to_json(), log.to_json());
  ASSERT_TRUE(back.final.has_value());
  EXPECT_EQ(back.final->kept, "before final QAT");
  EXPECT_DOUBLE_EQ(back.final->qat_val_accuracy, 0.85);
  ASSERT_TRUE(back.final->cost.latency_s.has_value());
  EXPECT_FALSE(back.final->cost.energy_j.has_value());
  EXPECT_NE(sq::summarize_run(back).find("kept: before final QAT"), std::string::npos);
  // Searched activation widths: a step's per-layer abits and its activation moves.
  ASSERT_EQ(back.iterations.size(), 1u);
  EXPECT_EQ(back.iterations[0].abits.at("conv1"), 2);
  ASSERT_EQ(back.iterations[0].changes.size(), 2u);
  EXPECT_TRUE(back.iterations[0].changes[0].activation);
  EXPECT_FALSE(back.iterations[0].changes[1].activation);
}

TEST(RunLog, ErrorsNameFileAndField) {
  const std::string dir = sqtest::temp_dir("runlog-bad");
  auto log = sample_log().to_json();
  log["layers"][0]["bits"] = "four";
  sqtest::write_temp(dir, "bad.json", log.dump());
  std::string e = sqtest::error_of([&] { sq::read_run_log(dir + "/bad.json"); });
  EXPECT_NE(e.find("bad.json"), std::string::npos) << e;
  EXPECT_NE(e.find("layers[0].bits"), std::string::npos) << e;
  sqtest::write_temp(dir, "dup.json", R"({"format": "sigmaquant-run", "format": "x"})");
  e = sqtest::error_of([&] { sq::read_run_log(dir + "/dup.json"); });
  EXPECT_NE(e.find("duplicate key 'format'"), std::string::npos) << e;
}

TEST(ParetoResult, JsonRoundTrip) {
  sq::ParetoResult p;
  p.model = "lenet5";
  p.target = "mpic";
  p.fp32_accuracy = 0.9;
  sq::ParetoPoint q;
  q.method = "sigmaquant";
  q.budget = "3 bits";
  q.avg_bits = 3;
  q.accuracy = 0.88;
  q.weight_bytes = 2048;
  q.latency_s = 0.002;
  q.run_dir = "runs/p/sigmaquant-3bits";
  p.points = {q, q};
  p.points[1].method = "uniform";
  sq::ParetoRefusal no;
  no.method = "sigmaquant-channel";
  no.budget = "2 bits";
  no.seed = 3;
  no.reason = "no assignment fits target 'mpic'";
  no.run_dir = "runs/p/seed3/sigmaquant-channel-2bits";
  p.refused = {no};
  const std::string dir = sqtest::temp_dir("pareto");
  sq::write_pareto(dir + "/p.json", p);
  const sq::ParetoResult back = sq::read_pareto(dir + "/p.json");
  EXPECT_EQ(back.to_json(), p.to_json());
  EXPECT_EQ(back.points.size(), 2u);
  EXPECT_EQ(back.points[1].method, "uniform");
  ASSERT_EQ(back.refused.size(), 1u);
  EXPECT_EQ(back.refused[0].reason, no.reason);
  EXPECT_EQ(back.refused[0].seed, 3u);
  // A refusal without its reason is named.
  nlohmann::json j = p.to_json();
  j["refused"][0].erase("reason");
  const std::string e = sqtest::error_of([&] { sq::ParetoResult::from_json(j, "p.json"); });
  EXPECT_NE(e.find("refused[0]"), std::string::npos) << e;
  EXPECT_NE(e.find("reason"), std::string::npos) << e;
}

}  // namespace
