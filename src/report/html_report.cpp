// The HTML report: validates a run log (and a Pareto file) into plain structs, then writes one
// self-contained page from them. Schemas: docs/formats.md.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>

#include "cost/json_fields.h"
#include "report/svg.h"
#include "sigmaquant/error.h"
#include "sigmaquant/fileutil.h"
#include "sigmaquant/progress.h"
#include "sigmaquant/report.h"
#include "sigmaquant/stats.h"
#include "sigmaquant/table.h"

namespace sq {
namespace {

using json = nlohmann::json;
using svg::escape;
constexpr double kInf = std::numeric_limits<double>::infinity();

// ---- field access: jsonf's checks, with null taken as absent for optional fields (the writers
// dump NaN as null) ----

bool present(const json& o, const char* key) { return o.contains(key) && !o.at(key).is_null(); }

std::optional<double> opt_num(const json& o, const char* key, const std::string& where,
                              const std::string& path, double lo = -kInf, double hi = kInf) {
  if (!present(o, key)) return std::nullopt;
  return jsonf::opt_number(o, key, where, path, lo, hi);
}
std::optional<int64_t> opt_int(const json& o, const char* key, const std::string& where,
                               const std::string& path, int64_t lo, int64_t hi) {
  if (!present(o, key)) return std::nullopt;
  return jsonf::opt_integer(o, key, where, path, lo, hi);
}
int64_t req_int(const json& o, const char* key, const std::string& where, const std::string& path,
                int64_t lo, int64_t hi) {
  auto v = jsonf::opt_integer(o, key, where, path, lo, hi);
  if (!v)
    fail("{}: missing field '{}' (expected an integer in {}..{})", where, jsonf::join(path, key),
         lo, hi);
  return *v;
}
std::optional<std::string> opt_str(const json& o, const char* key, const std::string& where,
                                   const std::string& path,
                                   const std::vector<std::string>& choices = {}) {
  if (!present(o, key)) return std::nullopt;
  return jsonf::opt_string(o, key, where, path, choices);
}
std::string req_str(const json& o, const char* key, const std::string& where,
                    const std::string& path, const std::vector<std::string>& choices = {}) {
  auto v = jsonf::opt_string(o, key, where, path, choices);
  if (!v) fail("{}: missing field '{}' (expected a string)", where, jsonf::join(path, key));
  return *v;
}
// An optional object / array field: nullptr when absent or null; throws when of another type.
const json* opt_obj(const json& o, const char* key, const std::string& where,
                    const std::string& path) {
  if (!present(o, key)) return nullptr;
  jsonf::require_object(o.at(key), where, jsonf::join(path, key));
  return &o.at(key);
}
const json* opt_arr(const json& o, const char* key, const std::string& where,
                    const std::string& path, const char* of_what) {
  if (!present(o, key)) return nullptr;
  if (!o.at(key).is_array())
    fail("{}: field '{}' must be an array of {} (got {})", where, jsonf::join(path, key), of_what,
         jsonf::brief(o.at(key)));
  return &o.at(key);
}
std::string item(const std::string& path, const char* key, size_t i) {
  return fmt::format("{}[{}]", jsonf::join(path, key), i);
}
void check_format(const json& j, const std::string& where, const char* format, const char* what) {
  jsonf::require_object(j, where, "");
  const std::string f = req_str(j, "format", where, "");
  if (f != format)
    fail("{}: field 'format' is \"{}\" (expected \"{}\": is this {}?)", where, f, format, what);
  if (auto v = opt_int(j, "version", where, "", 0, 1000000); v && *v != 1)
    fail("{}: field 'version' is {} (expected 1; this program reads version 1)", where, *v);
}

// ---- the run log ----

struct Budget {
  std::string metric, key, unit;
  double budget = 0;
  std::optional<double> value;
  std::optional<bool> fits;
};
struct Cost {
  std::optional<double> weight_bytes, energy_j, latency_s, bops;
};
struct Change {
  std::string layer;
  int64_t from = 0, to = 0;
  std::string why;  // optional: the reason Phase 2 gives
};
struct Iter {
  int64_t iter = 0;
  std::string stage;
  std::optional<double> accuracy, avg_bits, qat_epochs, seconds;
  Cost cost;
  std::vector<Budget> budgets;
  std::vector<Change> changes;
};
struct Layer {
  std::string name;
  int64_t weights = 0, bits = 0;
  std::optional<double> sigma, kl, mean_bits;  // mean_bits, pruned: channel-wise layers
  std::optional<int64_t> cluster, phase1_bits, pruned;
  // What the layer holds, for people: "4", or "8 max, mean 3.2, 5 pruned" for a channel-wise one.
  std::string bits_text() const {
    if (!mean_bits) return std::to_string(bits);
    return fmt::format("{} max, mean {:.2f}{}", bits, *mean_bits,
                       pruned && *pruned > 0 ? fmt::format(", {} pruned", *pruned) : "");
  }
};
struct Clusters {
  std::vector<double> centers;
  std::vector<int64_t> bits;
};
struct Final {
  std::optional<double> accuracy, avg_bits, qat_epochs, seconds;
  Cost cost;
  std::vector<Budget> budgets;
  std::optional<std::string> bits_file, model_file;
};
struct RunLog {
  std::string method, model_name, model_path, target_name, cost_model;
  std::optional<double> fp32;
  std::optional<double> fp32_val, accuracy_target;  // validation-set reference, search target
  std::vector<Budget> target_budgets;
  std::vector<std::pair<std::string, std::string>> settings;
  std::optional<Clusters> clusters;
  std::vector<Layer> layers;
  std::vector<Iter> iters;
  std::optional<Final> fin;
};

std::vector<Budget> parse_budgets(const json& o, const std::string& where, const std::string& path,
                                  bool with_values) {
  std::vector<Budget> out;
  const json* a = opt_arr(o, "budgets", where, path, "budget objects");
  if (!a) return out;
  for (size_t i = 0; i < a->size(); ++i) {
    const std::string p = item(path, "budgets", i);
    const json& b = (*a)[i];
    jsonf::require_object(b, where, p);
    Budget r;
    r.metric = opt_str(b, "metric", where, p).value_or("");
    r.key = opt_str(b, "key", where, p).value_or("");
    if (r.metric.empty() && r.key.empty())
      fail("{}: field '{}' needs a 'metric' or a 'key' (a string naming the budget)", where, p);
    if (r.metric.empty()) r.metric = r.key;
    r.budget = jsonf::number(b, "budget", where, p, 0, kInf, true);
    r.unit = opt_str(b, "unit", where, p).value_or("");
    if (with_values) {
      r.value = opt_num(b, "value", where, p, 0);
      if (present(b, "fits")) {
        if (!b.at("fits").is_boolean())
          fail("{}: field '{}' must be true or false (got {})", where, jsonf::join(p, "fits"),
               jsonf::brief(b.at("fits")));
        r.fits = b.at("fits").get<bool>();
      }
    }
    out.push_back(r);
  }
  return out;
}

Cost parse_cost(const json& o, const std::string& where, const std::string& path) {
  Cost c;
  const json* j = opt_obj(o, "cost", where, path);
  if (!j) return c;
  const std::string p = jsonf::join(path, "cost");
  c.weight_bytes = opt_num(*j, "weight_bytes", where, p, 0);
  c.energy_j = opt_num(*j, "energy_j", where, p, 0);
  c.latency_s = opt_num(*j, "latency_s", where, p, 0);
  c.bops = opt_num(*j, "bops", where, p, 0);
  return c;
}

std::string setting_text(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_float()) return fmt::format("{:g}", v.get<double>());
  return v.dump();
}

RunLog parse_run_log(const json& j, const std::string& where) {
  check_format(j, where, "sigmaquant-run", "a run log");
  RunLog r;
  r.method = req_str(j, "method", where, "");

  if (!present(j, "model"))
    fail("{}: missing field 'model' (expected an object with 'name')", where);
  const json& m = *opt_obj(j, "model", where, "");
  r.model_name = req_str(m, "name", where, "model");
  r.model_path = opt_str(m, "path", where, "model").value_or("");
  r.fp32 = opt_num(m, "fp32_accuracy", where, "model", 0, 1);
  r.fp32_val = opt_num(m, "fp32_val_accuracy", where, "model", 0, 1);
  if (const json* st = opt_obj(j, "settings", where, ""))
    if (st->contains("accuracy_target") && (*st)["accuracy_target"].is_number())
      r.accuracy_target = (*st)["accuracy_target"].get<double>();

  if (const json* t = opt_obj(j, "target", where, "")) {
    r.target_name = opt_str(*t, "name", where, "target").value_or("");
    r.cost_model = opt_str(*t, "cost_model", where, "target").value_or("");
    r.target_budgets = parse_budgets(*t, where, "target", false);
  }
  if (const json* s = opt_obj(j, "settings", where, ""))
    for (auto it = s->begin(); it != s->end(); ++it)
      r.settings.emplace_back(it.key(), setting_text(*it));

  if (const json* c = opt_obj(j, "clusters", where, "")) {
    const int64_t k = req_int(*c, "k", where, "clusters", 1, 64);
    Clusters cl;
    const json* centers = opt_arr(*c, "centers", where, "clusters", "numbers");
    if (!centers || centers->size() != static_cast<size_t>(k))
      fail("{}: field 'clusters.centers' must be an array of k = {} numbers", where, k);
    for (size_t i = 0; i < centers->size(); ++i) {
      if (!(*centers)[i].is_number())
        fail("{}: field 'clusters.centers[{}]' must be a number (got {})", where, i,
             jsonf::brief((*centers)[i]));
      cl.centers.push_back((*centers)[i].get<double>());
    }
    if (auto bits = jsonf::opt_int_list(*c, "bits", where, "clusters", 0, 32)) {
      if (bits->size() != static_cast<size_t>(k))
        fail("{}: field 'clusters.bits' must have k = {} entries (got {})", where, k, bits->size());
      cl.bits.assign(bits->begin(), bits->end());
    }
    r.clusters = cl;
  }

  // Absent from the logs written while a run is still going.
  static const json kNone = json::array();
  const json* layers = opt_arr(j, "layers", where, "", "layer objects");
  if (!layers) layers = &kNone;
  for (size_t i = 0; i < layers->size(); ++i) {
    const std::string p = item("", "layers", i);
    const json& l = (*layers)[i];
    jsonf::require_object(l, where, p);
    Layer x;
    x.name = req_str(l, "name", where, p);
    x.weights = req_int(l, "weights", where, p, 0, INT64_MAX);
    x.bits = req_int(l, "bits", where, p, 0, 32);
    x.sigma = opt_num(l, "sigma", where, p, 0);
    x.kl = opt_num(l, "kl", where, p);
    x.phase1_bits = opt_int(l, "phase1_bits", where, p, 0, 32);
    x.mean_bits = opt_num(l, "mean_bits", where, p, 0);
    x.pruned = opt_int(l, "pruned_channels", where, p, 0, INT64_MAX);
    const int64_t kmax = r.clusters ? static_cast<int64_t>(r.clusters->centers.size()) - 1 : 63;
    x.cluster = opt_int(l, "cluster", where, p, 0, kmax);
    r.layers.push_back(x);
  }

  if (const json* its = opt_arr(j, "iterations", where, "", "iteration objects")) {
    for (size_t i = 0; i < its->size(); ++i) {
      const std::string p = item("", "iterations", i);
      const json& o = (*its)[i];
      jsonf::require_object(o, where, p);
      Iter it;
      it.iter = opt_int(o, "iter", where, p, 0, INT64_MAX).value_or(static_cast<int64_t>(i));
      // "phase1", "phase2", "final" (SigmaQuant) or another method's name for its steps.
      it.stage = opt_str(o, "stage", where, p).value_or("");
      it.accuracy = opt_num(o, "accuracy", where, p, 0, 1);
      it.avg_bits = opt_num(o, "avg_bits", where, p, 0, 64);
      it.qat_epochs = opt_num(o, "qat_epochs", where, p, 0);
      it.seconds = opt_num(o, "seconds", where, p, 0);
      it.cost = parse_cost(o, where, p);
      it.budgets = parse_budgets(o, where, p, true);
      if (const json* ch = opt_arr(o, "changes", where, p, "change objects")) {
        for (size_t c = 0; c < ch->size(); ++c) {
          const std::string cp = item(p, "changes", c);
          jsonf::require_object((*ch)[c], where, cp);
          it.changes.push_back({req_str((*ch)[c], "layer", where, cp),
                                req_int((*ch)[c], "from", where, cp, 0, 32),
                                req_int((*ch)[c], "to", where, cp, 0, 32),
                                opt_str((*ch)[c], "why", where, cp).value_or("")});
        }
      }
      r.iters.push_back(it);
    }
  }

  if (const json* f = opt_obj(j, "final", where, "")) {
    Final x;
    x.accuracy = opt_num(*f, "accuracy", where, "final", 0, 1);
    x.avg_bits = opt_num(*f, "avg_bits", where, "final", 0, 64);
    x.qat_epochs = opt_num(*f, "qat_epochs_total", where, "final", 0);
    x.seconds = opt_num(*f, "seconds_total", where, "final", 0);
    x.cost = parse_cost(*f, where, "final");
    x.budgets = parse_budgets(*f, where, "final", true);
    x.bits_file = opt_str(*f, "bits_file", where, "final");
    x.model_file = opt_str(*f, "model_file", where, "final");
    r.fin = x;
  }
  return r;
}

// ---- the Pareto file ----

struct Point {
  std::string method, budget;
  double accuracy = 0;
  std::optional<double> avg_bits, weight_bytes, energy_j, latency_s, qat_epochs, seconds, seed;
  // After aggregate(): the accuracies of the seeds this point is the mean of.
  std::vector<double> accuracies;
  std::optional<double> metric(const std::string& m) const {
    return m == "weight_bytes" ? weight_bytes : m == "energy_j" ? energy_j : latency_s;
  }
};
// A run whose method proved that no assignment of its widths meets the budget.
struct Refusal {
  std::string method, budget, reason;
  std::optional<double> seed;
};
struct Pareto {
  std::string model, target;
  std::optional<double> fp32;
  std::vector<Point> points;
  std::vector<Refusal> refused;
};

Point parse_point(const json& o, const std::string& where, const std::string& p) {
  jsonf::require_object(o, where, p);
  Point x;
  x.method = req_str(o, "method", where, p);
  if (present(o, "budget")) x.budget = setting_text(o.at("budget"));
  x.accuracy = jsonf::number(o, "accuracy", where, p, 0, 1);
  x.avg_bits = opt_num(o, "avg_bits", where, p, 0, 64);
  x.weight_bytes = opt_num(o, "weight_bytes", where, p, 0);
  x.energy_j = opt_num(o, "energy_j", where, p, 0);
  x.latency_s = opt_num(o, "latency_s", where, p, 0);
  x.qat_epochs = opt_num(o, "qat_epochs", where, p, 0);
  x.seconds = opt_num(o, "seconds", where, p, 0);
  x.seed = opt_num(o, "seed", where, p, 0);
  return x;
}

std::vector<Point> parse_points(const json& points, const std::string& where,
                                const std::string& path) {
  if (!points.is_array())
    fail("{}: field '{}' must be an array of point objects (got {})", where, path,
         jsonf::brief(points));
  std::vector<Point> out;
  for (size_t i = 0; i < points.size(); ++i)
    out.push_back(parse_point(points[i], where, fmt::format("{}[{}]", path, i)));
  return out;
}

Pareto parse_pareto(const json& j, const std::string& where) {
  check_format(j, where, "sigmaquant-pareto", "a Pareto file");
  Pareto p;
  p.model = opt_str(j, "model", where, "").value_or("");
  p.target = opt_str(j, "target", where, "").value_or("");
  p.fp32 = opt_num(j, "fp32_accuracy", where, "", 0, 1);
  if (!present(j, "points"))
    fail("{}: missing field 'points' (expected an array of point objects)", where);
  p.points = parse_points(j.at("points"), where, "points");
  if (present(j, "refused")) {
    const json& r = j.at("refused");
    if (!r.is_array())
      fail("{}: field 'refused' must be an array of {{method, budget, reason}} objects (got {})",
           where, jsonf::brief(r));
    for (size_t i = 0; i < r.size(); ++i) {
      const std::string path = fmt::format("refused[{}]", i);
      jsonf::require_object(r[i], where, path);
      Refusal x;
      x.method = req_str(r[i], "method", where, path);
      if (present(r[i], "budget")) x.budget = setting_text(r[i].at("budget"));
      x.reason = req_str(r[i], "reason", where, path);
      x.seed = opt_num(r[i], "seed", where, path, 0);
      p.refused.push_back(x);
    }
  }
  return p;
}

// One point per (method, budget): the mean over its seeds (points without a budget stay alone).
Pareto aggregate(const Pareto& pa) {
  Pareto out = pa;
  out.points.clear();
  std::vector<std::vector<const Point*>> groups;
  for (const Point& p : pa.points) {
    bool placed = false;
    for (auto& g : groups)
      if (!p.budget.empty() && g[0]->method == p.method && g[0]->budget == p.budget) {
        g.push_back(&p);
        placed = true;
        break;
      }
    if (!placed) groups.push_back({&p});
  }
  for (const auto& g : groups) {
    Point m = *g[0];
    m.accuracies.clear();
    auto mean_of = [&](std::optional<double> Point::*f) -> std::optional<double> {
      double s = 0;
      int n = 0;
      for (const Point* q : g)
        if (q->*f) s += *(q->*f), ++n;
      return n ? std::optional<double>(s / n) : std::nullopt;
    };
    for (std::optional<double> Point::*f :
         {&Point::avg_bits, &Point::weight_bytes, &Point::energy_j, &Point::latency_s,
          &Point::qat_epochs, &Point::seconds})
      m.*f = mean_of(f);
    for (const Point* q : g) m.accuracies.push_back(q->accuracy);
    m.accuracy = mean_std(m.accuracies).mean;
    m.seed.reset();
    out.points.push_back(m);
  }
  return out;
}
bool has_seeds(const Pareto& agg) {
  for (const Point& p : agg.points)
    if (p.accuracies.size() > 1) return true;
  return false;
}

void check_metric(const std::string& metric) {
  if (metric != "weight_bytes" && metric != "energy_j" && metric != "latency_s")
    fail("Pareto metric \"{}\": expected \"weight_bytes\", \"energy_j\" or \"latency_s\"", metric);
}

// front[i]: no point of the same method has metric <= and accuracy >=, one of them strictly.
std::vector<bool> front_flags(const std::vector<Point>& pts, const std::string& metric) {
  std::vector<bool> front(pts.size(), false);
  for (size_t i = 0; i < pts.size(); ++i) {
    auto mi = pts[i].metric(metric);
    if (!mi) continue;
    bool dominated = false;
    for (size_t k = 0; k < pts.size() && !dominated; ++k) {
      auto mk = pts[k].metric(metric);
      if (k == i || !mk || pts[k].method != pts[i].method) continue;
      dominated = *mk <= *mi && pts[k].accuracy >= pts[i].accuracy &&
                  (*mk < *mi || pts[k].accuracy > pts[i].accuracy);
    }
    front[i] = !dominated;
  }
  return front;
}

// ---- formatting ----

std::string pct(double a) { return fmt::format("{:.2f} %", 100 * a); }
std::string fmt_bytes(double b) {
  if (b < 1024) return fmt::format("{:.0f} B", b);
  if (b < 1024.0 * 1024) return fmt::format("{:.2f} KiB", b / 1024);
  return fmt::format("{:.2f} MiB", b / (1024.0 * 1024));
}
// 3 significant digits with an SI prefix: 1.23e-5 J -> "12.3 µJ".
std::string fmt_si(double v, const std::string& unit) {
  if (v == 0) return "0 " + unit;
  static const std::pair<double, const char*> kPrefixes[] = {
      {1e9, "G"},  {1e6, "M"},       {1e3, "k"},  {1, ""},
      {1e-3, "m"}, {1e-6, "\u00b5"}, {1e-9, "n"}, {1e-12, "p"}};
  for (const auto& [f, p] : kPrefixes)
    if (std::fabs(v) >= f * 0.9995) return fmt::format("{:.3g} {}{}", v / f, p, unit);
  return fmt::format("{:.3g} {}", v, unit);
}
std::string fmt_value(double v, const std::string& unit) {
  if (unit == "B") return fmt_bytes(v);
  if (unit == "J" || unit == "s") return fmt_si(v, unit);
  if (unit.empty()) return v >= 1e4 ? fmt_si(v, "") : fmt::format("{:g}", v);
  return fmt::format("{:g} {}", v, unit);
}
std::string opt_text(const std::optional<double>& v, const std::string& unit) {
  return v ? fmt_value(*v, unit) : "\u2014";
}

// A display unit for an axis: values are divided by `scale`.
struct DisplayUnit {
  double scale;
  std::string name;
};
DisplayUnit display_unit(const std::string& metric, double max) {
  if (metric == "weight_bytes") {
    if (max >= 1024.0 * 1024 * 2) return {1024.0 * 1024, "MiB"};
    if (max >= 2048) return {1024.0, "KiB"};
    return {1, "B"};
  }
  const std::string u = metric == "energy_j" ? "J" : "s";
  static const std::pair<double, const char*> kPrefixes[] = {
      {1, ""}, {1e-3, "m"}, {1e-6, "\u00b5"}, {1e-9, "n"}, {1e-12, "p"}};
  for (const auto& [f, p] : kPrefixes)
    if (max >= f) return {f, std::string(p) + u};
  return {1e-12, "p" + u};
}
std::string metric_title(const std::string& m) {
  return m == "weight_bytes" ? "weight memory"
         : m == "energy_j"   ? "energy per inference"
                             : "latency per inference";
}

// ---- HTML pieces ----

struct Html {
  std::string s;
  Html& operator<<(const std::string& t) {
    s += t;
    return *this;
  }
};
std::string td(const std::string& text, const char* cls = nullptr) {
  return cls ? fmt::format("<td class=\"{}\">{}</td>", cls, escape(text))
             : "<td>" + escape(text) + "</td>";
}
std::string th(const std::string& text) { return "<th>" + escape(text) + "</th>"; }

const char* kCss = R"(
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
  color: #222; background: #fff; max-width: 1000px; margin: 0 auto; padding: 16px 24px 48px;
  line-height: 1.45; }
