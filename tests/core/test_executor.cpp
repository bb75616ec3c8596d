// GraphExecutor: the optimized plan equals the all-reference plan bit for bit on every zoo model
// and every ISA this CPU has (the others are reported as skipped), a residual graph equals the
// reference kernels composed by hand, logits agree with a plain-loop float simulation of the
// quantized model, and run() does not allocate.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <new>
#include <string>
#include <tuple>

#include "engine_cases.h"
#include "quant_models.h"
#include "sigmaquant/engine.h"
#include "sigmaquant/error.h"
#include "test_util.h"

// Counts every allocation of the test program (forwarded to malloc) so that a test can assert
// that a region allocates nothing.
// (GCC cannot tell that this malloc/free pair is the replacement's own.)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
static std::atomic<long> g_allocations{0};
static std::atomic<long> g_allocated_bytes{0};
void* operator new(std::size_t n) {
  ++g_allocations;
  g_allocated_bytes += static_cast<long>(n);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
// The nothrow pair too (std::stable_sort's temporary buffer uses it): every new of this program
// must come from malloc, since every delete goes to free (AddressSanitizer checks the pairing).
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  ++g_allocations;
  g_allocated_bytes += static_cast<long>(n);
  return std::malloc(n ? n : 1);
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
#pragma GCC diagnostic pop

namespace {

struct ZooCase {
  const char* name;
  sq::Shape input;
};
const ZooCase kZoo[] = {
    {"lenet5", {1, 28, 28}},    {"resnet8", {3, 12, 12}},
    {"resnet20", {1, 12, 12}},  {"mobilenetv2", {3, 28, 28}},
    {"mlp", {1, 12, 12}},       {"rect", {3, 16, 16}},  // non-square windows (quant_models.h)
    {"shufflev2", {3, 16, 16}},                         // channel slices (quant_models.h)
    {"dense", {3, 12, 12}}};                            // standalone batchnorms (quant_models.h)

class GraphExecutorZoo : public ::testing::TestWithParam<ZooCase> {};

// The optimized plan on each ISA the dispatch can be given (Auto is one of them: see
// AutoIsTheBestIsa); one this CPU lacks is reported as skipped, naming it.
using sqtest::IsaCase;
using sqtest::kIsas;
class GraphExecutorIsa : public ::testing::TestWithParam<std::tuple<ZooCase, IsaCase>> {};

TEST_P(GraphExecutorIsa, OptimizedEqualsReferenceExactly) {
  const auto [zc, ic] = GetParam();
  if (ic.isa == sq::Isa::Avx2 && !sq::cpu_has_avx2()) GTEST_SKIP() << "this CPU lacks AVX2";
  if (ic.isa == sq::Isa::AvxVnni && !sq::cpu_has_avxvnni())
    GTEST_SKIP() << "this CPU lacks AVX-VNNI";
  if (ic.isa == sq::Isa::Avx512Vnni && !sq::cpu_has_avx512vnni())
    GTEST_SKIP() << "this CPU lacks AVX-512 VNNI";
  const sq::QuantModel qm = sqtest::synthetic_qmodel(zc.name, zc.input, 10, 3);
  const sq::IntModel im = sq::integerize(qm);
  sq::GraphExecutor ref = sq::GraphExecutor::prepare(qm.graph, im, sq::Isa::Reference);
  sq::GraphExecutor fast = sq::GraphExecutor::prepare(qm.graph, im, ic.isa);
  ASSERT_EQ(ref.output_size(), 10);
  ASSERT_EQ(ref.input_size(), zc.input[0] * zc.input[1] * zc.input[2]);
  // Every groups = 1 conv of the plan runs a kernel of this ISA.
  int convs = 0;
  for (const std::string& line : fast.describe())
    if (line.find(" [") != std::string::npos) {
      ++convs;
      EXPECT_EQ(line.find(std::string(" [") + ic.name), line.find(" [")) << line;
    }
  EXPECT_GT(convs, 0);
  const int n = 6;
  const auto imgs = sqtest::random_images(n, ref.input_size(), 7);
  for (int s = 0; s < n; ++s) {
    std::vector<float> want(10), got(10);
    ref.run(imgs.data() + s * ref.input_size(), want.data());
    fast.run(imgs.data() + s * ref.input_size(), got.data());
    EXPECT_EQ(0, std::memcmp(got.data(), want.data(), sizeof(float) * 10)) << "sample " << s;
    bool spread = false;
    for (float v : want) spread |= v != want[0];
    EXPECT_TRUE(spread) << "constant logits";
  }
}

INSTANTIATE_TEST_SUITE_P(Zoo, GraphExecutorIsa,
                         ::testing::Combine(::testing::ValuesIn(kZoo), ::testing::ValuesIn(kIsas)),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param).name) + "_" +
                                  std::get<1>(info.param).name;
                         });

