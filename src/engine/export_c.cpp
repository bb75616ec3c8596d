// C export: the integer engine's plan (GraphExecutor::prepare on its reference kernels: steps over
// uint8 buffers at planned offsets of one arena) written as C99 source around the portable runtime
// src/engine/c_runtime/sq_runtime.{c,h} (export_c.h; layout and build: docs/engine.md, "C export").
// Consuming the executor's own steps, not a copy of its planning, keeps the C program on the same
// integers whenever the engine's arithmetic changes: each step kind maps to one runtime call with
// the step's constants (requantization multipliers, shifts and bias offsets, add/avgpool
// parameters, 256-entry tables, the conv → ReLU6 → global-avgpool head's bounds and bias
// fractions), and the logits use the float bias exactly as conv2d_f32_ref.
#include "sigmaquant/export_c.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstring>
#include <map>

#include "sigmaquant/engine.h"
#include "sigmaquant/error.h"
#include "sigmaquant/fileutil.h"
#include "sigmaquant/integerize.h"
#include "sigmaquant/transform.h"

namespace sq {
namespace detail {
extern const char* const kCRuntimeSource;
extern const char* const kCRuntimeHeader;
}  // namespace detail

namespace {

constexpr int64_t kMaxTaps = 65793;  // sq_runtime.h SQ_MAX_TAPS: 255 · 128 · taps < 2^31

// The integer engine's own plan (GraphExecutor, on its reference kernels: ConvRef and Add steps),
// which the C program runs step for step over the same arena offsets, plus the C conv kernels'
// scratch sizes.
struct Plan {
  GraphExecutor ex;
  int64_t row = 0, pix = 0;  // the largest reduction length (taps) and output plane of a conv
  int64_t input_plane = 0;
};

// g and im after fold_input_batchnorm (the plan's layer and node indices are g's).
Plan make_plan(const Graph& g, const IntModel& im) {
  for (const auto& [node, q] : im.points)
    if (!std::isfinite(q.scale))
      fail("export c: quantization point {} has scale {} (expected a finite positive number)", node,
           q.scale);
  // What load_sqm and the engine refuse, refused before any file is written.
  for (const IntLayer& L : im.layers)
    for (size_t c = 0; c < L.weight_scales.size(); ++c) {
      if (!std::isfinite(L.weight_scales[c]) || L.weight_scales[c] < 0)
        fail("export c: layer '{}': channel {} has weight scale {} (expected a finite number >= 0)",
             L.name, c, L.weight_scales[c]);
      if (c < L.bias_float.size() && !std::isfinite(L.bias_float[c]))
        fail("export c: layer '{}': channel {} has bias {} (expected a finite number)", L.name, c,
             L.bias_float[c]);
    }
  Plan p;
  try {
    p.ex = GraphExecutor::prepare(g, im, Isa::Reference);
  } catch (const Error& e) {
    fail("export c: {}", e.what());
  }
  p.input_plane = p.ex.input_size() / g.input_shape.at(0);
  for (const GraphExecutor::Step& st : p.ex.steps()) {
    using K = GraphExecutor::Step::Kind;
    if (st.kind == K::ConvFast || st.kind == K::AddLut)
      fail("export c: step '{}' is an optimized kernel (expected the reference plan)", st.name);
    if (st.kind != K::ConvRef && st.kind != K::ConvF32 && st.kind != K::ConvGap &&
        st.kind != K::ConvPool && st.kind != K::ConvGapF32)
      continue;
    const ConvShape& c = st.conv;
    const int64_t taps = c.taps();
    if (taps > kMaxTaps)
      fail(
          "export c: layer '{}' sums {} taps per output (expected at most {}, so that the C "
          "runtime's int32 dot products cannot overflow)",
          st.name, taps, kMaxTaps);
    // The C runtime's index arithmetic is int32: every coordinate a tap can reach must fit.
    const Window2d& w = c.window;
    if (c.in_h + w.pad_top + w.pad_bottom + w.extent_h() > INT32_MAX / 2 ||
        c.in_w + w.pad_left + w.pad_right + w.extent_w() > INT32_MAX / 2)
      fail("export c: layer '{}': window {} over {}x{} (expected coordinates within int32)",
           st.name, window_str(w), c.in_h, c.in_w);
    p.row = std::max(p.row, taps);
    p.pix = std::max(p.pix, c.out_h() * c.out_w());
  }
  return p;
}

// ---- writing C ----

// sq_pool_shape's initializer: c, in h w, out h w, kernel h w, stride h w, pad top left.
std::string pool_init(const PoolShape& q) {
  const Window2d& w = q.window;
  return fmt::format("{{{}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}}}", q.c, q.in_h, q.in_w,
                     q.out_h(), q.out_w(), w.kernel_h, w.kernel_w, w.stride_h, w.stride_w,
                     w.pad_top, w.pad_left);
}

std::string c_float(float v) {
  if (!std::isfinite(v)) fail("export c: a constant is {} (expected a finite number)", v);
  std::string s = fmt::format("{:.9g}", v);  // 9 significant digits: the float round-trips
  if (s.find_first_of(".e") == std::string::npos) s += ".0";
  return s + "f";
}

std::string c_int(int64_t v) {
  return v == INT32_MIN ? std::string("(-2147483647 - 1)") : std::to_string(v);
}

template <typename T, typename F>
std::string c_array(const std::string& type, const std::string& name, const std::vector<T>& v,
                    F fmt_one, size_t per_line = 16) {
  std::string s =
      fmt::format("static const {} {}[{}] = {{", type, name, std::max<size_t>(v.size(), 1));
  if (v.empty()) s += "0";
  for (size_t i = 0; i < v.size(); ++i) {
    if (i % per_line == 0) s += "\n  ";
    s += fmt_one(v[i]);
    s += i + 1 < v.size() ? (i % per_line == per_line - 1 ? "," : ", ") : "";
  }
  return s + "\n};\n";
}

std::string ident(const std::string& name, int index) {
  std::string s = fmt::format("L{}_", index);
  for (char ch : name) s += std::isalnum(static_cast<unsigned char>(ch)) ? ch : '_';
  return s;
}

std::string rq_init(const Requant& r) { return fmt::format("{{{}, {}}}", r.multiplier, r.shift); }

std::string buf_ref(const Plan& p, int b) {
  return fmt::format("sq_arena + {}", p.ex.buffers().at(b).offset);
}

struct Written {
  std::string model_h, model_data_c;
  int64_t packed_bytes = 0;
};

Written write_model(const Graph& g, const Plan& p) {
  Written w;
  std::string d;
  d += fmt::format(
      "/* Generated by `sigmaquant export --format c` from model '{}': the packed weights and\n"
      " * constants of every layer, and sq_model_run() as a sequence of sq_runtime.c kernel "
      "calls.\n"
      " * Do not edit; docs/engine.md (\"C export\") describes the layout. */\n"
      "#include \"model.h\"\n#include \"sq_runtime.h\"\n\n",
      g.name);
  d += fmt::format(
      "/* Activations: one static arena; each tensor's offset was planned at export time (tensors\n"
      " * that are not alive at the same time share bytes). */\n"
      "static uint8_t sq_arena[{}];\n"
      "/* The conv kernels' scratch: one output channel's unpacked weights and dot products. */\n"
      "static int8_t sq_row[{}];\nstatic int32_t sq_dot[{}];\n"
      "static const sq_work sq_ws = {{sq_row, sq_dot}};\n\n",
      std::max<size_t>(p.ex.arena_bytes(), 1), std::max<int64_t>(p.row, 1),
      std::max<int64_t>(p.pix, 1));
  const bool norm = !g.input_mean.empty();
  if (norm) {
    d += "/* Input normalization the model was trained with: x' = (x - mean[c]) / std[c]. */\n";
    d += c_array("float", "sq_input_mean", p.ex.input_mean(), c_float, 6);
    d += c_array("float", "sq_input_std", p.ex.input_std(), c_float, 6);
    d += "\n";
  }
  int k = 0;
  using Kind = GraphExecutor::Step::Kind;
  // The input quantization point (buffer 0), then the engine's steps.
  const ActQuant& inq = p.ex.input_point();
  std::string body = fmt::format(
      "  /* input */\n  sq_quantize_input(image, {}, {}, {}, {}, {}, {}, 0, {}, {});\n",
      g.input_shape[0], p.input_plane, norm ? "sq_input_mean" : "0", norm ? "sq_input_std" : "0",
      c_float(inq.scale), inq.zero_point, inq.qmax(), buf_ref(p, 0));
  for (const GraphExecutor::Step& s : p.ex.steps()) {
    ++k;
    const std::string pn = fmt::format("sq_step{}", k);
    const bool conv = s.kind == Kind::ConvRef || s.kind == Kind::ConvF32 ||
                      s.kind == Kind::ConvGap || s.kind == Kind::ConvPool ||
                      s.kind == Kind::ConvGapF32;
    std::string id;
    if (conv) {
      // The layer's constants.
      const IntLayer& L = p.ex.layers().at(s.layer);
      id = ident(L.name, s.layer);
      const int64_t rows = s.conv.out_c, cols = s.conv.weights() / rows;
      PackedRows pr = pack_rows(L.weights, rows, cols, L.channel_bits);
      w.packed_bytes += static_cast<int64_t>(pr.data.size());
      std::map<int, int> hist;
      for (int b : L.channel_bits) ++hist[b];
      std::string bits_desc;
      for (auto [b, n] : hist)
        bits_desc += fmt::format("{}{}x{}b", bits_desc.empty() ? "" : " ", n, b);
      d +=
          fmt::format("/* {} '{}' reads '{}'; {} channels of {} weights ({}): {} packed bytes */\n",
                      g.nodes[L.node].op == Op::Linear ? "linear" : "conv2d", L.name,
                      g.nodes[L.in_node].name, rows, cols, bits_desc, pr.data.size());
      d += c_array(
          "uint8_t", id + "_w", pr.data, [](uint8_t v) { return std::to_string(v); }, 20);
      std::vector<uint32_t> off(pr.offset.begin(), pr.offset.end() - 1);
      d += c_array(
          "uint32_t", id + "_w_off", off, [](uint32_t v) { return std::to_string(v); }, 12);
      d += c_array(
          "uint8_t", id + "_w_bits", pr.row_bits, [](uint8_t v) { return std::to_string(v); }, 20);
      d += c_array(
          "int32_t", id + "_bias", L.bias, [](int32_t v) { return c_int(v); }, 8);
      const bool u8 = s.kind == Kind::ConvRef,
                 f32 = s.kind == Kind::ConvF32 || s.kind == Kind::ConvGapF32;
      // The float bias, so that the logits are (acc − bias) · unit + b exactly as the engine's
      // conv2d_f32_ref (which falls back to acc · unit without one).
      const bool b_float = f32 && L.bias_float.size() == L.bias.size();
      if (f32) d += c_array("float", id + "_w_scale", L.weight_scales, c_float, 6);
      if (b_float) d += c_array("float", id + "_b_float", L.bias_float, c_float, 6);
      if (u8) d += c_array("sq_rq", id + "_rq", L.requant, rq_init, 4);
      const ConvShape& c = s.conv;
      d += fmt::format(
          "static const sq_conv_layer {} = {{\n  {}, {}, {}, {}, {}, {}, /* in c h w, out c h w "
          "*/\n"
          "  {}, {}, {}, {}, {}, {}, {}, {}, /* kernel h w, stride h w, pad top left, dilation h w "
          "*/\n  {}, /* groups */ {}, /* input zero point */\n"
          "  {}_w, {}_w_off, {}_w_bits, {}_bias, {},\n  {}, {}, {}, /* out zero point, clamp */\n"
          "  {}, {}, {}}};\n",
          id, c.in_c, c.in_h, c.in_w, c.out_c, c.out_h(), c.out_w(), c.window.kernel_h,
          c.window.kernel_w, c.window.stride_h, c.window.stride_w, c.window.pad_top,
          c.window.pad_left, c.window.dilation_h, c.window.dilation_w, c.groups, L.in_zero_point,
          id, id, id, id, u8 ? id + "_rq" : "0", u8 ? L.out_zero_point : 0, u8 ? L.out_lo : 0,
          u8 ? L.out_hi : 0, c_float(L.in_scale), f32 ? id + "_w_scale" : "0",
          b_float ? id + "_b_float" : "0");
      if (s.kind == Kind::ConvGap || s.kind == Kind::ConvPool) {
        const bool cap = !s.gap_hi.empty() && s.gap_hi[0] >= 0;
        if (cap)
          d += c_array(
              "int64_t", id + "_gap_cap", s.gap_hi,
              [](int64_t v) { return fmt::format("INT64_C({})", v); }, 4);
        d += c_array("sq_rq", id + "_gap_m", s.gap_m, rq_init, 4);
        d += fmt::format(
            "static const sq_conv_gap_params {}_gap = {{{}, {}, {}_gap_m, {}, {}, {}}};\n", id,
            s.relu ? 1 : 0, cap ? id + "_gap_cap" : "0", id, s.zp_out, s.lo, s.hi);
        if (s.kind == Kind::ConvPool) {
          const PoolShape& q = s.pool;
          d += fmt::format("static const sq_pool_shape {}_pool = {};\n", id, pool_init(q));
        }
      }
      d += "\n";
    }
    body += fmt::format("  /* {} */\n", s.name);
    switch (s.kind) {
      case Kind::ConvFast:  // not in a reference plan (make_plan)
      case Kind::AddLut:
        break;
      case Kind::ConvRef:
        body += fmt::format("  sq_conv_u8(&{}, {}, {}, &sq_ws);\n", id, buf_ref(p, s.in),
                            buf_ref(p, s.out));
        break;
      case Kind::ConvF32:
        body += fmt::format("  sq_conv_f32(&{}, {}, logits, &sq_ws);\n", id, buf_ref(p, s.in));
        break;
      case Kind::ConvGapF32:
        body += fmt::format("  sq_conv_gap_f32(&{}, {}, {}, logits, &sq_ws);\n", id,
                            s.relu6 ? 2 : s.relu ? 1 : 0, buf_ref(p, s.in));
        break;
      case Kind::ConvGap:
        body += fmt::format("  sq_conv_gap_u8(&{}, &{}_gap, {}, {}, &sq_ws);\n", id, id,
                            buf_ref(p, s.in), buf_ref(p, s.out));
        break;
      case Kind::ConvPool:
        body += fmt::format("  sq_conv_avgpool_u8(&{}, &{}_gap, &{}_pool, {}, {}, &sq_ws);\n", id,
                            id, id, buf_ref(p, s.in), buf_ref(p, s.out));
        break;
      case Kind::Add:
        if (s.add.exact()) {
          const auto i64 = [](int64_t v) { return fmt::format("INT64_C({})", v); };
          d += c_array("int64_t", pn + "_ta", s.add.ta, i64, 4);
          d += c_array("int64_t", pn + "_tb", s.add.tb, i64, 4);
          d += c_array("int64_t", pn + "_thr", s.add.thr, i64, 4);
        }
        d += fmt::format("static const sq_add_params {} = {{{}, {}, {}, {}, {}, {}, {}, {}}};\n",
                         pn, s.add.zp_a, s.add.zp_b, s.add.zp_out, s.add.lo, s.add.hi,
                         rq_init(s.add.m_a), rq_init(s.add.m_b),
                         s.add.exact() ? fmt::format("{0}_ta, {0}_tb, {0}_thr", pn) : "0, 0, 0");
        body += fmt::format("  sq_add_u8(&{}, {}, {}, {}, {});\n", pn, buf_ref(p, s.in),
                            buf_ref(p, s.in2), s.n, buf_ref(p, s.out));
        break;
      case Kind::MaxPool:
      case Kind::AvgPool: {
        const PoolShape& q = s.pool;
        d += fmt::format("static const sq_pool_shape {}_shape = {};\n", pn, pool_init(q));
        if (s.kind == Kind::MaxPool) {
          body += fmt::format("  sq_maxpool_u8(&{}_shape, {}, {});\n", pn, buf_ref(p, s.in),
                              buf_ref(p, s.out));
          break;
        }
        const AvgPoolParams& r = s.avg;
        d += fmt::format("static const sq_avgpool_params {} = {{{}, {}, {}, {}, {}}};\n", pn,
                         r.zp_in, r.zp_out, r.lo, r.hi, rq_init(r.m));
        body += fmt::format("  sq_avgpool_u8(&{}_shape, &{}, {}, {});\n", pn, pn, buf_ref(p, s.in),
                            buf_ref(p, s.out));
        break;
      }
      case Kind::Gap: {
        const AvgPoolParams& r = s.avg;
        d += fmt::format("static const sq_avgpool_params {} = {{{}, {}, {}, {}, {}}};\n", pn,
                         r.zp_in, r.zp_out, r.lo, r.hi, rq_init(r.m));
        body += fmt::format("  sq_global_avgpool_u8({}, {}, &{}, {}, {});\n", s.pool.c,
                            s.pool.in_h * s.pool.in_w, pn, buf_ref(p, s.in), buf_ref(p, s.out));
        break;
      }
      case Kind::Lut:
        d += c_array(
            "uint8_t", pn + "_table",
            std::vector<uint8_t>(p.ex.table(s.table).begin(), p.ex.table(s.table).end()),
            [](uint8_t v) { return std::to_string(v); }, 20);
        body += fmt::format("  sq_lut_u8({}_table, {}, {}, {});\n", pn, buf_ref(p, s.in), s.n,
                            s.out_offset ? fmt::format("{} + {}", buf_ref(p, s.out), s.out_offset)
                                         : buf_ref(p, s.out));
        break;
      case Kind::ChannelLut: {
        std::vector<uint8_t> t;
        for (int64_t ch = 0; ch < s.channels; ++ch)
          t.insert(t.end(), p.ex.table(s.table + static_cast<int>(ch)).begin(),
                   p.ex.table(s.table + static_cast<int>(ch)).end());
        d += c_array(
            "uint8_t", pn + "_tables", t, [](uint8_t v) { return std::to_string(v); }, 20);
        body += fmt::format("  sq_channel_lut_u8({}_tables, {}, {}, {}, {});\n", pn, s.channels,
                            s.n / s.channels, buf_ref(p, s.in), buf_ref(p, s.out));
        break;
      }
      case Kind::Shuffle:
        body += fmt::format("  sq_channel_shuffle_u8({}, {}, {}, {}, {});\n", s.pool.c,
                            s.shuffle_groups, s.pool.in_h * s.pool.in_w, buf_ref(p, s.in),
                            buf_ref(p, s.out));
        break;
      case Kind::Mul:
        d += fmt::format("static const sq_mul_params {} = {{{}, {}, {}, {}, {}, {}, {}}};\n", pn,
                         s.mul.zp_a, s.mul.zp_b, s.mul.zp_out, s.mul.lo, s.mul.hi, s.mul.per,
                         rq_init(s.mul.m));
        body += fmt::format("  sq_mul_u8(&{}, {}, {}, {}, {});\n", pn, buf_ref(p, s.in),
                            buf_ref(p, s.in2), s.n, buf_ref(p, s.out));
        break;
    }
  }
  d += "\nvoid sq_model_run(const float* image, float* logits) {\n" + body + "}\n";
  w.model_data_c = std::move(d);

  const Shape& in = g.input_shape;
  w.model_h = fmt::format(
      "/* Generated by `sigmaquant export --format c` from model '{}'. */\n"
      "#ifndef SQ_MODEL_H\n#define SQ_MODEL_H\n\n"
      "#define SQ_MODEL_NAME \"{}\"\n"
      "#define SQ_MODEL_INPUT_C {}\n#define SQ_MODEL_INPUT_H {}\n#define SQ_MODEL_INPUT_W {}\n"
      "#define SQ_MODEL_INPUT_SIZE {} /* floats per image */\n"
      "#define SQ_MODEL_OUTPUT_SIZE {} /* logits */\n"
      "#define SQ_MODEL_ARENA_BYTES {} /* static activation memory */\n"
      "#define SQ_MODEL_WEIGHT_BYTES {} /* packed weights */\n\n"
      "#ifdef __cplusplus\nextern \"C\" {{\n#endif\n\n"
      "/* Runs one image: `image` is one sample, channel-major (C, H, W), exactly as stored in "
      "the\n"
      " * dataset (not normalized: the model normalizes and quantizes it). Writes\n"
      " * SQ_MODEL_OUTPUT_SIZE logits. Integer-only after the input quantization; not reentrant\n"
      " * (one static arena). */\n"
      "void sq_model_run(const float* image, float* logits);\n\n"
      "#ifdef __cplusplus\n}}\n#endif\n\n#endif /* SQ_MODEL_H */\n",
      g.name, g.name, in[0], in[1], in[2], p.ex.input_size(), p.ex.output_size(),
      p.ex.arena_bytes(), w.packed_bytes);
  return w;
}

const char* kMainExample = R"(/* Demo: classifies raw float32 images with the exported model.
 *
 *   ./sq_demo images.f32 [logits.f32]
 *
 * images.f32 holds N images back to back, each SQ_MODEL_INPUT_SIZE native-endian float32 values
 * in (C, H, W) order, as stored in the dataset (not normalized). Prints "index class" per image;
 * with a second argument, also writes the N x SQ_MODEL_OUTPUT_SIZE float32 logits there. */
#include <stdio.h>

#include "model.h"

static float image[SQ_MODEL_INPUT_SIZE];
static float logits[SQ_MODEL_OUTPUT_SIZE];

int main(int argc, char** argv) {
  FILE* in;
  FILE* out = NULL;
  long n = 0;
  if (argc < 2 || argc > 3) {
    fprintf(stderr, "usage: %s images.f32 [logits.f32]\n", argv[0]);
    return 2;
  }
  in = fopen(argv[1], "rb");
  if (!in) {
    fprintf(stderr, "%s: cannot open\n", argv[1]);
    return 1;
  }
  if (argc == 3 && !(out = fopen(argv[2], "wb"))) {
    fprintf(stderr, "%s: cannot open for writing\n", argv[2]);
    fclose(in);
    return 1;
  }
  while (fread(image, sizeof(float), SQ_MODEL_INPUT_SIZE, in) == SQ_MODEL_INPUT_SIZE) {
    int c, best = 0;
    sq_model_run(image, logits);
    for (c = 1; c < SQ_MODEL_OUTPUT_SIZE; ++c)
      if (logits[c] > logits[best]) best = c;
    printf("%ld %d\n", n++, best);
    if (out && fwrite(logits, sizeof(float), SQ_MODEL_OUTPUT_SIZE, out) != SQ_MODEL_OUTPUT_SIZE) {
      fprintf(stderr, "%s: write failed\n", argv[2]);
      return 1;
    }
  }
  fclose(in);
  if (out && fclose(out) != 0) {
    fprintf(stderr, "%s: write failed\n", argv[2]);
    return 1;
  }
  fprintf(stderr, "%ld images\n", n);
  return 0;
}
)";

const char* kMakefile =
    "# Builds the demo of an exported SigmaQuant model: `make`, then ./sq_demo images.f32\n"
    "CC ?= cc\n"
    "CFLAGS ?= -std=c99 -O2 -Wall -Wextra -pedantic\n"
    "\n"
    "sq_demo: main_example.c model_data.c sq_runtime.c model.h sq_runtime.h\n"
    "\t$(CC) $(CFLAGS) -o $@ main_example.c model_data.c sq_runtime.c -lm\n"
    "\n"
    "clean:\n"
    "\trm -f sq_demo\n"
    "\n"
    ".PHONY: clean\n";

// The staging directory: every file is written there first, so that a failure leaves the
// destination as it was. Removed (with what it holds) unless released.
class Staging {
 public:
  explicit Staging(std::string dir) : dir_(std::move(dir)) {}
  Staging(const Staging&) = delete;
  Staging& operator=(const Staging&) = delete;
  ~Staging() {
    if (dir_.empty()) return;
    for (const std::string& f : files_) ::unlink((dir_ + "/" + f).c_str());
    ::rmdir(dir_.c_str());
  }
  const std::string& dir() const { return dir_; }
  void add(const std::string& name, const std::string& bytes) {
    write_file_atomic(dir_ + "/" + name, bytes);
    files_.push_back(name);
  }
  const std::vector<std::string>& files() const { return files_; }
  void release() { dir_.clear(); }

