// The HTML report and the Pareto helpers (torch-free), and a rendering check with headless
// Chromium: the page must draw something, not a blank sheet.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <vector>

#include "report/svg.h"
#include "sigmaquant/error.h"
#include "sigmaquant/fileutil.h"
#include "sigmaquant/report.h"
#include "test_util.h"

using nlohmann::json;

namespace {

json fixture_log() {
  json layers = json::array();
  const char* names[] = {
      "conv1",          "layer1.0.conv1", "layer1.0.conv2", "<script>alert(\"x\")</script>",
      "layer2.0.conv1", "layer2.0.conv2", "layer3.0.conv1", "fc"};
  const double sigma[] = {0.12, 0.031, 0.029, 0.011, 0.025, 0.009, 0.008, 0.05};
  const int cluster[] = {2, 1, 1, 0, 1, 0, 0, 2};
  const int p1[] = {5, 4, 4, 3, 4, 3, 3, 5};
  const int fin[] = {6, 4, 4, 3, 5, 3, 2, 5};
  for (int i = 0; i < 8; ++i)
    layers.push_back({{"name", names[i]},
                      {"weights", 432 * (i + 1)},
                      {"sigma", sigma[i]},
                      {"cluster", cluster[i]},
                      {"phase1_bits", p1[i]},
                      {"bits", fin[i]},
                      {"kl", 0.001 * (i + 1)}});
  auto budgets = [](double v) {
    return json::array({{{"key", "weight_kib"},
                         {"metric", "weight memory"},
                         {"value", v},
                         {"budget", 131072},
                         {"unit", "B"},
                         {"fits", v <= 131072}},
                        {{"key", "latency"},
                         {"metric", "latency"},
                         {"value", v * 1e-7},
                         {"budget", 0.0129},
                         {"unit", "s"},
                         {"fits", v * 1e-7 <= 0.0129}}});
  };
  json iters = json::array();
  const double acc[] = {0.91, 0.925, 0.933, 0.94};
  const double wb[] = {120000, 128000, 135000, 130000};
  for (int i = 0; i < 4; ++i) {
    json it = {{"iter", i},
               {"stage", i == 0   ? "phase1"
                         : i == 3 ? "final"
                                  : "phase2"},
               {"accuracy", acc[i]},
               {"avg_bits", 3.5 + 0.1 * i},
               {"cost",
                {{"weight_bytes", wb[i]}, {"energy_j", 1e-5}, {"latency_s", 0.012}, {"bops", 1e9}}},
               {"budgets", budgets(wb[i])},
               {"qat_epochs", 0.5},
               {"seconds", 40.0}};
    if (i == 1)
      it["changes"] = json::array(
          {{{"layer", "conv1"}, {"from", 5}, {"to", 6}, {"why", "KL > <b>\"band\"</b>"}}});
    if (i == 2)
      it["changes"] = json::array({{{"layer", "layer2.0.conv1"}, {"from", 4}, {"to", 5}}});
    if (i == 3)
      it["changes"] = json::array({{{"layer", "layer3.0.conv1"}, {"from", 3}, {"to", 2}}});
    iters.push_back(it);
  }
  return {
      {"format", "sigmaquant-run"},
      {"version", 1},
      {"method", "sigmaquant"},
      {"model",
       {{"name", "resnet20"}, {"path", "models/resnet20-fmnist.sqg"}, {"fp32_accuracy", 0.9458}}},
      {"target",
       {{"name", "shiftadd"},
        {"cost_model", "shiftadd"},
        {"budgets", json::array({{{"metric", "weight memory"},
                                  {"key", "weight_kib"},
                                  {"budget", 131072},
                                  {"unit", "B"}}})}}},
      {"settings", {{"k_max", 4}, {"qat_lr", 1e-4}, {"calib", "mse"}, {"first_last_8bit", false}}},
      {"clusters", {{"k", 3}, {"centers", {0.0093, 0.028, 0.085}}, {"bits", {3, 4, 5}}}},
      {"layers", layers},
      {"iterations", iters},
      {"final",
       {{"accuracy", 0.94},
        {"avg_bits", 3.6},
        {"cost",
         {{"weight_bytes", 130000}, {"energy_j", 1e-5}, {"latency_s", 0.013}, {"bops", 1e9}}},
        {"budgets", budgets(130000)},
        {"qat_epochs_total", 1.5},
        {"seconds_total", 300},
        {"bits_file", "runs/x.bits.json"},
        {"model_file", "runs/x.sqg"}}}};
}

json fixture_pareto() {
  json pts = json::array();
  const char* methods[] = {"sigmaquant", "uniform", "hawq"};
  for (int m = 0; m < 3; ++m)
    for (int b = 0; b < 4; ++b) {
      const double bits = 2.0 + b;
      json p = {{"method", methods[m]},
                {"budget", fmt::format("{:.1f} bits", bits)},
                {"avg_bits", bits},
                {"accuracy", 0.80 + 0.035 * b - 0.01 * m + (b == 2 && m == 1 ? -0.06 : 0)},
                {"weight_bytes", 34000.0 * bits},
                {"latency_s", 0.004 * bits * (1 + 0.1 * m)},
                {"qat_epochs", 2},
                {"seconds", 120}};
      if (m != 2) p["energy_j"] = 2.5e-6 * bits;  // hawq has no energy figure
      pts.push_back(p);
    }
  return {{"format", "sigmaquant-pareto"}, {"version", 1},
          {"model", "resnet20"},           {"target", "shiftadd"},
          {"fp32_accuracy", 0.9458},       {"points", pts}};
}

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + what.size())) ++n;
  return n;
}

