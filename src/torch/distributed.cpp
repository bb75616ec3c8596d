// Data parallelism over LibTorch's c10d: TCPStore rendezvous, ProcessGroupGloo collectives, a
// store heartbeat that names a rank that has gone, and the `--nproc` local launcher.
//
// Why a heartbeat: when a peer dies, Gloo reports only a closed connection (an address, not a
// rank), or a timeout. Every rank therefore bumps a counter "sq/hb/<rank>" in the store every
// kBeat; when a collective fails, the survivors look for the counters that stopped moving and
// name those ranks. The store itself lives in rank 0 (or in the launcher, as with torchrun's
// agent store); when it cannot be reached, its host is the one that has gone.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>

#include "distributed_internal.h"
#include "sigmaquant/error.h"

namespace sq {
namespace {

using Clock = std::chrono::steady_clock;
constexpr std::chrono::milliseconds kBeat{200};
constexpr std::chrono::milliseconds kSilence{1500};  // no beat for this long: the rank has gone
constexpr std::chrono::milliseconds kWaitSilence{10000};  // the same while waiting at a barrier

std::chrono::milliseconds to_ms(double s) {
  return std::chrono::milliseconds(static_cast<int64_t>(s * 1000));
}

std::vector<uint8_t> bytes_of(const std::string& s) { return {s.begin(), s.end()}; }
std::string string_of(const std::vector<uint8_t>& v) { return {v.begin(), v.end()}; }

// The first line of an exception's text (c10::Error appends a long C++ backtrace).
std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

std::string join_ints(const std::vector<int>& v) {
  std::string s;
  for (int x : v) s += (s.empty() ? "" : ", ") + std::to_string(x);
  return s;
}

bool is_loopback(const std::string& a) {
  return a == "localhost" || a == "::1" || a.rfind("127.", 0) == 0;
}

// An integer environment variable in [lo, hi]; `def` when unset.
int env_int(const char* name, int lo, int hi, int def) {
  const char* v = std::getenv(name);
  if (!v) return def;
  try {
    size_t used = 0;
    long x = std::stol(v, &used);
    if (used != std::strlen(v) || x < lo || x > hi) throw std::invalid_argument(v);
    return static_cast<int>(x);
  } catch (const std::exception&) {
    fail("environment variable {}='{}': expected an integer in [{}, {}]", name, v, lo, hi);
  }
}

}  // namespace

DistConfig dist_config_from_env(double timeout_s) {
  if (!(timeout_s > 0)) fail("--dist-timeout {}: expected a positive number of seconds", timeout_s);
  DistConfig c;
  c.timeout_s = timeout_s;
  c.world_size = env_int("WORLD_SIZE", 1, 1 << 16, 1);
  if (c.world_size == 1) return c;
  if (!std::getenv("RANK")) fail("environment: WORLD_SIZE={} is set but RANK is not", c.world_size);
  c.rank = env_int("RANK", 0, c.world_size - 1, 0);
  c.local_rank = env_int("LOCAL_RANK", 0, 1 << 16, c.rank);
  const char* addr = std::getenv("MASTER_ADDR");
  if (!addr || !*addr)
    fail(
        "environment: WORLD_SIZE={} is set but MASTER_ADDR is not (the address of rank 0's "
        "rendezvous store)",
        c.world_size);
  c.master_addr = addr;
  if (!std::getenv("MASTER_PORT"))
    fail(
        "environment: WORLD_SIZE={} is set but MASTER_PORT is not (the port of rank 0's "
        "rendezvous store)",
        c.world_size);
  c.master_port = env_int("MASTER_PORT", 1, 65535, 0);
  const char* agent = std::getenv("TORCHELASTIC_USE_AGENT_STORE");
  c.agent_store = agent && std::string(agent) == "True";
  return c;
}

DistContext::DistContext(const DistConfig& cfg) : cfg_(cfg) {
  const bool host = cfg.rank == 0 && !cfg.agent_store;
  const std::string where = fmt::format("{}:{}", cfg.master_addr, cfg.master_port);
  auto make_store = [&](bool server) {
    c10d::TCPStoreOptions o;
    o.port = static_cast<uint16_t>(cfg.master_port);
    o.isServer = server;
    o.waitWorkers = false;
    o.timeout = to_ms(cfg.timeout_s);
    return c10::make_intrusive<c10d::TCPStore>(cfg.master_addr, o);
  };
  try {
    store_ = make_store(host);
    hb_store_ = make_store(false);
  } catch (const std::exception& e) {
    if (host)
      fail("rank 0: cannot host the rendezvous store on port {} (MASTER_PORT): {}", cfg.master_port,
           first_line(e.what()));
    fail(
        "rank {}: could not reach the rendezvous store at {} (MASTER_ADDR:MASTER_PORT) within "
        "{} s: rank 0 did not arrive{} ({})",
        cfg.rank, where, cfg.timeout_s, cfg.agent_store ? " (nor the launcher's store)" : "",
        first_line(e.what()));
  }
  heartbeat_ = std::thread([this] {
    int64_t beat = 0;
    try {
      while (!stop_) {
        hb_store_->set(fmt::format("sq/hb/{}", cfg_.rank), bytes_of(std::to_string(++beat)));
        std::this_thread::sleep_for(kBeat);
      }
    } catch (const std::exception&) {
      // The store has gone (its host died or the job ended): collectives report it.
    }
  });
  // Rendezvous: every rank announces itself, then waits for all the others until the deadline.
  try {
    store_->set(fmt::format("sq/arrived/{}", cfg.rank), bytes_of("1"));
    const auto deadline = Clock::now() + to_ms(cfg.timeout_s);
    std::vector<int> missing;
    while (true) {
      missing.clear();
      for (int r = 0; r < cfg.world_size; ++r)
        if (!store_->check({fmt::format("sq/arrived/{}", r)})) missing.push_back(r);
      if (missing.empty() || Clock::now() >= deadline) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (!missing.empty())
      fail(
          "rendezvous at {}: rank{} {} of WORLD_SIZE={} did not arrive within {} s "
          "(--dist-timeout)",
          where, missing.size() > 1 ? "s" : "", join_ints(missing), cfg.world_size, cfg.timeout_s);
    auto opts = c10d::ProcessGroupGloo::Options::create(to_ms(cfg.timeout_s));
    const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
    if (ifname && *ifname)
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
    else if (is_loopback(cfg.master_addr))
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    else
      opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    opts->threads = 2;
    pg_ = c10::make_intrusive<c10d::ProcessGroupGloo>(
        c10::make_intrusive<c10d::PrefixStore>("gloo", store_), cfg.rank, cfg.world_size, opts);
  } catch (...) {
    stop_ = true;
    heartbeat_.join();
    throw;
  }
}

DistContext::~DistContext() {
  detach();
  // Leave together: the store's host stays until every rank has said it is done with the store
  // (or has gone), so that no rank's last store operation finds it closed.
  try {
    store_->set(fmt::format("sq/exit/{}", cfg_.rank), bytes_of("1"));
    if (cfg_.rank == 0 && !cfg_.agent_store) {
      // Wait for the ranks that are still alive (a dead one never says goodbye), at most 30 s.
      const auto deadline = Clock::now() + std::min(to_ms(cfg_.timeout_s), to_ms(30));
      while (Clock::now() < deadline) {
        std::vector<int> missing;
        for (int r = 0; r < cfg_.world_size; ++r)
          if (!store_->check({fmt::format("sq/exit/{}", r)})) missing.push_back(r);
        if (missing.empty()) break;
        std::vector<int> silent = ranks_silent(std::chrono::milliseconds(250));
        bool alive = false;
        for (int r : missing) alive |= std::find(silent.begin(), silent.end(), r) == silent.end();
        if (!alive) {
          // Silent for one short look: make sure with the full window before leaving.
          silent = ranks_silent(kSilence);
          alive = false;
          for (int r : missing) alive |= std::find(silent.begin(), silent.end(), r) == silent.end();
          if (!alive) break;
        }
      }
    }
  } catch (const std::exception&) {
  }
  stop_ = true;
  if (heartbeat_.joinable()) heartbeat_.join();
}

std::vector<int> DistContext::ranks_silent(std::chrono::milliseconds window) {
  auto read = [&] {
    std::vector<std::string> v(static_cast<size_t>(cfg_.world_size));
    for (int r = 0; r < cfg_.world_size; ++r) {
      const std::string k = fmt::format("sq/hb/{}", r);
      if (store_->check({k})) v[r] = string_of(store_->get(k));
    }
    return v;
  };
  std::vector<std::string> before = read();
  std::this_thread::sleep_for(window);
  std::vector<std::string> after = read();
  std::vector<int> silent;
  for (int r = 0; r < cfg_.world_size; ++r)
    if (r != cfg_.rank && (after[r].empty() || after[r] == before[r])) silent.push_back(r);
  return silent;
}

std::string DistContext::gone_ranks_message() {
  try {
    std::vector<int> silent = ranks_silent(kSilence);
    if (silent.empty()) return "a peer failed while every rank's heartbeat is still alive";
    return fmt::format("rank{} {} stopped (no heartbeat for {:.1f} s: killed or crashed)",
                       silent.size() > 1 ? "s" : "", join_ints(silent),
                       static_cast<double>(kSilence.count()) / 1000);
  } catch (const std::exception&) {
    return cfg_.agent_store
               ? fmt::format("the launcher's rendezvous store at {}:{} has gone", cfg_.master_addr,
                             cfg_.master_port)
               : fmt::format("rank 0 has gone (it hosted the rendezvous store at {}:{})",
                             cfg_.master_addr, cfg_.master_port);
  }
}

void DistContext::fail_collective(const std::string& what, const std::string& detail) {
  fail("{}: {}; rank {} stops too (Gloo: {})", what, gone_ranks_message(), cfg_.rank,
       first_line(detail));
}

void DistContext::wait_work(const c10::intrusive_ptr<c10d::Work>& w, const std::string& what) {
  try {
    w->wait();
  } catch (const std::exception& e) {
    fail_collective(what, e.what());
  }
}

void DistContext::allreduce(torch::Tensor& t, const std::string& what) {
  std::vector<torch::Tensor> v{t};
  c10::intrusive_ptr<c10d::Work> w;
  try {
    w = pg_->allreduce(v);
  } catch (const std::exception& e) {
    fail_collective(what, e.what());
  }
  wait_work(w, what);
}

void DistContext::attach(const std::vector<torch::Tensor>& params) {
  detach();
  params_ = params;
  attached_ = std::make_shared<std::atomic<bool>>(true);
  buckets_.clear();
  bucket_of_.assign(params.size(), 0);
  int64_t bytes = 0;
  for (size_t k = params.size(); k-- > 0;) {
    const int64_t b = params[k].numel() * static_cast<int64_t>(params[k].element_size());
    if (buckets_.empty() || (bytes + b > bucket_bytes && !buckets_.back().empty())) {
      buckets_.emplace_back();
      bytes = 0;
    }
    buckets_.back().push_back(k);
    bucket_of_[k] = buckets_.size() - 1;
    bytes += b;
  }
  for (size_t k = 0; k < params.size(); ++k)
    params_[k].register_hook([this, k, on = attached_](torch::Tensor g) {
      if (*on) on_grad(k, g);
    });
  begin_step();
}

void DistContext::detach() {
  if (attached_) *attached_ = false;
  attached_.reset();
  params_.clear();
  buckets_.clear();
}

void DistContext::begin_step() {
  pending_.assign(params_.size(), torch::Tensor());
  ready_.assign(buckets_.size(), 0);
  flat_.assign(buckets_.size(), torch::Tensor());
  works_.clear();
  next_launch_ = 0;
}

void DistContext::on_grad(size_t k, const torch::Tensor& g) {
  const size_t b = bucket_of_[k];
  if (b < next_launch_)
    fail(
        "data parallel: parameter {} received a second gradient after its bucket was reduced "
        "(a parameter used twice in one step is not supported)",
        k);
  if (pending_[k].defined()) {
    pending_[k] = pending_[k] + g;  // used twice, bucket not sent yet: accumulate
    return;
  }
  pending_[k] = g.detach();
  ++ready_[b];
  launch_ready();
}

void DistContext::launch_ready() {
  while (next_launch_ < buckets_.size() && ready_[next_launch_] == buckets_[next_launch_].size())
    launch(next_launch_++);
}

void DistContext::launch(size_t b) {
  std::vector<torch::Tensor> parts;
  for (size_t k : buckets_[b]) parts.push_back(pending_[k].reshape({-1}));
  flat_[b] = torch::cat(parts);
  std::vector<torch::Tensor> v{flat_[b]};
  try {
    works_.push_back(pg_->allreduce(v));
  } catch (const std::exception& e) {
    fail_collective(fmt::format("rank {}: gradient all-reduce", cfg_.rank), e.what());
  }
  stats.allreduce_bytes += flat_[b].numel() * static_cast<int64_t>(flat_[b].element_size());
  ++stats.allreduce_calls;
}

void DistContext::finish_step(torch::Tensor& extra) {
  torch::NoGradGuard ng;
  // Gradients the backward pass did not produce (no backward on an empty share, or a parameter
  // that took no part) are zeros; the remaining buckets start in index order.
  for (size_t k = 0; k < params_.size(); ++k)
    if (!pending_[k].defined()) {
      pending_[k] = torch::zeros_like(params_[k]);
      ++ready_[bucket_of_[k]];
    }
  launch_ready();
  const std::string what = fmt::format("rank {}: gradient all-reduce", cfg_.rank);
  std::vector<torch::Tensor> sv{extra};
  try {
    works_.push_back(pg_->allreduce(sv));
  } catch (const std::exception& e) {
    fail_collective(what, e.what());
  }
  for (auto& w : works_) wait_work(w, what);
  for (size_t b = 0; b < buckets_.size(); ++b) {
    int64_t off = 0;
    for (size_t k : buckets_[b]) {
      torch::Tensor& p = params_[k];
      const int64_t n = p.numel();
      torch::Tensor sum = flat_[b].slice(0, off, off + n).view_as(p);
      if (p.grad().defined())
        p.mutable_grad().copy_(sum);
      else
        p.mutable_grad() = sum.clone();
      off += n;
    }
  }
  ++stats.steps;
  begin_step();
}

void DistContext::broadcast(std::vector<torch::Tensor>& tensors, const std::string& what) {
  torch::NoGradGuard ng;
  for (torch::Tensor& t : tensors) {
    // Gloo has no bool: such masks (the quantizer's 1-bit channels) travel as bytes.
    const bool as_bytes = t.scalar_type() == torch::kBool;
    std::vector<torch::Tensor> v{as_bytes ? t.to(torch::kByte) : t};
    c10::intrusive_ptr<c10d::Work> w;
    try {
      w = pg_->broadcast(v);
    } catch (const std::exception& e) {
      fail_collective(what, e.what());
    }
    wait_work(w, what);
    if (as_bytes) t.copy_(v[0]);
  }
}

void DistContext::wait_all(const std::string& what) {
  const int64_t seq = ++wait_seq_;
  auto key = [&](int r) { return fmt::format("sq/wait/{}/{}", seq, r); };
  try {
    store_->set(key(cfg_.rank), bytes_of("1"));
    // No deadline while the others are alive (a rank may be busy with a long run). A rank is
    // taken for gone when its heartbeat has not moved for kWaitSilence: much longer than
    // kSilence, since here the silence itself is the failure (a busy machine may starve the
    // heartbeat thread for a moment).
    std::map<int, std::pair<std::string, Clock::time_point>> last;
    while (true) {
      std::vector<int> missing, gone;
      for (int r = 0; r < cfg_.world_size; ++r)
        if (!store_->check({key(r)})) missing.push_back(r);
      if (missing.empty()) return;
      const auto now = Clock::now();
      for (int r : missing) {
        const std::string k = fmt::format("sq/hb/{}", r);
        const std::string beat = store_->check({k}) ? string_of(store_->get(k)) : "";
        auto it = last.find(r);
        if (it == last.end() || it->second.first != beat)
          last[r] = {beat, now};
        else if (now - it->second.second > kWaitSilence)
          gone.push_back(r);
      }
      if (!gone.empty())
        fail(
            "{}: rank{} {} stopped (no heartbeat for {:.0f} s) before reaching it; rank {} stops "
            "too",
            what, gone.size() > 1 ? "s" : "", join_ints(gone),
            static_cast<double>(kWaitSilence.count()) / 1000, cfg_.rank);
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  } catch (const sq::Error&) {
    throw;
  } catch (const std::exception& e) {
    fail_collective(what, e.what());
  }
}

std::string DistContext::share_from_rank0(const std::string& key, const std::string& bytes) {
  const std::string k = fmt::format("sq/share/{}/{}", ++share_seq_, key);
  try {
    if (cfg_.rank == 0) {
      store_->set(k, bytes_of(bytes));
      return bytes;
    }
    store_->wait({k}, to_ms(cfg_.timeout_s));
    return string_of(store_->get(k));
  } catch (const std::exception& e) {
    fail_collective(fmt::format("rank {}: waiting for rank 0's {}", cfg_.rank, key), e.what());
  }
}

std::string DistContext::share_from(int root, const std::string& key, const std::string& bytes) {
  if (root < 0 || root >= cfg_.world_size)
    fail("share_from: rank {} is not in 0..{}", root, cfg_.world_size - 1);
  const std::string k = fmt::format("sq/share/{}/{}", ++share_seq_, key);
  try {
    if (cfg_.rank == root) store_->set(k, bytes_of(bytes));
  } catch (const std::exception& e) {
    fail_collective(fmt::format("rank {}: handing over {}", cfg_.rank, key), e.what());
  }
  // The root may still be working (e.g. training what it hands over): a barrier, which has no
  // deadline while the heartbeats live; the root reaches it once the bytes are in the store.
  wait_all(fmt::format("rank {}: waiting for rank {}'s {}", cfg_.rank, root, key));
  if (cfg_.rank == root) return bytes;
  try {
    return string_of(store_->get(k));
  } catch (const std::exception& e) {
    fail_collective(fmt::format("rank {}: reading rank {}'s {}", cfg_.rank, root, key), e.what());
  }
}

std::shared_ptr<DistContext> init_distributed(const DistConfig& cfg) {
  if (cfg.world_size < 1) fail("WORLD_SIZE {}: expected at least 1", cfg.world_size);
  if (cfg.world_size == 1) return nullptr;
  if (cfg.rank < 0 || cfg.rank >= cfg.world_size)
    fail("RANK {}: expected 0..{} (WORLD_SIZE={})", cfg.rank, cfg.world_size - 1, cfg.world_size);
  return std::make_shared<DistContext>(cfg);
}

int dist_rank(const DistContext* d) { return d ? d->rank() : 0; }
int dist_world_size(const DistContext* d) { return d ? d->world() : 1; }
void dist_wait_all(DistContext* d, const std::string& what) {
  if (d) d->wait_all(what);
}
std::string dist_share_from_rank0(DistContext* d, const std::string& key,
                                  const std::string& bytes) {
  return d ? d->share_from_rank0(key, bytes) : bytes;
}
std::string dist_share_from(DistContext* d, int root, const std::string& key,
                            const std::string& bytes) {
  return d ? d->share_from(root, key, bytes) : bytes;
}
void dist_allreduce_sum(DistContext* d, std::vector<double>& v, const std::string& what) {
  if (!d || v.empty()) return;
  torch::Tensor t = torch::tensor(v, torch::kDouble);
  d->allreduce(t, fmt::format("rank {}: {}", d->rank(), what));
  std::copy(t.data_ptr<double>(), t.data_ptr<double>() + t.numel(), v.begin());
}
void dist_check_same(DistContext* d, const std::vector<double>& v, const std::string& what) {
  if (!d) return;
  // The sum over W ranks equals W times this rank's values exactly when every rank holds the
  // same (each rank checks; if all pass, all are equal).
  std::vector<double> s = v;
  s.push_back(1);
  dist_allreduce_sum(d, s, what);
  const double w = s.back();
  for (size_t i = 0; i < v.size(); ++i)
    if (s[i] != w * v[i])
      fail(
          "rank {}: {}: the ranks hold different values (entry {}: {} here, mean {} over the "
          "ranks); they would diverge",
          d->rank(), what, i, v[i], s[i] / w);
}
DistStats dist_stats(const DistContext* d) { return d ? d->stats : DistStats{}; }

// ---- the local launcher (--nproc) ----

namespace {
std::vector<pid_t>* g_children = nullptr;
void forward_signal(int sig) {
  if (g_children)
    for (pid_t p : *g_children)
      if (p > 0) ::kill(p, sig);
}

std::string describe_status(int status) {
  if (WIFSIGNALED(status))
    return fmt::format("was killed by signal {} ({})", WTERMSIG(status),
                       strsignal(WTERMSIG(status)));
  return fmt::format("exited with status {}", WEXITSTATUS(status));
}
}  // namespace

int launch_local_workers(int nproc, const std::vector<std::string>& argv, double timeout_s) {
  if (nproc < 1 || nproc > 1024) fail("--nproc {}: expected 1..1024 local workers", nproc);
  if (argv.empty()) fail("--nproc: no program to start");
  if (!(timeout_s > 0)) fail("--dist-timeout {}: expected a positive number of seconds", timeout_s);
  // The launcher hosts the store (like torchrun's agent): it outlives any worker, so the
  // survivors can always tell which rank has gone.
  const int want_port = env_int("MASTER_PORT", 0, 65535, 0);
  c10d::TCPStoreOptions so;
  so.port = static_cast<uint16_t>(want_port);
  so.isServer = true;
  so.waitWorkers = false;
  so.timeout = to_ms(timeout_s);
  c10::intrusive_ptr<c10d::TCPStore> store;
  try {
    store = c10::make_intrusive<c10d::TCPStore>("127.0.0.1", so);
  } catch (const std::exception& e) {
    fail(
        "--nproc: cannot host the rendezvous store on port {} (MASTER_PORT; 0 = any free port): {}",
        want_port, first_line(e.what()));
  }
  const int port = store->getPort();
  std::vector<pid_t> pids(static_cast<size_t>(nproc), -1);
  std::vector<char*> cargv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  for (int r = 0; r < nproc; ++r) {
    pid_t pid = ::fork();
    if (pid < 0) fail("--nproc: fork failed ({})", std::strerror(errno));
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // the workers do not outlive the launcher
      ::setenv("RANK", std::to_string(r).c_str(), 1);
      ::setenv("LOCAL_RANK", std::to_string(r).c_str(), 1);
      ::setenv("WORLD_SIZE", std::to_string(nproc).c_str(), 1);
      ::setenv("LOCAL_WORLD_SIZE", std::to_string(nproc).c_str(), 1);
      ::setenv("MASTER_ADDR", "127.0.0.1", 1);
      ::setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      ::setenv("TORCHELASTIC_USE_AGENT_STORE", "True", 1);
      ::execv("/proc/self/exe", cargv.data());
      std::fprintf(stderr, "error: --nproc: cannot start worker %d: %s\n", r, std::strerror(errno));
      ::_exit(127);
    }
    pids[r] = pid;
  }
  g_children = &pids;
  struct sigaction sa {};
  sa.sa_handler = forward_signal;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);

  int result = 0, running = nproc;
  Clock::time_point kill_at = Clock::time_point::max();
  while (running > 0) {
    int status = 0;
    pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid <= 0) {
      if (Clock::now() >= kill_at) {
        for (int r = 0; r < nproc; ++r)
          if (pids[r] > 0) {
            std::fprintf(stderr, "error: --nproc: rank %d did not stop within %.0f s; killing it\n",
                         r, timeout_s);
            ::kill(pids[r], SIGKILL);
          }
        kill_at = Clock::time_point::max();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      continue;
    }
    int r = 0;
    while (r < nproc && pids[r] != pid) ++r;
    if (r == nproc) continue;
    pids[r] = -1;
    --running;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) continue;
    if (result == 0) {
      // The first failure: name it; the others stop on their own (they name it too) or are
      // killed after the timeout.
      std::fprintf(stderr, "error: --nproc: rank %d (pid %d) %s; stopping the job\n", r, pid,
                   describe_status(status).c_str());
      result = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      kill_at = Clock::now() + to_ms(timeout_s);
    }
  }
  g_children = nullptr;
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  return result;
}

}  // namespace sq