 private:
  std::string dir_;
  std::vector<std::string> files_;
};

// Writes the named files into out_dir as one set: into a fresh directory next to it
// (OUT.tmp.<pid>), which then becomes out_dir by one rename — or, when out_dir exists already
// (it may hold other files: a built demo, inputs), whose files are moved in one by one once every
// destination name is known to be free or a regular file. Any failure before the moves leaves
// out_dir untouched and removes the staging directory.
void write_file_set(const std::string& out_dir,
                    const std::vector<std::pair<std::string, std::string>>& files) {
  std::string dir = out_dir;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  if (dir.empty()) fail("export c: empty output directory name");
  const size_t slash = dir.rfind('/');
  if (slash != std::string::npos && slash > 0) make_dirs(dir.substr(0, slash));
  struct stat st;
  const bool exists = ::stat(dir.c_str(), &st) == 0;
  if (exists && !S_ISDIR(st.st_mode)) fail("{}: exists and is not a directory", dir);
  if (exists)
    for (const auto& f : files) {
      const std::string dst = dir + "/" + f.first;
      if (::lstat(dst.c_str(), &st) == 0 && !S_ISREG(st.st_mode))
        fail("{}: exists and is not a regular file (nothing was written)", dst);
    }
  Staging stage(dir + ".tmp." + std::to_string(::getpid()));
  if (::mkdir(stage.dir().c_str(), 0755) != 0) {
    const int e = errno;
    stage.release();  // not ours to remove
    fail("{}: cannot create the staging directory ({})", dir + ".tmp." + std::to_string(::getpid()),
         std::strerror(e));
  }
  for (const auto& [name, bytes] : files) stage.add(name, bytes);
  if (!exists) {
    if (::rename(stage.dir().c_str(), dir.c_str()) != 0)
      fail("{}: cannot rename the staging directory into place ({})", dir, std::strerror(errno));
    stage.release();
    return;
  }
  for (const std::string& name : stage.files()) {
    const std::string from = stage.dir() + "/" + name, to = dir + "/" + name;
    if (::rename(from.c_str(), to.c_str()) != 0)
      fail("{}: cannot move the new file into place ({})", to, std::strerror(errno));
  }
}

}  // namespace

