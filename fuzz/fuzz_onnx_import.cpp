// libFuzzer target: ONNX import (sq::import_onnx_bytes) — protobuf parsing of arbitrary bytes and
// the importer's checks of whatever model they decode to. Seeds: tests/data/*.onnx (fuzz/run.sh).
#include <string>

#include "fuzz_util.h"
#include "sigmaquant/onnx.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  sqfuzz::expect_ok_or_error([&] {
    sq::Graph g = sq::import_onnx_bytes(bytes, "fuzz.onnx");
    // What the importer accepts must be a valid graph.
    sqfuzz::must_succeed("infer_shapes of an imported graph", [&] { g.infer_shapes(); });
  });
  return 0;
}
