// .sqm model files: a bit-exact round trip (same integer model, same logits), the size against
// the packed information content, and one test per kind of damage the loader must name.
#include <gtest/gtest.h>
#include <zlib.h>

#include <cstring>

#include "quant_models.h"
#include "sigmaquant/engine.h"
#include "sigmaquant/error.h"
#include "sigmaquant/fileutil.h"
#include "sigmaquant/graph_io.h"
#include "sigmaquant/sqm.h"
#include "test_util.h"

namespace {

void expect_same_model(const sq::IntModel& a, const sq::IntModel& b) {
  ASSERT_EQ(a.layers.size(), b.layers.size());
  for (size_t i = 0; i < a.layers.size(); ++i) {
    const sq::IntLayer &x = a.layers[i], &y = b.layers[i];
    EXPECT_EQ(x.name, y.name);
    EXPECT_EQ(x.node, y.node);
    EXPECT_EQ(x.weights, y.weights) << x.name;
    EXPECT_EQ(x.channel_bits, y.channel_bits) << x.name;
    EXPECT_EQ(x.weight_scales, y.weight_scales) << x.name;
    EXPECT_EQ(x.bias, y.bias) << x.name;
    EXPECT_EQ(x.bias_float, y.bias_float) << x.name;
    EXPECT_EQ(x.in_node, y.in_node);
    EXPECT_EQ(x.in_scale, y.in_scale);
    EXPECT_EQ(x.in_zero_point, y.in_zero_point);
    EXPECT_EQ(x.out_node, y.out_node);
    EXPECT_EQ(x.out_scale, y.out_scale);
    EXPECT_EQ(x.out_zero_point, y.out_zero_point);
    EXPECT_EQ(x.out_lo, y.out_lo);
    EXPECT_EQ(x.out_hi, y.out_hi);
    ASSERT_EQ(x.requant.size(), y.requant.size()) << x.name;
    for (size_t c = 0; c < x.requant.size(); ++c) {
      EXPECT_EQ(x.requant[c].multiplier, y.requant[c].multiplier);
      EXPECT_EQ(x.requant[c].shift, y.requant[c].shift);
    }
  }
  ASSERT_EQ(a.points.size(), b.points.size());
  for (const auto& [node, q] : a.points) {
    ASSERT_TRUE(b.points.count(node));
    const sq::ActQuant& r = b.points.at(node);
    EXPECT_EQ(q.bits, r.bits);
    EXPECT_EQ(q.scale, r.scale);
    EXPECT_EQ(q.zero_point, r.zero_point);
    // The float range is not stored (the engine does not use it): the loader derives the
    // representable range, which contains the calibrated one up to rounding.
    EXPECT_DOUBLE_EQ(r.lo, double(q.scale) * (0.0 - q.zero_point));
    EXPECT_DOUBLE_EQ(r.hi, double(q.scale) * (double(q.qmax()) - q.zero_point));
  }
}

class SqmZoo : public ::testing::TestWithParam<const char*> {};

// The loaded model runs the same integers as the one saved: identical logits on 4 images.
void expect_same_logits(const sq::QuantModel& qm, const sq::IntModel& im, const sq::SqmModel& m) {
  sq::GraphExecutor a = sq::GraphExecutor::prepare(qm.graph, im);
  sq::GraphExecutor b = sq::GraphExecutor::prepare(m.graph, m.model);
  const auto imgs = sqtest::random_images(4, a.input_size(), 3);
  for (int s = 0; s < 4; ++s) {
    std::vector<float> la(10), lb(10);
    a.run(imgs.data() + s * a.input_size(), la.data());
    b.run(imgs.data() + s * a.input_size(), lb.data());
    EXPECT_EQ(0, std::memcmp(la.data(), lb.data(), sizeof(float) * 10)) << "sample " << s;
  }
}

TEST_P(SqmZoo, RoundTripIsBitExact) {
  const sq::QuantModel qm = sqtest::synthetic_qmodel(GetParam(), {1, 28, 28}, 10, 4);
  const sq::IntModel im = sq::integerize(qm);
  const std::string path = sqtest::temp_dir("sqm") + "/m.sqm";
  sq::save_sqm(path, qm.graph, im, {{"source", "test"}});
  const sq::SqmModel m = sq::load_sqm(path);
  EXPECT_EQ(sq::graph_to_json(m.graph), sq::graph_to_json(qm.graph));
  EXPECT_EQ(m.meta, nlohmann::json({{"source", "test"}}));
  expect_same_model(im, m.model);
  expect_same_logits(qm, im, m);
}

// Channel slices (ShuffleNetV2's chunk) travel in the graph section's JSON (begin, end): the
// format version is unchanged, and the loaded model runs the same integers.
TEST(SqmSlice, ShuffleV2RoundTripsAtTheSameVersion) {
  const sq::QuantModel qm = sqtest::synthetic_qmodel("shufflev2", {3, 16, 16}, 10, 4);
  const sq::IntModel im = sq::integerize(qm);
  const std::string path = sqtest::temp_dir("sqm_slice") + "/m.sqm";
  sq::save_sqm(path, qm.graph, im);
  const std::string bytes = sq::read_file(path);
  uint32_t version = 0;
  std::memcpy(&version, bytes.data() + 8, 4);
  EXPECT_EQ(version, sq::kSqmVersionSquare);  // square windows only: version 1, as before
  const sq::SqmModel m = sq::load_sqm(path);
  EXPECT_EQ(sq::graph_to_json(m.graph), sq::graph_to_json(qm.graph));
  EXPECT_EQ(m.graph.node("u3.hi").begin, 10);
  EXPECT_EQ(m.graph.node("u3.hi").end, 24);
  expect_same_model(im, m.model);
  expect_same_logits(qm, im, m);
}

// Standalone batchnorms (DenseNet's after a concat) carry their parameters in header.batchnorms:
// the loaded model runs the same per-channel tables; a file without them is refused.
TEST(SqmBatchnorm, DenseRoundTripsWithItsBatchnorms) {
  const sq::QuantModel qm = sqtest::synthetic_qmodel("dense", {3, 12, 12}, 10, 4);
  const sq::IntModel im = sq::integerize(qm);
  const std::string dir = sqtest::temp_dir("sqm_bn");
  sq::save_sqm(dir + "/m.sqm", qm.graph, im);
  const sq::SqmModel m = sq::load_sqm(dir + "/m.sqm");
  int standalone = 0;
  for (size_t i = 0; i < m.graph.nodes.size(); ++i)
    if (sq::standalone_batchnorm(m.graph, static_cast<int>(i))) {
      ++standalone;
      for (const char* key : {"weight", "bias", "running_mean", "running_var"})
        EXPECT_EQ(m.graph.nodes[i].params.at(key), qm.graph.nodes[i].params.at(key))
            << m.graph.nodes[i].name << " " << key;
    }
  EXPECT_EQ(standalone, 4);  // d1.n1, d2.n1, t.n, n5
  expect_same_model(im, m.model);
  expect_same_logits(qm, im, m);
  // A batchnorm without its parameters cannot be saved.
  sq::QuantModel bad = qm;
  bad.graph.nodes[static_cast<size_t>(bad.graph.index_of("n5.bn"))].params.erase("running_var");
  EXPECT_THROW(sq::save_sqm(dir + "/bad.sqm", bad.graph, im), sq::Error);
  EXPECT_FALSE(sq::file_exists(dir + "/bad.sqm"));
}

// Size against Σ params × bits / 8 plus 4-byte scales and biases per output channel: the rest
// (header, section table, byte-aligned rows) stays under 2 % — except for MobileNetV2, whose
// depthwise rows of 9 weights lose ~half a byte each to the alignment (~3 % in all).
TEST_P(SqmZoo, SizeIsWithinTwoPercentOfThePackedWeights) {
  const sq::QuantModel qm = sqtest::synthetic_qmodel(GetParam(), {1, 28, 28}, 10, 4);
  const sq::IntModel im = sq::integerize(qm);
  const std::string path = sqtest::temp_dir("sqm") + "/m.sqm";
  sq::save_sqm(path, qm.graph, im);
  double ideal = 0;
  for (const auto& L : im.layers) {
    const double per = static_cast<double>(L.weights.size()) / L.channel_bits.size();
    for (int b : L.channel_bits) ideal += per * b / 8.0 + 8.0;
  }
  const double size = static_cast<double>(sq::read_file(path).size());
  std::printf("%s: %.0f bytes, ideal %.0f (+%.2f %%)\n", GetParam(), size, ideal,
              100.0 * (size / ideal - 1.0));
  EXPECT_LE(size, ideal * (std::string(GetParam()) == "mobilenetv2" ? 1.04 : 1.02));
  EXPECT_GE(size, ideal);
}

INSTANTIATE_TEST_SUITE_P(Zoo, SqmZoo,
                         ::testing::Values("lenet5", "resnet20", "mobilenetv2", "mlp"));

// The file split into its sections, and put back together with valid checksums: to damage one
// part of a file and nothing else.
struct Parts {
  uint32_t version = 0;
  std::vector<std::pair<std::string, std::string>> sections;
};
template <typename T>
T get(const std::string& s, size_t off) {
  T v;
  std::memcpy(&v, s.data() + off, sizeof(T));
  return v;
}
template <typename T>
void put(std::string& s, T v) {
  s.append(reinterpret_cast<const char*>(&v), sizeof(T));
}
uint32_t crc(const std::string& s, size_t n) {
  return static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(s.data()), n));
}
Parts split(const std::string& f) {
  Parts p;
  p.version = get<uint32_t>(f, 8);
  for (uint32_t k = 0; k < get<uint32_t>(f, 12); ++k) {
    const size_t e = 16 + 32 * k;
    p.sections.push_back(
        {std::string(f.data() + e), f.substr(get<uint64_t>(f, e + 16), get<uint64_t>(f, e + 24))});
  }
  return p;
}
std::string join(const Parts& p, int64_t shift_offset_of = -1) {
  std::string f = std::string("\x89SQM\r\n\x1a\n", 8);
  put<uint32_t>(f, p.version);
  put<uint32_t>(f, static_cast<uint32_t>(p.sections.size()));
  uint64_t off = 16 + 32 * p.sections.size();
  for (size_t k = 0; k < p.sections.size(); ++k) {
    const auto& [name, data] = p.sections[k];
    std::string nm(12, '\0');
    nm.replace(0, name.size(), name);
    f += nm;
    put<uint32_t>(f, crc(data, data.size()));
    put<uint64_t>(f, static_cast<int64_t>(k) == shift_offset_of ? off + 1000000 : off);
    put<uint64_t>(f, data.size());
    off += data.size();
  }
  for (const auto& s : p.sections) f += s.second;
  put<uint32_t>(f, crc(f, f.size()));
  return f;
}
nlohmann::json header_of(const Parts& p) {
  const std::string& h = p.sections[0].second;
  uLongf n = get<uint32_t>(h, 0);
  std::string text(n, '\0');
  EXPECT_EQ(Z_OK, uncompress(reinterpret_cast<Bytef*>(text.data()), &n,
                             reinterpret_cast<const Bytef*>(h.data() + 4), h.size() - 4));
  return nlohmann::json::parse(text);
}
void set_header(Parts& p, const nlohmann::json& j) {
  const std::string text = j.dump();
  uLongf n = compressBound(text.size());
  std::string z(n, '\0');
  compress(reinterpret_cast<Bytef*>(z.data()), &n, reinterpret_cast<const Bytef*>(text.data()),
           text.size());
  z.resize(n);
  std::string h;
  put<uint32_t>(h, static_cast<uint32_t>(text.size()));
  p.sections[0].second = h + z;
}

