// .sqg graph files: exact round trip and rejection of every kind of bad file.
#include <gtest/gtest.h>
#include <zlib.h>

#include <cstring>

#include "sigmaquant/error.h"
#include "sigmaquant/fileutil.h"
#include "sigmaquant/graph_io.h"
#include "sigmaquant/zoo.h"
#include "test_util.h"

namespace {

std::string load_error(const std::string& path) {
  try {
    sq::load_graph_file(path);
  } catch (const sq::Error& e) {
    return e.what();
  }
  return "";
}

// Re-serializes a valid file after `edit` changed its JSON header, with a correct checksum, so
// that the loader's structural checks (not the checksum) must catch the problem.
std::string with_header(const std::string& bytes, const std::function<void(nlohmann::json&)>& edit) {
  uint64_t hlen;
  std::memcpy(&hlen, bytes.data() + 16, 8);
  nlohmann::json h = nlohmann::json::parse(bytes.substr(24, hlen));
  edit(h);
  std::string hs = h.dump();
  std::string out = bytes.substr(0, 16);
  uint64_t n = hs.size();
  out.append(reinterpret_cast<const char*>(&n), 8);
  out += hs;
  out += bytes.substr(24 + hlen, bytes.size() - 24 - hlen - 4);
  uint32_t crc = static_cast<uint32_t>(
      crc32(crc32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(out.data()), out.size()));
  out.append(reinterpret_cast<const char*>(&crc), 4);
  return out;
}

class GraphIO : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = sqtest::temp_dir("graphio");
    g = sq::make_zoo_model("resnet8", {3, 32, 32}, 10, 3);
    g.input_mean = {0.1f, 0.2f, 0.3f};
    g.input_std = {0.5f, 0.6f, 0.7f};
    path = dir + "/m.sqg";
    sq::save_graph_file(path, {g, {{"note", "hello"}}, {{"opt", std::string("\0\1\2", 3)}}});
    bytes = sq::read_file(path);
  }
  std::string dir, path, bytes;
  sq::Graph g;
};

TEST_F(GraphIO, RoundTripIsExact) {
  sq::GraphFile f = sq::load_graph_file(path);
  EXPECT_EQ(sq::graph_to_json(f.graph), sq::graph_to_json(g));
  ASSERT_EQ(f.graph.nodes.size(), g.nodes.size());
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    EXPECT_EQ(f.graph.nodes[i].params, g.nodes[i].params) << g.nodes[i].name;
    EXPECT_EQ(f.graph.nodes[i].out_shape, g.nodes[i].out_shape);
  }
  EXPECT_EQ(f.meta["note"], "hello");
  EXPECT_EQ(f.blobs.at("opt"), std::string("\0\1\2", 3));
  // Saving what was loaded gives the same bytes.
  sq::save_graph_file(dir + "/again.sqg", f);
  EXPECT_EQ(sq::read_file(dir + "/again.sqg"), bytes);
}

