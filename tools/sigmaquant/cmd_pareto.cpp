// sigmaquant pareto — several allocation methods at several average-weight-bit budgets under one
// target: a table (CSV + JSON) of accuracy against weight memory, energy and latency, and the
// report with the fronts. Each (method, budget) run lives in its own directory, so an interrupted
// sweep continues with --resume and reuses every finished run.
#include <fmt/format.h>

#include <sstream>

#include "common.h"
#include "search_driver.h"
#include "sigmaquant/error.h"
#include "sigmaquant/fileutil.h"
#include "sigmaquant/report.h"
#include "sigmaquant/table.h"
#include "sigmaquant/train.h"

namespace sqcli {
namespace {

struct ParetoCmd {
  SearchSettings s;
  DataFlags data;
  Common common;
  std::string methods = "sigmaquant,uniform,adaptive,hessian";
  std::string budgets = "2.5,3,4";
};

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string part;
  while (std::getline(ss, part, ','))
    if (!part.empty()) out.push_back(part);
  return out;
}

void run_pareto(ParetoCmd& f) {
  sq::configure_runtime(f.common.threads);
  f.s.progress = !f.common.quiet && !f.common.json;
  std::vector<std::string> methods = split_list(f.methods);
  std::vector<double> budgets;
  for (const std::string& b : split_list(f.budgets)) {
    if (b == "target") {  // the target file's own budgets
      budgets.push_back(0);
      continue;
    }
    try {
      size_t used = 0;
      double v = std::stod(b, &used);
      if (used != b.size() || !(v >= 1 && v <= 8)) throw std::invalid_argument(b);
      budgets.push_back(v);
    } catch (const std::exception&) {
      sq::fail("--budgets '{}': expected average weight bits in 1..8 or 'target' (the target's "
               "own budgets), comma-separated (e.g. 2.5,3,4)",
               f.budgets);
    }
  }
  if (methods.empty() || budgets.empty()) sq::fail("--methods and --budgets must not be empty");
  std::string base = f.s.out_dir.empty() ? "runs/pareto" : f.s.out_dir;
  prepare_output(base + "/pareto.json", "--out-dir");
  sq::DataBundle d = load_data(f.data);

  nlohmann::ordered_json points = nlohmann::ordered_json::array();
  nlohmann::ordered_json first_log;
  std::string model_name, target_name;
  double fp32 = 0;
  for (double b : budgets)
    for (const std::string& m : methods) {
      SearchSettings s = f.s;
      s.method = m;
      s.avg_bits = b;
      std::string label = b > 0 ? fmt::format("{} bits", b) : "target budgets";
      s.out_dir = b > 0 ? fmt::format("{}/{}-{}bits", base, m, b) : fmt::format("{}/{}", base, m);
      s.report = true;
      if (s.progress) fmt::print(stderr, "== {} at {} ==\n", m, label);
      nlohmann::ordered_json log = run_search(s, d);
      const auto& fin = log.at("final");
      nlohmann::ordered_json p = {{"method", m},
                                  {"budget", label},
                                  {"avg_bits", fin.at("avg_bits")},
                                  {"accuracy", fin.at("accuracy")},
                                  {"weight_bytes", fin.at("cost").at("weight_bytes")}};
      for (const char* k : {"energy_j", "latency_s"})
        if (fin.at("cost").contains(k)) p[k] = fin.at("cost").at(k);
      p["qat_epochs"] = fin.at("qat_epochs_total");
      p["search_qat_epochs"] = fin.at("search_qat_epochs");
      p["seconds"] = fin.at("seconds_total");
      p["search_seconds"] = fin.at("search_seconds");
      p["run_dir"] = s.out_dir;
      points.push_back(p);
      model_name = log.at("model").at("name");
      target_name = log.at("target").at("name");
      fp32 = log.at("model").at("fp32_accuracy");
      if (first_log.is_null() || (m == "sigmaquant" && first_log.value("method", "") != "sigmaquant"))
        first_log = log;
    }
  nlohmann::ordered_json pareto = {{"format", "sigmaquant-pareto"}, {"version", 1},
                                   {"model", model_name},           {"target", target_name},
                                   {"fp32_accuracy", fp32},         {"points", points}};
  sq::write_file_atomic(base + "/pareto.json", pareto.dump(2) + "\n");
  sq::write_file_atomic(base + "/pareto.csv", sq::pareto_csv(pareto));
  nlohmann::json pj = pareto;
  sq::write_report(base + "/report.html", first_log, &pj);
  if (f.common.json) {
    print_json(pareto);
    return;
  }
  sq::Table t({"budget", "method", "avg bits", "accuracy", "weight KiB", "energy uJ", "latency ms",
               "QAT epochs", "search s", "total s"},
              {sq::Align::Left, sq::Align::Left, sq::Align::Right, sq::Align::Right,
               sq::Align::Right, sq::Align::Right, sq::Align::Right, sq::Align::Right,
               sq::Align::Right, sq::Align::Right});
  for (const auto& p : points)
    t.add({p["budget"].get<std::string>(), p["method"].get<std::string>(),
           fmt::format("{:.2f}", p["avg_bits"].get<double>()),
           fmt::format("{:.2f}%", 100 * p["accuracy"].get<double>()),
           fmt::format("{:.2f}", p["weight_bytes"].get<double>() / 1024),
           p.contains("energy_j") ? fmt::format("{:.3f}", 1e6 * p["energy_j"].get<double>()) : "-",
           p.contains("latency_s") ? fmt::format("{:.3f}", 1e3 * p["latency_s"].get<double>()) : "-",
           fmt::format("{:.2f}", p["qat_epochs"].get<double>()),
           fmt::format("{:.0f}", p["search_seconds"].get<double>()),
           fmt::format("{:.0f}", p["seconds"].get<double>())});
  fmt::print("{} under {} (FP32 {:.2f}%)\n{}", model_name, target_name, 100 * fp32, t.str());
  fmt::print("table: {0}/pareto.csv, {0}/pareto.json; report: {0}/report.html\n", base);
}

}  // namespace

void add_pareto(CLI::App& app) {
  auto f = std::make_shared<ParetoCmd>();
  CLI::App* cmd = app.add_subcommand(
      "pareto", "compare allocation methods across average-bit budgets (table, plots, report)");
  cmd->add_option("--model,-m", f->s.model, "trained FP32 model (.sqg)")->required();
  cmd->add_option("--seed", f->s.seed, "random seed")->capture_default_str();
  cmd->add_option("--methods", f->methods, "comma-separated methods")->capture_default_str();
  cmd->add_option("--budgets", f->budgets,
                  "average weight bits, comma-separated; 'target': the target file's budgets")
      ->capture_default_str();
  cmd->add_option("--out-dir,-o", f->s.out_dir, "output directory (default runs/pareto)");
  add_search_flags(cmd, f->s, false);
  add_data_flags(cmd, f->data);
  add_common_flags(cmd, f->common);
  cmd->callback([f] { run_pareto(*f); });
}

}  // namespace sqcli