// A conv whose output is no point but goes through ReLU into an average pooling (conv+gap,
// conv+avgpool, and the float logits' conv+gap(f32)) runs the conv kernels' tiles for its
// accumulators in optimized plans (its describe() line names the kernel), with the reference
// plan's logits; the zoo's OptimizedEqualsReferenceExactly checks them on every ISA, and
// ExportC.ConvReluGlobalPoolHeadGivesTheLogits the float head (ConvGapF32).
TEST(GraphExecutor, PooledConvsRunTheKernels) {
  using Kind = sq::GraphExecutor::Step::Kind;
  std::map<Kind, int> seen;
  for (const char* zoo : {"mobilenetv2", "dense"}) {
    const sq::QuantModel qm = sqtest::synthetic_qmodel(zoo, {3, 16, 16}, 10, 3);
    const sq::IntModel im = sq::integerize(qm);
    const sq::GraphExecutor ref = sq::GraphExecutor::prepare(qm.graph, im, sq::Isa::Reference);
    for (sq::Isa isa : {sq::Isa::Portable, sq::Isa::Auto}) {
      sq::GraphExecutor fast = sq::GraphExecutor::prepare(qm.graph, im, isa);
      const std::vector<std::string> plan = fast.describe();
      for (size_t k = 0; k < fast.steps().size(); ++k) {
        const Kind kind = fast.steps()[k].kind;
        if (kind != Kind::ConvGap && kind != Kind::ConvPool && kind != Kind::ConvGapF32) continue;
        ++seen[kind];
        EXPECT_NE(plan[k].find(" ["), std::string::npos) << zoo << ": " << plan[k];
        EXPECT_GE(fast.steps()[k].fast, 0) << zoo << ": " << plan[k];
      }
      const auto imgs = sqtest::random_images(3, ref.input_size(), 8);
      for (int s = 0; s < 3; ++s) {
        std::vector<float> want(10), got(10);
        sq::GraphExecutor r = ref;
        r.run(imgs.data() + s * ref.input_size(), want.data());
        fast.run(imgs.data() + s * ref.input_size(), got.data());
        EXPECT_EQ(got, want) << zoo << " sample " << s;
      }
    }
  }
  EXPECT_GT(seen[Kind::ConvGap], 0);
  EXPECT_GT(seen[Kind::ConvPool], 0);
}

// Optimized plans fuse an add with the table step that alone reads its codes (resnet's add →
// ReLU to another point; the dense case's add rescaled into a concat's channel slice): one
// "add+table" step that holds the table's node's codes and writes where the table wrote.
// OptimizedEqualsReferenceExactly checks the logits of these plans on every ISA.
TEST(GraphExecutor, AddAbsorbsTheTableAfterIt) {
  for (const char* zoo : {"resnet8", "dense"}) {
    const sq::QuantModel qm = sqtest::synthetic_qmodel(zoo, {3, 12, 12}, 10, 3);
    const sq::IntModel im = sq::integerize(qm);
    const sq::GraphExecutor ref = sq::GraphExecutor::prepare(qm.graph, im, sq::Isa::Reference);
    const sq::GraphExecutor fast = sq::GraphExecutor::prepare(qm.graph, im, sq::Isa::Portable);
    int fused = 0, in_slice = 0;
    const std::vector<std::string> plan = fast.describe();
    for (size_t k = 0; k < fast.steps().size(); ++k) {
      const sq::GraphExecutor::Step& st = fast.steps()[k];
      if (st.kind != sq::GraphExecutor::Step::Kind::AddLut) continue;
      ASSERT_EQ(plan[k].rfind("add+table ", 0), 0u) << zoo << ": " << plan[k];
      ++fused;
      in_slice += st.out_offset > 0;
      // The fused step carries the table step's name: its node (a concat's: "cat/input").
      const std::string node = st.name.substr(0, st.name.find('/'));
      const auto& nodes = qm.graph.nodes;
      const auto it = std::find_if(nodes.begin(), nodes.end(),
                                   [&](const sq::Node& n) { return n.name == node; });
      ASSERT_NE(it, nodes.end());
      EXPECT_NE(it->op, sq::Op::Add) << zoo << ": " << st.name;
    }
    EXPECT_GT(fused, 0) << zoo;
    if (std::string(zoo) == "dense") {
      EXPECT_EQ(in_slice, 1);
    }
    EXPECT_EQ(fast.steps().size() + static_cast<size_t>(fused), ref.steps().size()) << zoo;
  }
}

