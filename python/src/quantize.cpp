// The main flow: quantize() over sq::run_allocation (include/sigmaquant/pipeline.h), the method
// registry, and the quantized model it returns (QuantModel: save, export_sqm, export_c, ...).
#include "sigmaquant/quantize.h"

#include <fmt/format.h>
#include <pybind11/stl.h>
#include <pybind11/stl/filesystem.h>

#include <filesystem>
#include <functional>
#include <map>

#include "bindings.h"
#include "sigmaquant/error.h"
#include "sigmaquant/export_c.h"
#include "sigmaquant/integerize.h"
#include "sigmaquant/onnx.h"
#include "sigmaquant/pipeline.h"
#include "sigmaquant/qmodel.h"
#include "sigmaquant/sqm.h"
#include "sigmaquant/stats.h"
#include "sigmaquant/train.h"

namespace sqpy {
namespace {

using Path = std::filesystem::path;
using Request = sq::AllocationRequest;
using Setter = std::function<void(Request&, py::handle)>;

template <typename T>
Setter field(T Request::*f) {
  return [f](Request& r, py::handle v) { r.*f = v.cast<T>(); };
}
template <typename T>
Setter training(T sq::TrainingSettings::*f) {
  return [f](Request& r, py::handle v) { r.training.*f = v.cast<T>(); };
}

// quantize()'s keyword settings: AllocationRequest's fields by name (training's flattened).
const std::map<std::string, Setter>& settings() {
  static const std::map<std::string, Setter> s = {
      {"accuracy_target", field(&Request::accuracy_target)},
      {"max_drop", field(&Request::max_drop)},
      {"bits_set", field(&Request::bits_set)},
      {"abits", field(&Request::abits)},
      {"first_last_bits", field(&Request::first_last_bits)},
      {"cycle_epochs", field(&Request::cycle_epochs)},
      {"max_iterations", field(&Request::max_iterations)},
      {"band", field(&Request::band)},
      {"minimize", field(&Request::minimize)},
      {"max_raises", field(&Request::max_raises)},
      {"kl",
       [](Request& r, py::handle v) { r.kl = sq::parse_kl_mode(v.cast<std::string>(), "kl"); }},
      {"final_epochs", field(&Request::final_epochs)},
      {"final_start",
       [](Request& r, py::handle v) {
         r.final_start = sq::parse_final_start(v.cast<std::string>(), "final_start");
       }},
      {"val_samples", field(&Request::val_samples)},
      {"kl_samples", field(&Request::kl_samples)},
      {"calib_samples", field(&Request::calib_samples)},
      {"hessian_samples", field(&Request::hessian_samples)},
      {"hessian_probes", field(&Request::hessian_probes)},
      {"adaptive_samples", field(&Request::adaptive_samples)},
      {"adaptive_drop", field(&Request::adaptive_drop)},
      {"exhaustive_limit", field(&Request::exhaustive_limit)},
      {"abits_set", field(&Request::abits_set)},
      {"dnas_wbits", field(&Request::dnas_wbits)},
      {"dnas_epochs", field(&Request::dnas_epochs)},
      {"dnas_lambda", field(&Request::dnas_lambda)},
      {"dnas_bisect_steps", field(&Request::dnas_bisect_steps)},
      {"dnas_select_epochs", field(&Request::dnas_select_epochs)},
      {"dnas_tau_end", field(&Request::dnas_tau_end)},
      {"dnas_fill", field(&Request::dnas_fill)},
      {"dnas_penalty",
       [](Request& r, py::handle v) {
         r.dnas_penalty = sq::parse_dnas_penalty(v.cast<std::string>(), "dnas_penalty");
       }},
      {"channel_group", field(&Request::channel_group)},
      {"seed", field(&Request::seed)},
      {"resume", field(&Request::resume)},
      {"write_report", field(&Request::write_report)},
      {"progress", field(&Request::progress)},
      {"lr", training(&sq::TrainingSettings::lr)},
      {"batch_size", training(&sq::TrainingSettings::batch_size)},
      {"memory_limit",
       [](Request& r, py::handle v) {
         r.training.memory_limit =
             py::isinstance<py::str>(v)
                 ? sq::parse_memory_size(v.cast<std::string>(), "memory_limit")
                 : v.cast<int64_t>();
       }},
      {"augment",
       [](Request& r, py::handle v) {
         r.training.augment = sq::parse_augment_mode(v.cast<std::string>(), "augment");
       }},
      {"augment_pad", training(&sq::TrainingSettings::augment_pad)},
      {"flip", training(&sq::TrainingSettings::flip)},
  };
  return s;
}

void apply_setting(Request& r, const std::string& key, py::handle value) {
  auto it = settings().find(key);
  if (it == settings().end()) {
    std::string known;
    for (const auto& [name, set] : settings()) known += (known.empty() ? "" : ", ") + name;
    sq::fail("unknown setting '{}' (known: {})", key, known);
  }
  try {
    it->second(r, value);
  } catch (const py::cast_error&) {
    sq::fail("setting '{}' cannot take the {} {}", key, type_name(value),
             py::repr(value).cast<std::string>());
  }
}

// Forwards the pipeline's news to Python callables (any may be None). The run itself holds no
// GIL; each call takes it, and a pending KeyboardInterrupt stops the run.
class PyObserver : public sq::Observer {
 public:
  PyObserver(py::object on_message, py::object on_iteration, py::object on_stage)
      : on_message_(std::move(on_message)),
        on_iteration_(std::move(on_iteration)),
        on_stage_(std::move(on_stage)) {}
  void message(const std::string& line) override {
    call(on_message_, [&] { return py::str(line); });
  }
  void iteration(const sq::RunIteration& it) override {
    // One iteration in the run log's own JSON form.
    call(on_iteration_, [&] { return to_python(sq::iteration_to_json(it)); });
  }
  void stage(const std::string& name) override {
    call(on_stage_, [&] { return py::str(name); });
  }

