#include "data/data_util.h"

#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

#include "sigmaquant/error.h"

namespace sq::data_detail {

std::string read_maybe_gzip(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) fail("{}: missing file", path);
    fail("{}: cannot open ({})", path, std::strerror(errno));
  }
  if (S_ISDIR(st.st_mode)) fail("{}: is a directory (expected a data file)", path);

  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) fail("{}: cannot open ({})", path, errno ? std::strerror(errno) : "out of memory");
  // Large reads keep Fashion-MNIST's 47 MB of training pixels well under a second; small files get
  // small buffers (a fixed 8 MiB chunk made every tiny file cost ~24 MiB of zero-filled memory,
  // which capped the fuzzers at ~10 inputs per second).
  const unsigned kChunk = static_cast<unsigned>(
      std::clamp<long long>(static_cast<long long>(st.st_size) * 4 + 4096, 64 << 10, 8 << 20));
  gzbuffer(f, std::min(kChunk, 1u << 20));
  std::string bytes;
  // The size on disk is a lower bound for gzip and exact for raw files.
  bytes.reserve(static_cast<size_t>(st.st_size) + kChunk);
  size_t used = 0;
  for (;;) {
    if (bytes.size() < used + kChunk) bytes.resize(std::max(used + kChunk, bytes.size() * 2));
    int n = gzread(f, bytes.data() + used, kChunk);
    if (n < 0) {
      int code = 0;
      std::string msg = gzerror(f, &code);
      gzclose(f);
      fail("{}: read error ({})", path, msg);
    }
    if (n == 0) break;
    used += static_cast<size_t>(n);
  }
  bytes.resize(used);
  // zlib reports a gzip stream cut short only when closing (Z_BUF_ERROR).
  int rc = gzclose(f);
  if (rc == Z_BUF_ERROR)
    fail("{}: truncated gzip stream (unexpected end of file after {} decompressed bytes)", path,
         used);
  if (rc != Z_OK) fail("{}: read error (zlib code {})", path, rc);
  return bytes;
}

void finish_labels(const std::string& what, const std::vector<int32_t>& labels,
                   int64_t& num_classes) {
  if (num_classes > 0) {
    for (size_t i = 0; i < labels.size(); ++i)
      if (labels[i] < 0 || labels[i] >= num_classes)
        fail("{}: label {} at index {} out of range (expected 0..{})", what, labels[i], i,
             num_classes - 1);
    return;
  }
  int32_t max_label = 0;
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] < 0)
      fail("{}: label {} at index {} out of range (expected a non-negative class index)", what,
           labels[i], i);
    max_label = std::max(max_label, labels[i]);
  }
  num_classes = std::max<int64_t>(2, int64_t{max_label} + 1);
}

const float* u8_to_unit_table() {
  static const std::array<float, 256> table = [] {
    std::array<float, 256> t{};
    for (int i = 0; i < 256; ++i) t[i] = static_cast<float>(i) / 255.0f;
    return t;
  }();
  return table.data();
}

}  // namespace sq::data_detail