// Isa::Auto is best_isa(): the same kernel for every conv.
TEST(GraphExecutor, AutoIsTheBestIsa) {
  const sq::QuantModel qm = sqtest::synthetic_qmodel("resnet8", {3, 12, 12}, 10, 3);
  const sq::IntModel im = sq::integerize(qm);
  EXPECT_EQ(sq::GraphExecutor::prepare(qm.graph, im, sq::Isa::Auto).describe(),
            sq::GraphExecutor::prepare(qm.graph, im, sq::best_isa()).describe());
}

// Logits agree with the float simulation (fake quantization at the same points): the integer
// arithmetic rounds the same values the same way (the bias is the int32 bias in both:
// QuantSim::bias); what remains are ties, float rounding in the simulation and the fixed-point mean of
// average pooling, which can flip a code now and then.
TEST_P(GraphExecutorZoo, AgreesWithTheSimulation) {
  const ZooCase& zc = GetParam();
  const sq::QuantModel qm = sqtest::synthetic_qmodel(zc.name, zc.input, 10, 5);
  sq::GraphExecutor ex = sq::GraphExecutor::prepare(qm.graph, sq::integerize(qm));
  const int n = 16;
  const auto imgs = sqtest::random_images(n, ex.input_size(), 11);
  int agree = 0, far = 0;
  double worst = 0;
  for (int s = 0; s < n; ++s) {
    std::vector<float> got(10);
    ex.run(imgs.data() + s * ex.input_size(), got.data());
    const std::vector<float> want = sqtest::simulate(qm, imgs.data() + s * ex.input_size());
    float lo = want[0], hi = want[0];
    for (float v : want) lo = std::min(lo, v), hi = std::max(hi, v);
    double image_worst = 0;
    for (int k = 0; k < 10; ++k)
      image_worst = std::max(image_worst, double(std::fabs(got[k] - want[k]) / (hi - lo)));
    worst = std::max(worst, image_worst);
    far += image_worst > 0.01;
    agree += std::max_element(got.begin(), got.end()) - got.begin() ==
             std::max_element(want.begin(), want.end()) - want.begin();
  }
  // At most one image further than 1 % of the logit range: a code at a near-tie can round the
  // other way in the oracle's float32 (resnet20, image 14: the exact conv output is 227.5000014
  // steps, the engine's 228 is right, the float oracle says 227), and a residual network
  // amplifies that one code to 1.5 % of the logit range.
  EXPECT_LE(far, 1) << zc.name;
  EXPECT_GE(agree, n - 1) << zc.name;
  std::printf("%s: worst |engine - simulation| = %.4f of the logit range, top-1 %d/%d\n", zc.name,
              worst, agree, n);
}

TEST_P(GraphExecutorZoo, RunAllocatesNothing) {
  const ZooCase& zc = GetParam();
  const sq::QuantModel qm = sqtest::synthetic_qmodel(zc.name, zc.input, 10, 3);
  sq::GraphExecutor ex = sq::GraphExecutor::prepare(qm.graph, sq::integerize(qm));
  const auto img = sqtest::random_images(1, ex.input_size(), 1);
  std::vector<float> logits(10);
  std::vector<uint8_t> xq(static_cast<size_t>(ex.input_size()), 3);
  ex.run(img.data(), logits.data());
  const long before = g_allocations.load();
  ex.run(img.data(), logits.data());
  ex.run_quantized(xq.data(), logits.data());
  EXPECT_EQ(g_allocations.load(), before) << zc.name;
}

INSTANTIATE_TEST_SUITE_P(Zoo, GraphExecutorZoo, ::testing::ValuesIn(kZoo),
                         [](const auto& info) { return std::string(info.param.name); });

