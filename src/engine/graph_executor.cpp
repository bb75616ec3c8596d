// GraphExecutor: any QuantModel graph on integer kernels, steps and a memory plan built once.
// Prepare is the generic walk (checks, then every node not yet computed handed to its op's
// prepare from the registry, src/engine/ops/), then the memory plan; execute runs each step's
// eval. engine.h describes which op runs how; docs/engine.md the registry and the memory plan.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <exception>
#include <map>
#include <thread>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "ops/op.h"
#include "sigmaquant/engine.h"
#include "sigmaquant/error.h"
#include "sigmaquant/qmodel.h"
#include "sigmaquant/transform.h"

namespace sq {

namespace {

constexpr size_t kAlign = 64;

size_t align_up(size_t v) { return (v + kAlign - 1) / kAlign * kAlign; }

// The batchnorm that is the input's only reader, or -1.
int input_batchnorm(const Graph& g) {
  if (g.nodes.size() < 2 || g.nodes[0].op != Op::Input) return -1;
  const std::vector<int> cons = consumers(g, 0);
  return cons.size() == 1 && g.nodes[cons[0]].op == Op::BatchNorm ? cons[0] : -1;
}

// The graph's shapes and points as prepare needs them; throws naming what is off.
void check_graph(const Graph& g, const IntModel& im) {
  if (g.nodes.empty() || g.nodes[0].op != Op::Input)
    fail("engine: graph '{}' has no input", g.name);
  // Up front, so that the message does not depend on where the walk meets it.
  for (size_t i = 0; i < g.nodes.size(); ++i)
    if (g.nodes[i].op == Op::BatchNorm && !standalone_batchnorm(g, static_cast<int>(i)))
      fail(
          "engine: batchnorm '{}' (expected a BN-folded graph: a batchnorm that follows a conv or "
          "linear layer read by it alone is absorbed by that layer, one that is the input's only "
          "reader by the input normalization)",
          g.nodes[i].name);
  if (g.input_shape.size() != 3)
    fail("engine: graph '{}' input shape {} (expected C,H,W)", g.name, shape_str(g.input_shape));
  for (const Node& n : g.nodes)
    if (n.out_shape.empty() && n.op != Op::Input)
      fail("engine: graph '{}' node '{}' has no shape (expected infer_shapes() first)", g.name,
           n.name);
  for (const auto& [node, q] : im.points) {
    if (node < 0 || node >= static_cast<int>(g.nodes.size()))
      fail("engine: quantization point at node {} (expected 0..{})", node, g.nodes.size() - 1);
    if (q.bits < 1 || q.bits > 8 || !(q.scale > 0) || q.zero_point < 0 || q.zero_point > q.qmax())
      fail(
          "engine: point '{}': {} bits, scale {}, zero point {} (expected 1..8 bits, a positive "
          "scale, 0 <= zero point <= 2^bits - 1)",
          g.nodes[node].name, q.bits, q.scale, q.zero_point);
  }
}

// The integer layers against the graph's weight layers; returns node → index into im.layers.
std::map<int, int> check_layers(const Graph& g, const IntModel& im) {
  std::map<int, int> layer_of;
  for (size_t li = 0; li < im.layers.size(); ++li) {
    const IntLayer& L = im.layers[li];
    if (L.node < 0 || L.node >= static_cast<int>(g.nodes.size()) ||
        g.nodes[L.node].name != L.name || !is_weight_layer(g.nodes[L.node]))
      fail("engine: layer '{}' is not weight layer {} of graph '{}'", L.name, L.node, g.name);
    if (L.in_node != g.nodes[L.node].inputs.at(0))
      fail("engine: layer '{}' reads node {} (expected its input {})", L.name, L.in_node,
           g.nodes[L.node].inputs[0]);
    auto in = im.points.find(L.in_node);
    if (in == im.points.end())
      fail("engine: '{}' is not a quantization point", g.nodes[L.in_node].name);
    if (in->second.scale != L.in_scale || in->second.zero_point != L.in_zero_point)
      fail(
          "engine: layer '{}' reads '{}' at scale {} / zero point {} (expected the point's {} / "
          "{})",
          L.name, g.nodes[L.in_node].name, L.in_scale, L.in_zero_point, in->second.scale,
          in->second.zero_point);
    for (int b : L.channel_bits)
      if (b < 0 || b > 8)
        fail("engine: layer '{}' has a {}-bit channel (expected 0..8)", L.name, b);
    layer_of[L.node] = static_cast<int>(li);
  }
  for (int n : g.weight_layers())
    if (!layer_of.count(n)) fail("engine: weight layer '{}' has no integer layer", g.nodes[n].name);
  return layer_of;
}

// The memory plan: greedy by size, first fit among the buffers alive at the same time; sets
// every buffer's offset and returns the arena's size. Views take their buffer's offset plus
// their own.
size_t plan_memory(std::vector<GraphExecutor::Buffer>& buffers) {
  std::vector<int> order;
  for (size_t k = 0; k < buffers.size(); ++k)
    if (buffers[k].view_of < 0) order.push_back(static_cast<int>(k));
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return buffers[a].bytes > buffers[b].bytes; });
  std::vector<int> placed;
  size_t total = 0;
  for (int id : order) {
    GraphExecutor::Buffer& b = buffers[id];
    std::vector<std::pair<size_t, size_t>> busy;  // [offset, end) of overlapping lifetimes
    for (int o : placed) {
      const GraphExecutor::Buffer& p = buffers[o];
      if (p.first <= b.last && b.first <= p.last)
        busy.push_back({p.offset, p.offset + static_cast<size_t>(p.bytes)});
    }
    std::sort(busy.begin(), busy.end());
    size_t off = 0;
    for (const auto& [s, e] : busy) {
      if (off + static_cast<size_t>(b.bytes) <= s) break;
      off = std::max(off, align_up(e));
    }
    b.offset = off;
    total = std::max(total, off + static_cast<size_t>(b.bytes));
    placed.push_back(id);
  }
  for (GraphExecutor::Buffer& b : buffers)
    if (b.view_of >= 0) b.offset = buffers[b.view_of].offset + static_cast<size_t>(b.view_offset);
  return align_up(total);
}

}  // namespace

