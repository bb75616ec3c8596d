// The Python module's pieces (one file per concern, like the headers they bind) and the helpers
// they share: JSON <-> Python objects, the model/target arguments every function accepts as
// either an object or a path.
#pragma once

#include <pybind11/pybind11.h>

#include <nlohmann/json.hpp>
#include <string>

#include "sigmaquant/cost.h"
#include "sigmaquant/graph.h"

namespace sqpy {

namespace py = pybind11;

void bind_graph(py::module_& m);     // Graph, load_model, import_onnx, zoo_model
void bind_data(py::module_& m);      // Dataset, Data, load_data
void bind_cost(py::module_& m);      // Target, load_target, cost
void bind_quantize(py::module_& m);  // QuantModel, load_quantized, quantize, methods
void bind_engine(py::module_& m);    // Engine

// JSON values as the Python objects json.loads would give (dict, list, str, int, float, bool,
// None), and back; `where` names the argument in errors.
py::object to_python(const nlohmann::json& j);
py::object to_python(const nlohmann::ordered_json& j);
nlohmann::json from_python(py::handle o, const std::string& where);

// The Python type of o, for messages ("<class 'float'>").
std::string type_name(py::handle o);
// A str or os.PathLike (pathlib.Path), and its text.
bool is_path(py::handle o);
std::string path_of(py::handle o);
// A Graph argument given as a Graph or as a path to an FP32 .sqg file.
sq::Graph graph_arg(py::handle model, const std::string& where);
// A Target argument given as a Target or as a file path / builtin name (resolve_target).
sq::Target target_arg(py::handle target);

}  // namespace sqpy
