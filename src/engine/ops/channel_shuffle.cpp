// ShuffleNet's channel shuffle (its input is a point): a permutation of the channel planes'
// codes (channel_shuffle_u8_ref); rescaled by a table only if its output is itself a point at
// another scale.
#include "op.h"
#include "sigmaquant/error.h"

namespace sq::ops {

namespace {

void eval_shuffle(const Run& r, const Step& st) {
  channel_shuffle_u8_ref(st.pool.c, st.shuffle_groups, st.pool.in_h * st.pool.in_w, r.in(st),
                         r.out(st));
}

const StepType kShuffle{Step::Kind::Shuffle, "shuffle", eval_shuffle};

}  // namespace

void prepare_channel_shuffle(Context& c, int node) {
  const Node& n = c.g.nodes[node];
  const Context::Val in = c.input(n.inputs.at(0), node);
  const Shape& s = n.out_shape;
  if (s.size() != 3 || n.groups <= 0 || s[0] % n.groups != 0)
    fail("engine: channel shuffle '{}': {} groups over {} (expected C,H,W, groups dividing C)",
         n.name, n.groups, shape_str(s));
  Step st;
  st.name = n.name;
  st.in = in.buf;
  st.pool = PoolShape{s[0], s[1], s[2], 1, 1, 0};
  st.shuffle_groups = n.groups;
  Walk same;  // the same codes, permuted: at the input's point
  same.point = in.point;
  c.push_output(node, std::move(st), kShuffle, same, c.numel(node));
  c.ensure_point(node);
}

}  // namespace sq::ops