bool fold_input_batchnorm(Graph& g, IntModel& im) {
  bool folded = false;
  for (int k = input_batchnorm(g); k > 0; k = input_batchnorm(g)) {
    const Node& bn = g.nodes[k];
    if (g.input_shape.size() != 3)
      fail("engine: batchnorm '{}' reads the input of shape {} (expected C,H,W)", bn.name,
           shape_str(g.input_shape));
    const int64_t c = g.input_shape[0];
    const char* names[] = {"weight", "bias", "running_mean", "running_var"};
    for (const char* pn : names) {
      auto it = bn.params.find(pn);
      if (it == bn.params.end() || static_cast<int64_t>(it->second.data.size()) != c)
        fail(
            "engine: batchnorm '{}' right after the input has no '{}' of {} values (expected its "
            "parameters, to fold it into the input normalization)",
            bn.name, pn, c);
    }
    const auto& gamma = bn.params.at("weight").data;
    const auto& beta = bn.params.at("bias").data;
    const auto& mu = bn.params.at("running_mean").data;
    const auto& var = bn.params.at("running_var").data;
    // bn((x − m) / s) = a · ((x − m) / s − mu) + beta = (x − m2) / s2 with
    // a = gamma / √(var + eps), m2 = m + s · (mu − beta / a), s2 = s / a: a normalization again
    // when a > 0.
    std::vector<float> mean(static_cast<size_t>(c)), sd(static_cast<size_t>(c));
    for (int64_t ch = 0; ch < c; ++ch) {
      const double m = g.input_mean.empty() ? 0.0 : g.input_mean[ch];
      const double s = g.input_std.empty() || !(g.input_std[ch] > 0) ? 1.0 : g.input_std[ch];
      const double a = gamma[ch] / std::sqrt(static_cast<double>(var[ch]) + bn.eps);
      const double m2 = m + s * (mu[ch] - beta[ch] / a), s2 = s / a;
      if (!(a > 0) || !std::isfinite(a) || !std::isfinite(m2) || !(s2 > 0) ||
          !std::isfinite(static_cast<float>(s2)) || !std::isfinite(static_cast<float>(m2)))
        fail(
            "engine: batchnorm '{}' right after the input has scale gamma / sqrt(var + eps) = {} "
            "on channel {} (expected a finite positive scale: the engine folds a leading "
            "batchnorm into the input normalization (x - mean) / std)",
            bn.name, a, ch);
      mean[ch] = static_cast<float>(m2);
      sd[ch] = static_cast<float>(s2);
    }
    if (im.points.count(0))
      fail("engine: the input of '{}' is a quantization point and is read by batchnorm '{}'",
           g.name, bn.name);
    // Drop node k: its readers read the input, later indices shift down by one.
    auto remap = [k](int i) { return i == k ? 0 : (i > k ? i - 1 : i); };
    g.nodes.erase(g.nodes.begin() + k);
    for (Node& n : g.nodes)
      for (int& in : n.inputs) in = remap(in);
    g.input_mean = std::move(mean);
    g.input_std = std::move(sd);
    std::map<int, ActQuant> points;
    for (const auto& [node, q] : im.points) points[remap(node)] = q;
    im.points = std::move(points);
    for (IntLayer& L : im.layers) {
      L.node = remap(L.node);
      L.in_node = remap(L.in_node);
      if (L.out_node >= 0) L.out_node = remap(L.out_node);
    }
    folded = true;
  }
  return folded;
}

