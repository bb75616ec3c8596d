// CostEvaluator: prepare once from the graph and target, then evaluate bit assignments cheaply.
// Every formula here is written out in docs/cost-models.md.
#include <algorithm>
#include <cmath>

#include "sigmaquant/cost.h"
#include "sigmaquant/error.h"

namespace sq {

namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

std::string widths_text(const std::vector<int>& w) {
  std::string s;
  for (int x : w) s += (s.empty() ? "" : ", ") + std::to_string(x);
  return s;
}

// b rounded up to the next width the hardware stores (exact when `widths` is empty); 0 if none.
int round_up(int b, const std::vector<int>& widths) {
  if (widths.empty()) return b;
  for (int w : widths)
    if (w >= b) return w;
  return 0;
}

}  // namespace

CostEvaluator::CostEvaluator(const Graph& g, Target t) : g_(g), target_(std::move(t)) {
  const int n = static_cast<int>(g.nodes.size());
  if (n == 0) fail("cost: graph '{}' has no nodes", g.name);
  for (const Node& nd : g.nodes)
    if (nd.out_shape.empty())
      fail("cost: graph '{}' node '{}' has no shape (run infer_shapes first)", g.name, nd.name);

  std::vector<std::vector<int>> consumers(n);
  for (int j = 0; j < n; ++j)
    for (int i : g.nodes[j].inputs) consumers[i].push_back(j);

  // Activation buffers.
  std::vector<int> buffer_of(n, -1);
  for (int j = 0; j < n; ++j) {
    const Node& nd = g.nodes[j];
    bool in_place = false;
    // Flatten is the same bytes; a channel slice is a view of its input's (the engine reads
    // the range in place): neither holds a buffer of its own.
    if (nd.op == Op::Flatten || nd.op == Op::ChannelSlice) in_place = true;
    if ((nd.op == Op::BatchNorm || nd.op == Op::ReLU || nd.op == Op::ReLU6) &&
        nd.inputs.size() == 1 && consumers[nd.inputs[0]].size() == 1)
      in_place = true;
    if (in_place && !nd.inputs.empty()) {
      buffer_of[j] = buffer_of[nd.inputs[0]];
      continue;
    }
    Buffer b;
    b.elems = numel(nd.out_shape);
    b.first = b.last = j;
    buffer_of[j] = static_cast<int>(buffers_.size());
    buffers_.push_back(b);
  }

  // Weight layers.
  node_layer_.assign(n, -1);
  for (int idx : g.weight_layers()) {
    const Node& nd = g.nodes[idx];
    Layer L;
    L.node = idx;
    L.name = nd.name;
    L.channels = nd.out_channels;
    const Shape wshape = g.expected_param_shapes(idx).at("weight");
    L.weights_per_channel = numel(wshape) / L.channels;
    L.macs_per_channel = g.layer_stats(idx).macs / L.channels;
    L.positions = nd.op == Op::Conv2d ? nd.out_shape[1] * nd.out_shape[2] : 1;
    L.bias = nd.has_bias ||
             (consumers[idx].size() == 1 && g.nodes[consumers[idx][0]].op == Op::BatchNorm);
    L.in_elems = numel(g.nodes[nd.inputs[0]].out_shape);
    L.out_elems = numel(nd.out_shape);
    L.in_buffer = buffer_of[nd.inputs[0]];
    L.out_buffer = buffer_of[idx];
    auto it = nd.params.find("weight");
    if (it != nd.params.end() && it->second.shape == wshape) L.weight = &it->second;
    node_layer_[idx] = static_cast<int>(layers_.size());
    layers_.push_back(std::move(L));
  }

  // Lifetimes and who reads each buffer.
  for (int j = 0; j < n; ++j) {
    for (int i : g.nodes[j].inputs) {
      Buffer& b = buffers_[buffer_of[i]];
      b.last = std::max(b.last, j);
      if (node_layer_[j] >= 0) {
        b.direct_layers.push_back(node_layer_[j]);
      } else if (buffer_of[j] != buffer_of[i] &&
                 std::find(b.consumer_buffers.begin(), b.consumer_buffers.end(), buffer_of[j]) ==
                     b.consumer_buffers.end()) {
        b.consumer_buffers.push_back(buffer_of[j]);
      }
    }
  }
  Buffer& out = buffers_[buffer_of[n - 1]];
  out.last = n - 1;
  out.is_output = true;
  live_.assign(n, {});
  for (int b = 0; b < static_cast<int>(buffers_.size()); ++b)
    for (int j = buffers_[b].first; j <= buffers_[b].last; ++j) live_[j].push_back(b);

  // Throughput lookup (bitwidths rounded up to the next row / column of the table).
  if (target_.kind == CostModelKind::Mpic || target_.kind == CostModelKind::Custom) {
    const ThroughputTable& tb = target_.table;
    macs_per_cycle_.assign(17 * 9, 0.0);
    for (int a = 1; a <= 16; ++a)
      for (int w = 1; w <= 8; ++w) {
        auto ra = std::lower_bound(tb.a_bits.begin(), tb.a_bits.end(), a);
        auto rw = std::lower_bound(tb.w_bits.begin(), tb.w_bits.end(), w);
        if (ra == tb.a_bits.end() || rw == tb.w_bits.end()) continue;
        macs_per_cycle_[a * 9 + w] =
            tb.macs_per_cycle[ra - tb.a_bits.begin()][rw - tb.w_bits.begin()];
      }
  }

  // Data-aware shift-add: digit counts of the graph's own weights at every bitwidth.
  if (target_.kind == CostModelKind::ShiftAdd && target_.shiftadd.variant == ShiftAddVariant::Csd) {
    for (Layer& L : layers_) {
      if (!L.weight) continue;
      L.digits.assign(2 * 9 * L.channels, 0.0);
      for (int gran = 0; gran < 2; ++gran)
        for (int b = 1; b <= kMaxWeightBits; ++b) {
          QuantizedTensor q = quantize_weights_symmetric(*L.weight, b, gran == 0);
          for (int64_t c = 0; c < L.channels; ++c) {
            int64_t s = 0;
            const int32_t* v = q.values.data() + c * L.weights_per_channel;
            for (int64_t i = 0; i < L.weights_per_channel; ++i) s += csd_digits(v[i]);
            L.digits[(gran * 9 + b) * L.channels + c] = static_cast<double>(s);
          }
        }
    }
  }
}

