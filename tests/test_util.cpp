#include "test_util.h"

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <vector>

namespace sqtest {
namespace {
std::vector<std::string>& dirs() {
  static std::vector<std::string> d;
  return d;
}
void cleanup() {
  for (const auto& d : dirs()) std::system(("rm -rf '" + d + "'").c_str());
}
}  // namespace

std::string temp_dir(const std::string& tag) {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/sq_" + tag + "_XXXXXX";
  dirs();  // construct the list before registering cleanup, so it outlives the atexit handler
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (!mkdtemp(buf.data())) std::abort();
  static std::once_flag once;
  std::call_once(once, [] { std::atexit(cleanup); });
  dirs().push_back(buf.data());
  return buf.data();
}

std::string write_temp(const std::string& dir, const std::string& name, const std::string& bytes) {
  std::string p = dir + "/" + name;
  std::ofstream(p, std::ios::binary) << bytes;
  return p;
}

CliResult run_cli(const std::string& args) {
  std::string cmd = std::string(SQ_CLI) + " " + args + " 2>&1";
  FILE* pipe = popen(cmd.c_str(), "r");
  CliResult r{-1, ""};
  if (!pipe) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) r.output.append(buf.data(), n);
  int status = pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

}  // namespace sqtest