// A copy of an executor shares what prepare built (integer layers, packed weights, tables) and
// owns its arena and scratch: copying allocates less than the shared and private bytes together
// (it would allocate both, and the plan's metadata, if it duplicated the weights), the copy
// computes the same logits, and it outlives the original.
TEST(GraphExecutor, CopiesShareTheWeights) {
  for (const char* zoo : {"resnet8", "mobilenetv2"}) {
    const sq::QuantModel qm = sqtest::synthetic_qmodel(zoo, {3, 20, 20}, 10, 3);
    auto ex = std::make_unique<sq::GraphExecutor>(
        sq::GraphExecutor::prepare(qm.graph, sq::integerize(qm)));
    const auto img = sqtest::random_images(1, ex->input_size(), 2);
    std::vector<float> want(10), got(10);
    ex->run(img.data(), want.data());
    const long before = g_allocated_bytes.load();
    sq::GraphExecutor copy = *ex;
    const long copied = g_allocated_bytes.load() - before;
    EXPECT_EQ(copy.shared_bytes(), ex->shared_bytes()) << zoo;
    EXPECT_GE(copied, static_cast<long>(copy.private_bytes())) << zoo;
    // Duplicated weights would make a copy cost at least shared + private bytes (plus the plan's
    // steps and names, which every copy holds).
    EXPECT_LT(copied, static_cast<long>(ex->shared_bytes() + copy.private_bytes()))
        << zoo << ": a copy allocated " << copied << " bytes (private " << copy.private_bytes()
        << ") against " << ex->shared_bytes() << " shared";
    EXPECT_EQ(copy.layers().data(), ex->layers().data()) << zoo;
    ex.reset();
    copy.run(img.data(), got.data());
    EXPECT_EQ(got, want) << zoo;
  }
}

// ParallelExecutor: any number of threads, more threads than images, no images — the logits of
// GraphExecutor::run image by image; threads < 1 is refused.
TEST(GraphExecutor, ParallelExecutorEqualsOneImageAtATime) {
  const sq::QuantModel qm = sqtest::synthetic_qmodel("resnet8", {3, 12, 12}, 10, 4);
  sq::GraphExecutor ex = sq::GraphExecutor::prepare(qm.graph, sq::integerize(qm));
  const int64_t n = 7, in = ex.input_size();
  const auto imgs = sqtest::random_images(n, in, 5);
  std::vector<float> want(static_cast<size_t>(n * 10));
  for (int64_t i = 0; i < n; ++i) ex.run(imgs.data() + i * in, want.data() + i * 10);
  for (int threads : {1, 2, 3, 16}) {
    sq::ParallelExecutor par(ex, threads);
    EXPECT_EQ(par.threads(), threads);
    EXPECT_EQ(par.output_size(), 10);
    for (int64_t count : {n, int64_t{1}, int64_t{0}}) {
      std::vector<float> got(static_cast<size_t>(n * 10), -1.0f);
      par.run(imgs.data(), count, got.data());
      for (int64_t k = 0; k < n * 10; ++k)
        EXPECT_EQ(got[static_cast<size_t>(k)],
                  k < count * 10 ? want[static_cast<size_t>(k)] : -1.0f)
            << threads << " threads, " << count << " images, logit " << k;
    }
  }
  EXPECT_THROW(sq::ParallelExecutor(ex, 0), sq::Error);
  // throughput (sigmaquant bench's engine rows): a positive rate; a batch larger than the images
  // or below 1 is refused.
  sq::ParallelExecutor two(ex, 2);
  EXPECT_GT(two.throughput(imgs.data(), n, 3), 0.0);
  EXPECT_THROW(two.throughput(imgs.data(), n, n + 1), sq::Error);
  EXPECT_THROW(two.throughput(imgs.data(), n, 0), sq::Error);
}

// On AVX-512 VBMI plans a standalone batchnorm (the dense case: gammas of both signs, ReLU after
// it and not) is its float form — the per-channel table's arithmetic itself, checked against
// every channel's table on all 256 codes at prepare — and the logits are the reference plan's.
TEST(GraphExecutor, StandaloneBatchnormsTakeTheFloatForm) {
  if (!sq::cpu_has_avx512vnni()) GTEST_SKIP() << "this CPU lacks AVX-512";
  const sq::QuantModel qm = sqtest::synthetic_qmodel("dense", {3, 12, 12}, 10, 3);
  const sq::IntModel im = sq::integerize(qm);
  sq::GraphExecutor ref = sq::GraphExecutor::prepare(qm.graph, im, sq::Isa::Reference);
  sq::GraphExecutor fast = sq::GraphExecutor::prepare(qm.graph, im, sq::Isa::Avx512Vnni);
  int affine = 0, tables = 0;
  for (const std::string& d : fast.describe()) {
    affine += d.rfind("channel-affine(avx512) ", 0) == 0;
    tables += d.rfind("channel-table", 0) == 0;
  }
  EXPECT_GT(affine, 0);
  EXPECT_EQ(tables, 0);
  const auto imgs = sqtest::random_images(8, ref.input_size(), 12);
  for (int s = 0; s < 8; ++s) {
    std::vector<float> want(10), got(10);
    ref.run(imgs.data() + s * ref.input_size(), want.data());
    fast.run(imgs.data() + s * ref.input_size(), got.data());
    EXPECT_EQ(got, want) << "sample " << s;
  }
}

