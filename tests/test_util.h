// Helpers shared by the tests: temporary directories, running the command-line program.
#pragma once

#include <sys/types.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "sigmaquant/data.h"

namespace sqtest {

// The message of the sq::Error that f throws, or "" if it throws none.
std::string error_of(const std::function<void()>& f);

// A fresh, empty directory under the system temp dir, removed at process exit.
std::string temp_dir(const std::string& tag);
// Writes bytes to dir/name and returns the path.
std::string write_temp(const std::string& dir, const std::string& name, const std::string& bytes);

struct CliResult {
  int exit_code;
  std::string output;  // stdout and stderr together
};
// A learnable synthetic 10-class set of 1x12x12 images: class k has a bright 5x3 block at a
// position that depends on k, plus seeded noise.
sq::Dataset synthetic_dataset(int64_t n, uint64_t seed);

// Runs the sigmaquant program with the given argument string (shell syntax).
CliResult run_cli(const std::string& args);
// Starts the program in the background (no shell: a signal reaches the program itself), stdout
// and stderr to `log`; returns its pid (-1 in a build without the program).
pid_t spawn_cli(const std::vector<std::string>& args, const std::string& log);
// The same with extra environment variables (name, value) for the program.
pid_t spawn_cli(const std::vector<std::string>& args, const std::string& log,
                const std::vector<std::pair<std::string, std::string>>& env);
// Debian's dataset-fashion-mnist is installed (its train and test images).
bool have_fashion_mnist();
// The JSON object a command printed (from the first '{' of its output; a test failure if none).
nlohmann::json json_of(const CliResult& r);
// The names in a directory (no "." entries).
std::vector<std::string> files_in(const std::string& dir);

}  // namespace sqtest