// Non-square windows (issue 15) round-trip; square ones are still written as single integers
// (as every file before them), and files with integer attributes load.
TEST(GraphIOWindows, NonSquareRoundTripAndOldScalarFields) {
  using W = sq::Window2d;
  sq::Graph g("rect", {2, 12, 10}, 4);
  int x = g.conv2d("c17", g.input(), 4, W::of(1, 7, 1, 1, 0, 3));
  x = g.conv2d("dil", x, 4, W::of(3, 3, 2, 1, 2, 2, 2, 2), 2, true);
  x = g.conv2d("same", x, 4, W{2, 2, 1, 1, 0, 0, 1, 1, 1, 1});
  x = g.maxpool("mp", x, W{3, 2, 2, 2, 1, 0, 1, 1, 1, 1}, true);
  x = g.avgpool("ap", x, W::of(1, 3, 1, 1, 0, 1));
  x = g.conv2d("sq", x, 4, 3, 1, 1);
  g.linear("fc", g.flatten("flat", g.global_avgpool("gap", x)), 4);
  g.infer_shapes();
  g.init_params(1);
  const nlohmann::json j = sq::graph_to_json(g);
  const auto& nodes = j.at("nodes");
  EXPECT_EQ(nodes[1].at("kernel"), nlohmann::json::array({1, 7}));
  EXPECT_EQ(nodes[1].at("padding"), nlohmann::json::array({0, 3}));
  EXPECT_EQ(nodes[1].at("stride"), 1);
  EXPECT_FALSE(nodes[1].contains("dilation"));
  EXPECT_EQ(nodes[2].at("stride"), nlohmann::json::array({2, 1}));
  EXPECT_EQ(nodes[2].at("dilation"), 2);
  EXPECT_EQ(nodes[3].at("padding"), nlohmann::json::array({0, 0, 1, 1}));
  EXPECT_EQ(nodes[6].at("kernel"), 3);  // square: integers, as before
  EXPECT_EQ(nodes[6].at("padding"), 1);
  const std::string dir = sqtest::temp_dir("graphio_rect");
  sq::save_graph_file(dir + "/r.sqg", {g, {}, {}});
  const sq::GraphFile f = sq::load_graph_file(dir + "/r.sqg");
  EXPECT_EQ(sq::graph_to_json(f.graph), j);
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    EXPECT_EQ(f.graph.nodes[i].window, g.nodes[i].window) << g.nodes[i].name;
    EXPECT_EQ(f.graph.nodes[i].out_shape, g.nodes[i].out_shape) << g.nodes[i].name;
  }
  // A graph as files before non-square windows wrote it: integer kernel, stride, padding.
  nlohmann::json old = {{"name", "old"},
                        {"input_shape", {1, 8, 8}},
                        {"num_classes", 2},
                        {"input_mean", {0.5}},
                        {"input_std", {0.25}}};
  old["nodes"] = {
      {{"name", "input"}, {"op", "input"}, {"inputs", nlohmann::json::array()}},
      {{"name", "c"},
       {"op", "conv2d"},
       {"inputs", {"input"}},
       {"out_channels", 3},
       {"kernel", 3},
       {"stride", 2},
       {"padding", 1},
       {"groups", 1},
       {"bias", false}},
      {{"name", "p"},
       {"op", "maxpool"},
       {"inputs", {"c"}},
       {"kernel", 2},
       {"stride", 2},
       {"padding", 0}},
      {{"name", "f"}, {"op", "flatten"}, {"inputs", {"p"}}},
      {{"name", "fc"}, {"op", "linear"}, {"inputs", {"f"}}, {"out_features", 2}, {"bias", true}}};
  const sq::Graph o = sq::graph_from_json(old, "old.sqg");
  EXPECT_EQ(o.node("c").window, W::square(3, 2, 1));
  EXPECT_EQ(o.node("p").window, W::square(2, 2, 0));
  EXPECT_EQ(o.node("p").out_shape, (sq::Shape{3, 2, 2}));
  EXPECT_EQ(sq::graph_to_json(o), old);  // and written back exactly
  // Malformed window fields name the node and the field.
  for (const nlohmann::json& bad :
       {nlohmann::json::array({1, 2, 3}), nlohmann::json("3"), nlohmann::json::array({1, "2"})}) {
    nlohmann::json b = old;
    b["nodes"][1]["kernel"] = bad;
    const std::string e = sqtest::error_of([&] { sq::graph_from_json(b, "b.sqg"); });
    EXPECT_NE(e.find("node 'c': field 'kernel' must be an integer or an array of 2 integers"),
              std::string::npos)
        << e;
  }
  nlohmann::json b = old;
  b["nodes"][1]["padding"] = {1, 1, 1};
  EXPECT_NE(sqtest::error_of([&] {
              sq::graph_from_json(b, "b.sqg");
            }).find("field 'padding' must be an integer or an array of 2 or 4 integers"),
            std::string::npos);
}

