#include "sigmaquant/fileutil.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <vector>

#include "sigmaquant/error.h"

namespace sq {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open for reading ({})", path, std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail("{}: read error", path);
  return ss.str();
}

namespace {
constexpr const char* kTempInfix = ".tmp.";  // PATH.tmp.<pid>: write_file_atomic's temporary
}  // namespace

void write_file_atomic(const std::string& path, const std::string& bytes) {
  const std::string tmp = path + kTempInfix + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) fail("{}: cannot write ({})", path, std::strerror(errno));
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t w = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (w < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      fail("{}: write failed ({})", path, std::strerror(e));
    }
    done += static_cast<size_t>(w);
  }
  // fsync so that a crash after rename cannot expose an empty file.
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    fail("{}: write failed ({})", path, std::strerror(e));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    fail("{}: cannot rename the temporary file into place ({})", path, std::strerror(e));
  }
}

bool file_exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

void make_dirs(const std::string& path) {
  if (path.empty()) return;
  std::string cur;
  std::stringstream ss(path);
  std::string part;
  if (path[0] == '/') cur = "/";
  while (std::getline(ss, part, '/')) {
    if (part.empty()) continue;
    cur += part;
    if (::mkdir(cur.c_str(), 0755) != 0 && errno != EEXIST)
      fail("{}: cannot create directory ({})", cur, std::strerror(errno));
    struct stat st;
    if (::stat(cur.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
      fail("{}: exists and is not a directory", cur);
    cur += "/";
  }
}

namespace {

// The pid of a name NAME.tmp.<pid> (NAME not empty, pid all digits, > 0), else -1.
long temp_file_pid(const std::string& name) {
  const size_t at = name.rfind(kTempInfix);
  if (at == std::string::npos || at == 0) return -1;
  const std::string digits = name.substr(at + std::strlen(kTempInfix));
  if (digits.empty() || digits.size() > 9) return -1;  // pids fit in 9 digits (pid_max <= 2^22)
  for (char c : digits)
    if (c < '0' || c > '9') return -1;
  const long pid = std::stol(digits);
  return pid > 0 ? pid : -1;
}

}  // namespace

int remove_stale_temp_files(const std::string& dir) {
  DIR* d = ::opendir(dir.empty() ? "." : dir.c_str());
  if (!d) {
    if (errno == ENOENT || errno == ENOTDIR) return 0;
    fail("{}: cannot list the directory ({})", dir, std::strerror(errno));
  }
  const std::string prefix = dir.empty() ? "" : (dir.back() == '/' ? dir : dir + "/");
  std::vector<std::string> stale_files, stale_dirs;
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    const long pid = temp_file_pid(name);
    if (pid < 0) continue;
    // ESRCH: no such process. EPERM means it exists under another user: keep its file.
    if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;
    struct stat st;
    if (::lstat((prefix + name).c_str(), &st) != 0) continue;
    if (S_ISREG(st.st_mode)) stale_files.push_back(prefix + name);
    if (S_ISDIR(st.st_mode)) stale_dirs.push_back(prefix + name);
  }
  ::closedir(d);
  // A staging directory (export_c's OUT.tmp.<pid>) holds the files written so far: those go,
  // then the directory if nothing else is in it.
  for (const std::string& sub : stale_dirs) {
    DIR* sd = ::opendir(sub.c_str());
    if (!sd) continue;
    while (const dirent* e = ::readdir(sd)) {
      const std::string path = sub + "/" + e->d_name;
      struct stat st;
      if (::lstat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode)) stale_files.push_back(path);
    }
    ::closedir(sd);
  }
  int removed = 0;
  for (const std::string& path : stale_files) {
    if (::unlink(path.c_str()) == 0) {
      ++removed;
    } else if (errno != ENOENT) {  // gone meanwhile: another process cleaned it up
      fail("{}: cannot remove this stale temporary file ({})", path, std::strerror(errno));
    }
  }
  for (const std::string& sub : stale_dirs)
    if (::rmdir(sub.c_str()) == 0) ++removed;
  return removed;
}

nlohmann::json parse_json_strict(const std::string& text, const std::string& where,
                                 int max_depth) {
  using json = nlohmann::json;
  // One frame per open object or array: the keys seen so far (objects), the children counted
  // (arrays), and the frame's path for messages ("params", "layers[2]").
  struct Frame {
    bool object = true;
    std::set<std::string> keys;
    std::string last_key;
    size_t count = 0;
    std::string path;
  };
  std::vector<Frame> stack;
  auto child_path = [&]() -> std::string {
    if (stack.empty()) return "";
    const Frame& p = stack.back();
    if (p.object) return p.path.empty() ? p.last_key : p.path + "." + p.last_key;
    return fmt::format("{}[{}]", p.path, p.count);
  };
  auto close_child = [&]() {
    if (!stack.empty() && !stack.back().object) ++stack.back().count;
  };
  const json::parser_callback_t cb = [&](int depth, json::parse_event_t ev, json& parsed) {
    if (depth > max_depth) fail("{} nests deeper than {} levels", where, max_depth);
    switch (ev) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start: {
        Frame f;
        f.object = ev == json::parse_event_t::object_start;
        f.path = child_path();
        stack.push_back(std::move(f));
        break;
      }
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        if (!stack.empty()) stack.pop_back();
        close_child();
        break;
      case json::parse_event_t::key: {
        if (stack.empty() || !parsed.is_string()) break;
        Frame& f = stack.back();
        f.last_key = parsed.get<std::string>();
        if (!f.keys.insert(f.last_key).second)
          fail("{}: duplicate key '{}' in {} (a key may appear once per object)", where,
               f.last_key, f.path.empty() ? "the top-level object" : "'" + f.path + "'");
        break;
      }
      case json::parse_event_t::value:
        close_child();
        break;
    }
    return true;
  };
  try {
    return json::parse(text, cb);
  } catch (const Error&) {
    throw;
  } catch (const json::exception& e) {  // parse errors and numbers beyond double's range
    fail("{}: not valid JSON ({})", where, e.what());
  }
}

}  // namespace sq