// Every non-void element is closed, in order. Returns "" or what is wrong.
std::string check_tags(const std::string& html) {
  static const std::set<std::string> kVoid = {"meta",  "br",   "hr",  "img",
                                              "input", "link", "col", "!DOCTYPE"};
  std::vector<std::string> stack;
  size_t p = 0;
  while ((p = html.find('<', p)) != std::string::npos) {
    size_t e = html.find('>', p);
    if (e == std::string::npos) return "unterminated tag at " + std::to_string(p);
    std::string tag = html.substr(p + 1, e - p - 1);
    p = e + 1;
    const bool closing = !tag.empty() && tag[0] == '/';
    const bool self = !tag.empty() && tag.back() == '/';
    std::string name = tag.substr(closing ? 1 : 0);
    name = name.substr(0, name.find_first_of(" \t\n/"));
    if (self || kVoid.count(name)) continue;
    if (name == "style") {  // CSS may hold '<' or '>': skip to its end
      size_t end = html.find("</style>", p);
      if (end == std::string::npos) return "unclosed <style>";
      p = end + 8;
      continue;
    }
    if (!closing) {
      stack.push_back(name);
    } else {
      if (stack.empty() || stack.back() != name)
        return "</" + name + "> closes <" + (stack.empty() ? "nothing" : stack.back()) + ">";
      stack.pop_back();
    }
  }
  return stack.empty() ? "" : "<" + stack.back() + "> is never closed";
}

}  // namespace

TEST(Report, HasTheSectionsAndPlots) {
  json log = fixture_log(), pa = fixture_pareto();
  const std::string h = sq::render_report_html(log, &pa);
  for (const char* id : {"summary", "settings", "sigma", "bits", "trajectory", "pareto", "layers"})
    EXPECT_NE(h.find(std::string("<section id=\"") + id + "\">"), std::string::npos) << id;
  EXPECT_NE(h.find("<title>SigmaQuant report: resnet20 on shiftadd (sigmaquant)</title>"),
            std::string::npos);
  // σ, bits, 3 trajectory plots, 3 Pareto plots.
  EXPECT_EQ(count(h, "<svg "), 8u);
  EXPECT_EQ(count(h, "</svg>"), 8u);
  EXPECT_NE(h.find("94.58 %"), std::string::npos);         // FP32 accuracy
  EXPECT_NE(h.find("94.00 %"), std::string::npos);         // final accuracy
  EXPECT_NE(h.find("\u2713 fits"), std::string::npos);     // weight memory fits
  EXPECT_NE(h.find("\u2717 exceeds"), std::string::npos);  // latency does not
  EXPECT_NE(h.find("conv1 5\u21926"), std::string::npos);  // the Phase 2 changes
  EXPECT_NE(h.find("cluster 2: centre 0.085, 5 bits"), std::string::npos);
  EXPECT_NE(h.find("5m00s"), std::string::npos);   // wall time
  EXPECT_NE(h.find("qat_lr"), std::string::npos);  // settings
  EXPECT_EQ(check_tags(h), "");
}

