// Dataset loaders: idx, CIFAR binary and .npy files built byte by byte in temp dirs, every
// malformed case, and the subset / split / normalization / augmentation helpers.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <zlib.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <random>
#include <set>

#include "sigmaquant/data.h"
#include "sigmaquant/error.h"
#include "test_util.h"

namespace {

// ---- file builders ----

std::string be32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
          static_cast<char>(v)};
}

std::string idx_images(uint32_t n, uint32_t rows, uint32_t cols, const std::string& pixels) {
  return be32(0x803) + be32(n) + be32(rows) + be32(cols) + pixels;
}

std::string idx_labels(const std::string& labels) {
  return be32(0x801) + be32(static_cast<uint32_t>(labels.size())) + labels;
}

std::string bytes_of(std::initializer_list<int> values) {
  std::string s;
  for (int v : values) s.push_back(static_cast<char>(v));
  return s;
}

std::string write_gz(const std::string& dir, const std::string& name, const std::string& bytes) {
  const std::string path = dir + "/" + name;
  gzFile f = gzopen(path.c_str(), "wb");
  EXPECT_NE(f, nullptr);
  EXPECT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())),
            static_cast<int>(bytes.size()));
  gzclose(f);
  return path;
}

// A .npy file: preamble, the header dict padded to a multiple of 64 bytes, then the data.
std::string npy(const std::string& descr, const std::string& shape, const std::string& data,
                bool fortran = false, int major = 1) {
  std::string header = "{'descr': '" + descr +
                       "', 'fortran_order': " + (fortran ? "True" : "False") +
                       ", 'shape': " + shape + ", }";
  const size_t pre = major == 1 ? 10 : 12;
  while ((pre + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string out = "\x93NUMPY";
  out += static_cast<char>(major);
  out += '\0';
  const uint32_t len = static_cast<uint32_t>(header.size());
  for (size_t k = 0; k < (major == 1 ? 2u : 4u); ++k) out += static_cast<char>(len >> (8 * k));
  return out + header + data;
}

template <typename T>
std::string raw_of(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

// Records of <label byte(s)><3072 pixels>; the pixels of record r are (r + i) mod 256.
std::string cifar_records(const std::vector<std::vector<int>>& labels) {
  std::string s;
  for (size_t r = 0; r < labels.size(); ++r) {
    for (int l : labels[r]) s.push_back(static_cast<char>(l));
    for (int i = 0; i < 3072; ++i) s.push_back(static_cast<char>((r + i) % 256));
  }
  return s;
}

// Expects fn to throw sq::Error whose message contains every part.
void expect_error(const std::function<void()>& fn, std::initializer_list<std::string> parts) {
  std::string msg;
  EXPECT_THROW(
      {
        try {
          fn();
        } catch (const sq::Error& e) {
          msg = e.what();
          throw;
        }
      },
      sq::Error);
  for (const std::string& p : parts)
    EXPECT_NE(msg.find(p), std::string::npos) << "message: " << msg << "\nlacks: " << p;
}
#define EXPECT_DATA_ERROR(stmt, ...)                  \
  do {                                                \
    SCOPED_TRACE(#stmt);                              \
    expect_error([&] { (void)(stmt); }, __VA_ARGS__); \
  } while (0)

// A valid 3-image 2x2 idx pair in dir (raw or gzip), labels 0, 2, 1.
struct IdxPair {
  std::string images, labels;
};
IdxPair write_idx_pair(const std::string& dir, bool gz, const std::string& prefix = "") {
  const std::string img =
      idx_images(3, 2, 2, bytes_of({0, 255, 51, 102, 1, 2, 3, 4, 10, 20, 30, 40}));
  const std::string lab = idx_labels(bytes_of({0, 2, 1}));
  if (gz)
    return {write_gz(dir, prefix + "images.gz", img), write_gz(dir, prefix + "labels.gz", lab)};
  return {sqtest::write_temp(dir, prefix + "images", img),
          sqtest::write_temp(dir, prefix + "labels", lab)};
}

sq::Dataset tiny_dataset(int64_t n, sq::Shape shape = {1, 2, 2}) {
  sq::Dataset d;
  d.name = "tiny";
  d.image_shape = shape;
  d.num_classes = 10;
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t k = 0; k < d.image_numel(); ++k) d.images.push_back(float(i) / float(n));
    d.labels.push_back(static_cast<int32_t>(i % 10));
  }
  return d;
}

// ---- idx ----

TEST(DataIdx, RoundTripRawAndGzip) {
  const std::string dir = sqtest::temp_dir("data_idx");
  for (bool gz : {false, true}) {
    const IdxPair p = write_idx_pair(dir, gz);
    const sq::Dataset d = sq::load_idx(p.images, p.labels);
    ASSERT_EQ(d.size(), 3);
    EXPECT_EQ(d.image_shape, (sq::Shape{1, 2, 2}));
    EXPECT_EQ(d.num_classes, 3);  // max label + 1
    EXPECT_EQ(d.labels, (std::vector<int32_t>{0, 2, 1}));
    ASSERT_EQ(d.images.size(), 12u);
    EXPECT_EQ(d.images[0], 0.0f);
    EXPECT_EQ(d.images[1], 1.0f);
    EXPECT_FLOAT_EQ(d.images[2], 0.2f);
    EXPECT_FLOAT_EQ(d.image(2)[3], 40.0f / 255.0f);
    for (float v : d.images) EXPECT_TRUE(v >= 0.0f && v <= 1.0f);
    EXPECT_EQ(sq::load_idx(p.images, p.labels, 10).num_classes, 10);
  }
}

TEST(DataIdx, NumClassesAtLeastTwo) {
  const std::string dir = sqtest::temp_dir("data_idx");
  const auto img = sqtest::write_temp(dir, "i", idx_images(1, 1, 1, bytes_of({7})));
  const auto lab = sqtest::write_temp(dir, "l", idx_labels(bytes_of({0})));
  EXPECT_EQ(sq::load_idx(img, lab).num_classes, 2);
}

TEST(DataIdx, MissingFile) {
  const std::string dir = sqtest::temp_dir("data_idx");
  const IdxPair p = write_idx_pair(dir, false);
  EXPECT_DATA_ERROR(sq::load_idx(dir + "/nope-images", p.labels), {"nope-images", "missing file"});
  EXPECT_DATA_ERROR(sq::load_idx(p.images, dir + "/nope-labels"), {"nope-labels", "missing file"});
}

TEST(DataIdx, WrongMagic) {
  const std::string dir = sqtest::temp_dir("data_idx");
  const IdxPair p = write_idx_pair(dir, false);
  const auto bad =
      sqtest::write_temp(dir, "bad-images", be32(0) + be32(1) + be32(1) + be32(1) + "x");
  EXPECT_DATA_ERROR(sq::load_idx(bad, p.labels),
                    {"bad-images", "bad magic 0x00000000", "expected 0x00000803"});
  // Labels passed as images and vice versa.
  EXPECT_DATA_ERROR(sq::load_idx(p.labels, p.images), {p.labels, "bad magic 0x00000801"});
}

TEST(DataIdx, TruncatedPixels) {
  const std::string dir = sqtest::temp_dir("data_idx");
  const IdxPair p = write_idx_pair(dir, false);
  const auto img = sqtest::write_temp(dir, "short-images", idx_images(3, 2, 2, "abcdefgh"));
  EXPECT_DATA_ERROR(sq::load_idx(img, p.labels), {"short-images", "truncated", "expected 28 bytes",
                                                  "12 bytes of pixels", "file has 24"});
  const auto hdr = sqtest::write_temp(dir, "short-header", be32(0x803) + be32(3));
  EXPECT_DATA_ERROR(sq::load_idx(hdr, p.labels), {"short-header", "truncated"});
  const auto lab = sqtest::write_temp(dir, "short-labels", be32(0x801) + be32(3) + "\x01");
  EXPECT_DATA_ERROR(sq::load_idx(p.images, lab), {"short-labels", "truncated"});
}

TEST(DataIdx, TruncatedGzipStream) {
  const std::string dir = sqtest::temp_dir("data_idx");
  const IdxPair p = write_idx_pair(dir, true);
  std::string gz;
  {
    FILE* f = std::fopen(p.images.c_str(), "rb");
    ASSERT_NE(f, nullptr);
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) gz.append(buf, n);
    std::fclose(f);
  }
  const auto cut = sqtest::write_temp(dir, "cut-images.gz", gz.substr(0, gz.size() - 10));
  EXPECT_DATA_ERROR(sq::load_idx(cut, p.labels), {"cut-images.gz", "truncated"});
}

TEST(DataIdx, ImageLabelCountMismatch) {
  const std::string dir = sqtest::temp_dir("data_idx");
  const IdxPair p = write_idx_pair(dir, false);
  const auto lab = sqtest::write_temp(dir, "two-labels", idx_labels(bytes_of({0, 1})));
  EXPECT_DATA_ERROR(sq::load_idx(p.images, lab),
                    {"two-labels", "2 labels but", p.images, "has 3 images"});
}

TEST(DataIdx, LabelOutOfRange) {
  const std::string dir = sqtest::temp_dir("data_idx");
  const IdxPair p = write_idx_pair(dir, false);
  const auto lab = sqtest::write_temp(dir, "big-labels", idx_labels(bytes_of({0, 12, 1})));
  EXPECT_DATA_ERROR(sq::load_idx(p.images, lab, 10),
                    {"big-labels", "label 12 at index 1 out of range", "expected 0..9"});
}

TEST(DataIdx, EmptyIsAnError) {
  const std::string dir = sqtest::temp_dir("data_idx");
  const auto img = sqtest::write_temp(dir, "empty-images", idx_images(0, 28, 28, ""));
  const auto lab = sqtest::write_temp(dir, "empty-labels", idx_labels(""));
  EXPECT_DATA_ERROR(sq::load_idx(img, lab), {"empty-images", "no images"});
}

// ---- .npy ----

TEST(DataNpy, Uint8NchwAndInt64Labels) {
  const std::string dir = sqtest::temp_dir("data_npy");
  const auto img =
      sqtest::write_temp(dir, "x.npy", npy("|u1", "(2, 1, 1, 3)", bytes_of({0, 255, 51, 1, 2, 3})));
  const auto lab =
      sqtest::write_temp(dir, "y.npy", npy("<i8", "(2,)", raw_of(std::vector<int64_t>{4, 1})));
  const sq::Dataset d = sq::load_npy(img, lab);
  EXPECT_EQ(d.image_shape, (sq::Shape{1, 1, 3}));  // channel-first: dim 1 is a channel count
  EXPECT_EQ(d.labels, (std::vector<int32_t>{4, 1}));
  EXPECT_EQ(d.num_classes, 5);
  EXPECT_EQ(d.images[1], 1.0f);
  EXPECT_FLOAT_EQ(d.images[2], 0.2f);
}

TEST(DataNpy, NhwcIsTransposedToNchw) {
  const std::string dir = sqtest::temp_dir("data_npy");
  // 2 images, 2 x 5 pixels, 3 channels; value = (image, y, x, c) encoded, scaled into [0, 1].
  const int64_t n = 2, h = 2, w = 5, c = 3;
  std::vector<float> nhwc;
  auto val = [](int64_t i, int64_t y, int64_t x, int64_t ch) {
    return static_cast<float>(i * 1000 + y * 100 + x * 10 + ch) / 2000.0f;
  };
  for (int64_t i = 0; i < n; ++i)
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x)
        for (int64_t ch = 0; ch < c; ++ch) nhwc.push_back(val(i, y, x, ch));
  const auto img = sqtest::write_temp(dir, "x.npy", npy("<f4", "(2, 2, 5, 3)", raw_of(nhwc)));
  const auto lab = sqtest::write_temp(dir, "y.npy", npy("|u1", "(2,)", bytes_of({0, 1})));
  const sq::Dataset d = sq::load_npy(img, lab, 10);
  ASSERT_EQ(d.image_shape, (sq::Shape{3, 2, 5}));
  EXPECT_EQ(d.num_classes, 10);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t y = 0; y < h; ++y)
        for (int64_t x = 0; x < w; ++x)
          ASSERT_EQ(d.image(i)[(ch * h + y) * w + x], val(i, y, x, ch)) << i << ch << y << x;
}