// The input quantizer's AVX2 form gives the scalar form's codes: random values over and past the
// range, exact ties (k + 0.5 rounds to the even k), every length around the 8-lane blocks, zero
// points and 4-bit inputs.
TEST(GraphExecutor, VectorInputQuantizerEqualsTheScalarOne) {
  if (!sq::cpu_has_avx2()) GTEST_SKIP() << "this CPU lacks AVX2";
  std::mt19937 rng(41);
  std::uniform_real_distribution<float> u(-3.0f, 3.0f);
  for (int64_t n : {1, 7, 8, 9, 100, 1027}) {
    std::vector<float> x(static_cast<size_t>(n));
    for (size_t k = 0; k < x.size(); ++k)
      x[k] = k % 3 == 0 ? static_cast<float>(static_cast<int>(k % 40) - 20) + 0.5f : u(rng);
    for (const auto& [mean, sd, scale, zp, qmax] :
         {std::tuple<float, float, float, int32_t, int32_t>{0.0f, 1.0f, 1.0f, 0, 255},
          {0.1307f, 0.3081f, 0.0271f, 17, 255},
          {0.5f, 0.25f, 0.5f, 8, 15},
          {0, 1, 0.1f, 128, 255}}) {
      std::vector<uint8_t> want(x.size(), 1), got(x.size(), 2);
      sq::quantize_input_u8(x.data(), n, mean, sd, scale, zp, qmax, want.data(), false);
      sq::quantize_input_u8(x.data(), n, mean, sd, scale, zp, qmax, got.data(), true);
      EXPECT_EQ(got, want) << "n = " << n << ", scale " << scale;
    }
  }
}

// The tiers' names (bench --isa) round-trip; an unknown one is refused naming the choices.
TEST(GraphExecutor, IsaNamesRoundTrip) {
  for (sq::Isa isa : {sq::Isa::Auto, sq::Isa::Portable, sq::Isa::Avx2, sq::Isa::AvxVnni,
                      sq::Isa::Avx512Vnni, sq::Isa::Reference})
    EXPECT_EQ(sq::parse_isa(sq::isa_name(isa)), isa);
  EXPECT_NE(sqtest::error_of([] { sq::parse_isa("avx1024"); }).find("expected auto, portable"),
            std::string::npos);
}

// profile: one entry for the input and one per step in plan order, labelled as describe() says,
// every time non-negative and some positive, the per-label sums the same total; the run leaves the
// executor's logits unchanged (it is an ordinary run, timed); no images is refused.
TEST(GraphExecutor, ProfileTimesEveryStep) {
  const sq::QuantModel qm = sqtest::synthetic_qmodel("resnet8", {3, 12, 12}, 10, 4);
  sq::GraphExecutor ex = sq::GraphExecutor::prepare(qm.graph, sq::integerize(qm));
  const int64_t n = 3, in = ex.input_size();
  const auto imgs = sqtest::random_images(n, in, 6);
  std::vector<float> want(10), got(10);
  ex.run(imgs.data(), want.data());
  const sq::GraphExecutor::Profile prof = ex.profile(imgs.data(), n);
  const std::vector<sq::GraphExecutor::StepTime>& p = prof.steps;
  const std::vector<std::string> plan = ex.describe();
  ASSERT_EQ(p.size(), plan.size() + 1);
  EXPECT_EQ(p[0].step, -1);
  EXPECT_EQ(p[0].node, "input");
  double total = 0;
  for (size_t k = 1; k < p.size(); ++k) {
    EXPECT_EQ(p[k].step, static_cast<int64_t>(k - 1));
    EXPECT_EQ(plan[k - 1].rfind(p[k].label + " " + p[k].node + ":", 0), 0u) << plan[k - 1];
    EXPECT_GE(p[k].seconds, 0.0);
    total += p[k].seconds;
  }
  EXPECT_GT(total, 0.0);
  // The per-label sums hold the same time, most first.
  double labelled = 0;
  for (size_t k = 0; k < prof.by_label.size(); ++k) {
    labelled += prof.by_label[k].second;
    if (k > 0) {
      EXPECT_GE(prof.by_label[k - 1].second, prof.by_label[k].second);
    }
  }
  EXPECT_NEAR(labelled, prof.seconds, 1e-12);
  EXPECT_NEAR(total + p[0].seconds, prof.seconds, 1e-12);
  ex.run(imgs.data(), got.data());
  EXPECT_EQ(got, want);
  EXPECT_THROW(ex.profile(imgs.data(), 0), sq::Error);
}