// A refused run is listed under the fronts with its reason (escaped); a malformed entry is named.
TEST(Report, ListsTheRefusedRuns) {
  json log = fixture_log(), pa = fixture_pareto();
  pa["refused"] = json::array({{{"method", "sigmaquant-channel"},
                                {"budget", "2 bits"},
                                {"seed", 2},
                                {"reason", "latency < budget"}}});
  const std::string h = sq::render_report_html(log, &pa);
  EXPECT_NE(h.find("<ul id=\"pareto-refused\">"), std::string::npos);
  EXPECT_NE(h.find("<b>sigmaquant-channel</b> at 2 bits, seed 2: latency &lt; budget"),
            std::string::npos);
  EXPECT_EQ(check_tags(h), "");
  pa["refused"][0].erase("reason");
  std::string e = sqtest::error_of([&] { sq::render_report_html(log, &pa); });
  EXPECT_NE(e.find("refused[0].reason"), std::string::npos) << e;
  pa["refused"] = "no";
  e = sqtest::error_of([&] { sq::render_report_html(log, &pa); });
  EXPECT_NE(e.find("field 'refused' must be an array"), std::string::npos) << e;
}

TEST(Report, SeedsBecomeMeansWithErrorBars) {
  json log = fixture_log(), pa = fixture_pareto();
  json pts = json::array();
  for (const json& p : pa["points"])
    for (int seed = 1; seed <= 3; ++seed) {
      json q = p;
      q["seed"] = seed;
      q["accuracy"] = p["accuracy"].get<double>() + 0.01 * (seed - 2);  // ± 1 point
      pts.push_back(q);
    }
  pa["points"] = pts;
  const std::string h = sq::render_report_html(log, &pa);
  // One bar per (method, budget) and plot: 12 on memory, 12 on latency, 8 on energy.
  EXPECT_EQ(count(h, "class=\"errbar\""), 32u);
  EXPECT_NE(h.find("Welch"), std::string::npos);
  EXPECT_NE(h.find("\u00b1 1.00 %"), std::string::npos);  // the seeds' spread in the table
  EXPECT_EQ(count(h, "<tr><td>sigmaquant</td>"), 4u);     // one row per budget, not per seed
  EXPECT_EQ(check_tags(h), "");
  // Without seeds: no bars, no p column.
  json plain = fixture_pareto();
  const std::string h2 = sq::render_report_html(log, &plain);
  EXPECT_EQ(count(h2, "errbar"), 0u);
  EXPECT_EQ(h2.find("p vs best"), std::string::npos);
}

TEST(Report, IsSelfContained) {
  json log = fixture_log(), pa = fixture_pareto();
  std::string h = sq::render_report_html(log, &pa);
  // The SVG namespace is a name, not a resource that is fetched.
  const std::string ns = "xmlns=\"http://www.w3.org/2000/svg\"";
  for (size_t p; (p = h.find(ns)) != std::string::npos;) h.erase(p, ns.size());
  for (const char* bad : {"http:", "https:", "<script", "<link", "<img", "<iframe", "@import",
                          "url(", "src=", "href="})
    EXPECT_EQ(h.find(bad), std::string::npos) << bad;
}

TEST(Report, EscapesText) {
  json log = fixture_log();
  log["model"]["name"] = "a&b<i>";
  log["settings"]["note"] = "<b>\"quoted\"</b>";
  const std::string h = sq::render_report_html(log);
  EXPECT_EQ(h.find("<script"), std::string::npos);
  EXPECT_NE(h.find("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"), std::string::npos);
  EXPECT_NE(h.find("a&amp;b&lt;i&gt;"), std::string::npos);
  EXPECT_EQ(h.find("<b>\"quoted"), std::string::npos);
  EXPECT_NE(
      h.find("<span title=\"KL &gt; &lt;b&gt;&quot;band&quot;&lt;/b&gt;\">conv1 5\u21926</span>"),
      std::string::npos);
  EXPECT_EQ(check_tags(h), "");
  EXPECT_EQ(sq::svg::escape("<a href='x'>&</a>"), "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;");
}