GraphExecutor GraphExecutor::prepare(const Graph& g, const IntModel& im, Isa isa,
                                     bool channel_groups) {
  if (input_batchnorm(g) > 0) {
    Graph g2 = g;
    IntModel im2 = im;
    fold_input_batchnorm(g2, im2);
    return prepare(g2, im2, isa, channel_groups);
  }
  check_graph(g, im);
  GraphExecutor ex;
  *ex.layers_ = im.layers;
  ops::Context ctx(g, im, isa, channel_groups, ex, check_layers(g, im));
  // The walk: every node that no earlier op computed (or fused) goes to its op's prepare, which
  // pushes its steps and records where its codes are.
  for (int i = 0; i < static_cast<int>(g.nodes.size()); ++i) {
    if (ctx.val(i).done) continue;
    const ops::PrepareFn prepare_op = ops::find_prepare(g.nodes[i].op);
    if (!prepare_op)
      fail("engine: node '{}' is a {} (no engine op is registered for it)", g.nodes[i].name,
           op_name(g.nodes[i].op));
    prepare_op(ctx, i);
  }
  if (ex.output_size_ == 0)
    fail("engine: graph '{}' ends in '{}' (expected a weight layer writing the logits)", g.name,
         g.nodes.back().name);
  if (isa != Isa::Reference) {
    ctx.fuse_add_tables();
    // A layer that only packed kernels run reads its packed blocks, never its int32 weights:
    // ConvFast, a conv → pooling step on the kernels' tiles (fast set), the float logits' linear
    // on its int8 rows (ConvF32 with consts), a depthwise conv by channels (ConvRef with consts:
    // pack_depthwise). Release them (ResNet-50: 110 of 127 MB).
    std::vector<bool> read(ex.layers_->size(), false);
    for (const Step& st : ex.steps_) {
      const bool packed =
          st.kind == Step::Kind::ConvFast || st.fast >= 0 ||
          ((st.kind == Step::Kind::ConvF32 || st.kind == Step::Kind::ConvRef) && st.table >= 0);
      if (st.layer >= 0 && !packed) read[static_cast<size_t>(st.layer)] = true;
    }
    for (size_t k = 0; k < read.size(); ++k)
      if (!read[k]) std::vector<int32_t>().swap((*ex.layers_)[k].weights);
  }
  ex.arena_.assign(plan_memory(ex.buffers_), 0);
  return ex;
}

size_t GraphExecutor::shared_bytes() const {
  size_t b = luts_->size() * 256;
  for (const std::vector<uint8_t>& t : *consts_) b += t.size();
  for (const IntLayer& L : *layers_)
    b += L.weights.size() * sizeof(int32_t) + L.bias.size() * sizeof(int32_t) +
         L.requant.size() * sizeof(Requant) +
         (L.weight_scales.size() + L.bias_float.size()) * sizeof(float) +
         L.channel_bits.size() * sizeof(int);
  for (const GroupedConv2d& c : fast_) b += c.weight_bytes();
  return b;
}

size_t GraphExecutor::private_bytes() const {
  size_t b = arena_.size() + acc_.size() * sizeof(int64_t);
  for (const GroupedConv2d& c : fast_) b += c.scratch_bytes();
  return b;
}

