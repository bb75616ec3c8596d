// sigmaquant ptq — post-training quantization: fold BN, weight scales, activation calibration,
// optional CLE and bias correction; evaluates the simulated quantized model and saves it.
#include <fmt/format.h>

#include "common.h"
#include "quant_flags.h"
#include "sigmaquant/error.h"
#include "sigmaquant/fileutil.h"
#include "sigmaquant/graph_io.h"
#include "sigmaquant/quantize.h"

namespace sqcli {
namespace {

struct PtqCmd {
  ModelFlags model;
  DataFlags data;
  Common common;
  BitsFlags bits;
  PtqFlags ptq;
  std::string out;
};

void run_ptq(PtqCmd& f) {
  sq::configure_runtime(f.common.threads);
  if (!sq::file_exists(f.model.model))
    sq::fail("--model '{}': ptq needs a trained model file (.sqg), e.g. from `sigmaquant train`",
             f.model.model);
  sq::Graph g = sq::load_graph(f.model.model);
  sq::BitConfig bits = resolve_bits(f.bits, g);
  sq::PtqOptions po = ptq_options(f.ptq, f.model.seed);
  if (f.out.empty()) f.out = "runs/" + g.name + "-ptq.sqg";
  prepare_output(f.out, "--out");
  sq::DataBundle d = load_data(f.data);
  bool progress = !f.common.quiet && !f.common.json;
  sq::EvalResult fp = sq::evaluate(g, d.test, {512, "cpu", progress});
  sq::QuantModel qm = sq::ptq(g, bits, d.train, po);
  sq::EvalResult q = sq::evaluate_quant(qm, d.test, {512, "cpu", progress});
  qm.meta["eval"] = {{"data", d.test.name}, {"samples", q.samples}, {"accuracy", q.accuracy},
                     {"fp32_accuracy", fp.accuracy}};
  sq::save_qmodel(f.out, qm);
  double avg = sq::average_weight_bits(bits, qm.graph);
  if (f.common.json) {
    print_json({{"model", g.name}, {"fp32_accuracy", fp.accuracy}, {"accuracy", q.accuracy},
                {"drop_points", 100 * (fp.accuracy - q.accuracy)}, {"avg_weight_bits", avg},
                {"ptq", qm.meta["ptq"]}, {"samples", q.samples}, {"out", f.out}});
    return;
  }
  fmt::print("{} PTQ ({:.2f} avg weight bits, calib {}): accuracy {:.2f}% vs FP32 {:.2f}% "
             "({:+.2f} points); saved {}\n",
             g.name, avg, f.ptq.calib, 100 * q.accuracy, 100 * fp.accuracy,
             100 * (q.accuracy - fp.accuracy), f.out);
}

}  // namespace

void add_ptq(CLI::App& app) {
  auto f = std::make_shared<PtqCmd>();
  CLI::App* cmd = app.add_subcommand("ptq", "post-training quantization of a trained model");
  add_model_flags(cmd, f->model, false);
  add_data_flags(cmd, f->data);
  add_common_flags(cmd, f->common);
  add_bits_flags(cmd, f->bits);
  add_ptq_flags(cmd, f->ptq);
  cmd->add_option("--out,-o", f->out, "output quantized model (default runs/<model>-ptq.sqg)");
  cmd->callback([f] { run_ptq(*f); });
}

}  // namespace sqcli
