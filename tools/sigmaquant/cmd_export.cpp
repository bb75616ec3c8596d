// sigmaquant export — a quantized model (.sqg from ptq/qat) to a deployable format, dispatched by
// name: sqm (the integer engine's model file), c (C source + runtime), onnx (QDQ); and an FP32
// model to float ONNX (the baseline the QDQ export is timed against).
#include <fmt/format.h>

#include <functional>
#include <map>

#include "common.h"
#include "sigmaquant/engine.h"
#include "sigmaquant/error.h"
#include "sigmaquant/export_c.h"
#include "sigmaquant/fileutil.h"
#include "sigmaquant/graph_io.h"
#include "sigmaquant/integerize.h"
#include "sigmaquant/onnx.h"
#include "sigmaquant/qmodel.h"
#include "sigmaquant/sqm.h"

namespace sqcli {
namespace {

struct ExportFlags {
  std::string model;
  std::string format = "sqm";
  std::string out;
  std::string c_target;      // --format c only: portable (default) or cortex-m-dsp
  std::string onnx_weights;  // --format onnx only: auto (default), u8 or s8
  Common common;
};

void export_sqm(const sq::QuantModel& qm, const ExportFlags& f) {
  prepare_output(f.out, "-o");
  // Per-layer bits are in the header's layers already; the meta stays small (file size).
  const nlohmann::json meta = {{"source", f.model},
                               {"model", qm.graph.name},
                               {"avg_weight_bits", sq::average_weight_bits(qm.bits, qm.graph)}};
  const sq::IntModel im = sq::integerize(qm);
  // What `run` would refuse is refused now, not after the file is written: the engine's plan is
  // made once and thrown away.
  try {
    sq::GraphExecutor::prepare(qm.graph, im, sq::Isa::Reference);
  } catch (const sq::Error& e) {
    sq::fail("{}: the integer engine cannot run this model, so it is not exported: {}", f.model,
             e.what());
  }
  sq::save_sqm(f.out, qm.graph, im, meta);
}

// The formats by name; each writes f.out from the quantized model.
using Writer = std::function<void(const sq::QuantModel&, const ExportFlags&)>;
const std::map<std::string, Writer>& formats() {
  static const std::map<std::string, Writer> m = {
      {"sqm", export_sqm},
      {"c",
       [](const sq::QuantModel& qm, const ExportFlags& f) {
         sq::export_c(qm, f.out,
                      f.c_target.empty() ? sq::CTarget::Portable : sq::parse_c_target(f.c_target));
       }},
      {"onnx",
       [](const sq::QuantModel& qm, const ExportFlags& f) {
         prepare_output(f.out, "-o");
         sq::OnnxExportOptions opt;
         if (!f.onnx_weights.empty()) opt.weights = sq::parse_onnx_weights(f.onnx_weights);
         sq::export_onnx(qm, f.out, opt);
       }},
  };
  return m;
}

void run_export(const ExportFlags& f) {
  auto it = formats().find(f.format);
  if (it == formats().end()) {
    std::string known;
    for (const auto& [name, w] : formats()) known += (known.empty() ? "" : ", ") + name;
    sq::fail("--format '{}' is not supported (expected one of: {})", f.format, known);
  }
  if (!f.c_target.empty() && f.format != "c")
    sq::fail("--c-target applies to --format c (got --format {})", f.format);
  if (!f.onnx_weights.empty() && f.format != "onnx")
    sq::fail("--onnx-weights applies to --format onnx (got --format {})", f.format);
  if (!f.onnx_weights.empty()) {
    try {
      sq::parse_onnx_weights(f.onnx_weights);  // refused before the model is read
    } catch (const sq::Error& e) {
      sq::fail("--onnx-weights: {}", e.what());
    }
  }
  if (!f.c_target.empty()) {
    try {
      sq::parse_c_target(f.c_target);  // refused before the model is read
    } catch (const sq::Error& e) {
      sq::fail("--c-target: {}", e.what());
    }
  }
  sq::GraphFile file = sq::load_graph_file(f.model);
  if (sq::is_qmodel(file.meta)) {
    it->second(sq::from_graph_file(std::move(file), f.model), f);
  } else if (f.format == "onnx") {
    // An FP32 model: the float ONNX, to compare the QDQ export with.
    prepare_output(f.out, "-o");
    sq::export_onnx_float(file.graph, f.out);
  } else {
    sq::fail("--model '{}' is an FP32 model: --format {} needs a quantized one (from ptq, qat or "
             "quantize); only --format onnx exports an FP32 model (as float ONNX)",
             f.model, f.format);
  }
  size_t bytes = 0;
  if (f.format != "c" && sq::file_exists(f.out)) bytes = sq::read_file(f.out).size();
  if (f.common.json) {
    print_json({{"model", f.model}, {"format", f.format}, {"output", f.out}, {"bytes", bytes}});
    return;
  }
  if (!f.common.quiet)
    fmt::print("{} -> {} ({}{})\n", f.model, f.out, f.format,
               bytes ? fmt::format(", {} bytes", bytes) : "");
}

}  // namespace

void add_export(CLI::App& app) {
  auto f = std::make_shared<ExportFlags>();
  CLI::App* cmd = app.add_subcommand("export", "export a quantized model (sqm, c, onnx) or an FP32 one (onnx)");
  cmd->add_option("--model,-m", f->model,
                  "quantized model (.sqg from ptq, qat or quantize); with --format onnx also an "
                  "FP32 model (float ONNX)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--format", f->format, "sqm (integer engine), c (C source) or onnx (QDQ)")
      ->capture_default_str();
  cmd->add_option("-o,--output", f->out, "output file (sqm, onnx) or directory (c)")->required();
  cmd->add_option("--c-target", f->c_target,
                  "with --format c: portable (plain C99, default) or cortex-m-dsp (Cortex-M DSP "
                  "extension kernels, docs/mcu.md)");
  cmd->add_option("--onnx-weights", f->onnx_weights,
                  "with --format onnx (a quantized model): auto (default: int8 per layer where "
                  "ONNX Runtime's x86 int8 kernels are exact, else uint8 with zero point 128), "
                  "u8 (every layer uint8: exact everywhere, slower) or s8 (every layer int8: "
                  "exact on CPUs with VNNI; docs/formats.md)");
  add_common_flags(cmd, f->common);
  cmd->callback([f] { run_export(*f); });
}

}  // namespace sqcli
