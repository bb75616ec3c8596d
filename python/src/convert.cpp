// JSON <-> Python conversions shared by the bindings.
#include <pybind11/numpy.h>

#include "bindings.h"
#include "sigmaquant/error.h"
#include "sigmaquant/graph_io.h"

namespace sqpy {
namespace {

template <typename Json>
py::object json_to_python(const Json& j) {
  switch (j.type()) {
    case nlohmann::json::value_t::null:
    case nlohmann::json::value_t::discarded:
      return py::none();
    case nlohmann::json::value_t::boolean:
      return py::bool_(j.template get<bool>());
    case nlohmann::json::value_t::number_integer:
      return py::int_(j.template get<int64_t>());
    case nlohmann::json::value_t::number_unsigned:
      return py::int_(j.template get<uint64_t>());
    case nlohmann::json::value_t::number_float:
      return py::float_(j.template get<double>());
    case nlohmann::json::value_t::string:
      return py::str(j.template get_ref<const std::string&>());
    case nlohmann::json::value_t::binary:
      return py::bytes(std::string(j.get_binary().begin(), j.get_binary().end()));
    case nlohmann::json::value_t::array: {
      py::list l;
      for (const auto& v : j) l.append(json_to_python(v));
      return std::move(l);
    }
    case nlohmann::json::value_t::object: {
      py::dict d;  // insertion-ordered, like ordered_json
      for (auto it = j.begin(); it != j.end(); ++it) d[py::str(it.key())] = json_to_python(*it);
      return std::move(d);
    }
  }
  return py::none();
}

}  // namespace

py::object to_python(const nlohmann::json& j) { return json_to_python(j); }
py::object to_python(const nlohmann::ordered_json& j) { return json_to_python(j); }

nlohmann::json from_python(py::handle o, const std::string& where) {
  if (o.is_none()) return nullptr;
  if (py::isinstance<py::bool_>(o)) return o.cast<bool>();
  if (py::isinstance<py::int_>(o)) return o.cast<int64_t>();
  if (py::isinstance<py::float_>(o)) return o.cast<double>();
  if (py::isinstance<py::str>(o)) return o.cast<std::string>();
  if (py::isinstance<py::dict>(o)) {
    nlohmann::json j = nlohmann::json::object();
    for (auto [k, v] : o.cast<py::dict>()) {
      if (!py::isinstance<py::str>(k))
        sq::fail("{}: keys must be strings (got {})", where, type_name(k));
      const std::string key = k.cast<std::string>();
      j[key] = from_python(v, where + "." + key);
    }
    return j;
  }
  if (py::isinstance<py::list>(o) || py::isinstance<py::tuple>(o) || py::isinstance<py::array>(o)) {
    nlohmann::json j = nlohmann::json::array();
    size_t i = 0;
    for (auto v : py::iter(o)) j.push_back(from_python(v, where + "[" + std::to_string(i++) + "]"));
    return j;
  }
  // numpy scalars and other numbers
  if (py::hasattr(o, "__index__"))
    return py::int_(py::reinterpret_borrow<py::object>(o)).cast<int64_t>();
  if (py::hasattr(o, "__float__"))
    return py::float_(py::reinterpret_borrow<py::object>(o)).cast<double>();
  sq::fail("{}: a {} cannot be written as JSON (expected dict, list, str, number, bool or None)",
           where, type_name(o));
}

std::string type_name(py::handle o) { return py::str(py::type::of(o)).cast<std::string>(); }

bool is_path(py::handle o) { return py::isinstance<py::str>(o) || py::hasattr(o, "__fspath__"); }

std::string path_of(py::handle o) {
  return py::module_::import("os").attr("fspath")(o).cast<std::string>();
}

sq::Graph graph_arg(py::handle model, const std::string& where) {
  if (py::isinstance<sq::Graph>(model)) return model.cast<sq::Graph>();
  if (is_path(model)) return sq::load_graph(path_of(model));
  sq::fail("{}: expected a sigmaquant.Graph or the path of a .sqg file (got {})", where,
           type_name(model));
}

sq::Target target_arg(py::handle target) {
  if (py::isinstance<sq::Target>(target)) return target.cast<sq::Target>();
  if (is_path(target)) return sq::resolve_target(path_of(target));
  sq::fail("target: expected a sigmaquant.Target, a target file or a builtin name (got {})",
           type_name(target));
}

}  // namespace sqpy