class SqmDamage : public ::testing::Test {
 protected:
  void SetUp() override {
    const sq::QuantModel qm = sqtest::synthetic_qmodel("lenet5", {1, 28, 28}, 10, 4);
    dir_ = sqtest::temp_dir("sqm_bad");
    const std::string path = dir_ + "/good.sqm";
    sq::save_sqm(path, qm.graph, sq::integerize(qm));
    good_ = sq::read_file(path);
    ASSERT_EQ(join(split(good_)), good_);  // the test's picture of the format is the writer's
  }
  // The error loading these bytes, which must name the file.
  std::string error(const std::string& bytes) {
    const std::string path = sqtest::write_temp(dir_, "bad.sqm", bytes);
    const std::string e = sqtest::error_of([&] { sq::load_sqm(path); });
    EXPECT_NE(e.find(path), std::string::npos) << e;
    return e;
  }
  std::string dir_, good_;
};

TEST_F(SqmDamage, CorruptByteFailsTheChecksum) {
  std::string f = good_;
  f[f.size() / 2] ^= 0x10;
  EXPECT_NE(error(f).find("checksum mismatch"), std::string::npos);
}

TEST_F(SqmDamage, Truncated) {
  EXPECT_NE(error(good_.substr(0, 10)).find("truncated"), std::string::npos);
  EXPECT_NE(error(good_.substr(0, 40)).find("truncated"), std::string::npos);
  EXPECT_NE(error(good_.substr(0, good_.size() - 100)).find("checksum mismatch"),
            std::string::npos);
}