CTarget parse_c_target(const std::string& name) {
  if (name == "portable") return CTarget::Portable;
  if (name == "cortex-m-dsp") return CTarget::CortexMDsp;
  fail("C target '{}' is not supported (expected portable or cortex-m-dsp)", name);
}

void export_c(const QuantModel& qm, const std::string& out_dir, CTarget target) {
  Graph g = qm.graph;
  IntModel im = integerize(qm);
  try {
    fold_input_batchnorm(g, im);  // as GraphExecutor::prepare: the plan's indices are g's
  } catch (const Error& e) {
    fail("export c: {}", e.what());
  }
  const Plan plan = make_plan(g, im);
  const Written w = write_model(g, plan);
  // The target selects the runtime's kernels at compile time (sq_runtime.c, "SQ_TARGET_...").
  std::string runtime = detail::kCRuntimeSource;
  if (target == CTarget::CortexMDsp)
    runtime =
        "/* Exported with --c-target cortex-m-dsp: the dot products use the Cortex-M DSP "
        "extension. */\n#define SQ_TARGET_CORTEX_M_DSP 1\n" +
        runtime;
  write_file_set(out_dir, {{"model.h", w.model_h},
                           {"model_data.c", w.model_data_c},
                           {"sq_runtime.h", detail::kCRuntimeHeader},
                           {"sq_runtime.c", runtime},
                           {"main_example.c", kMainExample},
                           {"Makefile", kMakefile}});
}

}  // namespace sq
