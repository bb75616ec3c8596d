// sigmaquant bench — images/s of the integer engine on a .sqm model at batch 1 and 64 on 1 and 2
// threads, against LibTorch FP32 on the same network (the float graph of --fp32 or --qmodel).
// Inputs are seeded random images: the work per image does not depend on the pixels.
#include <fmt/format.h>

#include <chrono>
#include <random>

#include "common.h"
#include "engine_runner.h"
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
  bool json = false;
};

struct Row {
  std::string runtime;
  int64_t batch;
  int threads;
  double ips;
};

sq::Dataset random_set(const sq::Graph& g, int64_t n) {
  sq::Dataset d;
  d.name = "random";
  d.image_shape = g.input_shape;
  d.num_classes = g.num_classes;
  d.images.resize(static_cast<size_t>(n * sq::numel(g.input_shape)));
  std::mt19937_64 rng(1);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  for (float& v : d.images) v = u(rng);
  for (int64_t i = 0; i < n; ++i) d.labels.push_back(static_cast<int32_t>(i % g.num_classes));
  return d;
}

// Images/s of the engine: batches of `batch` images, each split across `threads` executors.
double bench_engine(const sq::SqmModel& m, const sq::Dataset& d, int64_t batch, int threads) {
  std::vector<sq::GraphExecutor> ex;
  for (int t = 0; t < threads; ++t) ex.push_back(sq::GraphExecutor::prepare(m.graph, m.model));
  const int64_t n = d.size(), in = d.image_numel();
  std::vector<float> logits(static_cast<size_t>(batch * ex[0].output_size()));
  run_engine(ex, d.images.data(), std::min(batch, n), logits.data());  // warm-up
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t s = 0; s + batch <= n; s += batch)
    run_engine(ex, d.images.data() + s * in, batch, logits.data());
  const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return static_cast<double>(n / batch * batch) / sec;
}

double bench_torch(const sq::Graph& g, const sq::Dataset& d, int64_t batch, int threads) {
  // LibTorch sets its inter-op pool once per process; the intra-op count (set first) is what
  // changes between the rows, so the second call's complaint about the former is ignored.
  try {
    sq::configure_runtime(threads);
  } catch (const std::exception&) {
  }
  sq::EvalOptions o;
  o.batch_size = batch;
  sq::evaluate(g, sq::take(d, batch), o);  // warm-up
  return sq::evaluate(g, d, o).images_per_second;
}

void run_bench(const BenchFlags& f) {
  if (f.images < 64) sq::fail("--images must be at least 64 (got {})", f.images);
  if (!f.fp32.empty() && !f.qmodel.empty()) sq::fail("give --fp32 or --qmodel, not both");
  const sq::SqmModel m = sq::load_sqm(f.model);
  const sq::Dataset d = random_set(m.graph, f.images);
  std::vector<Row> rows;
  for (int64_t batch : {1, 64})
    for (int threads : {1, 2})
      rows.push_back({"engine", batch, threads, bench_engine(m, d, batch, threads)});
  std::string fp32_name;
  if (!f.fp32.empty() || !f.qmodel.empty()) {
    const sq::Graph g = f.fp32.empty() ? sq::load_qmodel(f.qmodel).graph : sq::load_graph(f.fp32);
    if (g.input_shape != m.graph.input_shape)
      sq::fail("{}: input {} differs from the .sqm model's {}", f.fp32.empty() ? f.qmodel : f.fp32,
               sq::shape_str(g.input_shape), sq::shape_str(m.graph.input_shape));
    fp32_name = f.fp32.empty() ? f.qmodel + " (float graph)" : f.fp32;
    for (int64_t batch : {1, 64})
      for (int threads : {1, 2})
        rows.push_back({"libtorch-fp32", batch, threads, bench_torch(g, d, batch, threads)});
  }
  if (f.json) {
    nlohmann::json r = nlohmann::json::array();
    for (const Row& x : rows)
      r.push_back({{"runtime", x.runtime},
                   {"batch", x.batch},
                   {"threads", x.threads},
                   {"images_per_second", x.ips}});
    print_json({{"model", f.model},
                {"graph", m.graph.name},
                {"fp32", fp32_name},
                {"images", f.images},
                {"isa", sq::best_isa() == sq::Isa::AvxVnni ? "avxvnni"
                        : sq::best_isa() == sq::Isa::Avx2  ? "avx2"
                                                           : "portable"},
                {"results", r}});
    return;
  }
  sq::Table t(
      {"runtime", "batch", "threads", "images/s", "ms/image"},
      {sq::Align::Left, sq::Align::Right, sq::Align::Right, sq::Align::Right, sq::Align::Right});
  for (const Row& x : rows)
    t.add({x.runtime, std::to_string(x.batch), std::to_string(x.threads),
           fmt::format("{:.0f}", x.ips), fmt::format("{:.3f}", 1000.0 / x.ips)});
  fmt::print("{} ({}), {} random images per row{}\n{}", f.model, m.graph.name, f.images,
             fp32_name.empty() ? " (give --fp32 or --qmodel for the LibTorch FP32 rows)"
                               : ", FP32: " + fp32_name,
             t.str());
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
  cmd->add_flag("--json", f->json, "print machine-readable JSON on stdout");
  cmd->callback([f] { run_bench(*f); });
}

}  // namespace sqcli
