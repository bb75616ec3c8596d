// Graph (the FP32 network): load_model, import_onnx, zoo_model, its layer table.
#include <fmt/format.h>
#include <pybind11/stl.h>
#include <pybind11/stl/filesystem.h>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "bindings.h"
#include "sigmaquant/error.h"
#include "sigmaquant/graph_io.h"
#include "sigmaquant/onnx.h"
#include "sigmaquant/zoo.h"

namespace sqpy {
namespace {

using Path = std::filesystem::path;

// One row per node: what `sigmaquant info` prints.
py::list layer_table(const sq::Graph& g) {
  py::list rows;
  for (int i = 0; i < static_cast<int>(g.nodes.size()); ++i) {
    const sq::Node& n = g.nodes[i];
    py::list inputs;
    for (int in : n.inputs) inputs.append(g.nodes[in].name);
    const sq::LayerStats s = g.layer_stats(i);
    py::dict row;
    row["name"] = n.name;
    row["op"] = sq::op_name(n.op);
    row["inputs"] = inputs;
    row["out_shape"] = py::tuple(py::cast(n.out_shape));
    row["params"] = s.params;
    row["macs"] = s.macs;
    row["weight_layer"] = sq::is_weight_layer(n);
    row["weight_std"] =
        sq::is_weight_layer(n) ? py::object(py::float_(sq::weight_std(n))) : py::object(py::none());
    rows.append(row);
  }
  return rows;
}

// As `sigmaquant import`: the file's stem names the graph unless given; a model that does not
// normalize its input itself gets input_mean/input_std (default: none, the raw [0, 1] image).
sq::Graph import_onnx_file(const Path& path, const std::string& name,
                           std::optional<std::vector<float>> mean,
                           std::optional<std::vector<float>> stddev) {
  sq::Graph g = sq::import_onnx(path.string());
  g.name = name.empty() ? path.stem().string() : name;
  const size_t c = static_cast<size_t>(g.input_shape[0]);
  if (!g.input_mean.empty() && (mean || stddev))
    sq::fail(
        "import_onnx: {} normalizes its input itself (Sub/Div at its start); leave "
        "input_mean/input_std out",
        path.string());
  if (g.input_mean.empty()) {
    g.input_mean = mean ? *mean : std::vector<float>(c, 0.0f);
    g.input_std = stddev ? *stddev : std::vector<float>(c, 1.0f);
  }
  if (g.input_mean.size() != c || g.input_std.size() != c)
    sq::fail(
        "import_onnx: input_mean/input_std: expected {} value(s) each (one per input "
        "channel), got {} and {}",
        c, g.input_mean.size(), g.input_std.size());
  for (float s : g.input_std)
    if (!(s > 0)) sq::fail("import_onnx: input_std {} must be positive", s);
  return g;
}

}  // namespace

void bind_graph(py::module_& m) {
  py::class_<sq::Graph>(m, "Graph", "An FP32 network in SigmaQuant's IR (load_model, import_onnx).")
      .def_readwrite("name", &sq::Graph::name)
      .def_property_readonly(
          "input_shape", [](const sq::Graph& g) { return py::tuple(py::cast(g.input_shape)); },
          "(C, H, W) of one sample")
      .def_readonly("num_classes", &sq::Graph::num_classes)
      .def_readonly("input_mean", &sq::Graph::input_mean)
      .def_readonly("input_std", &sq::Graph::input_std)
      .def_property_readonly("layers", &layer_table,
                             "one dict per node: name, op, inputs, out_shape, params, macs, "
                             "weight_layer, weight_std")
      .def_property_readonly(
          "weight_layers",
          [](const sq::Graph& g) {
            std::vector<std::string> names;
            for (int i : g.weight_layers()) names.push_back(g.nodes[i].name);
            return names;
          },
          "names of the conv2d / linear layers (the ones that get a bitwidth)")
      .def_property_readonly("total_params", &sq::Graph::total_params)
      .def_property_readonly("total_macs", &sq::Graph::total_macs)
      .def(
          "to_json", [](const sq::Graph& g) { return to_python(sq::graph_to_json(g)); },
          "the structure (no tensors) as a dict")
      .def(
          "save", [](const sq::Graph& g, const Path& path) { sq::save_graph(path.string(), g); },
          py::arg("path"), "writes a .sqg file (atomically)")
      .def("__repr__", [](const sq::Graph& g) {
        return fmt::format("<sigmaquant.Graph '{}': {} -> {} classes, {} weight layers, {} params>",
                           g.name, sq::shape_str(g.input_shape), g.num_classes,
                           g.weight_layers().size(), g.total_params());
      });

  m.def(
      "load_model", [](const Path& path) { return sq::load_graph(path.string()); }, py::arg("path"),
      "Loads an FP32 model (.sqg).");
  m.def("import_onnx", &import_onnx_file, py::arg("path"), py::kw_only(), py::arg("name") = "",
        py::arg("input_mean") = py::none(), py::arg("input_std") = py::none(),
        "Imports a float CNN from ONNX (e.g. torch.onnx.export). input_mean / input_std: the "
        "per-channel normalization the network expects of [0, 1] images, unless it normalizes "
        "its input itself.");
  m.def("zoo_model", &sq::make_zoo_model, py::arg("name"), py::arg("input_shape"),
        py::arg("num_classes"), py::arg("seed") = 1,
        "An untrained network of the zoo (lenet5, resnet8, resnet20, mobilenetv2, mlp).");
  m.def("zoo_names", &sq::zoo_names);
}

}  // namespace sqpy