// A channel slice (ShuffleNetV2's chunk) round-trips with its range; a range outside the
// input's channels, an empty one or a missing field names the node and the field.
TEST(GraphIOSlice, RoundTripAndBadRanges) {
  sq::Graph g("slice", {2, 6, 6}, 3);
  int x = g.conv2d("c", g.input(), 6, 1, 1, 0);
  const int lo = g.channel_slice("lo", x, 0, 2);
  const int hi = g.channel_slice("hi", x, 2, 6);
  x = g.concat("cat", {g.conv2d("hc", hi, 4, 1, 1, 0), lo});
  g.linear("fc", g.flatten("f", g.global_avgpool("gap", x)), 3);
  g.infer_shapes();
  g.init_params(2);
  EXPECT_EQ(g.node("hi").out_shape, (sq::Shape{4, 6, 6}));
  const nlohmann::json j = sq::graph_to_json(g);
  EXPECT_EQ(j.at("nodes")[3].at("op"), "channel_slice");
  EXPECT_EQ(j.at("nodes")[3].at("begin"), 2);
  EXPECT_EQ(j.at("nodes")[3].at("end"), 6);
  const std::string dir = sqtest::temp_dir("graphio_slice");
  sq::save_graph_file(dir + "/s.sqg", {g, {}, {}});
  const sq::GraphFile f = sq::load_graph_file(dir + "/s.sqg");
  EXPECT_EQ(sq::graph_to_json(f.graph), j);
  EXPECT_EQ(f.graph.node("lo").begin, 0);
  EXPECT_EQ(f.graph.node("lo").end, 2);
  EXPECT_EQ(f.graph.node("hi").out_shape, (sq::Shape{4, 6, 6}));
  auto error_with = [&](const char* field, const nlohmann::json& v) {
    nlohmann::json b = j;
    if (v.is_null())
      b["nodes"][3].erase(field);
    else
      b["nodes"][3][field] = v;
    return sqtest::error_of([&] { sq::graph_from_json(b, "b.sqg"); });
  };
  const std::pair<std::string, std::string> cases[] = {
      {error_with("end", 7), "node 'hi' (channel_slice): end=7 must be in (2, 6]"},
      {error_with("end", 2), "node 'hi' (channel_slice): end=2 must be in (2, 6]"},
      {error_with("begin", 6), "node 'hi' (channel_slice): begin=6 must be in [0, 6)"},
      {error_with("begin", -1), "node 'hi' (channel_slice): begin=-1 must be in [0, 6)"},
      {error_with("begin", "2"), "node 'hi': field 'begin' must be an integer"},
      {error_with("end", nullptr), "node 'hi': missing field 'end'"},
  };
  for (const auto& [e, want] : cases) {
    EXPECT_NE(e.find("b.sqg"), std::string::npos) << e;
    EXPECT_NE(e.find(want), std::string::npos) << e;
  }
}

TEST_F(GraphIO, RejectsAWrongTensorShape) {
  std::string bad = with_header(bytes, [](nlohmann::json& h) {
    for (auto& t : h["tensors"])
      if (t["node"] == "stem.conv" && t["param"] == "weight") t["shape"] = {16, 3, 3, 2};
  });
  std::string p = sqtest::write_temp(dir, "shape.sqg", bad);
  std::string msg = load_error(p);
  EXPECT_NE(msg.find("shape.sqg: tensor stem.conv.weight: shape [16, 3, 3, 2] does not match the "
                     "graph (expected [16, 3, 3, 3])"),
            std::string::npos)
      << msg;
}

