// NumPy .npy arrays (format versions 1.0, 2.0, 3.0):
//   "\x93NUMPY" <major u8> <minor u8> <header length: u16 LE (1.0) or u32 LE (2.0, 3.0)>
//   <header: a Python dict literal {'descr': '<f4', 'fortran_order': False, 'shape': (N, H, W), }
//    padded with spaces and a final '\n'> <raw little-endian data in C order>
#include <algorithm>
#include <cstring>

#include "data/data_util.h"
#include "sigmaquant/data.h"
#include "sigmaquant/error.h"

namespace sq {
namespace {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "the .npy reader copies little-endian data as is");

struct NpyArray {
  std::string descr;  // as written, e.g. "<f4"
  char kind = 0;      // 'u', 'i', 'f', ... (numpy's dtype.kind)
  int itemsize = 0;
  std::vector<int64_t> shape;
  const unsigned char* data = nullptr;  // points into the file's bytes
  uint64_t count = 0;                   // number of elements
};

std::string shape_text(const std::vector<int64_t>& s) {
  std::string t = "(";
  for (size_t i = 0; i < s.size(); ++i) t += (i ? ", " : "") + std::to_string(s[i]);
  return t + (s.size() == 1 ? ",)" : ")");
}

// Parses the header dict: only the literal subset numpy writes (strings, True/False, tuples of
// non-negative integers, optional trailing commas).
class HeaderParser {
 public:
  HeaderParser(const std::string& path, const std::string& text) : path_(path), s_(text) {}

  void parse(NpyArray& a) {
    bool have_descr = false, have_order = false, have_shape = false;
    skip_ws();
    expect('{');
    for (;;) {
      skip_ws();
      if (peek() == '}') break;
      const std::string key = string_literal();
      skip_ws();
      expect(':');
      skip_ws();
      if (key == "descr") {
        if (peek() == '[')
          fail("{}: structured .npy dtype not supported (expected a plain numeric dtype)", path_);
        a.descr = string_literal();
        have_descr = true;
      } else if (key == "fortran_order") {
        if (boolean())
          fail(
              "{}: fortran_order True not supported (expected a C-order array; save it with "
              "np.ascontiguousarray)",
              path_);
        have_order = true;
      } else if (key == "shape") {
        a.shape = tuple();
        have_shape = true;
      } else {
        fail(
            "{}: unexpected key '{}' in the .npy header (expected 'descr', 'fortran_order', "
            "'shape')",
            path_, key);
      }
      skip_ws();
      if (peek() == ',') {
        ++i_;
        continue;
      }
      if (peek() != '}') malformed("',' or '}'");
    }
    ++i_;
    skip_ws();
    if (i_ != s_.size()) malformed("the end of the header");
    if (!have_descr || !have_order || !have_shape)
      fail("{}: .npy header lacks '{}' (expected 'descr', 'fortran_order' and 'shape'): {}", path_,
           !have_descr   ? "descr"
           : !have_order ? "fortran_order"
                         : "shape",
           s_);
  }

 private:
  [[noreturn]] void malformed(const char* expected) {
    fail("{}: malformed .npy header at character {} (expected {}): {}", path_, i_, expected,
         s_.substr(0, 200));
  }
  char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  void skip_ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r'))
      ++i_;
  }
  void expect(char c) {
    if (peek() != c) {
      const char text[] = {'\'', c, '\'', '\0'};
      malformed(text);
    }
    ++i_;
  }
  std::string string_literal() {
    const char q = peek();
    if (q != '\'' && q != '"') malformed("a quoted string");
    const size_t start = ++i_;
    while (i_ < s_.size() && s_[i_] != q) {
      if (s_[i_] == '\\') malformed("a string without escapes");
      ++i_;
    }
    if (i_ >= s_.size()) malformed("a closing quote");
    return s_.substr(start, i_++ - start);
  }
  bool boolean() {
    for (const bool value : {true, false}) {
      const std::string word = value ? "True" : "False";
      if (s_.compare(i_, word.size(), word) == 0) {
        i_ += word.size();
        return value;
      }
    }
    malformed("True or False");
  }
  std::vector<int64_t> tuple() {
    std::vector<int64_t> dims;
    expect('(');
    for (;;) {
      skip_ws();
      if (peek() == ')') break;
      if (peek() < '0' || peek() > '9') malformed("a non-negative integer dimension");
      int64_t v = 0;
      while (peek() >= '0' && peek() <= '9') {
        if (v > (INT64_MAX - 9) / 10) malformed("a dimension that fits in 64 bits");
        v = v * 10 + (s_[i_++] - '0');
      }
      if (peek() == 'L') ++i_;  // Python 2 long literals
      dims.push_back(v);
      skip_ws();
      if (peek() == ',') {
        ++i_;
        continue;
      }
      if (peek() != ')') malformed("',' or ')'");
    }
    ++i_;
    return dims;
  }