TEST(DataNpy, Float64ThreeDimsAndVersion2Header) {
  const std::string dir = sqtest::temp_dir("data_npy");
  const std::vector<double> px{0.0, 0.25, 0.5, 1.0};
  const auto img = sqtest::write_temp(dir, "x.npy", npy("<f8", "(1, 2, 2)", raw_of(px), false, 2));
  const auto lab = sqtest::write_temp(
      dir, "y.npy", npy("<u2", "(1,)", raw_of(std::vector<uint16_t>{3}), false, 3));
  const sq::Dataset d = sq::load_npy(img, lab);
  EXPECT_EQ(d.image_shape, (sq::Shape{1, 2, 2}));
  EXPECT_EQ(d.images, (std::vector<float>{0.0f, 0.25f, 0.5f, 1.0f}));
  EXPECT_EQ(d.labels, (std::vector<int32_t>{3}));
}

TEST(DataNpy, WrongDtype) {
  const std::string dir = sqtest::temp_dir("data_npy");
  const auto lab = sqtest::write_temp(dir, "y.npy", npy("|u1", "(1,)", bytes_of({0})));
  const auto img = sqtest::write_temp(dir, "complex.npy", npy("<c8", "(1, 1, 1)", "12345678"));
  EXPECT_DATA_ERROR(sq::load_npy(img, lab),
                    {"complex.npy", "dtype '<c8' not supported", "uint8, float32 or float64"});
  const auto ok = sqtest::write_temp(dir, "x.npy", npy("|u1", "(1, 1, 1)", bytes_of({0})));
  const auto flab = sqtest::write_temp(dir, "float-labels.npy", npy("<f4", "(1,)", "1234"));
  EXPECT_DATA_ERROR(sq::load_npy(ok, flab),
                    {"float-labels.npy", "dtype '<f4' not supported", "integer dtype"});
  const auto obj = sqtest::write_temp(dir, "object.npy", npy("|O", "(1, 1, 1)", "12345678"));
  EXPECT_DATA_ERROR(sq::load_npy(obj, lab), {"object.npy", "dtype '|O' not supported"});
}

