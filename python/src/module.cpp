// PYBIND11_MODULE: the `sigmaquant._core` extension that python/sigmaquant/__init__.py re-exports.
// sq::Error (every failure caused by user input) becomes sigmaquant.Error (a RuntimeError) with
// the same message.
#include "bindings.h"
#include "sigmaquant/error.h"

PYBIND11_MODULE(_core, m) {
  m.doc() = "SigmaQuant: hardware-aware mixed-precision quantization (docs/api.md)";
  m.attr("__version__") = SQ_VERSION;
  pybind11::register_exception<sq::Error>(m, "Error", PyExc_RuntimeError);
  sqpy::bind_graph(m);
  sqpy::bind_data(m);
  sqpy::bind_cost(m);
  sqpy::bind_quantize(m);
  sqpy::bind_engine(m);
}