// Channel slices are views (no step, no copy): each lies inside the buffer it views, which stays
// alive until the view's last reader, so the memory plan cannot hand those bytes to another tensor
// while the view is read.
TEST(GraphExecutor, SliceViewsLieInsideTheirLiveBuffers) {
  const sq::QuantModel qm = sqtest::synthetic_qmodel("shufflev2", {3, 16, 16}, 10, 5);
  sq::GraphExecutor ex = sq::GraphExecutor::prepare(qm.graph, sq::integerize(qm));
  const auto& bufs = ex.buffers();
  int views = 0;
  for (const auto& b : bufs) {
    if (b.view_of < 0) continue;
    ++views;
    const auto& owner = bufs[static_cast<size_t>(b.view_of)];
    EXPECT_LT(owner.view_of, 0);  // a view of a view is a view of the owner
    EXPECT_GE(b.view_offset, 0);
    EXPECT_LE(b.view_offset + b.bytes, owner.bytes);
    EXPECT_EQ(b.offset, owner.offset + static_cast<size_t>(b.view_offset));
    EXPECT_GE(owner.last, b.last);
    for (const auto& other : bufs) {  // no other tensor shares the bytes while the view is read
      if (&other == &owner || other.view_of >= 0 || other.first > b.last || b.first > other.last)
        continue;
      EXPECT_TRUE(other.offset >= b.offset + static_cast<size_t>(b.bytes) ||
                  other.offset + static_cast<size_t>(other.bytes) <= b.offset);
    }
  }
  // shufflev2_graph's slices: u2.lo/hi, u3.lo/hi, u4.tail/mid/first, fslice.
  EXPECT_EQ(views, 8);
}

