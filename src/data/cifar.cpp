// CIFAR binary batches: fixed-size records, no header.
//   CIFAR-10:  <1 label byte (0..9)><3072 pixel bytes>
//   CIFAR-100: <1 coarse label byte (0..19)><1 fine label byte (0..99)><3072 pixel bytes>
// The pixels are 1024 red, 1024 green, 1024 blue bytes, each plane 32 rows of 32: already C x H x
// W.
#include "data/data_util.h"
#include "sigmaquant/data.h"
#include "sigmaquant/error.h"

namespace sq {

Dataset load_cifar(const std::vector<std::string>& paths, bool cifar100) {
  const char* kind = cifar100 ? "CIFAR-100" : "CIFAR-10";
  if (paths.empty()) fail("{}: no batch files given (expected at least one .bin file)", kind);
  constexpr size_t kPixels = 3 * 32 * 32;
  const size_t label_bytes = cifar100 ? 2 : 1;
  const size_t record = label_bytes + kPixels;

  Dataset d;
  d.name = cifar100 ? "cifar100" : "cifar10";
  d.image_shape = {3, 32, 32};
  d.num_classes = cifar100 ? 100 : 10;
  const float* to_unit = data_detail::u8_to_unit_table();
  for (const std::string& path : paths) {
    const std::string bytes = data_detail::read_maybe_gzip(path);
    if (bytes.empty()) fail("{}: empty file (expected {}-byte {} records)", path, record, kind);
    if (bytes.size() % record != 0)
      fail(
          "{}: truncated: {} bytes is not a whole number of {}-byte {} records ({} label byte(s) "
          "+ {} pixel bytes); the last record has {} bytes",
          path, bytes.size(), record, kind, label_bytes, kPixels, bytes.size() % record);
    const size_t n = bytes.size() / record;
    const size_t first = d.labels.size();
    d.labels.resize(first + n);
    d.images.resize((first + n) * kPixels);
    const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
    for (size_t r = 0; r < n; ++r, p += record) {
      int label = p[label_bytes - 1];  // CIFAR-100: the fine label
      if (label >= d.num_classes)
        fail("{}: label {} in record {} out of range (expected 0..{})", path, label, r,
             d.num_classes - 1);
      if (cifar100 && p[0] >= 20)
        fail("{}: coarse label {} in record {} out of range (expected 0..19)", path, p[0], r);
      d.labels[first + r] = label;
      float* dst = d.images.data() + (first + r) * kPixels;
      for (size_t i = 0; i < kPixels; ++i) dst[i] = to_unit[p[label_bytes + i]];
    }
  }
  return d;
}

}  // namespace sq
