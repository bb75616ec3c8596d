// sigmaquant report — one self-contained HTML page from a run log (and a Pareto file): summary,
// σ and clusters, bits per layer, the Phase 2 trajectory, the Pareto fronts, the layer table.
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "common.h"
#include "sigmaquant/error.h"
#include "sigmaquant/fileutil.h"
#include "sigmaquant/report.h"

namespace sqcli {
namespace {

struct ReportFlags {
  std::string log, pareto, out;
  bool quiet = false;
};

nlohmann::json read_json(const std::string& path, const char* flag) {
  if (!sq::file_exists(path)) sq::fail("{} '{}': no such file", flag, path);
  const std::string text = sq::read_file(path);
  try {
    return sq::parse_json_strict(text, path);
  } catch (const nlohmann::json::exception& e) {
    sq::fail("{}: not valid JSON ({})", path, e.what());
  }
}

void run_report(const ReportFlags& f) {
  const nlohmann::json log = read_json(f.log, "--log");
  sq::validate_run_log(log, f.log);
  nlohmann::json pareto;
  if (!f.pareto.empty()) {
    pareto = read_json(f.pareto, "--pareto");
    sq::validate_pareto(pareto, f.pareto);
  }
  prepare_output(f.out, "--output");
  const std::string html = sq::render_report_html(log, f.pareto.empty() ? nullptr : &pareto);
  sq::write_file_atomic(f.out, html);
  if (!f.quiet)
    fmt::print("wrote {} ({:.1f} KiB)\n", f.out, static_cast<double>(html.size()) / 1024);
}

}  // namespace

void add_report(CLI::App& app) {
  auto f = std::make_shared<ReportFlags>();
  CLI::App* cmd = app.add_subcommand(
      "report", "a self-contained HTML report (inline SVG plots) of a run log and Pareto fronts");
  cmd->add_option("--log", f->log, "run log (JSON, format sigmaquant-run)")->required();
  cmd->add_option("--pareto", f->pareto, "Pareto points (JSON, format sigmaquant-pareto)");
  cmd->add_option("--output,-o", f->out, "the HTML file to write")->required();
  cmd->add_flag("--quiet,-q", f->quiet, "print nothing on success");
  cmd->callback([f] { run_report(*f); });
}

}  // namespace sqcli
