// Typed, range-checked access to fields of small hand-written JSON files (targets, bit configs).
// Every error names the file (`where`), the field's dotted path and what was expected, e.g.
//   "targets/mcu.json: field 'params.clock_mhz' must be a number > 0 (got "fast")".
// Internal to the library (used by src/cost and src/quant).
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace sq::jsonf {

using json = nlohmann::json;

// Reads and parses a JSON file with parse_json_strict (fileutil.h); throws sq::Error
// "PATH: not valid JSON (...)" on any parse error, numbers beyond double's range included, and
// "PATH: duplicate key 'K' in 'P' ..." when an object holds a key twice.
json read_json_file(const std::string& path);

// "params" + "clock_mhz" -> "params.clock_mhz"; "" + "x" -> "x".
std::string join(const std::string& path, const std::string& key);
// Short rendering of a value for error messages (long values are cut).
std::string brief(const json& v);

// Throws unless j is an object.
void require_object(const json& j, const std::string& where, const std::string& path);
// Throws on a key outside `allowed` (keys starting with '_' are comments and always allowed).
void check_keys(const json& obj, const std::string& where, const std::string& path,
                const std::vector<std::string>& allowed);

// A number field within [lo, hi]; `lo_open` makes the lower bound exclusive (> lo).
std::optional<double> opt_number(const json& obj, const std::string& key, const std::string& where,
                                 const std::string& path, double lo, double hi,
                                 bool lo_open = false);
double number(const json& obj, const std::string& key, const std::string& where,
              const std::string& path, double lo, double hi, bool lo_open = false);
// An integer field within [lo, hi].
std::optional<int64_t> opt_integer(const json& obj, const std::string& key,
                                   const std::string& where, const std::string& path, int64_t lo,
                                   int64_t hi);
// A string field (any value when `choices` is empty, else one of them).
std::optional<std::string> opt_string(const json& obj, const std::string& key,
                                      const std::string& where, const std::string& path,
                                      const std::vector<std::string>& choices = {});
// An array of integers within [lo, hi] (missing: nullopt).
std::optional<std::vector<int>> opt_int_list(const json& obj, const std::string& key,
                                             const std::string& where, const std::string& path,
                                             int lo, int hi);

}  // namespace sq::jsonf