  const std::string& path_;
  const std::string& s_;
  size_t i_ = 0;
};

uint32_t le(const std::string& b, size_t at, int n) {
  uint32_t v = 0;
  for (int k = n - 1; k >= 0; --k) v = v << 8 | static_cast<unsigned char>(b[at + k]);
  return v;
}

NpyArray parse_npy(const std::string& path, const std::string& bytes) {
  static const char kMagic[] = "\x93NUMPY";
  if (bytes.size() < 10 || bytes.compare(0, 6, kMagic, 6) != 0) {
    if (bytes.size() >= 6 && bytes.compare(0, 6, kMagic, 6) == 0)
      fail("{}: truncated: {} bytes, too short for a .npy preamble (expected at least 10)", path,
           bytes.size());
    fail("{}: bad magic (expected a .npy file starting with \"\\x93NUMPY\")", path);
  }
  const int major = static_cast<unsigned char>(bytes[6]);
  const int minor = static_cast<unsigned char>(bytes[7]);
  if (minor != 0 || major < 1 || major > 3)
    fail("{}: .npy version {}.{} not supported (expected 1.0, 2.0 or 3.0)", path, major, minor);
  const size_t pre = major == 1 ? 10 : 12;
  if (bytes.size() < pre)
    fail("{}: truncated: {} bytes, too short for a version {}.0 .npy preamble", path, bytes.size(),
         major);
  const uint64_t header_len = le(bytes, 8, major == 1 ? 2 : 4);
  if (bytes.size() - pre < header_len)
    fail("{}: truncated: the .npy header is {} bytes, file has {} after the preamble", path,
         header_len, bytes.size() - pre);

  NpyArray a;
  HeaderParser(path, bytes.substr(pre, header_len)).parse(a);

  // descr: [byte order <, >, |, =] kind itemsize
  const std::string& t = a.descr;
  size_t k = 0;
  const char order = !t.empty() && std::strchr("<>|=", t[0]) ? t[k++] : '=';
  if (k < t.size()) a.kind = t[k++];
  const std::string size_digits = t.substr(std::min(k, t.size()));
  if (!size_digits.empty() && size_digits.size() <= 2 &&
      std::all_of(size_digits.begin(), size_digits.end(),
                  [](char ch) { return ch >= '0' && ch <= '9'; }))
    a.itemsize = std::stoi(size_digits);
  if (a.itemsize == 0)
    fail("{}: .npy dtype '{}' not supported (expected a numeric dtype such as '<f4' or '|u1')",
         path, t);
  if (order == '>' && a.itemsize > 1)
    fail("{}: big-endian .npy dtype '{}' not supported (expected little-endian '<{}{}')", path, t,
         a.kind, a.itemsize);

  uint64_t count = 1;
  for (int64_t d : a.shape) count = data_detail::mul_sat(count, static_cast<uint64_t>(d));
  a.count = count;
  const uint64_t need = data_detail::mul_sat(count, static_cast<uint64_t>(a.itemsize));
  const uint64_t have = bytes.size() - pre - header_len;
  if (have < need)
    fail(
        "{}: truncated: shape {} of '{}' needs {} bytes of data, file has {} after its {}-byte "
        "header",
        path, shape_text(a.shape), t, need, have, pre + header_len);
  if (have > need)
    fail("{}: {} unexpected trailing bytes after the {} bytes of shape {} of '{}'", path,
         have - need, need, shape_text(a.shape), t);
  a.data = reinterpret_cast<const unsigned char*>(bytes.data()) + pre + header_len;
  return a;
}

bool is_channel_count(int64_t c) { return c == 1 || c == 3 || c == 4; }

}  // namespace