 private:
  template <typename MakeArg>
  void call(const py::object& fn, MakeArg make_arg) {
    py::gil_scoped_acquire locked;
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    if (!fn.is_none()) fn(make_arg());
  }
  py::object on_message_, on_iteration_, on_stage_;
};

struct QuantizeResult {
  sq::RunResult run;
};

// The data of a run: a Data object is used in place (the caller holds it for the whole call),
// a (train, test) tuple is copied into `owned`, None loads Fashion-MNIST into it.
const sq::DataBundle& data_arg(py::handle data, std::optional<sq::DataBundle>& owned,
                               const char* who) {
  if (data.is_none()) {
    py::gil_scoped_release unlocked;
    return owned.emplace(sq::load_data({}));
  }
  if (py::isinstance<sq::DataBundle>(data)) return data.cast<const sq::DataBundle&>();
  if (py::isinstance<py::tuple>(data) && py::len(data) == 2) {
    auto t = data.cast<py::tuple>();
    if (py::isinstance<sq::Dataset>(t[0]) && py::isinstance<sq::Dataset>(t[1]))
      return owned.emplace(sq::DataBundle{t[0].cast<sq::Dataset>(), t[1].cast<sq::Dataset>()});
  }
  sq::fail(
      "{}: data: expected a sigmaquant.Data, a (train, test) tuple of Datasets or "
      "None (Fashion-MNIST) (got {})",
      who, type_name(data));
}

QuantizeResult quantize(py::handle model, py::handle target, const std::string& method,
                        py::handle data, std::optional<double> avg_bits,
                        std::optional<Path> out_dir, py::object on_message, py::object on_iteration,
                        py::object on_stage, const py::kwargs& kw) {
  Request req;
  req.method = method;
  sq::find_method(method);  // an unknown name fails now, listing the known ones
  req.model = graph_arg(model, "quantize: model");
  if (is_path(model)) req.model_path = path_of(model);
  req.target = target_arg(target);
  if (avg_bits) req.avg_bits = *avg_bits;
  if (out_dir) req.out_dir = out_dir->string();
  for (auto [k, v] : kw) apply_setting(req, py::str(k), v);
  std::optional<sq::DataBundle> owned;
  const sq::DataBundle& bundle = data_arg(data, owned, "quantize");
  PyObserver observer(std::move(on_message), std::move(on_iteration), std::move(on_stage));
  py::gil_scoped_release unlocked;
  return QuantizeResult{sq::run_allocation(req, bundle, &observer)};
}

// As `sigmaquant pareto`: every method at every budget (and seed) over sq::pareto_sweep, the
// files in out_dir; returns the table (pareto.json's form, refusals included), the summary over
// seeds (summary.json's form) and its Markdown.
py::dict pareto(py::handle model, py::handle target, const std::vector<std::string>& methods,
                const std::vector<double>& budgets, py::handle data,
                const std::vector<uint64_t>& seeds, const Path& out_dir,
                const std::string& reference, py::object on_message, py::object on_iteration,
                py::object on_stage, const py::kwargs& kw) {
  sq::ParetoRequest req;
  req.methods = methods;
  req.budgets = budgets;
  req.seeds = seeds;
  req.out_dir = out_dir.string();
  req.reference = reference;
  Request& base = req.base;
  base.method = methods.empty() ? "" : methods.front();
  base.model = graph_arg(model, "pareto: model");
  if (is_path(model)) base.model_path = path_of(model);
  base.target = target_arg(target);
  for (auto [k, v] : kw) apply_setting(base, py::str(k), v);
  std::optional<sq::DataBundle> owned;
  const sq::DataBundle& bundle = data_arg(data, owned, "pareto");
  PyObserver observer(std::move(on_message), std::move(on_iteration), std::move(on_stage));
  sq::ParetoResult res;
  sq::ParetoSummary summary;
  {
    py::gil_scoped_release unlocked;
    res = sq::pareto_sweep(req, bundle, &observer);
    summary = sq::summarize_pareto(res, reference);
  }
  py::dict d;
  d["pareto"] = to_python(res.to_json());
  d["summary"] = to_python(summary.to_json());
  d["markdown"] = sq::pareto_summary_markdown(summary);
  return d;
}

// As `sigmaquant export --format sqm`: per-layer bits are in the file's header, the meta small.
void export_sqm(const sq::QuantModel& qm, const Path& path, py::handle meta) {
  nlohmann::json j = {{"model", qm.graph.name},
                      {"avg_weight_bits", sq::average_weight_bits(qm.bits, qm.graph)}};
  if (!meta.is_none()) j.update(from_python(meta, "export_sqm: meta"));
  py::gil_scoped_release unlocked;
  sq::save_sqm(path.string(), qm.graph, sq::integerize(qm), j);
}

py::dict method_info(const std::string& name) {
  const sq::MethodInfo& info = sq::find_method(name);
  py::dict d;
  d["name"] = info.name;
  d["description"] = info.description;
  d["trains"] = info.trains;
  return d;
}

}  // namespace

void bind_quantize(py::module_& m) {
  py::class_<sq::QuantModel>(m, "QuantModel",
                             "A quantized model (simulated): BN-folded graph, bits, scales.")
      .def_readonly("graph", &sq::QuantModel::graph)
      .def_property_readonly(
          "bits",
          [](const sq::QuantModel& qm) { return to_python(sq::bits_to_json(qm.bits, &qm.graph)); },
          "the bit assignment in the bits-file format")
      .def_property_readonly(
          "avg_bits",
          [](const sq::QuantModel& qm) { return sq::average_weight_bits(qm.bits, qm.graph); },
          "parameter-weighted mean weight bits")
      .def_property_readonly("meta", [](const sq::QuantModel& qm) { return to_python(qm.meta); })
      .def(
          "save", [](const sq::QuantModel& qm, const Path& p) { sq::save_qmodel(p.string(), qm); },
          py::arg("path"), "writes the quantized model (.sqg)")
      .def("export_sqm", &export_sqm, py::arg("path"), py::arg("meta") = py::none(),
           "writes the integer engine's bit-packed model (.sqm)")
      .def(
          "export_c",
          [](const sq::QuantModel& qm, const Path& dir) { sq::export_c(qm, dir.string()); },
          py::arg("dir"), "writes C99 source + runtime reproducing the integer engine")
      .def(
          "export_onnx",
          [](const sq::QuantModel& qm, const Path& p, const std::string& weights) {
            sq::OnnxExportOptions opt;
            opt.weights = sq::parse_onnx_weights(weights);
            sq::export_onnx(qm, p.string(), opt);
          },
          py::arg("path"), py::arg("weights") = "auto",
          "writes a QDQ ONNX model (opset 13); weights: auto (int8 per layer where ONNX "
          "Runtime's x86 int8 kernels are exact, else uint8), u8 or s8 (docs/formats.md)")
      .def(
          "evaluate",
          [](const sq::QuantModel& qm, const sq::Dataset& d) {
            py::gil_scoped_release unlocked;
            const sq::EvalResult r = sq::evaluate_quant(qm, d);
            return std::make_pair(r.accuracy, r.loss);
          },
          py::arg("data"), "(accuracy, loss) of the simulated quantized model on a Dataset")
      .def("__repr__", [](const sq::QuantModel& qm) {
        return fmt::format("<sigmaquant.QuantModel '{}': {:.2f} average weight bits>",
                           qm.graph.name, sq::average_weight_bits(qm.bits, qm.graph));
      });

  m.def(
      "load_quantized", [](const Path& p) { return sq::load_qmodel(p.string()); }, py::arg("path"),
      "Loads a quantized model (.sqg from quantize, ptq or qat).");

  py::class_<QuantizeResult>(m, "QuantizeResult", "What quantize() returns.")
      .def_property_readonly(
          "log", [](const QuantizeResult& r) { return to_python(r.run.log.to_json()); },
          "the run log (format sigmaquant-run, docs/formats.md) as a dict")
      .def_property_readonly(
          "model", [](QuantizeResult& r) -> sq::QuantModel& { return r.run.model; },
          "the quantized model (QuantModel)")
      .def_property_readonly("bits",
                             [](const QuantizeResult& r) {
                               return to_python(sq::bits_to_json(r.run.bits, &r.run.model.graph));
                             })
      .def_property_readonly(
          "accuracy",
          [](const QuantizeResult& r) -> py::object {
            if (!r.run.log.final) return py::none();
            return py::float_(r.run.log.final->accuracy);
          },
          "test accuracy (fraction) of the returned model")
      .def(
          "summary", [](const QuantizeResult& r) { return sq::summarize_run(r.run.log); },
          "the one-screen summary `sigmaquant quantize` prints");

  m.def(
      "quantize", &quantize, py::arg("model"), py::arg("target"), py::arg("method") = "sigmaquant",
      py::kw_only(), py::arg("data") = py::none(), py::arg("avg_bits") = py::none(),
      py::arg("out_dir") = py::none(), py::arg("on_message") = py::none(),
      py::arg("on_iteration") = py::none(), py::arg("on_stage") = py::none(),
      "Mixed-precision quantization of an FP32 model under a target's budgets "
      "(sq::run_allocation). model: Graph or .sqg path; target: Target, file or builtin name; "
      "data: Data, (train, test) or None (Fashion-MNIST); avg_bits: replaces the weight-memory "
      "budget; out_dir: bits.json, model.sqg, log.json, report.html. Settings (keywords): "
      "AllocationRequest's fields, e.g. final_epochs, cycle_epochs, max_iterations, max_drop, "
      "bits_set, abits, first_last_bits, lr, batch_size, memory_limit (\"8G\", \"off\" or bytes), "
      "augment, seed, resume. Accuracies are fractions. on_message(str), on_iteration(dict), "
      "on_stage(str): progress callbacks.");
  m.def(
      "pareto", &pareto, py::arg("model"), py::arg("target"),
      py::arg("methods") = std::vector<std::string>{"sigmaquant", "uniform", "adaptive", "hessian"},
      py::arg("budgets") = std::vector<double>{2.5, 3, 4}, py::kw_only(),
      py::arg("data") = py::none(), py::arg("seeds") = std::vector<uint64_t>{},
      py::arg("out_dir") = Path("runs/pareto"), py::arg("reference") = "uniform",
      py::arg("on_message") = py::none(), py::arg("on_iteration") = py::none(),
      py::arg("on_stage") = py::none(),
      "Several methods at several average-bit budgets (and seeds), side by side "
      "(sq::pareto_sweep, as `sigmaquant pareto`): every run in its own directory under "
      "out_dir (reused with resume=True), then pareto.json/.csv, summary.json/.md and "
      "report.html. Returns {'pareto': the table (points; 'refused': the methods that proved "
      "a budget cannot be met, with the reason), 'summary': mean \u00b1 std per method and "
      "budget, Welch's t-test against each budget's best, memory saved against `reference` "
      "at equal accuracy, 'markdown': that summary as a table}. Settings (keywords): as "
      "quantize().");
  m.def("methods", &sq::method_names, "The allocation methods (the registry's names).");
  m.def("method_info", &method_info, py::arg("name"), "name, description, trains");
  m.def(
      "load_run_log",
      [](const Path& p) { return to_python(sq::read_run_log(p.string()).to_json()); },
      py::arg("path"), "Reads and validates a run log (log.json) into a dict.");
  m.def(
      "set_threads", [](int threads) { sq::configure_runtime(threads); }, py::arg("threads"),
      "LibTorch's intra-op threads for training and evaluation (deterministic algorithms).");
}

}  // namespace sqpy