h1 { font-size: 1.6em; margin: 0.4em 0 0.1em; }
h2 { font-size: 1.2em; margin: 1.6em 0 0.5em; padding-bottom: 0.2em; border-bottom: 1px solid #ddd; }
p.sub { color: #555; margin: 0 0 1em; }
p.note { color: #555; font-size: 0.92em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.92em; }
th, td { padding: 3px 10px; border-bottom: 1px solid #e6e6e6; text-align: left; vertical-align: top; }
th { background: #f4f5f7; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
table.kv th { background: none; font-weight: 600; width: 14em; }
.ok { color: #1a7f37; font-weight: 600; }
.bad { color: #c62828; font-weight: 600; }
tr.changed td { background: #fff7e0; }
svg.plot { max-width: 100%; height: auto; display: block; margin: 0.5em 0 1em; }
footer { margin-top: 3em; color: #888; font-size: 0.85em; }
@media print {
  body { max-width: none; padding: 0; font-size: 10pt; }
  section, svg.plot, table { break-inside: avoid; page-break-inside: avoid; }
  h2 { break-after: avoid; page-break-after: avoid; }
}
)";

std::string budget_rows(const std::vector<Budget>& budgets) {
  std::string o;
  for (const auto& b : budgets) {
    const bool have = b.value.has_value();
    const bool fits = b.fits ? *b.fits : have && *b.value <= b.budget;
    o += "<tr>" + td(b.metric) + td(have ? fmt_value(*b.value, b.unit) : "\u2014", "num") +
         td(fmt_value(b.budget, b.unit), "num") +
         td(have ? fmt::format("{:.1f} %", 100 * *b.value / b.budget) : "\u2014", "num");
    if (have || b.fits)
      o += fits ? "<td class=\"ok\">\u2713 fits</td>" : "<td class=\"bad\">\u2717 exceeds</td>";
    else
      o += td("\u2014");
    o += "</tr>\n";
  }
  return o;
}

void summary_section(Html& h, const RunLog& r) {
  // The final record, else the last iteration (a run still going, or one that stopped early).
  std::optional<double> acc, avg_bits, epochs, seconds;
  Cost cost;
  std::vector<Budget> budgets = r.target_budgets;
  std::string note;
  if (r.fin) {
    acc = r.fin->accuracy, avg_bits = r.fin->avg_bits, cost = r.fin->cost;
    epochs = r.fin->qat_epochs, seconds = r.fin->seconds;
    if (!r.fin->budgets.empty()) budgets = r.fin->budgets;
  } else if (!r.iters.empty()) {
    const Iter& last = r.iters.back();
    acc = last.accuracy, avg_bits = last.avg_bits, cost = last.cost;
    if (!last.budgets.empty()) budgets = last.budgets;
    double e = 0, s = 0;
    bool he = false, hs = false;
    for (const auto& it : r.iters) {
      if (it.qat_epochs) e += *it.qat_epochs, he = true;
      if (it.seconds) s += *it.seconds, hs = true;
    }
    if (he) epochs = e;
    if (hs) seconds = s;
    note = "No final record in this log: the figures are those of the last iteration.";
  }
  if (!avg_bits && !r.layers.empty()) {  // weighted by the layers' weights, as the allocators do
    double wb = 0, w = 0;
    for (const auto& l : r.layers)
      wb += static_cast<double>(l.weights) * static_cast<double>(l.bits),
          w += static_cast<double>(l.weights);
    if (w > 0) avg_bits = wb / w;
  }

  h << "<section id=\"summary\">\n<h2>Summary</h2>\n";
  if (!note.empty()) h << "<p class=\"note\">" << escape(note) << "</p>\n";
  h << "<table class=\"kv\">\n";
  auto kv = [&](const std::string& k, const std::string& v) {
    h << "<tr>" << th(k) << td(v) << "</tr>\n";
  };
  kv("FP32 accuracy", r.fp32 ? pct(*r.fp32) : "\u2014");
  std::string fa = acc ? pct(*acc) : "\u2014";
  // Iterations may carry a validation accuracy: compare with FP32 only the final (test) one.
  if (acc && r.fp32 && r.fin) fa += fmt::format(" ({:+.2f} pp vs FP32)", 100 * (*acc - *r.fp32));
  kv(r.fin ? "final accuracy" : "accuracy (last iteration)", fa);
  kv("average weight bits", avg_bits ? fmt::format("{:.2f}", *avg_bits) : "\u2014");
  if (cost.weight_bytes) kv("weight memory", fmt_bytes(*cost.weight_bytes));
  if (cost.energy_j) kv("energy per inference", fmt_si(*cost.energy_j, "J"));
  if (cost.latency_s) kv("latency per inference", fmt_si(*cost.latency_s, "s"));
  if (cost.bops) kv("BOPs", fmt_si(*cost.bops, ""));
  kv("QAT epochs", epochs ? fmt::format("{:g}", *epochs) : "\u2014");
  kv("wall time", seconds ? format_duration(*seconds) : "\u2014");
  if (!r.model_path.empty()) kv("model", r.model_path);
  if (r.fin && r.fin->bits_file) kv("bit assignment", *r.fin->bits_file);
  if (r.fin && r.fin->model_file) kv("quantized model", *r.fin->model_file);
  h << "</table>\n";
  if (!budgets.empty()) {
    h << "<h3>Budgets</h3>\n<table id=\"budgets\">\n<tr>" << th("budget")
      << "<th class=\"num\">value</th><th class=\"num\">limit</th><th class=\"num\">used</th>"
      << th("verdict") << "</tr>\n"
      << budget_rows(budgets) << "</table>\n";
  }
  h << "</section>\n";
}

void settings_section(Html& h, const RunLog& r) {
  if (r.settings.empty()) return;
  h << "<section id=\"settings\">\n<h2>Settings</h2>\n<table class=\"kv\">\n";
  for (const auto& [k, v] : r.settings) h << "<tr>" << th(k) << td(v) << "</tr>\n";
  h << "</table>\n</section>\n";
}

std::vector<std::string> layer_names(const RunLog& r) {
  std::vector<std::string> n;
  for (const auto& l : r.layers) n.push_back(l.name);
  return n;
}

void sigma_section(Html& h, const RunLog& r) {
  bool any = false;
  for (const auto& l : r.layers) any = any || (l.sigma && *l.sigma > 0);
  if (!any) return;
  svg::Plot p;
  p.title = r.clusters ? "Weight \u03c3 per layer, coloured by k-means cluster"
                       : "Weight \u03c3 per layer";
  p.x.categories = layer_names(r);
  p.y.log = true;
  p.y.label = "\u03c3 of the weights (log scale)";
  const size_t k = r.clusters ? r.clusters->centers.size() : 0;
  std::vector<svg::Series> series(k + 1);
  for (size_t c = 0; c < k; ++c) {
    series[c].name = fmt::format("cluster {}: centre {:.3g}", c, r.clusters->centers[c]);
    if (!r.clusters->bits.empty()) series[c].name += fmt::format(", {} bits", r.clusters->bits[c]);
    series[c].color = svg::color(c);
    p.hlines.push_back({r.clusters->centers[c], fmt::format("c{}", c), svg::color(c), true});
  }
  series[k].name = k ? "no cluster" : "\u03c3";
  series[k].color = k ? "#777" : svg::color(0);
  for (size_t i = 0; i < r.layers.size(); ++i) {
    const Layer& l = r.layers[i];
    if (!l.sigma) continue;
    const size_t c = k && l.cluster ? static_cast<size_t>(*l.cluster) : k;
    series[c].x.push_back(static_cast<double>(i));
    series[c].y.push_back(*l.sigma);
    series[c].tooltips.push_back(fmt::format("{}: \u03c3 = {:.4g}", l.name, *l.sigma));
  }
  for (auto& s : series)
    if (!s.x.empty()) p.series.push_back(std::move(s));
  h << "<section id=\"sigma\">\n<h2>\u03c3 per layer</h2>\n";
  if (k)
    h << "<p class=\"note\">Phase 1 clusters the layers by the standard deviation of their "
         "weights (adaptive k-means, k = "
      << std::to_string(k) << "); dashed lines are the cluster centres.</p>\n";
  h << svg::render(p) << "</section>\n";
}

void bits_section(Html& h, const RunLog& r) {
  if (r.layers.empty()) return;
  bool any_p1 = false;
  for (const auto& l : r.layers) any_p1 = any_p1 || l.phase1_bits.has_value();
  svg::Plot p;
  p.title = any_p1 ? "Weight bits per layer: Phase 1 and final" : "Weight bits per layer";
  p.x.categories = layer_names(r);
  p.y.label = "weight bits";
  p.y.integer = true;
  p.y.include_zero = true;
  svg::Series p1 = svg::series("Phase 1", svg::color(0)), fin = svg::series("final", svg::color(1));
  p1.bars = fin.bars = true;
  for (size_t i = 0; i < r.layers.size(); ++i) {
    const Layer& l = r.layers[i];
    if (l.phase1_bits) {
      p1.x.push_back(static_cast<double>(i));
      p1.y.push_back(static_cast<double>(*l.phase1_bits));
      p1.tooltips.push_back(fmt::format("{}: {} bits after Phase 1", l.name, *l.phase1_bits));
    }
    fin.x.push_back(static_cast<double>(i));
    fin.y.push_back(l.mean_bits ? *l.mean_bits : static_cast<double>(l.bits));
    fin.tooltips.push_back(fmt::format("{}: {} bits", l.name, l.bits_text()));
  }
  if (any_p1) p.series.push_back(p1);
  p.series.push_back(fin);
  h << "<section id=\"bits\">\n<h2>Bits per layer</h2>\n" << svg::render(p) << "</section>\n";
}

void trajectory_section(Html& h, const RunLog& r) {
  if (r.iters.empty()) return;
  h << "<section id=\"trajectory\">\n<h2>Phase 2 trajectory</h2>\n";
  auto xs = [&](auto pick) {
    svg::Series s;
    for (const auto& it : r.iters)
      if (auto v = pick(it)) {
        s.x.push_back(static_cast<double>(it.iter));
        s.y.push_back(*v);
        s.tooltips.push_back(fmt::format("iteration {} ({}): {:.4g}", it.iter, it.stage, *v));
      }
    s.line = true;
    return s;
  };
  auto plot = [](const char* title, const char* ylabel) {
    svg::Plot p;
    p.title = title;
    p.x.label = "iteration";
    p.x.integer = true;
    p.y.label = ylabel;
    return p;
  };
  svg::Series acc = xs([](const Iter& it) -> std::optional<double> {
    return it.accuracy ? std::optional<double>(100 * *it.accuracy) : std::nullopt;
  });
  if (!acc.x.empty()) {
    // The allocators may record a validation accuracy here (docs/formats.md).
    svg::Plot p = plot("Accuracy per iteration", "accuracy (%)");
    acc.name = "accuracy";
    acc.color = svg::color(0);
    p.series.push_back(acc);
    // Iterations are measured on the validation images when the log says so: compare them with
    // FP32 on the same images.
    if (r.fp32_val)
      p.hlines.push_back({100 * *r.fp32_val,
                          fmt::format("FP32 {:.2f} % (validation)", 100 * *r.fp32_val), "#555",
                          true});
    else if (r.fp32)
      p.hlines.push_back(
          {100 * *r.fp32, fmt::format("FP32 {:.2f} %", 100 * *r.fp32), "#555", true});
    if (r.accuracy_target && *r.accuracy_target > 0 && *r.accuracy_target <= 1)
      p.hlines.push_back({100 * *r.accuracy_target,
                          fmt::format("target {:.2f} %", 100 * *r.accuracy_target), "#c0392b",
                          true});
    h << svg::render(p);
  }
  svg::Series bits = xs([](const Iter& it) { return it.avg_bits; });
  if (!bits.x.empty()) {
    svg::Plot p = plot("Average weight bits per iteration", "average weight bits");
    bits.name = "average bits";
    bits.color = svg::color(1);
    p.series.push_back(bits);
    h << svg::render(p);
  }
  // Budget use: value / budget per budget, in order of first appearance.
  std::vector<std::string> keys;
  for (const auto& it : r.iters)
    for (const auto& b : it.budgets)
      if (b.value && std::find(keys.begin(), keys.end(), b.metric) == keys.end())
        keys.push_back(b.metric);
  if (!keys.empty()) {
    svg::Plot p = plot("Budget use per iteration (value / limit)", "budget used (%)");
    for (size_t k = 0; k < keys.size(); ++k) {
      svg::Series s = xs([&](const Iter& it) -> std::optional<double> {
        for (const auto& b : it.budgets)
          if (b.metric == keys[k] && b.value) return 100 * *b.value / b.budget;
        return std::nullopt;
      });
      s.name = keys[k];
      s.color = svg::color(k + 2);
      p.series.push_back(s);
    }
    p.hlines.push_back({100, "limit", "#c62828", true});
    h << svg::render(p);
  }
  // The iterations and their changes.
  h << "<table id=\"iterations\">\n<tr>" << th("iter") << th("stage")
    << "<th class=\"num\">accuracy</th><th class=\"num\">avg bits</th>" << th("budget use")
    << th("changes") << "<th class=\"num\">QAT epochs</th><th class=\"num\">time</th></tr>\n";
  for (const auto& it : r.iters) {
    std::string use, changes;
    for (const auto& b : it.budgets)
      if (b.value)
        use += (use.empty() ? "" : ", ") +
               fmt::format("{} {:.0f} %{}", b.metric, 100 * *b.value / b.budget,
                           (b.fits ? *b.fits : *b.value <= b.budget) ? "" : " \u2717");
    // Already HTML: each change a span whose tooltip is its reason.
    for (const auto& c : it.changes)
      changes += std::string(changes.empty() ? "" : ", ") +
                 (c.why.empty() ? "<span>" : "<span title=\"" + escape(c.why) + "\">") +
                 escape(fmt::format("{} {}\u2192{}", c.layer, c.from, c.to)) + "</span>";
    h << "<tr>" << td(std::to_string(it.iter), "num") << td(it.stage.empty() ? "\u2014" : it.stage)
      << td(it.accuracy ? pct(*it.accuracy) : "\u2014", "num")
      << td(it.avg_bits ? fmt::format("{:.2f}", *it.avg_bits) : "\u2014", "num")
      << td(use.empty() ? "\u2014" : use) << "<td>" << (changes.empty() ? "\u2014" : changes)
      << "</td>" << td(it.qat_epochs ? fmt::format("{:g}", *it.qat_epochs) : "\u2014", "num")
      << td(it.seconds ? format_duration(*it.seconds) : "\u2014", "num") << "</tr>\n";
  }
  h << "</table>\n</section>\n";
}

// `pa`: aggregated (one point per method and budget, see aggregate()).
std::string pareto_plot(const Pareto& pa, const std::string& metric) {
  double max = 0;
  bool any = false;
  for (const auto& pt : pa.points)
    if (auto v = pt.metric(metric)) max = std::max(max, *v), any = true;
  if (!any) return "";
  const DisplayUnit u = display_unit(metric, max);
  const std::vector<bool> front = front_flags(pa.points, metric);
  std::vector<std::string> methods;
  for (const auto& pt : pa.points)
    if (std::find(methods.begin(), methods.end(), pt.method) == methods.end())
      methods.push_back(pt.method);
  svg::Plot p;
  p.title = "Accuracy vs " + metric_title(metric);
  p.x.label = metric_title(metric) + " (" + u.name + ")";
  p.y.label = "test accuracy (%)";
  for (size_t m = 0; m < methods.size(); ++m) {
    svg::Series pts = svg::series(methods[m], svg::color(m)),
                line = svg::series(methods[m] + " front", svg::color(m));
    line.line = true, line.markers = false, line.in_legend = false;
    std::vector<std::pair<double, double>> fr;
    for (size_t i = 0; i < pa.points.size(); ++i) {
      const Point& pt = pa.points[i];
      auto v = pt.metric(metric);
      if (pt.method != methods[m] || !v) continue;
      pts.x.push_back(*v / u.scale);
      pts.y.push_back(100 * pt.accuracy);
      const MeanStd acc = mean_std(pt.accuracies);
      pts.yerr.push_back(100 * acc.std);
      pts.hollow.push_back(!front[i]);
      pts.tooltips.push_back(fmt::format(
          "{}{}: {}, {}{}", pt.method, pt.budget.empty() ? "" : " (" + pt.budget + ")",
          acc.n > 1
              ? fmt::format("{:.2f} \u00b1 {:.2f} % (n = {})", 100 * acc.mean, 100 * acc.std, acc.n)
              : fmt::format("{:.2f} %", 100 * pt.accuracy),
          fmt_value(*v, metric == "weight_bytes" ? "B"
                        : metric == "energy_j"   ? "J"
                                                 : "s"),
          front[i] ? "" : ", dominated"));
      if (front[i]) fr.emplace_back(*v / u.scale, 100 * pt.accuracy);
    }
    std::sort(fr.begin(), fr.end());
    for (const auto& [x, y] : fr) line.x.push_back(x), line.y.push_back(y);
    if (pts.x.empty()) continue;  // this method has no figure for the metric
    if (fr.size() > 1) p.series.push_back(line);
    p.series.push_back(pts);
  }
  if (pa.fp32)
    p.hlines.push_back(
        {100 * *pa.fp32, fmt::format("FP32 {:.2f} %", 100 * *pa.fp32), "#555", true});
  return svg::render(p);
}

// The runs that refused their budget, each with the method's reason.
void refused_list(Html& h, const Pareto& pa) {
  if (pa.refused.empty()) return;
  h << "<h3>Refused</h3>\n<p class=\"note\">These methods proved that no assignment of their "
       "widths meets the budget; they have no point above.</p>\n<ul id=\"pareto-refused\">\n";
  for (const Refusal& r : pa.refused)
    h << "<li><b>" << escape(r.method) << "</b> at " << escape(r.budget.empty() ? "?" : r.budget)
      << (r.seed ? fmt::format(", seed {:g}", *r.seed) : std::string()) << ": " << escape(r.reason)
      << "</li>\n";
  h << "</ul>\n";
}

void pareto_section(Html& h, const Pareto& raw) {
  if (raw.points.empty()) return;
  const Pareto pa = aggregate(raw);
  const bool seeds = has_seeds(pa);
  h << "<section id=\"pareto\">\n<h2>Pareto fronts</h2>\n<p class=\"note\">Each method's "
       "non-dominated points (lower cost and higher accuracy) are joined; open markers are "
       "dominated points.";
  if (seeds)
    h << " Points are means over the seeds of each method and budget; bars are \u00b1 one "
         "standard deviation; p is Welch's t-test against the budget's most accurate method "
         "(* : p &lt; 0.05).";
  if (!pa.model.empty() || !pa.target.empty())
    h << " Model " << escape(pa.model.empty() ? "?" : pa.model) << ", target "
      << escape(pa.target.empty() ? "?" : pa.target) << ".";
  h << "</p>\n";
  for (const char* m : {"weight_bytes", "energy_j", "latency_s"}) h << pareto_plot(pa, m);
  const std::vector<bool> fw = front_flags(pa.points, "weight_bytes");
  h << "<table id=\"pareto-points\">\n<tr>" << th("method") << th("budget")
    << (seeds ? "<th class=\"num\">seeds</th>" : "")
    << "<th class=\"num\">avg bits</th><th class=\"num\">accuracy</th>"
    << (seeds ? "<th class=\"num\">p vs best</th>" : "")
    << "<th class=\"num\">weight "
       "memory</th><th class=\"num\">energy</th><th class=\"num\">latency</th><th "
       "class=\"num\">QAT epochs</th><th class=\"num\">time</th>"
    << th("front (memory)") << "</tr>\n";
  for (size_t i = 0; i < pa.points.size(); ++i) {
    const Point& pt = pa.points[i];
    std::string acc = pct(pt.accuracy), p = "\u2014";
    if (seeds) {
      const MeanStd m = mean_std(pt.accuracies);
      if (m.n > 1) acc = fmt::format("{:.2f} \u00b1 {:.2f} %", 100 * m.mean, 100 * m.std);
      const Point* best = nullptr;
      for (const Point& q : pa.points)
        if (q.budget == pt.budget && (!best || q.accuracy > best->accuracy)) best = &q;
      if (best && best != &pt && !pt.budget.empty()) {
        const WelchTest w = welch_t_test(pt.accuracies, best->accuracies);
        if (w.defined) p = fmt::format("{:.3f}{}", w.p, w.p < 0.05 ? " *" : "");
      } else if (best == &pt) {
        p = "best";
      }
    }
    h << "<tr>" << td(pt.method) << td(pt.budget.empty() ? "\u2014" : pt.budget)
      << (seeds ? td(std::to_string(pt.accuracies.size()), "num") : "")
      << td(pt.avg_bits ? fmt::format("{:.2f}", *pt.avg_bits) : "\u2014", "num") << td(acc, "num")
      << (seeds ? td(p, "num") : "") << td(opt_text(pt.weight_bytes, "B"), "num")
      << td(opt_text(pt.energy_j, "J"), "num") << td(opt_text(pt.latency_s, "s"), "num")
      << td(pt.qat_epochs ? fmt::format("{:g}", *pt.qat_epochs) : "\u2014", "num")
      << td(pt.seconds ? format_duration(*pt.seconds) : "\u2014", "num")
      << td(pt.weight_bytes ? (fw[i] ? "\u2713" : "") : "\u2014") << "</tr>\n";
  }
  h << "</table>\n";
  refused_list(h, pa);
  h << "</section>\n";
}

void layers_section(Html& h, const RunLog& r) {
  if (r.layers.empty()) return;
  bool sigma = false, cluster = false, p1 = false, kl = false;
  for (const auto& l : r.layers) {
    sigma = sigma || l.sigma, cluster = cluster || l.cluster, p1 = p1 || l.phase1_bits,
    kl = kl || l.kl;
  }
  h << "<section id=\"layers\">\n<h2>Layers</h2>\n<table id=\"layer-table\">\n<tr>"
    << "<th class=\"num\">#</th>" << th("layer") << "<th class=\"num\">weights</th>";
  if (sigma) h << "<th class=\"num\">\u03c3</th>";
  if (cluster) h << "<th class=\"num\">cluster</th>";
  if (p1) h << "<th class=\"num\">Phase 1 bits</th>";
  h << "<th class=\"num\">bits</th>";
  if (kl) h << "<th class=\"num\">KL</th>";
  h << "</tr>\n";
  for (size_t i = 0; i < r.layers.size(); ++i) {
    const Layer& l = r.layers[i];
    const bool changed = l.phase1_bits && *l.phase1_bits != l.bits;
    h << (changed ? "<tr class=\"changed\">" : "<tr>") << td(std::to_string(i), "num") << td(l.name)
      << td(thousands(l.weights), "num");
    if (sigma) h << td(l.sigma ? fmt::format("{:.4g}", *l.sigma) : "\u2014", "num");
    if (cluster) h << td(l.cluster ? std::to_string(*l.cluster) : "\u2014", "num");
    if (p1) h << td(l.phase1_bits ? std::to_string(*l.phase1_bits) : "\u2014", "num");
    h << td(l.bits_text(), "num");
    if (kl) h << td(l.kl ? fmt::format("{:.3g}", *l.kl) : "\u2014", "num");
    h << "</tr>\n";
  }
  h << "</table>\n";
  if (p1) h << "<p class=\"note\">Highlighted rows: Phase 2 changed the layer's bits.</p>\n";
  h << "</section>\n";
}

}  // namespace

void validate_run_log(const nlohmann::json& run_log, const std::string& where) {
  parse_run_log(run_log, where);
}
void validate_pareto(const nlohmann::json& pareto, const std::string& where) {
  parse_pareto(pareto, where);
}

std::string render_report_html(const nlohmann::json& run_log, const nlohmann::json* pareto) {
  const RunLog r = parse_run_log(run_log, "run log");
  std::optional<Pareto> pa;
  if (pareto) pa = parse_pareto(*pareto, "pareto");

  const std::string target = r.target_name.empty() ? r.cost_model : r.target_name;
  const std::string title =
      fmt::format("SigmaQuant report: {}{}", r.model_name, target.empty() ? "" : " on " + target);
  Html h;
  h << "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
    << "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
    << "<title>" << escape(title + " (" + r.method + ")") << "</title>\n<style>" << kCss
    << "</style>\n</head>\n<body>\n<header>\n<h1>" << escape(title) << "</h1>\n<p class=\"sub\">"
    << "method <b>" << escape(r.method) << "</b>";
  if (!r.cost_model.empty()) h << " \u00b7 cost model " << escape(r.cost_model);
  if (!r.layers.empty()) h << " \u00b7 " << std::to_string(r.layers.size()) << " layers";
  if (!r.iters.empty()) h << " \u00b7 " << std::to_string(r.iters.size()) << " iterations";
  h << "</p>\n</header>\n";
  summary_section(h, r);
  settings_section(h, r);
  sigma_section(h, r);
  bits_section(h, r);
  trajectory_section(h, r);
  if (pa) pareto_section(h, *pa);
  layers_section(h, r);
  h << "<footer>Written by sigmaquant report.</footer>\n</body>\n</html>\n";
  return h.s;
}

void write_report(const std::string& path, const nlohmann::json& run_log,
                  const nlohmann::json* pareto) {
  write_file_atomic(path, render_report_html(run_log, pareto));
}

std::string pareto_svg(const nlohmann::json& pareto, const std::string& metric) {
  check_metric(metric);
  return pareto_plot(aggregate(parse_pareto(pareto, "pareto")), metric);
}

nlohmann::json pareto_front(const nlohmann::json& points, const std::string& metric) {
  check_metric(metric);
  const std::vector<Point> pts = parse_points(points, "pareto", "points");
  const std::vector<bool> front = front_flags(pts, metric);
  nlohmann::json out = points;
  for (size_t i = 0; i < pts.size(); ++i) out[i]["front"] = static_cast<bool>(front[i]);
  return out;
}

std::string pareto_csv(const nlohmann::json& pareto) {
  const Pareto pa = parse_pareto(pareto, "pareto");
  auto cell = [](const std::string& s) {
    if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
    std::string q = "\"";
    for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
    return q + "\"";
  };
  auto num = [](const std::optional<double>& v) {
    return v ? fmt::format("{}", *v) : std::string();
  };
  const std::vector<bool> fw = front_flags(pa.points, "weight_bytes"),
                          fe = front_flags(pa.points, "energy_j"),
                          fl = front_flags(pa.points, "latency_s");
  std::string o =
      "method,budget,avg_bits,accuracy,weight_bytes,energy_j,latency_s,qat_epochs,seconds,"
      "front_weight_bytes,front_energy_j,front_latency_s,seed\n";
  for (size_t i = 0; i < pa.points.size(); ++i) {
    const Point& p = pa.points[i];
    o += fmt::format("{},{},{},{},{},{},{},{},{},{},{},{},{}\n", cell(p.method), cell(p.budget),
                     num(p.avg_bits), num(p.accuracy), num(p.weight_bytes), num(p.energy_j),
                     num(p.latency_s), num(p.qat_epochs), num(p.seconds), fw[i] ? 1 : 0,
                     fe[i] ? 1 : 0, fl[i] ? 1 : 0, num(p.seed));
  }
  return o;
}

}  // namespace sq