TEST(DataNpy, BigEndianRejected) {
  const std::string dir = sqtest::temp_dir("data_npy");
  const auto lab = sqtest::write_temp(dir, "y.npy", npy("|u1", "(1,)", bytes_of({0})));
  const auto img = sqtest::write_temp(dir, "be.npy", npy(">f4", "(1, 1, 1)", "1234"));
  EXPECT_DATA_ERROR(sq::load_npy(img, lab), {"be.npy", "big-endian", "'>f4'", "'<f4'"});
  // One-byte types have no byte order: '>u1' is fine.
  const auto img1 = sqtest::write_temp(dir, "x.npy", npy(">u1", "(1, 1, 1)", bytes_of({255})));
  EXPECT_EQ(sq::load_npy(img1, lab).images[0], 1.0f);
}

TEST(DataNpy, WrongShape) {
  const std::string dir = sqtest::temp_dir("data_npy");
  const auto lab = sqtest::write_temp(dir, "y.npy", npy("|u1", "(2,)", bytes_of({0, 1})));
  const auto flat = sqtest::write_temp(dir, "flat.npy", npy("|u1", "(2, 4)", std::string(8, 'a')));
  EXPECT_DATA_ERROR(sq::load_npy(flat, lab), {"flat.npy", "shape (2, 4)", "2 dimensions"});
  const auto img = sqtest::write_temp(dir, "x.npy", npy("|u1", "(2, 1, 1)", bytes_of({0, 1})));
  const auto lab2 =
      sqtest::write_temp(dir, "2d-labels.npy", npy("|u1", "(2, 1)", bytes_of({0, 1})));
  EXPECT_DATA_ERROR(sq::load_npy(img, lab2), {"2d-labels.npy", "shape (2, 1)", "expected 1"});
  const auto lab3 =
      sqtest::write_temp(dir, "3-labels.npy", npy("|u1", "(3,)", bytes_of({0, 1, 0})));
  EXPECT_DATA_ERROR(sq::load_npy(img, lab3), {"3-labels.npy", "3 labels but", "has 2 images"});
}

