// Saving and loading graphs (.sqg files) — see docs/formats.md for the byte layout.
//
// A .sqg file holds the graph structure and its float32 parameters, optional metadata (JSON) and
// optional named binary blobs (a checkpoint stores its optimizer state there). Loading validates
// the magic, version, checksum, structure and every tensor's dtype and shape against what the
// graph implies, and throws sq::Error naming the file and the offending field. Files are written
// to a temporary name and renamed, so an interrupted save never leaves a truncated file behind.
#pragma once

#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "sigmaquant/graph.h"

namespace sq {

constexpr uint32_t kGraphFormatVersion = 1;

struct GraphFile {
  Graph graph;
  nlohmann::json meta = nlohmann::json::object();  // free-form: training history, options, ...
  std::map<std::string, std::string> blobs;        // named opaque byte strings
};

void save_graph_file(const std::string& path, const GraphFile& file);
// The bytes save_graph_file writes (e.g. to hand a model to another rank); `where` names it in
// errors.
std::string graph_file_bytes(const GraphFile& file, const std::string& where);
GraphFile load_graph_file(const std::string& path);
// The bytes of a .sqg file (e.g. handed over by another rank); `where` names them in errors.
GraphFile parse_graph_file(const std::string& bytes, const std::string& where);

inline void save_graph(const std::string& path, const Graph& g) { save_graph_file(path, {g, {}, {}}); }
inline Graph load_graph(const std::string& path) { return load_graph_file(path).graph; }

// Structure only (no tensors) as JSON, and back (used inside the file and by `info --json`).
nlohmann::json graph_to_json(const Graph& g);
Graph graph_from_json(const nlohmann::json& j, const std::string& where);

}  // namespace sq