// run_traced: the same logits as run(), one call per step that writes codes, and the codes at
// every node the same in the optimized plan as in the all-reference one (the plans' kernels
// differ; the integers may not).
TEST(GraphExecutor, TraceGivesEveryStepsCodes) {
  for (const ZooCase& zc : {kZoo[1], kZoo[6]}) {  // resnet8 (adds), shufflev2 (concat, views)
    const sq::QuantModel qm = sqtest::synthetic_qmodel(zc.name, zc.input, 10, 5);
    const sq::IntModel im = sq::integerize(qm);
    sq::GraphExecutor fast = sq::GraphExecutor::prepare(qm.graph, im);
    sq::GraphExecutor ref = sq::GraphExecutor::prepare(qm.graph, im, sq::Isa::Reference);
    const auto img = sqtest::random_images(1, fast.input_size(), 4);
    auto trace = [&](sq::GraphExecutor& ex, std::vector<float>& logits) {
      std::map<std::string, std::vector<uint8_t>> codes;  // node → its buffer after its last step
      size_t calls = 0;
      ex.run_traced(img.data(), logits.data(),
                    [&](const sq::GraphExecutor::Step* st, const uint8_t* q, int64_t bytes) {
                      if (!st) {  // first, the input's codes
                        EXPECT_EQ(calls, 0u);
                        EXPECT_EQ(bytes, ex.input_size());
                        codes["(input)"].assign(q, q + bytes);
                        return;
                      }
                      EXPECT_GE(st->out, 0);
                      EXPECT_EQ(bytes, ex.buffers()[static_cast<size_t>(st->out)].bytes);
                      // A concat input's step ("cat/input") fills its slice of a buffer the
                      // other inputs' steps have not written yet: what the rest holds depends
                      // on the plan's memory layout, so only the slice is compared.
                      if (st->name.find('/') != std::string::npos) {
                        ASSERT_LE(st->out_offset + st->n, bytes) << st->name;
                        codes[st->name].assign(q + st->out_offset, q + st->out_offset + st->n);
                      } else {
                        codes[st->name].assign(q, q + bytes);
                      }
                      ++calls;
                    });
      EXPECT_EQ(codes.count("(input)"), 1u);
      size_t writers = 0;
      for (const auto& st : ex.steps()) writers += st.out >= 0;
      EXPECT_EQ(calls, writers) << zc.name;
      return codes;
    };
    std::vector<float> plain(10), traced(10), traced_ref(10);
    fast.run(img.data(), plain.data());
    const auto a = trace(fast, traced), b = trace(ref, traced_ref);
    EXPECT_EQ(plain, traced) << zc.name;
    EXPECT_EQ(traced, traced_ref) << zc.name;
    EXPECT_FALSE(a.empty());
    // Every step of the optimized plan holds the reference plan's codes; the reference plan
    // also has the codes of the adds that the optimized one fused with the table after them.
    for (const auto& [node, codes] : a) {
      ASSERT_EQ(b.count(node), 1u) << node;
      EXPECT_EQ(codes, b.at(node)) << zc.name << " " << node;
    }
    for (const auto& [node, codes] : b)
      if (!a.count(node)) {
        const auto& nodes = qm.graph.nodes;
        const auto it = std::find_if(nodes.begin(), nodes.end(),
                                     [&, n = node](const sq::Node& x) { return x.name == n; });
        ASSERT_NE(it, nodes.end()) << node;
        EXPECT_EQ(it->op, sq::Op::Add) << zc.name << ": only fused adds are missing, not " << node;
      }
    fast.run(img.data(), traced.data());  // no trace left behind
    EXPECT_EQ(plain, traced) << zc.name;
  }
}

// A residual block by hand: conv(+ReLU) → conv → add(input) → ReLU → global average pooling →
// flatten → linear, against the reference kernels composed step by step.
TEST(GraphExecutor, ResidualGraphEqualsTheKernelsByHand) {
  sq::QuantModel qm;
  sq::Graph& g = qm.graph;
  g = sq::Graph("res", {4, 6, 6}, 5);
  int x = g.relu("ra", g.conv2d("ca", g.input(), 4, 3, 1, 1, 1, true));
  x = g.conv2d("cb", x, 4, 3, 1, 1, 1, true);
  x = g.relu("r", g.add("add", x, 0));
  x = g.flatten("flat", g.global_avgpool("gap", x));
  g.linear("fc", x, 5);
  g.infer_shapes();
  g.init_params(9);
  g.input_mean = {0.5f, 0.5f, 0.5f, 0.5f};
  g.input_std = {0.25f, 0.25f, 0.25f, 0.25f};
  qm.bits = sq::BitConfig::uniform(g, 4, 6);
  qm.weight_scales = sq::max_weight_scales(g, qm.bits);
  qm.acts["input"] = sq::act_quant_from_range({-2.0, 2.0}, 6);
  qm.acts["ra"] = sq::act_quant_from_range({0.0, 3.0}, 6);
  qm.acts["cb"] = sq::act_quant_from_range({-4.0, 4.0}, 8);
  qm.acts["add"] = sq::act_quant_from_range({-5.0, 5.0}, 8);
  qm.acts["flat"] = sq::act_quant_from_range({0.0, 2.0}, 6);
  const sq::IntModel im = sq::integerize(qm);
  ASSERT_EQ(im.points.size(), 5u);
  sq::GraphExecutor ex = sq::GraphExecutor::prepare(g, im);
  EXPECT_EQ(ex.input_point().bits, 6);
  std::mt19937_64 rng(2);
  for (int trial = 0; trial < 5; ++trial) {
    std::vector<uint8_t> xq(4 * 36);
    for (auto& v : xq) v = static_cast<uint8_t>(rng() % 64);
    std::vector<float> got(5), want(5);
    ex.run_quantized(xq.data(), got.data());
    std::vector<uint8_t> a(4 * 36), b(4 * 36), s(4 * 36), p(4);
    sq::conv2d_u8_ref({4, 6, 6, 4, 3, 1, 1, 1}, im.layers[0], xq.data(), a.data());
    sq::conv2d_u8_ref({4, 6, 6, 4, 3, 1, 1, 1}, im.layers[1], a.data(), b.data());
    const auto &pb = qm.acts["cb"], &pi = qm.acts["input"], &pa = qm.acts["add"],
               &pf = qm.acts["flat"];
    sq::add_u8_ref(sq::make_add_params(pb.scale, pb.zero_point, pi.scale, pi.zero_point, pa.scale,
                                       pa.zero_point, 0, 255),
                   b.data(), xq.data(), 4 * 36, s.data());
    sq::clamp_u8_ref(s.data(), 4 * 36, pa.zero_point, 255);  // the ReLU on the add's codes
    sq::global_avgpool_u8_ref(
        4, 36, sq::make_avgpool_params(pa.scale, pa.zero_point, pf.scale, pf.zero_point, 36, 0, 63),
        s.data(), p.data());
    sq::linear_f32_ref(4, 5, im.layers[2], p.data(), want.data());
    EXPECT_EQ(got, want) << "trial " << trial;
  }
  // The input quantizer is the simulation's: normalize, divide by the scale, round half to even.
  const sq::ActQuant& in = qm.acts["input"];
  std::vector<float> img(4 * 36);
  std::vector<uint8_t> xq(4 * 36);
  for (size_t k = 0; k < img.size(); ++k) {
    img[k] = static_cast<float>(k % 17) / 16.0f;
    const float v = std::nearbyint(((img[k] - 0.5f) / 0.25f) / in.scale) + in.zero_point;
    xq[k] = static_cast<uint8_t>(std::clamp(v, 0.0f, 63.0f));
  }
  std::vector<float> l1(5), l2(5);
  ex.run(img.data(), l1.data());
  ex.run_quantized(xq.data(), l2.data());
  EXPECT_EQ(l1, l2);
}

