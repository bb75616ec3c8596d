// Engine: a .sqm model on the integer engine (GraphExecutor), numpy images in, logits out.
#include "sigmaquant/engine.h"

#include <fmt/format.h>
#include <pybind11/numpy.h>
#include <pybind11/stl.h>
#include <pybind11/stl/filesystem.h>

#include <algorithm>
#include <filesystem>

#include "bindings.h"
#include "sigmaquant/data.h"
#include "sigmaquant/error.h"
#include "sigmaquant/sqm.h"

namespace sqpy {
namespace {

using Images = py::array_t<float, py::array::c_style | py::array::forcecast>;

// One loaded model and one prepared executor: run() allocates only its result. One call at a
// time per Engine (the executor's arena is shared); run() and evaluate() split a batch across
// `threads` copies of the executor (sharing its weights), and release the GIL.
class Engine {
 public:
  Engine(const std::filesystem::path& path, int threads)
      : path_(path.string()),
        model_(sq::load_sqm(path_)),
        ex_(sq::GraphExecutor::prepare(model_.graph, model_.model)),
        par_(ex_, threads) {}

  // Refuses anything but N x C x H x W images of the model's shape (at least `min_n`), naming the
  // method.
  void check_batch(const Images& images, const char* method, int64_t min_n) const {
    const sq::Shape& in = model_.graph.input_shape;
    bool ok = images.ndim() == 4 && images.shape(0) >= min_n;
    for (size_t k = 0; ok && k < 3; ++k)
      ok = images.shape(static_cast<py::ssize_t>(k + 1)) == in[k];
    if (!ok) {
      std::vector<int64_t> got(images.shape(), images.shape() + images.ndim());
      sq::fail("Engine.{}: {} takes N x {} x {} x {} images{} (got shape {})", method, path_, in[0],
               in[1], in[2], min_n > 0 ? fmt::format(", N >= {}", min_n) : "", sq::shape_str(got));
    }
  }

  // N x C x H x W float32 images as stored in a Dataset ([0, 1], not normalized) -> N x classes.
  py::array_t<float> run(const Images& images) {
    check_batch(images, "run", 0);
    const int64_t n = images.shape(0), classes = ex_.output_size();
    py::array_t<float> logits({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(classes)});
    const float* x = images.data();
    float* y = logits.mutable_data();
    {
      py::gil_scoped_release unlocked;
      par_.run(x, n, y);
    }
    return logits;
  }

  // One image (C x H x W or 1 x C x H x W) through GraphExecutor::run_traced: its logits and, per
  // entry, the input's codes (step -1) and every step's output buffer, for finding where another
  // runtime departs from the engine.
  py::tuple trace(const Images& image) {
    const sq::Shape& in = model_.graph.input_shape;
    const bool batched = image.ndim() == 4 && image.shape(0) == 1;
    bool ok = image.ndim() == 3 || batched;
    for (size_t k = 0; ok && k < 3; ++k)
      ok = image.shape(static_cast<py::ssize_t>(k + (batched ? 1 : 0))) == in[k];
    if (!ok) {
      std::vector<int64_t> got(image.shape(), image.shape() + image.ndim());
      sq::fail("Engine.trace: {} takes one {} x {} x {} image (got shape {})", path_, in[0], in[1],
               in[2], sq::shape_str(got));
    }
    std::vector<sq::GraphExecutor::TraceEntry> entries;
    std::vector<float> logits(static_cast<size_t>(ex_.output_size()));
    {
      py::gil_scoped_release unlocked;
      entries = ex_.trace(image.data(), logits.data());
    }
    py::list steps;
    for (const auto& e : entries) {
      py::dict d;
      d["step"] = e.step;
      d["node"] = e.node;
      d["plan"] = e.plan;
      d["codes"] = py::array_t<uint8_t>(static_cast<py::ssize_t>(e.codes.size()), e.codes.data());
      steps.append(d);
    }
    return py::make_tuple(py::array_t<float>(static_cast<py::ssize_t>(logits.size()), logits.data()),
                          steps);
  }

