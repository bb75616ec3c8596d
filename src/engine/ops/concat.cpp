// Concat along the channels (its inputs and output are points): each input's codes → the
// concat's point by a table (as the simulation: dequantize, then quantize at the output point),
// written into the input's channel slice of one output buffer (Step::out_offset; no copy beyond
// the lookup).
#include "op.h"
#include "sigmaquant/error.h"

namespace sq::ops {

void prepare_concat(Context& c, int node) {
  const Node& n = c.g.nodes[node];
  if (!c.is_point(node)) fail("engine: concat '{}' is not a quantization point", n.name);
  const ActQuant& q = c.point(node);
  const int out = c.new_buffer(c.numel(node));
  int64_t offset = 0;
  for (int k : n.inputs) {
    const Context::Val& in = c.input(k, node);
    Step st;
    st.name = n.name + "/" + c.g.nodes[k].name;
    st.in = in.buf;
    st.n = c.numel(k);
    st.out = out;
    st.out_offset = offset;
    offset += st.n;
    push_lut(c, std::move(st), float_table(c.point(in.point), q, nullptr));
  }
  c.val(node) = {out, node, true};
}

}  // namespace sq::ops
