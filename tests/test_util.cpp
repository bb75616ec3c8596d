#include "test_util.h"

#include <gtest/gtest.h>

#include "sigmaquant/error.h"
#include "sigmaquant/fileutil.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <random>
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

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const sq::Error& e) {
    return e.what();
  }
  return "";
}

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

sq::Dataset synthetic_dataset(int64_t n, uint64_t seed) {
  sq::Dataset d;
  d.name = "synthetic";
  d.image_shape = {1, 12, 12};
  d.num_classes = 10;
  d.images.resize(static_cast<size_t>(n * 144));
  d.labels.resize(static_cast<size_t>(n));
  std::mt19937_64 rng(seed);
  for (int64_t i = 0; i < n; ++i) {
    int k = static_cast<int>(i % 10);
    d.labels[i] = k;
    float* img = d.images.data() + i * 144;
    for (int p = 0; p < 144; ++p) img[p] = static_cast<float>(rng() % 64) / 255.0f;
    int r = (k / 5) * 6, c = (k % 5) * 2;
    for (int y = r; y < r + 5; ++y)
      for (int x = c; x < c + 3; ++x) img[y * 12 + x] = 1.0f;
  }
  return d;
}

CliResult run_cli(const std::string& args) {
#ifndef SQ_CLI  // a torch-free build (e.g. the sanitizer build) has no program to run
  return {127, "sigmaquant was not built (SQ_WITH_TORCH=OFF): cannot run '" + args + "'"};
#else
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
#endif
}

bool have_fashion_mnist() {
  const std::string d = "/usr/share/datasets/fashion-mnist/";
  return sq::file_exists(d + "train-images-idx3-ubyte.gz") &&
         sq::file_exists(d + "t10k-images-idx3-ubyte.gz");
}

nlohmann::json json_of(const CliResult& r) {
  auto p = r.output.find('{');
  if (p == std::string::npos) {
    ADD_FAILURE() << "no JSON in the output:\n" << r.output;
    return nlohmann::json();
  }
  return nlohmann::json::parse(r.output.substr(p));
}

std::vector<std::string> files_in(const std::string& dir) {
  std::vector<std::string> names;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d))
      if (e->d_name[0] != '.') names.push_back(e->d_name);
    ::closedir(d);
  }
  return names;
}

pid_t spawn_cli(const std::vector<std::string>& args, const std::string& log) {
  return spawn_cli(args, log, {});
}

pid_t spawn_cli(const std::vector<std::string>& args, const std::string& log,
                const std::vector<std::pair<std::string, std::string>>& env) {
#ifndef SQ_CLI
  (void)args;
  (void)log;
  (void)env;
  return -1;
#else
  // The environment is built before the fork (the child makes only async-signal-safe calls).
  std::vector<std::string> envs;
  for (char** e = environ; *e; ++e) {
    const std::string kv = *e;
    bool replaced = false;
    for (const auto& [k, v] : env) replaced |= kv.rfind(k + "=", 0) == 0;
    if (!replaced) envs.push_back(kv);
  }
  for (const auto& [k, v] : env) envs.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& e : envs) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> all = {SQ_CLI};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {  // only async-signal-safe calls until exec
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  return pid;
#endif
}

}  // namespace sqtest