namespace {

// The simulation's input quantizer (fake_quant.cpp) on n values of one channel, in float:
// normalize, divide, round half to even, shift, clamp. The AVX2 form is the same IEEE operations
// 8 at a time (division, not a reciprocal; rounding to nearest even, as nearbyint in the default
// mode), so the codes are the same.
void quantize_plane(const float* x, int64_t n, float m, float sd, float s, float zp, float qmax,
                    uint8_t* q) {
  for (int64_t k = 0; k < n; ++k) {
    const float v = std::nearbyint(((x[k] - m) / sd) / s) + zp;
    q[k] = static_cast<uint8_t>(std::min(std::max(v, 0.0f), qmax));
  }
}

#if defined(__x86_64__) || defined(__i386__)
__attribute__((target("avx2"))) void quantize_plane_avx2(const float* x, int64_t n, float m,
                                                         float sd, float s, float zp, float qmax,
                                                         uint8_t* q) {
  const __m256 vm = _mm256_set1_ps(m), vsd = _mm256_set1_ps(sd), vs = _mm256_set1_ps(s),
               vzp = _mm256_set1_ps(zp), vmax = _mm256_set1_ps(qmax), zero = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= n; k += 8) {
    __m256 v = _mm256_div_ps(_mm256_div_ps(_mm256_sub_ps(_mm256_loadu_ps(x + k), vm), vsd), vs);
    v = _mm256_add_ps(_mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), vzp);
    // min(max(v, 0), qmax) as the scalar form (a NaN, undefined there, gives 0 here).
    v = _mm256_min_ps(_mm256_max_ps(v, zero), vmax);
    const __m256i i = _mm256_cvttps_epi32(v);  // whole numbers in 0..255
    const __m128i w = _mm_packus_epi32(_mm256_castsi256_si128(i), _mm256_extracti128_si256(i, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(q + k), _mm_packus_epi16(w, w));
  }
  quantize_plane(x + k, n - k, m, sd, s, zp, qmax, q + k);
}
#endif

}  // namespace

void quantize_input_u8(const float* x, int64_t n, float mean, float std, float scale,
                       int32_t zero_point, int32_t qmax, uint8_t* q, bool vector) {
  const float s = std::max(std::fabs(scale), 1e-12f);
  const float zp = static_cast<float>(zero_point), mx = static_cast<float>(qmax);
#if defined(__x86_64__) || defined(__i386__)
  if (vector && cpu_has_avx2()) return quantize_plane_avx2(x, n, mean, std, s, zp, mx, q);
#endif
  (void)vector;
  quantize_plane(x, n, mean, std, s, zp, mx, q);
}

void GraphExecutor::quantize_image(const float* image) {
  uint8_t* x = buf(0);
  for (size_t c = 0; c < mean_.size(); ++c) {
    const int64_t k = static_cast<int64_t>(c) * input_plane_;
    quantize_input_u8(image + k, input_plane_, mean_[c], std_[c], in_q_.scale, in_q_.zero_point,
                      in_q_.qmax(), x + k);
  }
}

void GraphExecutor::run(const float* image, float* logits) {
  quantize_image(image);
  execute(logits);
}

void GraphExecutor::run_traced(const float* image, float* logits, const Trace& trace) {
  trace_ = &trace;
  try {
    run(image, logits);
  } catch (...) {
    trace_ = nullptr;
    throw;
  }
  trace_ = nullptr;
}

std::vector<GraphExecutor::TraceEntry> GraphExecutor::trace(const float* image, float* logits) {
  const std::vector<std::string> plan = describe();
  std::vector<TraceEntry> entries;
  run_traced(image, logits, [&](const Step* st, const uint8_t* q, int64_t bytes) {
    const int64_t k = st ? st - steps_.data() : -1;
    entries.push_back({k, st ? st->name : "input", st ? plan[static_cast<size_t>(k)] : "input",
                       std::vector<uint8_t>(q, q + bytes)});
  });
  return entries;
}

void GraphExecutor::run_quantized(const uint8_t* x, float* logits) {
  std::memcpy(buf(0), x, static_cast<size_t>(input_size_));
  execute(logits);
}