TEST(Report, OmitsWhatIsAbsent) {
  // A uniform-method log: no clusters, σ, Phase 1 bits, iterations, final or settings.
  json log = {{"format", "sigmaquant-run"},
              {"method", "uniform"},
              {"model", {{"name", "lenet5"}}},
              {"layers", json::array({{{"name", "conv1"}, {"weights", 150}, {"bits", 4}},
                                      {{"name", "fc"}, {"weights", 8400}, {"bits", 4}}})}};
  std::string h = sq::render_report_html(log);
  EXPECT_NE(h.find("id=\"summary\""), std::string::npos);
  EXPECT_NE(h.find("id=\"bits\""), std::string::npos);
  EXPECT_NE(h.find("id=\"layers\""), std::string::npos);
  for (const char* id : {"settings", "sigma", "trajectory", "pareto", "budgets"})
    EXPECT_EQ(h.find(std::string("id=\"") + id + "\""), std::string::npos) << id;
  EXPECT_EQ(count(h, "<svg "), 1u);
  EXPECT_NE(h.find("4.00"), std::string::npos);  // average bits from the layers
  EXPECT_EQ(check_tags(h), "");

  // σ without clusters: one plain series; null optional fields count as absent.
  log["layers"][0]["sigma"] = 0.1;
  log["layers"][1]["sigma"] = 0.02;
  log["layers"][1]["kl"] = nullptr;
  log["iterations"] = json::array({{{"iter", 0}, {"accuracy", nullptr}, {"avg_bits", 4.0}}});
  h = sq::render_report_html(log);
  EXPECT_NE(h.find("id=\"sigma\""), std::string::npos);
  EXPECT_EQ(h.find("cluster"), std::string::npos);
  EXPECT_NE(h.find("id=\"trajectory\""), std::string::npos);
  EXPECT_EQ(h.find("Accuracy per iteration"), std::string::npos);  // no accuracy figures
  EXPECT_EQ(check_tags(h), "");
}

TEST(Report, ValidationNamesTheField) {
  using sqtest::error_of;
  auto err = [](json log) { return error_of([&] { sq::validate_run_log(log, "runs/x.json"); }); };
  json log = fixture_log();
  EXPECT_EQ(err(log), "");

  json bad = log;
  bad["layers"][1]["bits"] = "4";
  std::string e = err(bad);
  EXPECT_NE(e.find("runs/x.json:"), std::string::npos) << e;
  EXPECT_NE(e.find("layers[1].bits"), std::string::npos) << e;
  EXPECT_NE(e.find("integer"), std::string::npos) << e;

  bad = log;
  bad["model"].erase("name");
  EXPECT_NE(err(bad).find("missing field 'model.name'"), std::string::npos) << err(bad);
  bad = log;
  bad["layers"] = 5;
  EXPECT_NE(err(bad).find("field 'layers' must be an array"), std::string::npos) << err(bad);
  bad.erase("layers");  // a run still going has no layer list yet
  EXPECT_EQ(err(bad), "");
  EXPECT_EQ(sq::render_report_html(bad).find("id=\"layers\""), std::string::npos);
  bad = log;
  bad["iterations"][2]["stage"] = 3;
  EXPECT_NE(err(bad).find("iterations[2].stage"), std::string::npos) << err(bad);
  bad = log;
  bad["final"]["budgets"][0]["budget"] = -1;
  EXPECT_NE(err(bad).find("final.budgets[0].budget"), std::string::npos) << err(bad);
  bad = log;
  bad["layers"][0]["cluster"] = 3;  // k = 3: clusters 0..2
  EXPECT_NE(err(bad).find("layers[0].cluster"), std::string::npos) << err(bad);
  bad = log;
  bad["clusters"]["centers"] = {0.1};
  EXPECT_NE(err(bad).find("clusters.centers"), std::string::npos) << err(bad);
  bad = log;
  bad["iterations"][1]["changes"][0]["to"] = "six";
  EXPECT_NE(err(bad).find("iterations[1].changes[0].to"), std::string::npos) << err(bad);
  bad = log;
  bad["model"]["fp32_accuracy"] = 94.58;  // a percentage, not a fraction
  EXPECT_NE(err(bad).find("model.fp32_accuracy"), std::string::npos) << err(bad);
  EXPECT_NE(err(fixture_pareto()).find("sigmaquant-run"), std::string::npos);  // wrong file
  EXPECT_NE(err(json::array()).find("object"), std::string::npos);

  // Without a file name the report says which input.
  bad = log;
  bad["layers"][1]["bits"] = 33;
  e = error_of([&] { sq::render_report_html(bad); });
  EXPECT_EQ(e.rfind("run log: field 'layers[1].bits'", 0), 0u) << e;

  json pa = fixture_pareto();
  pa["points"][2].erase("accuracy");
  e = error_of([&] { sq::validate_pareto(pa, "p.json"); });
  EXPECT_NE(e.find("p.json: missing field 'points[2].accuracy'"), std::string::npos) << e;
  e = error_of([&] { sq::render_report_html(log, &pa); });
  EXPECT_EQ(e.rfind("pareto:", 0), 0u) << e;
}

