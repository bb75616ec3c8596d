// Shared by the libFuzzer targets: the loaders take file paths, so each input is written to an
// in-memory file (memfd) and handed to the public loader by its /proc/self/fd path.
//
// Contract checked by every target: a malformed input throws sq::Error; anything else — a crash,
// another exception (libFuzzer reports it through std::terminate), a sanitizer report, a hang or
// an oversized allocation — is a finding.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>

#include "sigmaquant/error.h"
#include "sigmaquant/graph.h"

namespace sqfuzz {

// A file that lives in memory; rewritten for every input.
class MemFile {
 public:
  explicit MemFile(const char* name) : fd_(::memfd_create(name, 0)) {
    if (fd_ < 0) {
      std::perror("memfd_create");
      std::abort();
    }
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  MemFile(const MemFile&) = delete;
  MemFile& operator=(const MemFile&) = delete;

  const std::string& write(const void* data, size_t size) {
    if (::ftruncate(fd_, 0) != 0) std::abort();
    const char* p = static_cast<const char*>(data);
    size_t done = 0;
    while (done < size) {
      ssize_t w = ::pwrite(fd_, p + done, size - done, static_cast<off_t>(done));
      if (w <= 0) std::abort();
      done += static_cast<size_t>(w);
    }
    return path_;
  }
  const std::string& write(const std::string& bytes) { return write(bytes.data(), bytes.size()); }
  const std::string& path() const { return path_; }

 private:
  int fd_;
  std::string path_;
};

// Runs one loader call; sq::Error is the expected way to reject an input.
template <typename F>
void expect_ok_or_error(F&& load) {
  try {
    load();
  } catch (const sq::Error&) {
  }
}

inline uint32_t be32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | uint32_t{p[3]};
}
inline std::string be32_bytes(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
          static_cast<char>(v)};
}

// A small graph with every operator kind; its weight layers are "conv" (2 output channels) and
// "fc" (2 outputs). Used by the seeds and by the targets that need a graph (bit configs, costs).
inline sq::Graph tiny_convnet() {
  sq::Graph g("convnet", {1, 4, 4}, 2);
  int x = g.conv2d("conv", g.input(), 2, 3, 1, 1, 1, true);
  x = g.batchnorm("bn", x);
  int r = g.relu("relu", x);
  x = g.add("add", r, x);
  x = g.relu6("relu6", x);
  x = g.maxpool("mp", x, 2, 2);
  x = g.avgpool("ap", x, 1, 1);
  x = g.global_avgpool("gap", x);
  g.linear("fc", g.flatten("flat", x), 2, false);
  g.infer_shapes();
  g.init_params(2);
  g.input_mean = {0.5f};
  g.input_std = {0.25f};
  return g;
}

// For checks whose failure is a finding even when it is an sq::Error (e.g. a round trip).
template <typename F>
void must_succeed(const char* what, F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s failed: %s\n", what, e.what());
    std::abort();
  }
}

}  // namespace sqfuzz