double CostEvaluator::layer_digit_sum(const Layer& L, const LayerBits& lb, int64_t c,
                                      const QuantizedTensor* q) const {
  const int b = lb.channel_bits(c);
  if (q) {
    int64_t s = 0;
    const int32_t* v = q->values.data() + c * L.weights_per_channel;
    for (int64_t i = 0; i < L.weights_per_channel; ++i) s += csd_digits(v[i]);
    return static_cast<double>(s);
  }
  if (L.digits.empty())
    fail(
        "cost: target '{}' (shiftadd, csd) counts the digits of the actual weights, but layer "
        "'{}' has no weights in the graph (load a trained model or pass quantized weights)",
        target_.name, L.name);
  const int gran = lb.granularity == Granularity::PerTensor ? 1 : 0;
  return L.digits[(gran * 9 + b) * L.channels + c];
}

CostReport CostEvaluator::evaluate(const BitConfig& bits,
                                   const QuantizedWeightSet* qweights) const {
  const Target& T = target_;
  const EnergyParams& E = T.energy;
  const StorageParams& S = T.storage;
  CostReport r;
  r.target = T.name;
  r.model = cost_model_name(T.kind);
  r.has_timing = T.defines_timing();
  r.has_energy = T.defines_energy();
  r.has_area = T.defines_area();

  // Resolve and check the bits of every layer (cheaply; the full message comes from
  // validate_bits when anything is off).
  const std::string where = "bit configuration";
  std::vector<const LayerBits*> lbs(layers_.size());
  size_t matched = 0;
  for (size_t l = 0; l < layers_.size(); ++l) {
    const Layer& L = layers_[l];
    auto it = bits.layers.find(L.name);
    const LayerBits* lb = nullptr;
    if (it != bits.layers.end()) {
      lb = &it->second;
      ++matched;
    } else if (bits.default_bits) {
      lb = &*bits.default_bits;
    }
    bool ok = lb && lb->abits >= kMinActBits && lb->abits <= kMaxActBits;
    if (ok && lb->channel_wbits.empty())
      ok = lb->wbits >= kMinWeightBits && lb->wbits <= kMaxWeightBits;
    if (ok && !lb->channel_wbits.empty()) {
      ok = static_cast<int64_t>(lb->channel_wbits.size()) == L.channels &&
           lb->granularity == Granularity::PerChannel;
      for (int b : lb->channel_wbits) ok = ok && b >= 0 && b <= kMaxWeightBits;
    }
    if (!ok) validate_bits(bits, g_, where);
    lbs[l] = lb;
  }
  if (matched != bits.layers.size()) validate_bits(bits, g_, where);
  if (bits.default_bits) {
    const LayerBits& d = *bits.default_bits;
    if (d.abits < kMinActBits || d.abits > kMaxActBits || d.wbits < kMinWeightBits ||
        d.wbits > kMaxWeightBits)
      validate_bits(bits, g_, where);
  }

  // Activation storage bits per layer input, then per buffer.
  std::vector<int> act_bits(layers_.size());
  for (size_t l = 0; l < layers_.size(); ++l) {
    act_bits[l] = round_up(lbs[l]->abits, S.activation_widths);
    if (act_bits[l] == 0)
      fail(
          "cost: target '{}' stores activations at {} bits; layer '{}' has abits = {} (expected "
          "at most {})",
          T.name, widths_text(S.activation_widths), layers_[l].name, lbs[l]->abits,
          S.activation_widths.back());
  }
  std::vector<int> buf_bits(buffers_.size(), 0);
  std::vector<int64_t> buf_bytes(buffers_.size(), 0);
  for (int b = static_cast<int>(buffers_.size()) - 1; b >= 0; --b) {
    const Buffer& B = buffers_[b];
    int bitsb = 0;
    for (int l : B.direct_layers) bitsb = std::max(bitsb, act_bits[l]);
    if (B.direct_layers.empty())
      for (int cb : B.consumer_buffers) bitsb = std::max(bitsb, buf_bits[cb]);
    if (bitsb == 0 || B.is_output) bitsb = std::max(bitsb, S.output_bits);
    buf_bits[b] = bitsb;
    buf_bytes[b] = ceil_div(B.elems * bitsb, 8);
  }
  for (size_t j = 0; j < live_.size(); ++j) {
    int64_t s = 0;
    for (int b : live_[j]) s += buf_bytes[b];
    if (s > r.activation_bytes) {
      r.activation_bytes = s;
      r.activation_peak_at = g_.nodes[j].name;
    }
  }

  // Per-layer costs.
  r.layers.reserve(layers_.size());
  for (size_t l = 0; l < layers_.size(); ++l) {
    const Layer& L = layers_[l];
    const LayerBits& lb = *lbs[l];
    const int a = lb.abits;
    const QuantizedTensor* q = nullptr;
    if (qweights) {
      auto it = qweights->find(L.name);
      if (it != qweights->end()) {
        q = &it->second;
        if (q->shape != g_.expected_param_shapes(L.node).at("weight") ||
            static_cast<int64_t>(q->values.size()) != L.channels * L.weights_per_channel)
          fail("cost: quantized weights of layer '{}' have shape {} (expected {})", L.name,
               shape_str(q->shape), shape_str(g_.expected_param_shapes(L.node).at("weight")));
        if (!q->channel_bits.empty())
          for (int64_t c = 0; c < L.channels; ++c)
            if (q->channel_bits[c] != lb.channel_bits(c))
              fail(
                  "cost: quantized weights of layer '{}' channel {} have {} bits, but the bit "
                  "configuration gives {}",
                  L.name, c, q->channel_bits[c], lb.channel_bits(c));
      }
    }
    LayerCost lc;
    lc.name = L.name;
    lc.node = L.node;
    lc.wbits = lb.channel_wbits.empty()
                   ? lb.wbits
                   : *std::max_element(lb.channel_wbits.begin(), lb.channel_wbits.end());
    lc.abits = a;
    lc.channels = L.channels;
    lc.weights = L.channels * L.weights_per_channel;
    double cycles = 0, bit_sum = 0;
    double work = 0;  // shiftadd: datapath cycles summed over the parallel datapaths
    // shiftadd, round_robin schedule: the work of each datapath (active channel j -> j mod n).
    std::vector<double> dp_work;
    if (T.kind == CostModelKind::ShiftAdd && T.shiftadd.schedule == ShiftAddSchedule::RoundRobin)
      dp_work.assign(static_cast<size_t>(T.shiftadd.datapaths), 0.0);
    int64_t active = 0;
    for (int64_t c = 0; c < L.channels; ++c) {
      const int b = lb.channel_bits(c);
      if (b == 0) continue;  // pruned: no weights, no scale, no MACs
      const int sb = round_up(b, S.weight_widths);
      if (sb == 0)
        fail(
            "cost: target '{}' stores weights at {} bits; layer '{}' has {}-bit weights "
            "(expected at most {})",
            T.name, widths_text(S.weight_widths), L.name, b, S.weight_widths.back());
      ++active;
      bit_sum += b;
      lc.weight_bits += L.weights_per_channel * sb;
      lc.macs += L.macs_per_channel;
      lc.bops += L.macs_per_channel * b * a;
      switch (T.kind) {
        case CostModelKind::Size:
        case CostModelKind::Bops:
          break;
        case CostModelKind::ShiftAdd: {
          const ShiftAddParams& P = T.shiftadd;
          const int sub = a + (P.subword == SubwordRule::Product ? b : 0) + P.guard_bits;
          const int64_t lanes = std::max(1, P.datapath_bits / sub);
          double digits = P.variant == ShiftAddVariant::BitSerial
                              ? static_cast<double>(L.weights_per_channel * b)
                              : layer_digit_sum(L, lb, c, q);
          const double groups = static_cast<double>(ceil_div(L.positions, lanes));
          if (dp_work.empty()) {
            work += digits * groups;
            cycles = work / P.datapaths;  // output channels spread evenly over the datapaths
          } else {
            // The RTL spends one cycle on a lane group with nothing to multiply (an all-zero
            // channel under csd): it still writes the group's accumulators.
            digits = std::max(digits, 1.0);
            work += digits * groups;
            double& w = dp_work[static_cast<size_t>((active - 1) % P.datapaths)];
            w += digits * groups;
            cycles = std::max(cycles, w);  // the busiest datapath sets the layer's time
          }
          break;
        }
        case CostModelKind::Mpic:
        case CostModelKind::Custom: {
          const double mpc = macs_per_cycle_[a * 9 + b];
          if (mpc == 0)
            fail(
                "cost: target '{}' ({}) has no throughput for a_bits = {}, w_bits = {} (layer "
                "'{}'; table rows a_bits {}, columns w_bits {})",
                T.name, cost_model_name(T.kind), a, b, L.name, widths_text(T.table.a_bits),
                widths_text(T.table.w_bits));
          cycles += static_cast<double>(L.macs_per_channel) / mpc;
          break;
        }
        case CostModelKind::Mcu: {
          const McuParams& M = T.mcu;
          double cpm = a <= 8 ? M.cycles_per_mac : M.cycles_per_mac_a16;
          if (b < 8)
            cpm += (b == 1 || b == 2 || b == 4) ? M.unpack_cycles_per_mac
                                                : M.unpack_cycles_per_mac_unaligned;
          cycles += static_cast<double>(L.macs_per_channel) * cpm;
          break;
        }
      }
    }
    lc.pruned_channels = L.channels - active;
    lc.mean_wbits = bit_sum / static_cast<double>(L.channels);
    const int64_t n_scales =
        active == 0 ? 0 : (lb.granularity == Granularity::PerTensor ? 1 : active);
    lc.scale_bytes = ceil_div(n_scales * S.scale_bits, 8);
    lc.bias_bytes = L.bias ? ceil_div(L.channels * S.bias_bits, 8) : 0;
    lc.weight_bytes = ceil_div(lc.weight_bits, 8) + lc.scale_bytes + lc.bias_bytes;
    if (r.has_timing) {
      lc.cycles = cycles;
      lc.latency_s = cycles / E.clock_hz;
    }
    if (r.has_energy) {
      const double traffic = static_cast<double>(L.in_elems * buf_bits[L.in_buffer] +
                                                 L.out_elems * buf_bits[L.out_buffer]);
      const double datapath_cycles = T.kind == CostModelKind::ShiftAdd ? work : lc.cycles;
      lc.energy_j = E.energy_per_cycle_j * datapath_cycles +
                    E.energy_per_mac_j * static_cast<double>(lc.macs) + E.power_w * lc.latency_s +
                    E.weight_mem_j_per_bit * static_cast<double>(lc.weight_bits) +
                    E.activation_mem_j_per_bit * traffic;
    }
    r.weight_bytes += lc.weight_bytes;
    r.macs += lc.macs;
    r.bops += lc.bops;
    r.cycles += lc.cycles;
    r.latency_s += lc.latency_s;
    r.energy_j += lc.energy_j;
    r.layers.push_back(std::move(lc));
  }
  const double logic =
      E.logic_area_um2 * (T.kind == CostModelKind::ShiftAdd ? T.shiftadd.datapaths : 1);
  if (r.has_area)
    r.area_mm2 = (logic + E.memory_area_um2_per_bit * 8.0 *
                              static_cast<double>(r.weight_bytes + r.activation_bytes)) /
                 1e6;
  return r;
}

CostReport compute_cost(const Graph& g, const Target& t, const BitConfig& bits,
                        const QuantizedWeightSet* qweights) {
  return CostEvaluator(g, t).evaluate(bits, qweights);
}

}  // namespace sq