TEST_F(SqmDamage, WrongMagic) {
  std::string f = good_;
  f[1] = 'X';
  EXPECT_NE(error(f).find("bad magic"), std::string::npos);
  EXPECT_NE(error(sq::read_file(SQ_SOURCE_DIR "/models/resnet20-fmnist.sqg").substr(0, 4096))
                .find("bad magic"),
            std::string::npos);
}

TEST_F(SqmDamage, UnknownVersion) {
  Parts p = split(good_);
  p.version = 3;
  EXPECT_NE(error(join(p)).find("version 3 is not supported (expected 1 or 2)"), std::string::npos);
}

// Non-square windows (issue 15): a model with them is written as version 2 and round-trips bit
// for bit; a model without them is still version 1 (readable by loaders before version 2); a
// version-1 file that holds a non-square window is refused.
TEST(SqmWindows, NonSquareModelIsVersion2AndRoundTrips) {
  const std::string dir = sqtest::temp_dir("sqm_rect");
  const sq::QuantModel sq_model = sqtest::synthetic_qmodel("lenet5", {1, 28, 28}, 10, 4);
  sq::save_sqm(dir + "/square.sqm", sq_model.graph, sq::integerize(sq_model));
  EXPECT_EQ(get<uint32_t>(sq::read_file(dir + "/square.sqm"), 8), 1u);

  const sq::QuantModel qm = sqtest::synthetic_qmodel("rect", {3, 16, 16}, 10, 4);
  const sq::IntModel im = sq::integerize(qm);
  const std::string path = dir + "/rect.sqm";
  sq::save_sqm(path, qm.graph, im);
  const std::string bytes = sq::read_file(path);
  EXPECT_EQ(get<uint32_t>(bytes, 8), 2u);
  const sq::SqmModel m = sq::load_sqm(path);
  EXPECT_EQ(sq::graph_to_json(m.graph), sq::graph_to_json(qm.graph));
  EXPECT_EQ(m.graph.node("b7a.conv").window, sq::Window2d::of(1, 7, 1, 1, 0, 3));
  EXPECT_EQ(m.graph.node("mp").window, (sq::Window2d{3, 2, 2, 2, 1, 0, 1, 1, 1, 1}));
  expect_same_model(im, m.model);
  sq::GraphExecutor a = sq::GraphExecutor::prepare(qm.graph, im);
  sq::GraphExecutor b = sq::GraphExecutor::prepare(m.graph, m.model);
  const auto imgs = sqtest::random_images(2, a.input_size(), 3);
  for (int s = 0; s < 2; ++s) {
    std::vector<float> la(10), lb(10);
    a.run(imgs.data() + s * a.input_size(), la.data());
    b.run(imgs.data() + s * a.input_size(), lb.data());
    EXPECT_EQ(0, std::memcmp(la.data(), lb.data(), sizeof(float) * 10)) << "sample " << s;
  }
  Parts p = split(bytes);
  p.version = 1;
  const std::string v1 = sqtest::write_temp(dir, "v1.sqm", join(p));
  const std::string e = sqtest::error_of([&] { sq::load_sqm(v1); });
  EXPECT_NE(e.find("version 1 holds a non-square or dilated window (expected version 2)"),
            std::string::npos)
      << e;
}