TEST(Pareto, FrontPerMethod) {
  json pts = json::array({
      {{"method", "a"}, {"accuracy", 0.90}, {"weight_bytes", 100}},  // front
      {{"method", "a"}, {"accuracy", 0.92}, {"weight_bytes", 200}},  // front
      {{"method", "a"}, {"accuracy", 0.89}, {"weight_bytes", 150}},  // dominated by the first
      {{"method", "a"}, {"accuracy", 0.92}, {"weight_bytes", 300}},  // same accuracy, more memory
      {{"method", "b"}, {"accuracy", 0.80}, {"weight_bytes", 150}},  // other method: front
      {{"method", "b"}, {"accuracy", 0.95}},                         // no metric: not on the front
      {{"method", "c"}, {"accuracy", 0.85}, {"weight_bytes", 120}},  // exact duplicates: both on it
      {{"method", "c"}, {"accuracy", 0.85}, {"weight_bytes", 120}},
  });
  json f = sq::pareto_front(pts, "weight_bytes");
  ASSERT_EQ(f.size(), pts.size());
  std::vector<bool> got;
  for (const auto& p : f) got.push_back(p.at("front").get<bool>());
  EXPECT_EQ(got, (std::vector<bool>{true, true, false, false, true, false, true, true}));
  EXPECT_EQ(f[0].at("weight_bytes"), 100);  // the rest of each point is kept

  EXPECT_THROW(sq::pareto_front(pts, "area"), sq::Error);
  json bad = pts;
  bad[3]["accuracy"] = "high";
  EXPECT_NE(
      sqtest::error_of([&] { sq::pareto_front(bad, "latency_s"); }).find("points[3].accuracy"),
      std::string::npos);
}

TEST(Pareto, CsvAndSvg) {
  json pa = fixture_pareto();
  pa["points"][0]["method"] = "sigma, \"quant\"";
  const std::string csv = sq::pareto_csv(pa);
  std::istringstream in(csv);
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line,
            "method,budget,avg_bits,accuracy,weight_bytes,energy_j,latency_s,qat_epochs,"
            "seconds,front_weight_bytes,front_energy_j,front_latency_s,seed");
  std::getline(in, line);
  EXPECT_EQ(line.rfind("\"sigma, \"\"quant\"\"\",2.0 bits,2,0.8,68000,5e-06,0.008,2,120,1,1,1", 0),
            0u)
      << line;
  EXPECT_EQ(count(csv, "\n"), 13u);
  // hawq has no energy: empty cell, not on the energy front.
  EXPECT_NE(csv.find("hawq,2.0 bits,2,0.78,68000,,"), std::string::npos) << csv;

  const std::string s = sq::pareto_svg(pa, "energy_j");
  EXPECT_EQ(s.rfind("<svg ", 0), 0u);
  EXPECT_EQ(s.find("hawq"), std::string::npos);  // no energy figures
  EXPECT_NE(sq::pareto_svg(pa, "latency_s").find("hawq"), std::string::npos);
  for (auto& p : pa["points"]) p.erase("energy_j");
  EXPECT_EQ(sq::pareto_svg(pa, "energy_j"), "");
  EXPECT_THROW(sq::pareto_svg(pa, "bops"), sq::Error);
}

TEST(Svg, NiceTicks) {
  const std::vector<double> want = {0, 0.2, 0.4, 0.6, 0.8, 1.0}, got = sq::svg::nice_ticks(0, 1, 6);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-12);
  const auto t = sq::svg::nice_ticks(90.3, 94.6, 6);
  EXPECT_EQ(t.front(), 90);
  EXPECT_EQ(t.back(), 95);
  EXPECT_EQ(sq::svg::tick_label(0.25, 0.25), "0.25");
  EXPECT_EQ(sq::svg::tick_label(12000, 2000), "12000");
  EXPECT_EQ(sq::svg::log_ticks(0.005, 0.2),
            (std::vector<double>{0.005, 0.01, 0.02, 0.05, 0.1, 0.2}));
}

