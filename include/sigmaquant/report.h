// The HTML report of a run, and the Pareto-front helpers. Torch-free.
//
// A run log (format "sigmaquant-run", written by the allocation pipeline (sq::run_allocation))
// and optionally a Pareto file (format "sigmaquant-pareto", written by `sigmaquant pareto`)
// become ONE self-contained HTML page: inline CSS and inline SVG plots, no scripts, fonts or
// images from elsewhere; readable on screen and printable. Both schemas are in docs/formats.md.
//
//   nlohmann::json log = nlohmann::json::parse(sq::read_file("runs/r20.run.json"));
//   sq::validate_run_log(log, "runs/r20.run.json");   // errors name this file
//   sq::write_report("runs/r20.html", log);
//
// Sections (each omitted cleanly when its data is absent): summary (accuracy, average bits,
// every budget against its limit, QAT epochs, wall time), settings, σ per layer with the k-means
// clusters, bits per layer (Phase 1 vs final), the Phase 2 trajectory with its changes, the
// Pareto fronts (accuracy vs weight memory, energy and latency) and the per-layer table.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace sq {

// Check a run log / a Pareto file against its schema. On a missing or ill-typed field they throw
// sq::Error naming `where` (the file), the field's path and what was expected, e.g.
//   "runs/x.json: field 'layers[3].bits' must be an integer in 1..32 (got "4")".
// Optional fields may be absent or null.
void validate_run_log(const nlohmann::json& run_log, const std::string& where = "run log");
void validate_pareto(const nlohmann::json& pareto, const std::string& where = "pareto");

// The report page. Validates its inputs first (errors say "run log: …" / "pareto: …"; call the
// validate_* functions first to have them name the files).
std::string render_report_html(const nlohmann::json& run_log,
                               const nlohmann::json* pareto = nullptr);
// render_report_html written to `path` atomically (temp file + rename).
void write_report(const std::string& path, const nlohmann::json& run_log,
                  const nlohmann::json* pareto = nullptr);

// Metrics of a Pareto point that a front can be drawn against.
//   "weight_bytes" | "energy_j" | "latency_s"
// One <svg> plot: accuracy vs `metric`, one series per method, each method's front joined and its
// dominated points drawn open. "" when no point has the metric (e.g. no energy model).
std::string pareto_svg(const nlohmann::json& pareto, const std::string& metric);

// The points as CSV (RFC 4180 quoting), one row a point, in the file's order; columns
//   method,budget,avg_bits,accuracy,weight_bytes,energy_j,latency_s,qat_epochs,seconds,
//   front_weight_bytes,front_energy_j,front_latency_s,seed
// (missing values empty; front_* are 1 for points on their method's front for that metric).
std::string pareto_csv(const nlohmann::json& pareto);

// A copy of `points` (the "points" array of a Pareto file) where every point gets
// "front": true|false — true when no point OF THE SAME METHOD dominates it for `metric`, i.e. has
// metric <= and accuracy >= with at least one strictly better. Points without the metric (absent
// or null) get "front": false and dominate nothing. Throws sq::Error on a bad metric name or
// ill-typed points.
nlohmann::json pareto_front(const nlohmann::json& points, const std::string& metric);

}  // namespace sq