TEST_F(SqmDamage, SectionOutOfRange) {
  EXPECT_NE(error(join(split(good_), 1)).find("section 'weights' at"), std::string::npos);
  Parts p = split(good_);
  p.sections.pop_back();
  EXPECT_NE(error(join(p)).find("no 'bias' section"), std::string::npos);
}

TEST_F(SqmDamage, InconsistentShapes) {
  {  // one channel's bits changed: the packed rows no longer have the declared size
    Parts p = split(good_);
    nlohmann::json h = header_of(p);
    h["layers"][2]["bits"] = 3;
    set_header(p, h);
    EXPECT_NE(error(join(p)).find("bytes of packed weights (expected"), std::string::npos);
  }
  {  // a layer wider than its tensors
    Parts p = split(good_);
    nlohmann::json h = header_of(p);
    for (auto& n : h["graph"]["nodes"])
      if (n["name"] == "fc2") n["out_features"] = 85;
    set_header(p, h);
    EXPECT_NE(error(join(p)).find("(expected"), std::string::npos);
  }
  {  // a layer reading a tensor that is not a quantization point
    Parts p = split(good_);
    nlohmann::json h = header_of(p);
    h["points"].erase(0);
    set_header(p, h);
    EXPECT_NE(error(join(p)).find("is not a quantization point"), std::string::npos);
  }
  {  // a section that is not there
    Parts p = split(good_);
    p.sections[3].second.resize(p.sections[3].second.size() - 4);
    EXPECT_NE(error(join(p)).find("expected"), std::string::npos);
  }
}

}  // namespace