TEST_F(GraphIO, RejectsAShapeConsistentWithItsBytesButNotTheGraph) {
  // Same number of values, different shape: exactly what torch::load would accept silently.
  std::string bad = with_header(bytes, [](nlohmann::json& h) {
    for (auto& t : h["tensors"])
      if (t["node"] == "fc" && t["param"] == "weight") t["shape"] = {64, 10};
  });
  std::string msg = load_error(sqtest::write_temp(dir, "transposed.sqg", bad));
  EXPECT_NE(msg.find("fc.weight: shape [64, 10]"), std::string::npos) << msg;
}

TEST_F(GraphIO, RejectsWrongDtypeMissingTensorAndOutOfRangeBytes) {
  auto edit_first = [&](const std::string& key, const nlohmann::json& v) {
    return with_header(bytes, [&](nlohmann::json& h) { h["tensors"][0][key] = v; });
  };
  EXPECT_NE(load_error(sqtest::write_temp(dir, "a.sqg", edit_first("dtype", "float16")))
                .find("dtype 'float16' is not supported (expected float32)"),
            std::string::npos);
  EXPECT_NE(load_error(sqtest::write_temp(dir, "b.sqg", edit_first("offset", 1 << 30)))
                .find("outside the payload"),
            std::string::npos);
  std::string missing = with_header(bytes, [](nlohmann::json& h) { h["tensors"].erase(0); });
  EXPECT_NE(load_error(sqtest::write_temp(dir, "c.sqg", missing)).find("is missing"),
            std::string::npos);
  std::string unknown_op = with_header(bytes, [](nlohmann::json& h) {
    h["graph"]["nodes"][1]["op"] = "conv3d";
  });
  EXPECT_NE(load_error(sqtest::write_temp(dir, "d.sqg", unknown_op)).find("unknown operator 'conv3d'"),
            std::string::npos);
}

TEST_F(GraphIO, RejectsBadMagicVersionChecksumAndTruncation) {
  std::string b = bytes;
  b[0] = 'X';
  EXPECT_NE(load_error(sqtest::write_temp(dir, "magic.sqg", b)).find("bad magic"),
            std::string::npos);
  b = bytes;
  b[8] = 9;
  EXPECT_NE(load_error(sqtest::write_temp(dir, "ver.sqg", b)).find("format version 9"),
            std::string::npos);
  b = bytes;
  b[b.size() / 2] ^= 0x40;
  EXPECT_NE(load_error(sqtest::write_temp(dir, "crc.sqg", b)).find("checksum mismatch"),
            std::string::npos);
  EXPECT_NE(load_error(sqtest::write_temp(dir, "trunc.sqg", bytes.substr(0, bytes.size() - 100)))
                .find("checksum mismatch"),
            std::string::npos);
  EXPECT_NE(load_error(sqtest::write_temp(dir, "tiny.sqg", "SQG")).find("truncated"),
            std::string::npos);
  EXPECT_NE(load_error(dir + "/absent.sqg").find("absent.sqg: cannot open"), std::string::npos);
}

TEST(FileUtil, AtomicWriteLeavesNoTemporaryAndReportsUnwritablePaths) {
  std::string dir = sqtest::temp_dir("atomic");
  sq::write_file_atomic(dir + "/x.bin", "abc");
  EXPECT_EQ(sq::read_file(dir + "/x.bin"), "abc");
  sq::write_file_atomic(dir + "/x.bin", "defg");
  EXPECT_EQ(sq::read_file(dir + "/x.bin"), "defg");
  int entries = 0;
  for (const char* name : {"x.bin"}) entries += sq::file_exists(dir + "/" + name);
  EXPECT_EQ(entries, 1);
  EXPECT_EQ(std::system(("test $(ls -A '" + dir + "' | wc -l) -eq 1").c_str()), 0);
  try {
    sq::write_file_atomic(dir + "/no/such/dir/x.bin", "abc");
    FAIL() << "expected an error";
  } catch (const sq::Error& e) {
    EXPECT_NE(std::string(e.what()).find("no/such/dir/x.bin: cannot write"), std::string::npos);
  }
}

}  // namespace
