// sigmaquant run — accuracy and throughput of a .sqm model on the integer engine (no LibTorch in
// the loop), and with --compare its top-1 agreement with the simulated quantized model.
#include <fmt/format.h>

#include <chrono>

#include "common.h"
#include "sigmaquant/engine.h"
#include "sigmaquant/error.h"
#include "sigmaquant/fileutil.h"
#include "sigmaquant/quantize.h"
#include "sigmaquant/sqm.h"
#include "sigmaquant/train.h"

namespace sqcli {
namespace {

struct RunFlags {
  std::string model;
  DataFlags data;
  Common common;
  std::string split = "test";
  int64_t limit = 0;
  std::string compare;
  std::string logits;
  bool plan = false;
  std::string trace;
  int64_t trace_image = 0;
  std::string isa = "auto";
};

int64_t argmax(const float* v, int64_t n) { return std::max_element(v, v + n) - v; }

// --trace: one image through the engine, the input's codes (step -1, node "input") and every
// step's output codes to PREFIX.u8 (concatenated in step order) and what they are to
// PREFIX.json; both written atomically.
void trace_one(const RunFlags& f, const sq::SqmModel& m, const sq::Dataset& set, sq::Isa isa) {
  if (f.trace_image < 0 || f.trace_image >= set.size())
    sq::fail("--trace-image {} is out of range: {} has {} {} images", f.trace_image, set.name,
             set.size(), f.split);
  sq::GraphExecutor ex = sq::GraphExecutor::prepare(m.graph, m.model, isa);
  std::string codes;
  nlohmann::json steps = nlohmann::json::array();
  std::vector<float> logits(static_cast<size_t>(ex.output_size()));
  for (const auto& e :
       ex.trace(set.images.data() + f.trace_image * ex.input_size(), logits.data())) {
    steps.push_back({{"step", e.step},
                     {"node", e.node},
                     {"plan", e.plan},
                     {"offset", codes.size()},
                     {"bytes", e.codes.size()}});
    codes.append(reinterpret_cast<const char*>(e.codes.data()), e.codes.size());
  }
  const sq::ActQuant& in = ex.input_point();
  nlohmann::json j = {{"model", f.model},
                      {"image", f.trace_image},
                      {"split", f.split},
                      {"label", set.labels[static_cast<size_t>(f.trace_image)]},
                      {"input", {{"scale", in.scale}, {"zero_point", in.zero_point}}},
                      {"codes", f.trace + ".u8"},
                      {"steps", steps},
                      {"logits", logits}};
  sq::write_file_atomic(f.trace + ".u8", codes);
  sq::write_file_atomic(f.trace + ".json", j.dump(1) + "\n");
  fmt::print("traced image {} of {} through {} steps: {}.json, {}.u8 ({} bytes)\n",
             f.trace_image, set.name, steps.size(), f.trace, f.trace, codes.size());
}

void run_run(const RunFlags& f) {
  if (f.split != "test" && f.split != "train")
    sq::fail("--split '{}' is not supported (expected test or train)", f.split);
  if (f.limit < 0) sq::fail("--limit must be >= 0 (got {})", f.limit);
  const sq::Isa isa = sq::parse_isa(f.isa);
  const sq::SqmModel m = sq::load_sqm(f.model);
  if (f.plan) {  // what the engine runs, step by step: kernels, buffers; no data needed
    const sq::GraphExecutor ex = sq::GraphExecutor::prepare(m.graph, m.model, isa);
    if (f.common.json) {
      print_json({{"model", f.model}, {"plan", ex.describe()}, {"arena_bytes", ex.arena_bytes()}});
      return;
    }
    for (const std::string& line : ex.describe()) fmt::print("{}\n", line);
    fmt::print("arena: {} bytes\n", ex.arena_bytes());
    return;
  }
  sq::DataBundle d = load_data(f.data);
  const sq::Dataset set = sq::take(f.split == "test" ? d.test : d.train, f.limit);
  if (set.image_shape != m.graph.input_shape)
    sq::fail("{}: the model takes {} images, {} has {}", f.model,
             sq::shape_str(m.graph.input_shape), set.name, sq::shape_str(set.image_shape));
  if (set.num_classes > m.graph.num_classes)
    sq::fail("{}: the model has {} classes, {} has {}", f.model, m.graph.num_classes, set.name,
             set.num_classes);
  if (!f.trace.empty()) {
    trace_one(f, m, set, isa);
    return;
  }
  const sq::GraphExecutor prepared = sq::GraphExecutor::prepare(m.graph, m.model, isa);
  sq::ParallelExecutor ex(prepared, f.common.threads);
  const int64_t n = set.size(), classes = ex.output_size();
  std::vector<float> logits(static_cast<size_t>(n * classes));
  const auto t0 = std::chrono::steady_clock::now();
  ex.run(set.images.data(), n, logits.data());
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!f.logits.empty()) write_logits(f.logits, logits);
  int64_t correct = 0;
  for (int64_t i = 0; i < n; ++i) correct += argmax(&logits[i * classes], classes) == set.labels[i];
  const double accuracy = n ? static_cast<double>(correct) / n : 0.0;
  const double ips = seconds > 0 ? n / seconds : 0.0;

