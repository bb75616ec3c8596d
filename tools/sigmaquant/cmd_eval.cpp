// sigmaquant eval — test accuracy, loss and throughput of an FP32 model or of a quantized one
// (simulated quantization), and with --logits the logits themselves.
#include <fmt/format.h>
#include <optional>

#include "common.h"
#include "sigmaquant/error.h"
#include "sigmaquant/fileutil.h"
#include "sigmaquant/graph_io.h"
#include "sigmaquant/qmodel.h"
#include "sigmaquant/quantize.h"
#include "sigmaquant/train.h"

namespace sqcli {
namespace {

struct EvalFlags {
  ModelFlags model;
  DataFlags data;
  Common common;
  int64_t batch_size = 512;
  std::string device = "cpu";
  std::string logits;
};

void run_eval(const EvalFlags& f) {
  sq::configure_runtime(f.common.threads);
  sq::DataBundle d = load_data(f.data);
  // A quantized .sqg (from ptq, qat, quantize) is evaluated as the simulated quantized model.
  std::optional<sq::QuantModel> qm;
  sq::Graph g;
  if (sq::file_exists(f.model.model)) {
    sq::GraphFile file = sq::load_graph_file(f.model.model);
    if (sq::is_qmodel(file.meta))
      qm = sq::from_graph_file(std::move(file), f.model.model);
    else
      g = std::move(file.graph);
  } else {
    g = resolve_model(f.model.model, d.test.image_shape, d.test.num_classes, f.model.seed);
  }
  const sq::Graph& model = qm ? qm->graph : g;  // for its name and checks below
  // Name the model, the data and the first label the model cannot output (the trainer's check
  // names neither).
  if (d.test.num_classes > model.num_classes) {
    const std::string data = fmt::format("'{}' data{}", f.data.format,
                                         f.data.dir.empty() ? "" : " in " + f.data.dir);
    for (int64_t i = 0; i < d.test.size(); ++i)
      if (d.test.labels[i] >= model.num_classes)
        sq::fail(
            "--model '{}' has {} outputs but the {} has {} classes: test label {} at index {} "
            "(expected labels 0..{}, or a model with {} outputs)",
            f.model.model, model.num_classes, data, d.test.num_classes, d.test.labels[i], i,
            model.num_classes - 1, d.test.num_classes);
    sq::fail("--model '{}' has {} outputs but the {} has {} classes (expected a model with {} "
             "outputs)",
             f.model.model, model.num_classes, data, d.test.num_classes, d.test.num_classes);
  }
  sq::EvalOptions o;
  o.batch_size = f.batch_size;
  o.device = f.device;
  o.progress = !f.common.quiet && !f.common.json;
  sq::EvalResult r = qm ? sq::evaluate_quant(*qm, d.test, o) : sq::evaluate(g, d.test, o);
  if (!f.logits.empty())
    write_logits(f.logits, qm ? sq::predict_quant(*qm, d.test) : sq::predict(g, d.test));
  if (f.common.json) {
    print_json({{"model", model.name}, {"data", d.test.name}, {"samples", r.samples},
                {"accuracy", r.accuracy}, {"loss", r.loss}, {"seconds", r.seconds},
                {"images_per_second", r.images_per_second}, {"threads", f.common.threads},
                {"quantized", qm.has_value()}});
    return;
  }
  fmt::print("{}{} on {} test ({} images): accuracy {:.2f}%  loss {:.4f}  {:.0f} img/s ({} threads)\n",
             model.name, qm ? " (simulated quantized)" : "", d.test.name, r.samples,
             100 * r.accuracy, r.loss, r.images_per_second,
             f.common.threads);
}

}  // namespace

void add_eval(CLI::App& app) {
  auto f = std::make_shared<EvalFlags>();
  CLI::App* cmd = app.add_subcommand(
      "eval", "evaluate a model (FP32, or quantized: simulated) on a test set");
  add_model_flags(cmd, f->model, false);
  add_data_flags(cmd, f->data);
  add_common_flags(cmd, f->common);
  cmd->add_option("--batch-size", f->batch_size, "evaluation batch size")->capture_default_str();
  cmd->add_option("--device", f->device, "cpu or cuda")->capture_default_str();
  cmd->add_option("--logits", f->logits,
                  "also write the test logits to this file: raw float32, images x classes");
  cmd->callback([f] { run_eval(*f); });
}

}  // namespace sqcli