TEST(Report, WriteReportIsAtomic) {
  const std::string dir = sqtest::temp_dir("report");
  json log = fixture_log();
  sq::write_report(dir + "/r.html", log);
  EXPECT_EQ(sq::read_file(dir + "/r.html"), sq::render_report_html(log));
  EXPECT_THROW(sq::write_report(dir + "/no/such/dir/r.html", log), sq::Error);
}

TEST(Report, Command) {
#ifndef SQ_CLI
  GTEST_SKIP() << "sigmaquant was not built (SQ_WITH_TORCH=OFF)";
#else
  const std::string dir = sqtest::temp_dir("report_cli");
  const std::string log = sqtest::write_temp(dir, "run.json", fixture_log().dump());
  const std::string pa = sqtest::write_temp(dir, "pareto.json", fixture_pareto().dump());
  auto r =
      sqtest::run_cli("report --log " + log + " --pareto " + pa + " -o " + dir + "/out/r.html");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(sq::read_file(dir + "/out/r.html").find("id=\"pareto\""), std::string::npos);

  json bad = fixture_log();
  bad["layers"][0]["weights"] = -5;
  const std::string badp = sqtest::write_temp(dir, "bad.json", bad.dump());
  r = sqtest::run_cli("report --log " + badp + " -o " + dir + "/r2.html");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find(badp + ": field 'layers[0].weights'"), std::string::npos) << r.output;
  r = sqtest::run_cli("report --log " + log + " --pareto " + log + " -o " + dir + "/r3.html");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find(log + ": field 'format'"), std::string::npos) << r.output;
  r = sqtest::run_cli("report --log " + dir + "/missing.json -o " + dir + "/r4.html");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("no such file"), std::string::npos) << r.output;
  EXPECT_FALSE(sq::file_exists(dir + "/r2.html"));
#endif
}

// ---- rendering with headless Chromium ----