  nlohmann::json j = {{"model", f.model},
                      {"graph", m.graph.name},
                      {"data", set.name},
                      {"split", f.split},
                      {"samples", n},
                      {"accuracy", accuracy},
                      {"seconds", seconds},
                      {"images_per_second", ips},
                      {"threads", f.common.threads},
                      {"arena_bytes", prepared.arena_bytes()},
                      {"shared_bytes", prepared.shared_bytes()},
                      {"per_thread_bytes", prepared.private_bytes()}};
  if (!f.compare.empty()) {
    sq::configure_runtime(f.common.threads);
    const sq::QuantModel qm = sq::load_qmodel(f.compare);
    const std::vector<float> sim = sq::predict_quant(qm, set, n);
    if (static_cast<int64_t>(sim.size()) != n * classes)
      sq::fail("--compare {}: {} logits per image (expected {})", f.compare,
               n ? static_cast<int64_t>(sim.size()) / n : 0, classes);
    int64_t agree = 0, sim_correct = 0;
    double max_diff = 0;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t a = argmax(&logits[i * classes], classes),
                    b = argmax(&sim[i * classes], classes);
      agree += a == b;
      sim_correct += b == set.labels[i];
      for (int64_t k = 0; k < classes; ++k)
        max_diff = std::max(max_diff, static_cast<double>(std::fabs(logits[i * classes + k] -
                                                                    sim[i * classes + k])));
    }
    j["compare"] = {{"model", f.compare},
                    {"agreement", n ? static_cast<double>(agree) / n : 1.0},
                    {"disagreements", n - agree},
                    {"simulated_accuracy", n ? static_cast<double>(sim_correct) / n : 0.0},
                    {"max_abs_logit_diff", max_diff}};
  }
  if (f.common.json) {
    print_json(j);
    return;
  }
  fmt::print(
      "{} on {} {} ({} images): accuracy {:.2f}%  {:.0f} img/s ({} threads, integer engine)\n",
      m.graph.name, set.name, f.split, n, 100 * accuracy, ips, f.common.threads);
  if (j.contains("compare"))
    fmt::print(
        "agreement with {} (simulated): {:.2f}% top-1 ({} of {} differ; simulated accuracy "
        "{:.2f}%), max |logit difference| {:.4g}\n",
        f.compare, 100 * j["compare"]["agreement"].get<double>(),
        j["compare"]["disagreements"].get<int64_t>(), n,
        100 * j["compare"]["simulated_accuracy"].get<double>(),
        j["compare"]["max_abs_logit_diff"].get<double>());
}

}  // namespace

void add_run(CLI::App& app) {
  auto f = std::make_shared<RunFlags>();
  CLI::App* cmd =
      app.add_subcommand("run", "run a .sqm model on the integer engine over a dataset");
  cmd->add_option("--model,-m", f->model, "model file (.sqm, from export)")
      ->required()
      ->check(CLI::ExistingFile);
  add_data_flags(cmd, f->data);
  cmd->add_option("--split", f->split, "test or train")->capture_default_str();
  cmd->add_option("--limit", f->limit, "only the first N images of the split (0 = all)");
  cmd->add_option("--compare", f->compare,
                  "quantized model (.sqg) whose simulated predictions to compare with")
      ->check(CLI::ExistingFile);
  cmd->add_option("--logits", f->logits,
                  "also write the engine's logits to this file: raw float32, images x classes");
  cmd->add_flag("--plan", f->plan,
                "print the engine's plan (each step: kernel, output bytes and arena offset) and "
                "exit, without data");
  cmd->add_option("--trace", f->trace,
                  "run one image (--trace-image) and write its input codes and every step's output codes to "
                  "PREFIX.u8 and their index (node, kernel, offset, bytes) to PREFIX.json: "
                  "for finding where another runtime of the model departs from the engine");
  cmd->add_option("--trace-image", f->trace_image, "the image --trace runs (index in the split)")
      ->capture_default_str();
  cmd->add_option("--isa", f->isa,
                  "engine tier: auto (the CPU's best), portable, avx2, avxvnni, avx512vnni, "
                  "reference (every tier computes the same codes)")
      ->capture_default_str();
  add_common_flags(cmd, f->common);
  cmd->callback([f] { run_run(*f); });
}

}  // namespace sqcli
