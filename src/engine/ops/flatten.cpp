// Flatten: the same bytes, so the node aliases its input's buffer (rescaled by a table only if it
// is itself a point at another scale).
#include "op.h"

namespace sq::ops {

void prepare_flatten(Context& c, int node) {
  c.val(node) = c.input(c.g.nodes[node].inputs.at(0), node);
  c.val(node).done = true;
  c.ensure_point(node);
}

}  // namespace sq::ops
