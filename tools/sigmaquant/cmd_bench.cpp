// sigmaquant bench — images/s of the integer engine on a .sqm model at batch 1 and 64 on 1 and 2
// threads, against LibTorch FP32 on the same network (the float graph of --fp32 or --qmodel), each
// runtime at its best settings (docs/engine.md, "Fair baselines"): every row is the best of
// --repeats runs, and LibTorch's 2-thread rows the better of its two ways to use two threads —
// intra-op (one forward on 2 OpenMP threads) and split (2 threads, each forwarding half of every
// batch on one intra-op thread, as the engine splits a batch). Inputs are seeded random images:
// the work per image does not depend on the pixels. --profile adds where the engine's time goes:
// per step and per kernel, on one thread.
#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>

#include "common.h"
#include "sigmaquant/engine.h"
#include "sigmaquant/error.h"
#include "sigmaquant/graph_io.h"
#include "sigmaquant/qmodel.h"
#include "sigmaquant/sqm.h"
#include "sigmaquant/table.h"
#include "sigmaquant/train.h"

namespace sqcli {
namespace {

struct BenchFlags {
  std::string model, fp32, qmodel;
  int64_t images = 512;
  int repeats = 3;
  bool json = false;
  bool profile = false;
  std::string isa = "auto";
  std::vector<int> threads = {1, 2};  // thread counts measured (every runtime)
};

struct Row {
  std::string runtime;
  int64_t batch;
  int threads;
  double ips;
  std::string setting;        // how the threads were used (LibTorch: "intra-op" or "split")
  std::vector<double> tried;  // every run's images/s, for the JSON
};

// The best of `repeats` runs of f.
template <typename F>
Row best_of(const std::string& runtime, int64_t batch, int threads, const std::string& setting,
            int repeats, F f) {
  Row r{runtime, batch, threads, 0, setting, {}};
  for (int i = 0; i < repeats; ++i) {
    r.tried.push_back(f());
    r.ips = std::max(r.ips, r.tried.back());
  }
  return r;
}

// --profile: GraphExecutor::profile over the bench's images, on one thread.
using Profile = sq::GraphExecutor::Profile;

nlohmann::json profile_json(const Profile& p) {
  nlohmann::json steps = nlohmann::json::array(), labels = nlohmann::json::array();
  for (const auto& s : p.steps)
    steps.push_back({{"step", s.step},
                     {"label", s.label},
                     {"node", s.node},
                     {"us_per_image", s.seconds * 1e6}});
  for (const auto& [label, sec] : p.by_label)
    labels.push_back({{"label", label}, {"us_per_image", sec * 1e6}});
  return {{"us_per_image", p.seconds * 1e6}, {"steps", steps}, {"by_label", labels}};
}

void print_profile(const Profile& p, int64_t images) {
  const auto share = [&](double s) { return p.seconds > 0 ? 100.0 * s / p.seconds : 0.0; };
  sq::Table t(
      {"step", "label", "node", "us/image", "share"},
      {sq::Align::Right, sq::Align::Left, sq::Align::Left, sq::Align::Right, sq::Align::Right});
  for (const auto& s : p.steps)
    t.add({s.step < 0 ? "-" : std::to_string(s.step), s.label, s.node,
           fmt::format("{:.2f}", s.seconds * 1e6), fmt::format("{:.1f} %", share(s.seconds))});
  sq::Table l({"label", "us/image", "share"},
              {sq::Align::Left, sq::Align::Right, sq::Align::Right});
  for (const auto& [label, sec] : p.by_label)
    l.add({label, fmt::format("{:.2f}", sec * 1e6), fmt::format("{:.1f} %", share(sec))});
  fmt::print("\nprofile: batch 1, 1 thread, {} images, {:.1f} us/image (timed steps)\n{}\n{}",
             images, p.seconds * 1e6, t.str(), l.str());
}

void run_bench(const BenchFlags& f) {
  if (f.images < 64) sq::fail("--images must be at least 64 (got {})", f.images);
  if (f.repeats < 1) sq::fail("--repeats must be at least 1 (got {})", f.repeats);
  if (f.threads.empty()) sq::fail("--threads: expected one or more thread counts, e.g. 1,2");
  for (int t : f.threads)
    if (t < 1 || t > 256) sq::fail("--threads: {} is not a thread count in 1..256", t);
  if (!f.fp32.empty() && !f.qmodel.empty()) sq::fail("give --fp32 or --qmodel, not both");
  const sq::Isa isa = sq::parse_isa(f.isa);
  const sq::SqmModel m = sq::load_sqm(f.model);
  const sq::Dataset d = sq::uniform_dataset(m.graph.input_shape, m.graph.num_classes, f.images, 1);
  const sq::GraphExecutor ex = sq::GraphExecutor::prepare(m.graph, m.model, isa);
  std::vector<Row> rows;
  for (int64_t batch : {1, 64})
    for (int threads : f.threads)
      rows.push_back(best_of(
          "engine", batch, threads, threads > 1 && batch > 1 ? "split" : "-", f.repeats, [&] {
            return sq::ParallelExecutor(ex, threads).throughput(d.images.data(), d.size(), batch);
          }));
  Profile prof;
  if (f.profile) {
    sq::GraphExecutor one = ex;
    std::vector<float> logits(static_cast<size_t>(one.output_size()));
    one.run(d.images.data(), logits.data());  // warm-up
    prof = one.profile(d.images.data(), d.size());
  }
  std::string fp32_name;
  std::vector<Row> torch_tried;  // every LibTorch setting measured, for the JSON
  if (!f.fp32.empty() || !f.qmodel.empty()) {
    const sq::Graph g = f.fp32.empty() ? sq::load_qmodel(f.qmodel).graph : sq::load_graph(f.fp32);
    if (g.input_shape != m.graph.input_shape)
      sq::fail("{}: input {} differs from the .sqm model's {}", f.fp32.empty() ? f.qmodel : f.fp32,
               sq::shape_str(g.input_shape), sq::shape_str(m.graph.input_shape));
    fp32_name = f.fp32.empty() ? f.qmodel + " (float graph)" : f.fp32;
    for (int64_t batch : {1, 64})
      for (int threads : f.threads) {
        std::vector<Row> tries = {
            best_of("libtorch-fp32", batch, threads, "intra-op", f.repeats,
                    [&] { return sq::inference_throughput(g, d, batch, threads, false); })};
        // A batch of one image cannot be split.
        if (threads > 1 && batch >= threads)
          tries.push_back(best_of("libtorch-fp32", batch, threads, "split", f.repeats, [&] {
            return sq::inference_throughput(g, d, batch, threads, true);
          }));
        torch_tried.insert(torch_tried.end(), tries.begin(), tries.end());
        rows.push_back(*std::max_element(tries.begin(), tries.end(),
                                         [](const Row& a, const Row& b) { return a.ips < b.ips; }));
      }
  }
  if (f.json) {
    auto row_json = [](const Row& x) {
      return nlohmann::json{{"runtime", x.runtime}, {"batch", x.batch},
                            {"threads", x.threads}, {"images_per_second", x.ips},
                            {"setting", x.setting}, {"runs", x.tried}};
    };
    nlohmann::json r = nlohmann::json::array(), all = nlohmann::json::array();
    for (const Row& x : rows) r.push_back(row_json(x));
    for (const Row& x : torch_tried) all.push_back(row_json(x));
    const char* wait = std::getenv("OMP_WAIT_POLICY");
    nlohmann::json out = {{"model", f.model},
                          {"graph", m.graph.name},
                          {"fp32", fp32_name},
                          {"images", f.images},
                          {"repeats", f.repeats},
                          {"isa", sq::isa_name(isa == sq::Isa::Auto ? sq::best_isa() : isa)},
                          {"omp_wait_policy", wait ? wait : ""},
                          {"results", r},
                          {"libtorch_settings", all}};
    if (f.profile) out["profile"] = profile_json(prof);
    print_json(out);
    return;
  }
  sq::Table t({"runtime", "batch", "threads", "setting", "images/s", "ms/image"},
              {sq::Align::Left, sq::Align::Right, sq::Align::Right, sq::Align::Left,
               sq::Align::Right, sq::Align::Right});
  for (const Row& x : rows)
    t.add({x.runtime, std::to_string(x.batch), std::to_string(x.threads), x.setting,
           fmt::format("{:.0f}", x.ips), fmt::format("{:.3f}", 1000.0 / x.ips)});
  fmt::print("{} ({}), engine tier {}, {} random images per row, best of {}{}\n{}", f.model,
             m.graph.name, sq::isa_name(isa == sq::Isa::Auto ? sq::best_isa() : isa), f.images,
             f.repeats,
             fp32_name.empty() ? " (give --fp32 or --qmodel for the LibTorch FP32 rows)"
                               : ", FP32: " + fp32_name,
             t.str());
  // The settings that lost, so that the choice shows.
  for (const Row& x : torch_tried) {
    bool chosen = false;
    for (const Row& y : rows)
      chosen |= y.runtime == x.runtime && y.batch == x.batch && y.threads == x.threads &&
                y.setting == x.setting;
    if (!chosen)
      fmt::print("  not chosen: {} batch {}, {} threads, {}: {:.0f} images/s\n", x.runtime, x.batch,
                 x.threads, x.setting, x.ips);
  }
  if (f.profile) print_profile(prof, f.images);
}

}  // namespace

void add_bench(CLI::App& app) {
  auto f = std::make_shared<BenchFlags>();
  CLI::App* cmd = app.add_subcommand("bench", "images/s of the integer engine vs LibTorch FP32");
  cmd->add_option("--model,-m", f->model, "model file (.sqm, from export)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--fp32", f->fp32, "FP32 model (.sqg) for the LibTorch rows")
      ->check(CLI::ExistingFile);
  cmd->add_option("--qmodel", f->qmodel,
                  "or: the quantized model (.sqg) whose float graph LibTorch runs")
      ->check(CLI::ExistingFile);
  cmd->add_option("--images", f->images, "images per measurement")->capture_default_str();
  cmd->add_option("--repeats", f->repeats, "runs per row; the best is reported")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_flag("--json", f->json, "print machine-readable JSON on stdout");
  cmd->add_option("--threads", f->threads, "thread counts to measure, comma-separated")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--isa", f->isa,
                  "engine tier: auto (the CPU's best), portable, avx2, avxvnni, avx512vnni, "
                  "reference")
      ->capture_default_str();
  cmd->add_flag("--profile", f->profile,
                "also time every engine step (batch 1, 1 thread): per step and per kernel");
  cmd->callback([f] { run_bench(*f); });
}

}  // namespace sqcli