TEST(DataNpy, FortranOrderRejected) {
  const std::string dir = sqtest::temp_dir("data_npy");
  const auto lab = sqtest::write_temp(dir, "y.npy", npy("|u1", "(1,)", bytes_of({0})));
  const auto img =
      sqtest::write_temp(dir, "fortran.npy", npy("|u1", "(1, 2, 2)", bytes_of({0, 1, 2, 3}), true));
  EXPECT_DATA_ERROR(sq::load_npy(img, lab), {"fortran.npy", "fortran_order True not supported"});
}

TEST(DataNpy, Truncated) {
  const std::string dir = sqtest::temp_dir("data_npy");
  const auto lab = sqtest::write_temp(dir, "y.npy", npy("|u1", "(1,)", bytes_of({0})));
  const auto img = sqtest::write_temp(dir, "short.npy", npy("<f4", "(1, 2, 2)", "12345678"));
  EXPECT_DATA_ERROR(sq::load_npy(img, lab), {"short.npy", "truncated", "needs 16 bytes", "has 8"});
  const std::string full = npy("|u1", "(1, 1, 1)", bytes_of({0}));
  const auto hdr = sqtest::write_temp(dir, "cut-header.npy", full.substr(0, 30));
  EXPECT_DATA_ERROR(sq::load_npy(hdr, lab), {"cut-header.npy", "truncated"});
  const auto magic = sqtest::write_temp(dir, "not.npy", "PK\x03\x04 something else");
  EXPECT_DATA_ERROR(sq::load_npy(magic, lab), {"not.npy", "bad magic"});
}

TEST(DataNpy, MalformedHeader) {
  const std::string dir = sqtest::temp_dir("data_npy");
  const auto lab = sqtest::write_temp(dir, "y.npy", npy("|u1", "(1,)", bytes_of({0})));
  const auto img = sqtest::write_temp(dir, "weird.npy", npy("|u1", "[1, 1, 1]", bytes_of({0})));
  EXPECT_DATA_ERROR(sq::load_npy(img, lab), {"weird.npy", "malformed .npy header"});
}

TEST(DataNpy, FloatOutOfRange) {
  const std::string dir = sqtest::temp_dir("data_npy");
  const auto lab = sqtest::write_temp(dir, "y.npy", npy("|u1", "(2,)", bytes_of({0, 1})));
  const std::vector<float> px{0.0f, 0.5f, 1.0f, 0.0f, 1.5f, 0.25f};
  const auto img = sqtest::write_temp(dir, "hot.npy", npy("<f4", "(2, 1, 3)", raw_of(px)));
  EXPECT_DATA_ERROR(sq::load_npy(img, lab),
                    {"hot.npy", "value 1.5 at element 4 (image 1) out of range", "[0, 1]"});
  const std::vector<double> nan{std::nan(""), 0.0};
  const auto img2 = sqtest::write_temp(dir, "nan.npy", npy("<f8", "(2, 1, 1)", raw_of(nan)));
  EXPECT_DATA_ERROR(sq::load_npy(img2, lab), {"nan.npy", "value nan at element 0"});
}

