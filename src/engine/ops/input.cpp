// The input: its codes are buffer 0, at the point the input reaches through flatten only; run()
// normalizes with the graph's mean/std and quantizes there (GraphExecutor::run).
#include "op.h"
#include "sigmaquant/error.h"

namespace sq::ops {

void prepare_input(Context& c, int node) {
  const Graph& g = c.g;
  if (node != 0) fail("engine: graph '{}' has a second input '{}'", g.name, g.nodes[node].name);
  Walk w = c.walk(0);
  if (w.point < 0) fail("engine: the input of '{}' reaches no quantization point", g.name);
  for (int n : w.path)
    if (g.nodes[n].op != Op::Flatten)
      fail(
          "engine: the input reaches its quantization point through '{}' (expected only "
          "flatten)",
          g.nodes[n].name);
  const int64_t ch = g.input_shape[0];
  std::vector<float> mean(static_cast<size_t>(ch), 0.0f), sd(static_cast<size_t>(ch), 1.0f);
  if (!g.input_mean.empty()) {
    if (static_cast<int64_t>(g.input_mean.size()) != ch ||
        static_cast<int64_t>(g.input_std.size()) != ch)
      fail("engine: graph '{}' has {} means and {} standard deviations (expected {})", g.name,
           g.input_mean.size(), g.input_std.size(), ch);
    for (int64_t k = 0; k < ch; ++k) {
      mean[k] = g.input_mean[k];
      sd[k] = g.input_std[k] > 0.0f ? g.input_std[k] : 1.0f;
    }
  }
  c.set_input(c.point(w.point), std::move(mean), std::move(sd));
  const int b = c.new_buffer(c.numel(0));
  c.val(0) = {b, w.point, true};
  for (int n : w.path) c.val(n) = {b, w.point, true};
}

}  // namespace sq::ops