namespace {

struct Image {
  uint32_t width = 0, height = 0;
  std::vector<uint8_t> rgb;  // 3 bytes a pixel
};

uint32_t be32(const std::string& s, size_t at) {
  return (uint32_t(uint8_t(s[at])) << 24) | (uint32_t(uint8_t(s[at + 1])) << 16) |
         (uint32_t(uint8_t(s[at + 2])) << 8) | uint32_t(uint8_t(s[at + 3]));
}

// A minimal PNG reader: 8-bit RGB / RGBA / grey(+alpha), not interlaced (what Chromium writes).
// Throws std::runtime_error on anything else.
Image decode_png(const std::string& png) {
  if (png.size() < 8 || png.compare(0, 8, "\x89PNG\r\n\x1a\n") != 0)
    throw std::runtime_error("not a PNG file");
  Image im;
  int channels = 0;
  std::string idat;
  for (size_t p = 8; p + 12 <= png.size();) {
    const uint32_t len = be32(png, p);
    const std::string type = png.substr(p + 4, 4);
    if (p + 12 + len > png.size()) throw std::runtime_error("truncated chunk " + type);
    const std::string data = png.substr(p + 8, len);
    if (type == "IHDR") {
      im.width = be32(data, 0), im.height = be32(data, 4);
      const int depth = uint8_t(data[8]), ctype = uint8_t(data[9]), interlace = uint8_t(data[12]);
      channels = ctype == 2 ? 3 : ctype == 6 ? 4 : ctype == 0 ? 1 : ctype == 4 ? 2 : 0;
      if (depth != 8 || channels == 0 || interlace != 0)
        throw std::runtime_error("unsupported PNG: depth " + std::to_string(depth) +
                                 ", colour type " + std::to_string(ctype) + ", interlace " +
                                 std::to_string(interlace));
    } else if (type == "IDAT") {
      idat += data;
    } else if (type == "IEND") {
      break;
    }
    p += 12 + len;
  }
  if (!channels || !im.width || !im.height) throw std::runtime_error("no IHDR");
  const size_t stride = size_t(im.width) * channels;
  std::vector<uint8_t> raw((stride + 1) * im.height);
  uLongf raw_len = raw.size();
  if (uncompress(raw.data(), &raw_len, reinterpret_cast<const Bytef*>(idat.data()), idat.size()) !=
          Z_OK ||
      raw_len != raw.size())
    throw std::runtime_error("IDAT does not inflate to the image size");
  std::vector<uint8_t> cur(stride), prev(stride, 0);
  im.rgb.resize(size_t(im.width) * im.height * 3);
  for (uint32_t y = 0; y < im.height; ++y) {
    const uint8_t* line = raw.data() + y * (stride + 1);
    const int filter = line[0];
    for (size_t i = 0; i < stride; ++i) {
      const int a = i >= size_t(channels) ? cur[i - channels] : 0, b = prev[i],
                c = i >= size_t(channels) ? prev[i - channels] : 0;
      int pred = 0;
      switch (filter) {
        case 0:
          pred = 0;
          break;
        case 1:
          pred = a;
          break;
        case 2:
          pred = b;
          break;
        case 3:
          pred = (a + b) / 2;
          break;
        case 4: {
          const int p = a + b - c, pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
          pred = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
          break;
        }
        default:
          throw std::runtime_error("bad filter type " + std::to_string(filter));
      }
      cur[i] = uint8_t(line[1 + i] + pred);
    }
    for (uint32_t x = 0; x < im.width; ++x) {
      uint8_t* o = &im.rgb[(size_t(y) * im.width + x) * 3];
      const uint8_t* s = &cur[size_t(x) * channels];
      if (channels >= 3)
        o[0] = s[0], o[1] = s[1], o[2] = s[2];
      else
        o[0] = o[1] = o[2] = s[0];
    }
    std::swap(cur, prev);
  }
  return im;
}

// A PNG of the given RGB rows (one IDAT, the given filter byte on each row, already applied).
std::string make_png(uint32_t w, uint32_t h, const std::string& filtered_rows) {
  auto chunk = [](const std::string& type, const std::string& data) {
    std::string c;
    for (int s = 24; s >= 0; s -= 8) c += char((data.size() >> s) & 0xff);
    c += type + data;
    const uLong crc = crc32(crc32(0, nullptr, 0), reinterpret_cast<const Bytef*>(c.data() + 4),
                            uInt(c.size() - 4));
    for (int s = 24; s >= 0; s -= 8) c += char((crc >> s) & 0xff);
    return c;
  };
  std::string ihdr;
  for (uint32_t v : {w, h})
    for (int s = 24; s >= 0; s -= 8) ihdr += char((v >> s) & 0xff);
  ihdr += std::string("\x08\x02\x00\x00\x00", 5);  // 8-bit RGB, not interlaced
  std::vector<Bytef> z(compressBound(filtered_rows.size()));
  uLongf zlen = z.size();
  compress(z.data(), &zlen, reinterpret_cast<const Bytef*>(filtered_rows.data()),
           filtered_rows.size());
  return std::string("\x89PNG\r\n\x1a\n", 8) + chunk("IHDR", ihdr) +
         chunk("IDAT", std::string(reinterpret_cast<char*>(z.data()), zlen)) + chunk("IEND", "");
}

std::string find_chromium() {
  if (const char* env = std::getenv("SQ_CHROMIUM"); env && *env) return env;
  for (const char* name :
       {"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}) {
    std::string cmd = std::string("command -v ") + name + " 2>/dev/null";
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) continue;
    char buf[512] = {0};
    const bool got = std::fgets(buf, sizeof buf, p) != nullptr;
    pclose(p);
    if (got) {
      std::string s(buf);
      while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
      if (!s.empty()) return s;
    }
  }
  return "";
}

}  // namespace

TEST(ReportRender, PngReader) {
  // 2x2 RGB: row 0 unfiltered (10,20,30)(40,50,60); row 1 with Sub, then Up, then Paeth.
  const std::string row0 = std::string("\x00", 1) + "\x0a\x14\x1e\x28\x32\x3c";
  // Wanted row 1: (11,22,33)(44,55,66).
  const std::string sub = std::string("\x01", 1) + "\x0b\x16\x21\x21\x21\x21";
  const std::string up = std::string("\x02", 1) + "\x01\x02\x03\x04\x05\x06";
  // Paeth: x0 (a=0,b=10,c=0) -> b; x1 (a=11,b=40,c=10): p=41, pa=30, pb=1, pc=31 -> b.
  const std::string paeth = std::string("\x04", 1) + "\x01\x02\x03\x04\x05\x06";
  for (const std::string& row1 : {sub, up, paeth}) {
    const Image im = decode_png(make_png(2, 2, row0 + row1));
    ASSERT_EQ(im.width, 2u);
    ASSERT_EQ(im.height, 2u);
    EXPECT_EQ(im.rgb, (std::vector<uint8_t>{10, 20, 30, 40, 50, 60, 11, 22, 33, 44, 55, 66}))
        << "filter " << int(row1[0]);
  }
  EXPECT_THROW(decode_png("GIF89a"), std::runtime_error);
}

