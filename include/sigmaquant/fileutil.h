// Small file helpers shared by every writer and reader.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>

namespace sq {

// Reads a whole file; throws sq::Error "PATH: cannot open (reason)".
std::string read_file(const std::string& path);
// Writes PATH atomically: to PATH.tmp.<pid> first, fsync, then rename over PATH. Creates no
// directories; throws sq::Error naming the path if it cannot be written.
void write_file_atomic(const std::string& path, const std::string& bytes);
bool file_exists(const std::string& path);
// Creates a directory and its parents if needed; throws sq::Error on failure.
void make_dirs(const std::string& path);

// Deletes the files of `dir` named NAME.tmp.<pid> — write_file_atomic's temporary names — whose
// pid is not a live process (kill(pid, 0) fails with ESRCH): what a process killed in the middle
// of a write leaves. A directory so named (export_c's staging directory) loses its regular files
// and then goes if empty; nothing else is descended into. A live writer's file is kept, and so is
// the file of a process owned by another user (EPERM: alive). Returns how many files and
// directories were removed; a missing directory removes nothing. Throws sq::Error naming the
// file if one cannot be removed.
int remove_stale_temp_files(const std::string& dir);

// Parses JSON text like nlohmann::json::parse, stricter: a key that appears twice in one object
// is an error (the parser would silently keep the last value), and so is nesting deeper than
// max_depth (copying or printing JSON recurses once per level). Every error throws sq::Error
// starting with `where` (usually the file name):
//   "t.json: duplicate key 'clock_mhz' in 'params' (a key may appear once per object)"
//   "t.json: not valid JSON (parse error at line 3, column 5: ...)"
//   "t.json nests deeper than 256 levels" (with where = "x.sqg: header": "x.sqg: header nests …")
// Every JSON file reader of the library goes through it.
nlohmann::json parse_json_strict(const std::string& text, const std::string& where,
                                 int max_depth = 256);

}  // namespace sq
