#include "cost/json_fields.h"

#include "sigmaquant/fileutil.h"

#include <cmath>

#include "sigmaquant/error.h"

namespace sq::jsonf {

json read_json_file(const std::string& path) { return parse_json_strict(read_file(path), path); }

std::string join(const std::string& path, const std::string& key) {
  return path.empty() ? key : path + "." + key;
}

std::string brief(const json& v) {
  std::string s = v.dump();
  if (s.size() > 40) s = s.substr(0, 37) + "...";
  return s;
}

void require_object(const json& j, const std::string& where, const std::string& path) {
  if (!j.is_object()) {
    if (path.empty()) fail("{}: expected a JSON object at the top level (got {})", where, brief(j));
    fail("{}: field '{}' must be an object (got {})", where, path, brief(j));
  }
}

void check_keys(const json& obj, const std::string& where, const std::string& path,
                const std::vector<std::string>& allowed) {
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    const std::string& k = it.key();
    if (!k.empty() && k[0] == '_') continue;
    bool ok = false;
    for (const auto& a : allowed) ok = ok || a == k;
    if (ok) continue;
    std::string list;
    for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
    fail("{}: unknown field '{}' (expected one of: {})", where, join(path, k),
         list.empty() ? "no fields here" : list);
  }
}

namespace {
std::string range_text(double lo, double hi, bool lo_open) {
  bool inf = std::isinf(hi);
  if (lo_open && inf) return fmt::format("> {}", lo);
  if (inf) return fmt::format(">= {}", lo);
  if (lo_open) return fmt::format("in ({}, {}]", lo, hi);
  return fmt::format("in [{}, {}]", lo, hi);
}
}  // namespace

std::optional<double> opt_number(const json& obj, const std::string& key, const std::string& where,
                                 const std::string& path, double lo, double hi, bool lo_open) {
  if (!obj.contains(key)) return std::nullopt;
  const json& v = obj.at(key);
  double x = v.is_number() ? v.get<double>() : std::nan("");
  bool ok = v.is_number() && std::isfinite(x) && (lo_open ? x > lo : x >= lo) && x <= hi;
  if (!ok)
    fail("{}: field '{}' must be a number {} (got {})", where, join(path, key),
         range_text(lo, hi, lo_open), brief(v));
  return x;
}

double number(const json& obj, const std::string& key, const std::string& where,
              const std::string& path, double lo, double hi, bool lo_open) {
  auto v = opt_number(obj, key, where, path, lo, hi, lo_open);
  if (!v)
    fail("{}: missing field '{}' (expected a number {})", where, join(path, key),
         range_text(lo, hi, lo_open));
  return *v;
}

std::optional<int64_t> opt_integer(const json& obj, const std::string& key,
                                   const std::string& where, const std::string& path, int64_t lo,
                                   int64_t hi) {
  if (!obj.contains(key)) return std::nullopt;
  const json& v = obj.at(key);
  if (!v.is_number_integer() || v.get<int64_t>() < lo || v.get<int64_t>() > hi)
    fail("{}: field '{}' must be an integer in {}..{} (got {})", where, join(path, key), lo, hi,
         brief(v));
  return v.get<int64_t>();
}

std::optional<std::string> opt_string(const json& obj, const std::string& key,
                                      const std::string& where, const std::string& path,
                                      const std::vector<std::string>& choices) {
  if (!obj.contains(key)) return std::nullopt;
  const json& v = obj.at(key);
  std::string list;
  for (const auto& c : choices) list += (list.empty() ? "\"" : ", \"") + c + "\"";
  if (!v.is_string()) {
    if (choices.empty())
      fail("{}: field '{}' must be a string (got {})", where, join(path, key), brief(v));
    fail("{}: field '{}' must be one of {} (got {})", where, join(path, key), list, brief(v));
  }
  std::string s = v.get<std::string>();
  if (choices.empty()) return s;
  for (const auto& c : choices)
    if (c == s) return s;
  fail("{}: field '{}' must be one of {} (got \"{}\")", where, join(path, key), list, s);
}

std::optional<std::vector<int>> opt_int_list(const json& obj, const std::string& key,
                                             const std::string& where, const std::string& path,
                                             int lo, int hi) {
  if (!obj.contains(key)) return std::nullopt;
  const json& v = obj.at(key);
  if (!v.is_array())
    fail("{}: field '{}' must be an array of integers in {}..{} (got {})", where, join(path, key),
         lo, hi, brief(v));
  std::vector<int> out;
  out.reserve(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    const json& e = v[i];
    if (!e.is_number_integer() || e.get<int64_t>() < lo || e.get<int64_t>() > hi)
      fail("{}: field '{}[{}]' must be an integer in {}..{} (got {})", where, join(path, key), i,
           lo, hi, brief(e));
    out.push_back(static_cast<int>(e.get<int64_t>()));
  }
  return out;
}

}  // namespace sq::jsonf
