// idx files (MNIST, Fashion-MNIST): a big-endian header then raw unsigned bytes.
//   images: u32 magic 0x00000803, u32 count, u32 rows, u32 cols, count*rows*cols pixel bytes
//   labels: u32 magic 0x00000801, u32 count, count label bytes
#include <cstring>

#include "data/data_util.h"
#include "sigmaquant/data.h"
#include "sigmaquant/error.h"

namespace sq {
namespace {

constexpr uint32_t kImagesMagic = 0x00000803;  // unsigned byte, 3 dimensions
constexpr uint32_t kLabelsMagic = 0x00000801;  // unsigned byte, 1 dimension

uint32_t be32(const std::string& b, size_t at) {
  const auto* p = reinterpret_cast<const unsigned char*>(b.data() + at);
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | uint32_t{p[3]};
}

// Checks the magic number and that the file holds exactly header + payload bytes.
void check_idx(const std::string& path, const std::string& bytes, uint32_t magic, const char* kind,
               size_t header, uint64_t payload, const std::string& payload_what) {
  if (bytes.size() < 4)
    fail("{}: truncated: {} bytes, too short for an idx header (expected {} bytes)", path,
         bytes.size(), header);
  const uint32_t got = be32(bytes, 0);
  if (got != magic)
    fail("{}: bad magic 0x{:08x} (expected 0x{:08x} for {})", path, got, magic, kind);
  if (bytes.size() < header)
    fail("{}: truncated: {} bytes, too short for the {}-byte {} header", path, bytes.size(), header,
         kind);
  // Sizes are whole-file sizes (after gunzip), as `ls -l` of the raw file would show.
  const uint64_t have = bytes.size();
  const uint64_t want = payload > UINT64_MAX - header ? UINT64_MAX : header + payload;
  if (have < want)
    fail("{}: truncated: expected {} bytes ({}-byte header + {} bytes of {}), file has {}", path,
         want, header, payload, payload_what, have);
  if (have > want)
    fail(
        "{}: {} unexpected trailing bytes (expected {} bytes: {}-byte header + {} bytes of {}, "
        "file has {})",
        path, have - want, want, header, payload, payload_what, have);
}

}  // namespace

Dataset load_idx(const std::string& images_path, const std::string& labels_path,
                 int64_t num_classes) {
  const std::string img = data_detail::read_maybe_gzip(images_path);
  // Dimensions first (when present) so that the size check can state what was expected.
  uint64_t n = 0, rows = 0, cols = 0;
  if (img.size() >= 16) {
    n = be32(img, 4);
    rows = be32(img, 8);
    cols = be32(img, 12);
  }
  check_idx(images_path, img, kImagesMagic, "idx3 images", 16,
            data_detail::mul_sat(data_detail::mul_sat(n, rows), cols),
            "pixels for " + std::to_string(n) + " images of " + std::to_string(rows) + " x " +
                std::to_string(cols));
  if (n == 0) fail("{}: no images (expected at least 1)", images_path);
  if (rows == 0 || cols == 0)
    fail("{}: image size {} x {} (expected both dimensions > 0)", images_path, rows, cols);

  const std::string lab = data_detail::read_maybe_gzip(labels_path);
  const uint64_t nl = lab.size() >= 8 ? be32(lab, 4) : 0;
  check_idx(labels_path, lab, kLabelsMagic, "idx1 labels", 8, nl, "labels");
  if (nl != n) fail("{}: {} labels but {} has {} images", labels_path, nl, images_path, n);

  Dataset d;
  d.name = "idx";
  d.image_shape = {1, static_cast<int64_t>(rows), static_cast<int64_t>(cols)};
  d.images.resize(n * rows * cols);
  const float* to_unit = data_detail::u8_to_unit_table();
  const auto* px = reinterpret_cast<const unsigned char*>(img.data() + 16);
  for (size_t i = 0; i < d.images.size(); ++i) d.images[i] = to_unit[px[i]];
  d.labels.resize(n);
  const auto* lb = reinterpret_cast<const unsigned char*>(lab.data() + 8);
  for (size_t i = 0; i < n; ++i) d.labels[i] = lb[i];
  d.num_classes = num_classes;
  data_detail::finish_labels(labels_path, d.labels, d.num_classes);
  return d;
}

}  // namespace sq
