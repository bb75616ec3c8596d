// A channel slice [begin, end) (its input holds a point's codes): in C×H×W the codes of those
// channels are contiguous, so the node is a view of its input's buffer at begin · H · W — no
// step, no copy (Buffer::view_of). Rescaled by a table only if the slice is itself a point at
// another scale.
#include "op.h"
#include "sigmaquant/error.h"

namespace sq::ops {

void prepare_slice(Context& c, int node) {
  const Node& n = c.g.nodes[node];
  const Context::Val in = c.input(n.inputs.at(0), node);
  const Shape& s = c.g.nodes[n.inputs[0]].out_shape;
  const int64_t channels = n.inputs[0] == 0 ? c.g.input_shape[0] : s.at(0);
  if (n.begin < 0 || n.end <= n.begin || n.end > channels)
    fail("engine: channel slice '{}': [{}, {}) of {} channels (expected 0 <= begin < end <= C)",
         n.name, n.begin, n.end, channels);
  const int64_t plane = c.numel(n.inputs[0]) / channels;
  c.val(node) = {c.new_view(in.buf, n.begin * plane, c.numel(node)), in.point, true};
  c.ensure_point(node);
}

}  // namespace sq::ops