TEST(DataNpy, LabelOutOfRange) {
  const std::string dir = sqtest::temp_dir("data_npy");
  const auto img = sqtest::write_temp(dir, "x.npy", npy("|u1", "(2, 1, 1)", bytes_of({0, 1})));
  const auto neg =
      sqtest::write_temp(dir, "neg.npy", npy("<i4", "(2,)", raw_of(std::vector<int32_t>{0, -3})));
  EXPECT_DATA_ERROR(sq::load_npy(img, neg), {"neg.npy", "label -3 at index 1 out of range"});
  const auto big = sqtest::write_temp(dir, "big.npy", npy("|i1", "(2,)", bytes_of({10, 1})));
  EXPECT_DATA_ERROR(sq::load_npy(img, big, 10),
                    {"big.npy", "label 10 at index 0 out of range", "expected 0..9"});
}

// ---- CIFAR ----

TEST(DataCifar, Cifar10Records) {
  const std::string dir = sqtest::temp_dir("data_cifar");
  const auto a = sqtest::write_temp(dir, "a.bin", cifar_records({{3}, {9}}));
  const auto b = sqtest::write_temp(dir, "b.bin", cifar_records({{0}}));
  const sq::Dataset d = sq::load_cifar({a, b}, false);
  ASSERT_EQ(d.size(), 3);
  EXPECT_EQ(d.image_shape, (sq::Shape{3, 32, 32}));
  EXPECT_EQ(d.num_classes, 10);
  EXPECT_EQ(d.labels, (std::vector<int32_t>{3, 9, 0}));
  EXPECT_FLOAT_EQ(d.image(1)[0], 1.0f / 255.0f);         // record 1, pixel 0 -> byte 1
  EXPECT_FLOAT_EQ(d.image(1)[254], 1.0f);                // byte 255
  EXPECT_FLOAT_EQ(d.image(2)[1024 + 5], 5.0f / 255.0f);  // green plane of file b's record
}

TEST(DataCifar, Cifar100UsesFineLabel) {
  const std::string dir = sqtest::temp_dir("data_cifar");
  const auto a = sqtest::write_temp(dir, "train.bin", cifar_records({{19, 99}, {0, 42}}));
  const sq::Dataset d = sq::load_cifar({a}, true);
  EXPECT_EQ(d.num_classes, 100);
  EXPECT_EQ(d.labels, (std::vector<int32_t>{99, 42}));
  EXPECT_FLOAT_EQ(d.image(1)[0], 1.0f / 255.0f);
}

TEST(DataCifar, TruncatedRecord) {
  const std::string dir = sqtest::temp_dir("data_cifar");
  const std::string two = cifar_records({{1}, {2}});
  const auto a = sqtest::write_temp(dir, "cut_batch.bin", two.substr(0, two.size() - 100));
  EXPECT_DATA_ERROR(sq::load_cifar({a}, false), {"cut_batch.bin", "truncated", "3073-byte"});
  const auto e = sqtest::write_temp(dir, "empty_batch.bin", "");
  EXPECT_DATA_ERROR(sq::load_cifar({e}, false), {"empty_batch.bin", "empty"});
}

TEST(DataCifar, Cifar10LabelOutOfRange) {
  const std::string dir = sqtest::temp_dir("data_cifar");
  const auto a = sqtest::write_temp(dir, "bad_batch.bin", cifar_records({{1}, {1}, {10}}));
  EXPECT_DATA_ERROR(sq::load_cifar({a}, false),
                    {"bad_batch.bin", "label 10 in record 2 out of range", "expected 0..9"});
  const auto c = sqtest::write_temp(dir, "bad100.bin", cifar_records({{0, 100}}));
  EXPECT_DATA_ERROR(sq::load_cifar({c}, true), {"bad100.bin", "label 100", "expected 0..99"});
}

TEST(DataCifar, MissingFile) {
  const std::string dir = sqtest::temp_dir("data_cifar");
  EXPECT_DATA_ERROR(sq::load_cifar({dir + "/data_batch_1.bin"}, false),
                    {"data_batch_1.bin", "missing file"});
}

// ---- load_data ----

TEST(DataLoad, IdxDirectoryPrefersGzip) {
  const std::string dir = sqtest::temp_dir("data_load");
  const std::string img = idx_images(2, 2, 3, std::string(12, '\x33'));
  write_gz(dir, "train-images-idx3-ubyte.gz", img);
  // A raw file beside the .gz one is ignored: this one would fail to load.
  sqtest::write_temp(dir, "train-images-idx3-ubyte", "garbage");
  sqtest::write_temp(dir, "train-labels-idx1-ubyte", idx_labels(bytes_of({0, 4})));
  write_gz(dir, "t10k-images-idx3-ubyte.gz", idx_images(1, 2, 3, std::string(6, '\0')));
  sqtest::write_temp(dir, "t10k-labels-idx1-ubyte", idx_labels(bytes_of({6})));
  // Labels 0, 4 and 6 leave classes without a training sample: an inferred count is refused
  // (test_hardening_inputs.cpp), a given one holds for both sets.
  const sq::DataBundle b = sq::load_data({"idx", dir, 7});
  EXPECT_EQ(b.train.size(), 2);
  EXPECT_EQ(b.test.size(), 1);
  EXPECT_EQ(b.train.image_shape, (sq::Shape{1, 2, 3}));
  EXPECT_FLOAT_EQ(b.train.images[0], 0.2f);
  EXPECT_EQ(b.train.num_classes, 7);
  EXPECT_EQ(b.test.num_classes, 7);
  EXPECT_EQ(b.train.name, "idx");

  // As "mnist" the class count is fixed at 10 and the name is the format's.
  const sq::DataBundle m = sq::load_data({"mnist", dir});
  EXPECT_EQ(m.train.num_classes, 10);
  EXPECT_EQ(m.test.name, "mnist");
}