// fuzz_sqm: a point scale of ~1e-38 against another of ~1 made a multiplier with a shift of 136,
// and requantize shifted a 128-bit value by 135 (UBSan). Extreme shifts now round to 0 or
// saturate.
TEST(EngineFuzzRegressions, RequantizeExtremeShifts) {
  for (double m : {1e-40, 1e-300, 5e-324}) {
    const sq::Requant r = sq::quantize_multiplier(m);
    EXPECT_GE(r.shift, 96);
    EXPECT_EQ(sq::requantize(INT64_MAX, r), 0);
    EXPECT_EQ(sq::requantize(INT64_MIN, r), 0);
  }
  for (double m : {1e12, 1e300, 1.0 / 0.0}) {
    const sq::Requant r = sq::quantize_multiplier(m);
    EXPECT_EQ(sq::requantize(3, r), INT32_MAX);
    EXPECT_EQ(sq::requantize(-3, r), INT32_MIN);
    EXPECT_EQ(sq::requantize(0, r), 0);
  }
  const sq::Requant eight = sq::quantize_multiplier(8.0);
  EXPECT_EQ(sq::requantize(-5, eight), -40);
  EXPECT_EQ(sq::requantize(int64_t{1} << 40, eight), INT32_MAX);
}

TEST(GraphExecutor, RejectsWhatItCannotRun) {
  const sq::QuantModel qm = sqtest::synthetic_qmodel("resnet8", {1, 12, 12}, 10, 3);
  sq::IntModel im = sq::integerize(qm);
  sq::IntModel no_points = im;
  no_points.points.clear();
  EXPECT_NE(sqtest::error_of([&] {
              sq::GraphExecutor::prepare(qm.graph, no_points);
            }).find("is not a quantization point"),
            std::string::npos);
  sq::IntModel no_layers = im;
  no_layers.layers.pop_back();
  EXPECT_NE(sqtest::error_of([&] {
              sq::GraphExecutor::prepare(qm.graph, no_layers);
            }).find("weight layer 'fc' has no integer layer"),
            std::string::npos);
  sq::IntModel bad_scale = im;
  bad_scale.layers[1].in_scale *= 2;
  EXPECT_NE(sqtest::error_of([&] {
              sq::GraphExecutor::prepare(qm.graph, bad_scale);
            }).find("expected the point's"),
            std::string::npos);
  // Batchnorm left in: the conv before it has no point downstream.
  sq::QuantModel unfolded = qm;
  unfolded.graph = sq::make_zoo_model("resnet8", {1, 12, 12}, 10, 3);
  EXPECT_THROW(sq::GraphExecutor::prepare(unfolded.graph, im), sq::Error);
}

}  // namespace