Dataset load_npy(const std::string& images_path, const std::string& labels_path,
                 int64_t num_classes) {
  const std::string img_bytes = data_detail::read_maybe_gzip(images_path);
  const NpyArray img = parse_npy(images_path, img_bytes);
  const bool u8 = img.kind == 'u' && img.itemsize == 1;
  const bool f32 = img.kind == 'f' && img.itemsize == 4;
  const bool f64 = img.kind == 'f' && img.itemsize == 8;
  if (!u8 && !f32 && !f64)
    fail("{}: .npy dtype '{}' not supported for images (expected uint8, float32 or float64)",
         images_path, img.descr);

  // Layout: N x H x W (C = 1), N x C x H x W, or N x H x W x C (channels last, C in {1, 3, 4}).
  // A 4-d shape is channels-last when its last dimension is a channel count and its second is
  // not; when both are (e.g. (N, 3, 4, 4)) it is taken as N x C x H x W.
  const auto& s = img.shape;
  if (s.size() != 3 && s.size() != 4)
    fail(
        "{}: images have shape {} with {} dimensions (expected N x H x W, N x C x H x W or "
        "N x H x W x C)",
        images_path, shape_text(s), s.size());
  const bool nhwc = s.size() == 4 && is_channel_count(s[3]) && !is_channel_count(s[1]);
  const int64_t n = s[0];
  const int64_t c = s.size() == 3 ? 1 : nhwc ? s[3] : s[1];
  const int64_t h = s.size() == 3 ? s[1] : nhwc ? s[1] : s[2];
  const int64_t w = s.size() == 3 ? s[2] : nhwc ? s[2] : s[3];
  if (n == 0) fail("{}: no images (shape {}; expected at least 1)", images_path, shape_text(s));
  if (c == 0 || h == 0 || w == 0)
    fail("{}: images have shape {} (expected every dimension > 0)", images_path, shape_text(s));

  Dataset d;
  d.name = "npy";
  d.image_shape = {c, h, w};
  // Values in file order first, checked, then moved to C x H x W if needed.
  std::vector<float> vals(img.count);
  const auto out_of_range = [&](double v, uint64_t i) {
    fail("{}: value {} at element {} (image {}) out of range (expected float images in [0, 1])",
         images_path, v, i, i / static_cast<uint64_t>(c * h * w));
  };
  if (u8) {
    const float* to_unit = data_detail::u8_to_unit_table();
    for (uint64_t i = 0; i < img.count; ++i) vals[i] = to_unit[img.data[i]];
  } else if (f32) {
    std::memcpy(vals.data(), img.data, img.count * 4);
    for (uint64_t i = 0; i < img.count; ++i)
      if (!(vals[i] >= 0.0f && vals[i] <= 1.0f)) out_of_range(vals[i], i);
  } else {
    for (uint64_t i = 0; i < img.count; ++i) {
      double v;
      std::memcpy(&v, img.data + i * 8, 8);
      if (!(v >= 0.0 && v <= 1.0)) out_of_range(v, i);
      vals[i] = static_cast<float>(v);
    }
  }
  if (nhwc && c > 1) {
    d.images.resize(vals.size());
    const int64_t plane = h * w;
    for (int64_t i = 0; i < n; ++i) {
      const float* src = vals.data() + i * plane * c;
      float* dst = d.images.data() + i * plane * c;
      for (int64_t p = 0; p < plane; ++p)
        for (int64_t ch = 0; ch < c; ++ch) dst[ch * plane + p] = src[p * c + ch];
    }
  } else {
    d.images = std::move(vals);
  }

  const std::string lab_bytes = data_detail::read_maybe_gzip(labels_path);
  const NpyArray lab = parse_npy(labels_path, lab_bytes);
  const bool int_kind = lab.kind == 'i' || lab.kind == 'u';
  const int sz = lab.itemsize;
  if (!int_kind || (sz != 1 && sz != 2 && sz != 4 && sz != 8))
    fail(
        "{}: .npy dtype '{}' not supported for labels (expected an integer dtype: u1, i1, u2, "
        "i2, u4, i4, u8 or i8)",
        labels_path, lab.descr);
  if (lab.shape.size() != 1)
    fail("{}: labels have shape {} with {} dimensions (expected 1: N)", labels_path,
         shape_text(lab.shape), lab.shape.size());
  if (lab.shape[0] != n)
    fail("{}: {} labels but {} has {} images", labels_path, lab.shape[0], images_path, n);
  d.labels.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const unsigned char* p = lab.data + i * sz;
    uint64_t raw = 0;
    std::memcpy(&raw, p, static_cast<size_t>(sz));  // little-endian: low bytes first
    int64_t v;
    if (lab.kind == 'u') {
      v = raw > static_cast<uint64_t>(INT64_MAX) ? INT64_MAX : static_cast<int64_t>(raw);
    } else {
      const int bits = 8 * sz;  // sign-extend
      v = bits == 64 ? static_cast<int64_t>(raw)
                     : static_cast<int64_t>(raw << (64 - bits)) >> (64 - bits);
    }
    if (v < 0 || v > INT32_MAX || (num_classes > 0 && v >= num_classes))
      fail("{}: label {} at index {} out of range (expected 0..{})", labels_path, v, i,
           num_classes > 0 ? num_classes - 1 : int64_t{INT32_MAX});
    d.labels[static_cast<size_t>(i)] = static_cast<int32_t>(v);
  }
  d.num_classes = num_classes;
  data_detail::finish_labels(labels_path, d.labels, d.num_classes);
  return d;
}

}  // namespace sq