TEST(DataLoad, NpyDirectory) {
  const std::string dir = sqtest::temp_dir("data_load");
  sqtest::write_temp(dir, "train_images.npy", npy("|u1", "(2, 2, 2)", std::string(8, '\0')));
  sqtest::write_temp(dir, "train_labels.npy", npy("|u1", "(2,)", bytes_of({0, 1})));
  sqtest::write_temp(dir, "test_images.npy", npy("|u1", "(1, 2, 2)", std::string(4, '\0')));
  sqtest::write_temp(dir, "test_labels.npy", npy("|u1", "(1,)", bytes_of({3})));
  // Test label 3 lies beyond the training labels: only with the class count given.
  const sq::DataBundle b = sq::load_data({"npy", dir, 4});
  EXPECT_EQ(b.train.num_classes, 4);
  EXPECT_EQ(b.test.num_classes, 4);
  EXPECT_EQ(b.train.name, "npy");
}

TEST(DataLoad, ShapeMismatchBetweenTrainAndTest) {
  const std::string dir = sqtest::temp_dir("data_load");
  sqtest::write_temp(dir, "train_images.npy", npy("|u1", "(1, 2, 2)", std::string(4, '\0')));
  sqtest::write_temp(dir, "train_labels.npy", npy("|u1", "(1,)", bytes_of({0})));
  sqtest::write_temp(dir, "test_images.npy", npy("|u1", "(1, 3, 3)", std::string(9, '\0')));
  sqtest::write_temp(dir, "test_labels.npy", npy("|u1", "(1,)", bytes_of({0})));
  EXPECT_DATA_ERROR(sq::load_data({"npy", dir}), {"test_images.npy", "[1, 3, 3]", "[1, 2, 2]"});
}

TEST(DataLoad, CifarSubdirectory) {
  const std::string dir = sqtest::temp_dir("data_load");
  const std::string sub = dir + "/cifar-10-batches-bin";
  ASSERT_EQ(::mkdir(sub.c_str(), 0755), 0);
  for (int i = 1; i <= 5; ++i)
    sqtest::write_temp(sub, "data_batch_" + std::to_string(i) + ".bin", cifar_records({{i}}));
  EXPECT_DATA_ERROR(sq::load_data({"cifar10", dir}), {"test_batch.bin", "missing file"});
  sqtest::write_temp(sub, "test_batch.bin", cifar_records({{7}, {8}}));
  const sq::DataBundle b = sq::load_data({"cifar10", dir});
  EXPECT_EQ(b.train.labels, (std::vector<int32_t>{1, 2, 3, 4, 5}));
  EXPECT_EQ(b.test.labels, (std::vector<int32_t>{7, 8}));
  EXPECT_EQ(b.train.num_classes, 10);
  EXPECT_EQ(b.train.name, "cifar10");

  const std::string dir100 = sqtest::temp_dir("data_load");
  sqtest::write_temp(dir100, "train.bin", cifar_records({{1, 50}}));
  sqtest::write_temp(dir100, "test.bin", cifar_records({{2, 60}}));
  EXPECT_EQ(sq::load_data({"cifar100", dir100}).test.labels, (std::vector<int32_t>{60}));
}

TEST(DataLoad, UnknownFormatMissingDirAndFiles) {
  EXPECT_DATA_ERROR(sq::load_data({"imagenet", "/tmp"}),
                    {"unknown data format 'imagenet'", "fashion-mnist", "cifar100", "npy"});
  EXPECT_DATA_ERROR(sq::default_data_dir("svhn"), {"'svhn'", "mnist"});
  EXPECT_DATA_ERROR(sq::load_data({"idx", "/nonexistent/sq_data_dir"}),
                    {"/nonexistent/sq_data_dir", "missing directory"});
  EXPECT_DATA_ERROR(sq::load_data({"npy", ""}), {"'npy'", "no default directory"});
  const std::string dir = sqtest::temp_dir("data_load");
  EXPECT_DATA_ERROR(sq::load_data({"fashion-mnist", dir}),
                    {"train-images-idx3-ubyte", "missing file"});
  EXPECT_DATA_ERROR(sq::load_data({"npy", dir}), {"train_images.npy", "missing file"});
  EXPECT_EQ(sq::default_data_dir("fashion-mnist"), "/usr/share/datasets/fashion-mnist");
  EXPECT_EQ(sq::default_data_dir("mnist"), "/usr/share/datasets/mnist");
}