TEST(ReportRender, ChromiumDrawsThePage) {
  const std::string chromium = find_chromium();
  if (chromium.empty()) {
    const char* ci = std::getenv("CI");
    if (ci && std::string(ci) == "true")
      FAIL()
          << "no chromium found (tried $SQ_CHROMIUM, chromium, chromium-browser, google-chrome): "
             "the report-rendering test needs it in CI; scripts/setup.sh installs it";
    GTEST_SKIP() << "no chromium found: install it (scripts/setup.sh) to check the report renders";
  }
  const std::string dir = sqtest::temp_dir("report_render");
  json log = fixture_log(), pa = fixture_pareto();
  sq::write_report(dir + "/report.html", log, &pa);
  const std::string shot = dir + "/shot.png";
  // A private profile; --no-sandbox because tests often run as root in a container; `timeout`
  // so that a hung browser fails the test instead of the whole run.
  const std::string cmd = "timeout -k 5 90 '" + chromium +
                          "' --headless --no-sandbox --disable-gpu --disable-dev-shm-usage "
                          "--no-first-run --hide-scrollbars --user-data-dir='" +
                          dir +
                          "/profile' "
                          "--window-size=1200,2400 --screenshot='" +
                          shot + "' 'file://" + dir + "/report.html' > '" + dir +
                          "/chromium.log' 2>&1";
  const int rc = std::system(cmd.c_str());
  auto log_tail = [&] {
    std::string l =
        sq::file_exists(dir + "/chromium.log") ? sq::read_file(dir + "/chromium.log") : "";
    return l.size() > 3000 ? l.substr(l.size() - 3000) : l;
  };
  ASSERT_EQ(rc, 0) << "chromium failed (" << rc << "): " << cmd << "\n" << log_tail();
  ASSERT_TRUE(sq::file_exists(shot)) << "no screenshot written\n" << log_tail();
  // To look at the result: SQ_REPORT_SCREENSHOT=/tmp/shot.png keeps the PNG and the page (.html).
  if (const char* keep = std::getenv("SQ_REPORT_SCREENSHOT"); keep && *keep) {
    std::ofstream(keep, std::ios::binary) << sq::read_file(shot);
    std::ofstream(std::string(keep) + ".html", std::ios::binary)
        << sq::read_file(dir + "/report.html");
  }

  Image im;
  try {
    im = decode_png(sq::read_file(shot));
  } catch (const std::exception& e) {
    FAIL() << shot << ": " << e.what();
  }
  EXPECT_GE(im.width, 600u);
  EXPECT_GE(im.height, 1200u);
  std::set<uint32_t> colors;
  size_t non_white = 0, blue = 0, orange = 0;
  const size_t n = size_t(im.width) * im.height;
  for (size_t i = 0; i < n; ++i) {
    const uint8_t r = im.rgb[3 * i], g = im.rgb[3 * i + 1], b = im.rgb[3 * i + 2];
    colors.insert(uint32_t(r) << 16 | uint32_t(g) << 8 | b);
    if (r < 240 || g < 240 || b < 240) ++non_white;
    auto near = [&](int R, int G, int B) {
      return std::abs(r - R) + std::abs(g - G) + std::abs(b - B) < 12;
    };
    blue += near(0x4e, 0x79, 0xa7);    // the first series colour (bars, markers)
    orange += near(0xf2, 0x8e, 0x2b);  // the second
  }
  const double share = double(non_white) / double(n);
  std::printf("screenshot %ux%u: %zu colours, %.1f %% non-white, %zu blue, %zu orange pixels\n",
              im.width, im.height, colors.size(), 100 * share, blue, orange);
  EXPECT_GE(colors.size(), 200u) << "too few colours: the page looks blank";
  EXPECT_GE(share, 0.03) << "almost all white: the page looks blank";
  EXPECT_LE(share, 0.9) << "almost nothing white: an error page or a dark screen?";
  EXPECT_GE(blue, 500u) << "the plots' first colour is missing: the SVGs did not render";
  EXPECT_GE(orange, 500u) << "the plots' second colour is missing: the SVGs did not render";
}
