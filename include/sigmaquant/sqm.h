// The .sqm model file (torch-free): what the integer engine runs, and nothing more — the graph's
// topology and input normalization, every activation quantization point, and per weight layer
// its weights bit-packed at each output channel's own width, per-channel scales and biases. No
// float weights. Byte layout in docs/formats.md (".sqm").
//
//   sq::QuantModel qm = sq::load_qmodel("q.sqg");
//   sq::save_sqm("q.sqm", qm.graph, sq::integerize(qm), {{"source", "q.sqg"}});
//   sq::SqmModel m = sq::load_sqm("q.sqm");
//   sq::GraphExecutor ex = sq::GraphExecutor::prepare(m.graph, m.model);
//
// Loading checks the magic, version, section table, per-section and whole-file CRC-32, and that
// the header, the packed weights and the tensors agree with the graph; any mismatch throws
// sq::Error naming the file and what was expected. The int32 biases and the requantization
// constants are derived on load exactly as integerize() derives them (channel_bias), so the file
// stores the float bias (4 bytes, like an int32 one) and no multipliers.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "sigmaquant/graph.h"
#include "sigmaquant/integerize.h"

namespace sq {

// Version 2 is version 1 plus any conv/pool window (graph.h's Window2d: non-square kernels,
// per-axis strides, padding per side, dilation). save_sqm writes version 1 when every window is
// square, undilated and equally padded (so such files stay readable by version-1 loaders) and 2
// otherwise; load_sqm reads both and refuses a version-1 file with a window version 1 cannot hold.
constexpr uint32_t kSqmVersion = 2;
constexpr uint32_t kSqmVersionSquare = 1;

struct SqmModel {
  Graph graph;  // structure and shapes only (no parameters)
  IntModel model;
  nlohmann::json meta = nlohmann::json::object();
};

// Written atomically (write_file_atomic). Throws sq::Error if the integer model does not match
// the graph (a weight that does not fit its channel's bits, a missing point, ...).
void save_sqm(const std::string& path, const Graph& g, const IntModel& im,
              const nlohmann::json& meta = nlohmann::json::object());
SqmModel load_sqm(const std::string& path);
// The same from bytes already in memory (`where` names them in errors; the fuzz target).
SqmModel parse_sqm(const std::string& bytes, const std::string& where);

}  // namespace sq