TEST(DataLoad, RealFashionMnist) {
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) GTEST_SKIP() << dir << " not installed";
  const sq::DataBundle b = sq::load_data(sq::DataSpec{});
  EXPECT_EQ(b.train.name, "fashion-mnist");
  EXPECT_EQ(b.train.size(), 60000);
  EXPECT_EQ(b.test.size(), 10000);
  EXPECT_EQ(b.train.image_shape, (sq::Shape{1, 28, 28}));
  EXPECT_EQ(b.train.num_classes, 10);
  EXPECT_EQ(b.test.num_classes, 10);
  EXPECT_EQ(b.train.images.size(), 60000u * 784u);
  std::vector<int> per_class(10, 0);
  for (int32_t l : b.test.labels) ++per_class[l];
  for (int c : per_class) EXPECT_EQ(c, 1000);  // Fashion-MNIST's test set is balanced
}

// ---- take / split ----

TEST(DataSplit, TakeFirstN) {
  const sq::Dataset d = tiny_dataset(5);
  const sq::Dataset t = sq::take(d, 2);
  EXPECT_EQ(t.size(), 2);
  EXPECT_EQ(t.labels, (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(t.images, std::vector<float>(d.images.begin(), d.images.begin() + 8));
  EXPECT_EQ(t.num_classes, d.num_classes);
  EXPECT_EQ(sq::take(d, 0).size(), 5);
  EXPECT_EQ(sq::take(d, 99).size(), 5);
}

TEST(DataSplit, SizesDeterminismAndPartition) {
  const sq::Dataset d = tiny_dataset(100);
  const auto [train, val] = sq::split(d, 0.25, 7);
  EXPECT_EQ(train.size(), 75);
  EXPECT_EQ(val.size(), 25);
  EXPECT_EQ(train.image_shape, d.image_shape);
  // Each sample's image identifies it (first pixel = i / 100): the parts partition d.
  std::set<float> seen;
  for (const sq::Dataset* part : {&train, &val})
    for (int64_t i = 0; i < part->size(); ++i) {
      const int idx = static_cast<int>(std::lround(part->image(i)[0] * 100));
      EXPECT_EQ(part->labels[i], idx % 10);
      seen.insert(part->image(i)[0]);
    }
  EXPECT_EQ(seen.size(), 100u);

  const auto again = sq::split(d, 0.25, 7);
  EXPECT_EQ(again.first.images, train.images);
  EXPECT_EQ(again.second.labels, val.labels);
  EXPECT_NE(sq::split(d, 0.25, 8).second.images, val.images);

  EXPECT_EQ(sq::split(d, 0.0, 1).second.size(), 0);
  EXPECT_EQ(sq::split(d, 0.004, 1).second.size(), 0);  // round(0.4)
  EXPECT_EQ(sq::split(d, 0.015, 1).second.size(), 2);  // round(1.5)
}

TEST(DataSplit, BadFraction) {
  const sq::Dataset d = tiny_dataset(4);
  EXPECT_DATA_ERROR(sq::split(d, 1.0, 1), {"tiny", "fraction 1", "expected 0 <= fraction < 1"});
  EXPECT_DATA_ERROR(sq::split(d, -0.1, 1), {"fraction -0.1"});
  EXPECT_DATA_ERROR(sq::split(d, std::nan(""), 1), {"fraction nan"});
  EXPECT_DATA_ERROR(sq::split(tiny_dataset(1), 0.6, 1), {"no training samples"});
}

// ---- statistics and normalization ----

TEST(DataStats, ChannelStatsOnKnownSet) {
  // Two 2-channel 1x2 images: channel 0 holds {0, 1, 0, 1}, channel 1 holds {0.5} x 4.
  sq::Dataset d;
  d.name = "known";
  d.image_shape = {2, 1, 2};
  d.images = {0.0f, 1.0f, 0.5f, 0.5f, 1.0f, 0.0f, 0.5f, 0.5f};
  d.labels = {0, 1};
  std::vector<float> mean, stddev;
  sq::channel_stats(d, mean, stddev);
  ASSERT_EQ(mean.size(), 2u);
  EXPECT_FLOAT_EQ(mean[0], 0.5f);
  EXPECT_FLOAT_EQ(stddev[0], 0.5f);
  EXPECT_FLOAT_EQ(mean[1], 0.5f);
  EXPECT_FLOAT_EQ(stddev[1], 0.0f);

  std::vector<float> out(4);
  sq::normalized_image(d, 1, mean, stddev, out.data());
  EXPECT_EQ(out, (std::vector<float>{1.0f, -1.0f, 0.0f, 0.0f}));  // constant channel: centred
  EXPECT_DATA_ERROR(sq::normalized_image(d, 2, mean, stddev, out.data()), {"known", "index 2"});
  EXPECT_DATA_ERROR(sq::normalized_image(d, 0, {0.5f}, {0.5f}, out.data()), {"expected 2"});
}

// ---- augmentation ----

TEST(DataAugment, DeterministicGivenTheRng) {
  const sq::Shape shape{3, 8, 8};
  std::vector<float> img(3 * 64);
  for (size_t k = 0; k < img.size(); ++k) img[k] = static_cast<float>(k + 1) / 200.0f;
  std::mt19937_64 r1(42), r2(42);
  for (int rep = 0; rep < 20; ++rep) {
    std::vector<float> a = img, b = img;
    sq::augment_image(a.data(), shape, 2, true, r1);
    sq::augment_image(b.data(), shape, 2, true, r2);
    ASSERT_EQ(a, b);
  }
}

TEST(DataAugment, TranslationIsAZeroFilledShift) {
  const int64_t c = 2, h = 5, w = 6;
  std::vector<float> img(c * h * w);
  for (size_t k = 0; k < img.size(); ++k) img[k] = static_cast<float>(k + 1);  // no zeros
  std::mt19937_64 rng(3);
  std::set<std::pair<int, int>> shifts;
  for (int rep = 0; rep < 200; ++rep) {
    std::vector<float> out = img;
    sq::augment_image(out.data(), {c, h, w}, 2, false, rng);
    // Find the (dy, dx) this output is: out[y][x] = in[y + dy][x + dx], 0 outside.
    int found = 0;
    for (int dy = -2; dy <= 2; ++dy)
      for (int dx = -2; dx <= 2; ++dx) {
        bool match = true;
        for (int64_t ch = 0; ch < c && match; ++ch)
          for (int64_t y = 0; y < h && match; ++y)
            for (int64_t x = 0; x < w && match; ++x) {
              const int64_t sy = y + dy, sx = x + dx;
              const float want =
                  sy < 0 || sy >= h || sx < 0 || sx >= w ? 0.0f : img[(ch * h + sy) * w + sx];
              match = out[(ch * h + y) * w + x] == want;
            }
        if (match) {
          ++found;
          shifts.insert({dy, dx});
        }
      }
    ASSERT_EQ(found, 1) << "output is not a single shift of the input";
  }
  EXPECT_EQ(shifts.size(), 25u);  // every shift in [-2, 2]^2 occurs
}

TEST(DataAugment, FlipWithoutShiftIsAPureFlip) {
  const int64_t c = 3, h = 4, w = 5;
  std::vector<float> img(c * h * w);
  for (size_t k = 0; k < img.size(); ++k) img[k] = static_cast<float>(k) / 100.0f;
  std::vector<float> flipped(img.size());
  for (int64_t row = 0; row < c * h; ++row)
    for (int64_t x = 0; x < w; ++x) flipped[row * w + x] = img[row * w + (w - 1 - x)];
  std::mt19937_64 rng(9);
  int n_flipped = 0, n_same = 0;
  for (int rep = 0; rep < 100; ++rep) {
    std::vector<float> out = img;
    sq::augment_image(out.data(), {c, h, w}, 0, true, rng);
    if (out == flipped)
      ++n_flipped;
    else if (out == img)
      ++n_same;
  }
  EXPECT_EQ(n_flipped + n_same, 100);
  EXPECT_GT(n_flipped, 25);
  EXPECT_GT(n_same, 25);

  std::vector<float> out = img;
  sq::augment_image(out.data(), {c, h, w}, 0, false, rng);
  EXPECT_EQ(out, img);  // neither shift nor flip: untouched
  EXPECT_DATA_ERROR(sq::augment_image(out.data(), {c, h, w}, -1, false, rng), {"pad -1"});
}

// take_range: samples [from, to) with their labels; out-of-range bounds refused.
// uniform_dataset: seeded (the same seed, the same pixels), in [0, 1), labels i mod classes.
TEST(DataSubsets, TakeRangeAndUniformDataset) {
  const sq::Dataset d = sq::uniform_dataset({1, 3, 2}, 4, 10, 7);
  EXPECT_EQ(d.size(), 10);
  EXPECT_EQ(d.images, sq::uniform_dataset({1, 3, 2}, 4, 10, 7).images);
  EXPECT_NE(d.images, sq::uniform_dataset({1, 3, 2}, 4, 10, 8).images);
  for (float v : d.images) EXPECT_TRUE(v >= 0.0f && v < 1.0f);
  for (int64_t i = 0; i < 10; ++i) EXPECT_EQ(d.labels[static_cast<size_t>(i)], i % 4);
  const sq::Dataset r = sq::take_range(d, 3, 7);
  ASSERT_EQ(r.size(), 4);
  EXPECT_EQ(r.labels[0], d.labels[3]);
  EXPECT_EQ(std::vector<float>(r.images.begin(), r.images.end()),
            std::vector<float>(d.images.begin() + 3 * 6, d.images.begin() + 7 * 6));
  EXPECT_EQ(sq::take_range(d, 5, 5).size(), 0);
  EXPECT_THROW(sq::take_range(d, 4, 3), sq::Error);
  EXPECT_THROW(sq::take_range(d, 0, 11), sq::Error);
  EXPECT_THROW(sq::uniform_dataset({1, 3, 2}, 0, 10, 1), sq::Error);
}

}  // namespace
