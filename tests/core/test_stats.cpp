// Seed statistics: mean ± std, Welch's t-test, and the Pareto summary (significance against the
// best method, memory saved against uniform at equal accuracy).
#include <gtest/gtest.h>

#include <cmath>

#include "sigmaquant/run_log.h"
#include "sigmaquant/stats.h"

namespace {

TEST(Stats, MeanAndSampleStd) {
  const sq::MeanStd m = sq::mean_std({2, 4, 4, 4, 5, 5, 7, 9});
  EXPECT_EQ(m.n, 8);
  EXPECT_DOUBLE_EQ(m.mean, 5);
  EXPECT_NEAR(m.std, std::sqrt(32.0 / 7), 1e-12);  // n - 1 in the denominator
  EXPECT_EQ(sq::mean_std({3}).std, 0);
  EXPECT_EQ(sq::mean_std({}).n, 0);
}

TEST(Stats, WelchMatchesAWorkedExample) {
  // Two samples of 15 with unequal variances; t, df by hand, p by numerical integration of
  // Student's t density (0.021378).
  const std::vector<double> a = {27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1,
                                 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4};
  const std::vector<double> b = {27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0,
                                 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4};
  const sq::WelchTest w = sq::welch_t_test(a, b);
  ASSERT_TRUE(w.defined);
  EXPECT_NEAR(w.t, -2.455356398, 1e-6);
  EXPECT_NEAR(w.df, 24.98852929, 1e-6);
  EXPECT_NEAR(w.p, 0.021378, 2e-5);
  const sq::WelchTest r = sq::welch_t_test(b, a);  // symmetric
  EXPECT_NEAR(r.t, -w.t, 1e-12);
  EXPECT_NEAR(r.p, w.p, 1e-12);
}

TEST(Stats, WelchEdgeCases) {
  EXPECT_FALSE(sq::welch_t_test({1}, {1, 2}).defined);  // one seed: no test
  const sq::WelchTest same = sq::welch_t_test({0.9, 0.9}, {0.9, 0.9});
  EXPECT_TRUE(same.defined);
  EXPECT_EQ(same.p, 1);
  const sq::WelchTest apart = sq::welch_t_test({0.9, 0.9}, {0.8, 0.8});
  EXPECT_EQ(apart.p, 0);
  // Identical samples with spread: t = 0, p = 1.
  const sq::WelchTest zero = sq::welch_t_test({1, 2, 3}, {1, 2, 3});
  EXPECT_NEAR(zero.t, 0, 1e-12);
  EXPECT_NEAR(zero.p, 1, 1e-12);
}

sq::ParetoPoint point(const std::string& method, const std::string& budget, uint64_t seed,
                      double acc, double bytes) {
  sq::ParetoPoint p;
  p.method = method, p.budget = budget, p.seed = seed, p.accuracy = acc, p.weight_bytes = bytes;
  p.avg_bits = bytes / 1000;
  p.search_seconds = method == "uniform" ? 0 : 10;
  p.final_seconds = 20, p.final_qat_epochs = 0.5;  // 40 s per QAT epoch
  return p;
}

TEST(Stats, ParetoSummaryCellsSignificanceAndIsoMemory) {
  sq::ParetoResult r;
  r.model = "net", r.target = "t", r.fp32_accuracy = 0.92;
  const double u[3][3] = {{0.80, 0.81, 0.79}, {0.88, 0.89, 0.87}, {0.90, 0.91, 0.89}};
  const double sqv[3] = {0.86, 0.87, 0.88};  // at 2 bits, memory 2000
  const double noisy[3] = {0.70, 0.88, 0.79};
  for (uint64_t s = 1; s <= 3; ++s) {
    r.points.push_back(point("uniform", "2 bits", s, u[0][s - 1], 2000));
    r.points.push_back(point("sigmaquant", "2 bits", s, sqv[s - 1], 2000));
    r.points.push_back(point("random", "2 bits", s, noisy[s - 1], 2000));
    r.points.push_back(point("uniform", "3 bits", s, u[1][s - 1], 3000));
    r.points.push_back(point("uniform", "4 bits", s, u[2][s - 1], 4000));
  }
  const sq::ParetoSummary s = sq::summarize_pareto(r);
  ASSERT_EQ(s.cells.size(), 5u);
  const sq::ParetoCell& sqc = s.cells[1];
  ASSERT_EQ(sqc.method, "sigmaquant");
  EXPECT_TRUE(sqc.best);
  EXPECT_NEAR(sqc.accuracy.mean, 0.87, 1e-12);
  EXPECT_NEAR(sqc.accuracy.std, 0.01, 1e-12);
  EXPECT_EQ(sqc.seeds, (std::vector<uint64_t>{1, 2, 3}));
  // 10 s of search / 40 s per QAT epoch.
  ASSERT_TRUE(sqc.search_epoch_equivalents);
  EXPECT_NEAR(sqc.search_epoch_equivalents->mean, 0.25, 1e-12);
  const sq::ParetoCell& uc = s.cells[0];
  ASSERT_EQ(uc.method, "uniform");
  ASSERT_TRUE(uc.vs_best && uc.vs_best->defined);
  EXPECT_TRUE(uc.significantly_worse);  // 0.80 ± 0.01 against 0.87 ± 0.01
  const sq::ParetoCell& rc = s.cells[2];
  ASSERT_EQ(rc.method, "random");
  EXPECT_FALSE(rc.significantly_worse);  // same mean as 0.79 but spread over 0.70..0.88
  // Uniform reaches 0.87 between 2 bits (0.80, 2000 B) and 3 bits (0.88, 3000 B): 2875 B.
  ASSERT_TRUE(sqc.iso_memory_saving);
  EXPECT_NEAR(*sqc.iso_memory_saving, 1 - 2000.0 / 2875.0, 1e-9);
  // The reference against itself saves nothing; below its cheapest point: no figure.
  EXPECT_NEAR(*uc.iso_memory_saving, 0, 1e-12);
  EXPECT_FALSE(s.cells[2].iso_memory_saving);
  EXPECT_NE(s.cells[2].iso_note.find("cheapest"), std::string::npos);
  const std::string md = sq::pareto_summary_markdown(s);
  EXPECT_NE(md.find("| 2 bits | **sigmaquant** | 3 | 2.00 | 87.00 ± 1.00 |"), std::string::npos)
      << md;
  EXPECT_NE(md.find(" *"), std::string::npos);
  const auto j = s.to_json();
  EXPECT_EQ(j["format"], "sigmaquant-pareto-summary");
  EXPECT_EQ(j["cells"][0]["vs_best"]["significantly_worse"], true);
  // Refusals of one method and budget over two seeds: one entry, both seeds, the first reason.
  for (uint64_t seed : {1, 2}) {
    sq::ParetoRefusal no;
    no.method = "hessian";
    no.budget = "1.5 bits";
    no.seed = seed;
    no.reason = seed == 1 ? "over by 3 KiB" : "other";
    r.refused.push_back(no);
  }
  const sq::ParetoSummary s2 = sq::summarize_pareto(r);
  ASSERT_EQ(s2.refused.size(), 1u);
  EXPECT_EQ(s2.refused[0].seeds, (std::vector<uint64_t>{1, 2}));
  EXPECT_NE(
      sq::pareto_summary_markdown(s2).find("- hessian at 1.5 bits (seeds 1,2): over by 3 KiB"),
      std::string::npos);
  EXPECT_EQ(s2.to_json()["refused"][0]["reason"], "over by 3 KiB");
}

TEST(Stats, ParetoSummaryAccuracyAboveTheReference) {
  sq::ParetoResult r;
  r.points.push_back(point("uniform", "2 bits", 1, 0.80, 2000));
  r.points.push_back(point("sigmaquant", "2 bits", 1, 0.95, 2000));
  const sq::ParetoSummary s = sq::summarize_pareto(r);
  EXPECT_FALSE(s.cells[1].iso_memory_saving);
  EXPECT_NE(s.cells[1].iso_note.find("never reaches"), std::string::npos);
  EXPECT_FALSE(s.cells[0].vs_best->defined);  // one seed each: no test, no star
  EXPECT_FALSE(s.cells[0].significantly_worse);
}

TEST(Stats, ParetoPointSeedRoundTrips) {
  sq::ParetoResult r;
  r.points.push_back(point("uniform", "2 bits", 7, 0.8, 2000));
  const sq::ParetoResult back = sq::ParetoResult::from_json(r.to_json(), "x");
  EXPECT_EQ(back.points[0].seed, 7u);
  EXPECT_DOUBLE_EQ(back.points[0].final_seconds, 20);
  EXPECT_DOUBLE_EQ(back.points[0].final_qat_epochs, 0.5);
}

}  // namespace