GraphExecutor::Profile GraphExecutor::profile(const float* images, int64_t n) {
  if (n < 1) fail("profile: {} images (expected at least 1)", n);
  using Clock = std::chrono::steady_clock;
  std::vector<double> seconds(steps_.size(), 0.0);
  double input_seconds = 0;
  std::vector<float> logits(static_cast<size_t>(output_size_));
  step_seconds_ = seconds.data();
  try {
    for (int64_t i = 0; i < n; ++i) {  // run(), its two parts timed
      const Clock::time_point t0 = Clock::now();
      quantize_image(images + i * input_size_);
      input_seconds += std::chrono::duration<double>(Clock::now() - t0).count();
      execute(logits.data());
    }
  } catch (...) {
    step_seconds_ = nullptr;
    throw;
  }
  step_seconds_ = nullptr;
  const double per = 1.0 / static_cast<double>(n);
  Profile p;
  p.steps.push_back({-1, "quantize", "input", input_seconds * per});
  for (size_t k = 0; k < steps_.size(); ++k)
    p.steps.push_back({static_cast<int64_t>(k), step_labels_[k], steps_[k].name, seconds[k] * per});
  std::map<std::string, double> sums;
  for (const StepTime& t : p.steps) {
    p.seconds += t.seconds;
    sums[t.label] += t.seconds;
  }
  p.by_label.assign(sums.begin(), sums.end());
  std::stable_sort(p.by_label.begin(), p.by_label.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  return p;
}

void GraphExecutor::execute(float* logits) {
  const ops::Run r{arena_.data(), buffers_.data(), layers_->data(), fast_.data(),
                   luts_->data(), consts_->data(), acc_.data(),     logits};
  if (step_seconds_) {
    using Clock = std::chrono::steady_clock;
    Clock::time_point t = Clock::now();
    for (size_t k = 0; k < steps_.size(); ++k) {
      step_types_[k]->eval(r, steps_[k]);
      const Clock::time_point now = Clock::now();
      step_seconds_[k] += std::chrono::duration<double>(now - t).count();
      t = now;
    }
    return;
  }
  if (!trace_) {
    for (size_t k = 0; k < steps_.size(); ++k) step_types_[k]->eval(r, steps_[k]);
    return;
  }
  (*trace_)(nullptr, buf(0), input_size_);
  for (size_t k = 0; k < steps_.size(); ++k) {
    const Step& st = steps_[k];
    step_types_[k]->eval(r, st);
    if (st.out >= 0) (*trace_)(&st, buf(st.out), buffers_[st.out].bytes);
  }
}

std::vector<std::string> GraphExecutor::describe() const {
  std::vector<std::string> lines;
  for (size_t k = 0; k < steps_.size(); ++k) {
    const Step& st = steps_[k];
    if (st.out >= 0)
      lines.push_back(fmt::format("{} {}: {} B @ {}", step_labels_[k], st.name,
                                  buffers_[st.out].bytes, buffers_[st.out].offset));
    else
      lines.push_back(fmt::format("{} {}: logits", step_labels_[k], st.name));
  }
  return lines;
}

ParallelExecutor::ParallelExecutor(const GraphExecutor& ex, int threads) {
  if (threads < 1) fail("ParallelExecutor: {} threads (expected at least 1)", threads);
  ex_.assign(static_cast<size_t>(threads), ex);
}

double ParallelExecutor::throughput(const float* images, int64_t n, int64_t batch) {
  if (batch < 1 || n < batch)
    fail("throughput: batches of {} over {} images (expected 1 <= batch <= images)", batch, n);
  const int64_t in = input_size();
  std::vector<float> logits(static_cast<size_t>(batch * output_size()));
  run(images, batch, logits.data());  // warm-up
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t s = 0; s + batch <= n; s += batch) run(images + s * in, batch, logits.data());
  const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return static_cast<double>(n / batch * batch) / sec;
}

void ParallelExecutor::run(const float* images, int64_t n, float* logits) {
  const int64_t t = std::min<int64_t>(threads(), n);
  const int64_t in = input_size(), out = output_size();
  std::vector<std::exception_ptr> errors(static_cast<size_t>(std::max<int64_t>(t, 1)));
  auto share = [&](int64_t k) {
    try {
      for (int64_t i = n * k / t, e = n * (k + 1) / t; i < e; ++i)
        ex_[static_cast<size_t>(k)].run(images + i * in, logits + i * out);
    } catch (...) {
      errors[static_cast<size_t>(k)] = std::current_exception();
    }
  };
  std::vector<std::thread> workers;
  for (int64_t k = 1; k < t; ++k) workers.emplace_back(share, k);
  if (t > 0) share(0);
  for (std::thread& w : workers) w.join();
  for (const std::exception_ptr& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace sq
