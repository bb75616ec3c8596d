// Small file helpers shared by every writer and reader.
#pragma once

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

}  // namespace sq
