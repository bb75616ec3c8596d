// Helpers shared by the tests: temporary directories, running the command-line program.
#pragma once

#include <string>

namespace sqtest {

// A fresh, empty directory under the system temp dir, removed at process exit.
std::string temp_dir(const std::string& tag);
// Writes bytes to dir/name and returns the path.
std::string write_temp(const std::string& dir, const std::string& name, const std::string& bytes);

struct CliResult {
  int exit_code;
  std::string output;  // stdout and stderr together
};
// Runs the sigmaquant program with the given argument string (shell syntax).
CliResult run_cli(const std::string& args);

}  // namespace sqtest