  // Where the time goes: N x C x H x W images one at a time on one thread
  // (GraphExecutor::profile); per step (the input's quantization first, step -1) a dict
  // {step, label, node, seconds}, seconds per image.
  py::list profile(const Images& images) {
    check_batch(images, "profile", 1);
    sq::GraphExecutor::Profile prof;
    {
      py::gil_scoped_release unlocked;
      prof = ex_.profile(images.data(), images.shape(0));
    }
    py::list out;
    for (const auto& t : prof.steps) {
      py::dict d;
      d["step"] = t.step;
      d["label"] = t.label;
      d["node"] = t.node;
      d["seconds"] = t.seconds;
      out.append(d);
    }
    return out;
  }

  // Top-1 accuracy (fraction) over a Dataset.
  double evaluate(const sq::Dataset& d) {
    if (d.image_shape != model_.graph.input_shape)
      sq::fail("Engine.evaluate: {} takes {} images, {} has {}", path_,
               sq::shape_str(model_.graph.input_shape), d.name, sq::shape_str(d.image_shape));
    py::gil_scoped_release unlocked;
    const int64_t classes = ex_.output_size();
    std::vector<float> logits(static_cast<size_t>(d.size() * classes));
    par_.run(d.images.data(), d.size(), logits.data());
    int64_t correct = 0;
    for (int64_t i = 0; i < d.size(); ++i) {
      const float* l = logits.data() + i * classes;
      correct += std::max_element(l, l + classes) - l == d.labels[static_cast<size_t>(i)];
    }
    return d.size() ? static_cast<double>(correct) / d.size() : 0.0;
  }

  const sq::SqmModel& model() const { return model_; }
  const sq::GraphExecutor& executor() const { return ex_; }
  const std::string& path() const { return path_; }
  int threads() const { return par_.threads(); }

 private:
  std::string path_;
  sq::SqmModel model_;
  sq::GraphExecutor ex_;
  sq::ParallelExecutor par_;
};

}  // namespace

void bind_engine(py::module_& m) {
  py::class_<Engine>(m, "Engine", "A .sqm model on the integer engine (torch-free runtime).")
      .def(py::init<const std::filesystem::path&, int>(), py::arg("path"), py::arg("threads") = 1,
           "load a .sqm model; run() and evaluate() split batches across `threads` threads")
      .def_property_readonly("threads", [](const Engine& e) { return e.threads(); })
      .def("run", &Engine::run, py::arg("images"),
           "logits (N x classes float32) of N x C x H x W float32 images in [0, 1]")
      .def("evaluate", &Engine::evaluate, py::arg("data"), "top-1 accuracy on a Dataset")
      .def("profile", &Engine::profile, py::arg("images"),
           "per step {step, label, node, seconds (per image)} over N x C x H x W images run one "
           "at a time (step -1: the input's quantization)")
      .def("trace", &Engine::trace, py::arg("image"),
           "(logits, steps) of one C x H x W image: steps[0] the input's codes (step -1), then "
           "per engine step a dict {step, node, plan, codes (uint8)}: its output buffer")
      .def_property_readonly("name", [](const Engine& e) { return e.model().graph.name; })
      .def_property_readonly(
          "input_shape",
          [](const Engine& e) { return py::tuple(py::cast(e.model().graph.input_shape)); })
      .def_property_readonly("num_classes",
                             [](const Engine& e) { return e.executor().output_size(); })
      .def_property_readonly("meta", [](const Engine& e) { return to_python(e.model().meta); })
      .def_property_readonly("arena_bytes",
                             [](const Engine& e) { return e.executor().arena_bytes(); })
      .def_property_readonly(
          "shared_bytes", [](const Engine& e) { return e.executor().shared_bytes(); },
          "bytes of weights and tables, held once whatever the number of threads")
      .def_property_readonly(
          "per_thread_bytes", [](const Engine& e) { return e.executor().private_bytes(); },
          "bytes of arena and scratch each thread holds")
      .def(
          "describe", [](const Engine& e) { return e.executor().describe(); },
          "one line per step of the execution plan")
      .def("__repr__", [](const Engine& e) {
        return fmt::format("<sigmaquant.Engine '{}' ({}): {} -> {} classes>", e.model().graph.name,
                           e.path(), sq::shape_str(e.model().graph.input_shape),
                           e.executor().output_size());
      });
}

}  // namespace sqpy
