// Does a training batch fit in memory? Measured, not guessed: two small forward + backward steps
// (batch 4 and 8) run with a counting wrapper around LibTorch's CPU allocator, whose peak of live
// tensor bytes grows linearly with the batch (resnet20 QAT: 1.60, 1.65 and 1.66 MiB per image
// fitted on batches 2 and 4, 2 and 64, 2 and 512); the line gives the tensor bytes of a step at the
// requested batch, to which the optimizer's state (a copy or two of the parameters) is added, and
// an allowance for what the process holds beyond live tensors at that peak (malloc's
// fragmentation, oneDNN's scratch memory, which bypasses the allocator): kFastOverhead with
// malloc's arena as configure_runtime sets it, kOverhead in lean mode (big tensors mmapped), which
// is switched on when only it makes the step fit. A step that fits neither way is refused before
// it starts, naming the largest batch that fits — instead of the kernel's OOM killer ending the
// process without a word an hour later. Forward-only passes (evaluation, calibration) and the
// Hessian traces are measured the same way and shrink their batch instead.
#include <c10/core/CPUAllocator.h>
#include <fmt/format.h>
#include <malloc.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cmath>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <typeinfo>
#include <unordered_map>

#include "sigmaquant/error.h"
#include "sigmaquant/train.h"
#include "train_internal.h"

namespace sq {

namespace {

// Every live block the counting allocator handed out: its owner's context and deleter, its size.
struct Block {
  void* ctx;
  c10::DeleterFnPtr del;
  size_t bytes;
};

struct Registry {
  std::mutex mu;
  std::unordered_map<void*, Block> blocks;
  int64_t live = 0, peak = 0;

  static Registry& get() {
    static Registry* r = new Registry;  // never destroyed: blocks may be freed at exit
    return *r;
  }
};

void counted_delete(void* p) {
  Registry& r = Registry::get();
  Block b{};
  {
    std::lock_guard<std::mutex> lock(r.mu);
    auto it = r.blocks.find(p);
    if (it == r.blocks.end()) return;  // cannot happen: only our blocks carry this deleter
    b = it->second;
    r.blocks.erase(it);
    r.live -= static_cast<int64_t>(b.bytes);
  }
  if (b.del) b.del(b.ctx);
}

// Wraps the CPU allocator in place during a probe; the blocks it hands out stay valid (and
// counted until freed) after the original allocator is back.
class CountingAllocator final : public c10::Allocator {
 public:
  explicit CountingAllocator(c10::Allocator* base) : base_(base) {}
  c10::DataPtr allocate(size_t n) const override {
    c10::DataPtr d = base_->allocate(n);
    void* p = d.get();
    if (!p) return d;
    const c10::Device dev = d.device();
    Block b{d.get_context(), d.get_deleter(), n};
    d.release_context();
    Registry& r = Registry::get();
    std::lock_guard<std::mutex> lock(r.mu);
    r.blocks[p] = b;
    r.live += static_cast<int64_t>(n);
    r.peak = std::max(r.peak, r.live);
    return {p, p, &counted_delete, dev};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &counted_delete; }

 private:
  c10::Allocator* base_;
};

// Installs the counting allocator for its lifetime.
class Counting {
 public:
  Counting() : base_(c10::GetCPUAllocator()), counter_(base_) {
    c10::SetCPUAllocator(&counter_, kPriority);
  }
  ~Counting() { c10::SetCPUAllocator(base_, kPriority); }
  Counting(const Counting&) = delete;
  Counting& operator=(const Counting&) = delete;
  // Starts a measurement: the peak from now on, above what is live now.
  int64_t start() {
    Registry& r = Registry::get();
    std::lock_guard<std::mutex> lock(r.mu);
    r.peak = r.live;
    return r.live;
  }
  int64_t peak_above(int64_t base) {
    Registry& r = Registry::get();
    std::lock_guard<std::mutex> lock(r.mu);
    return r.peak - base;
  }

 private:
  static constexpr uint8_t kPriority = 255;
  c10::Allocator* base_;
  CountingAllocator counter_;
};

// The process's resident growth over the live tensors' peak. Lean (lean_malloc): resnet20 on 28x28,
// peak RSS growth against the fitted tensor bytes, 1.1-1.2x for FP32 training at batch 2,048 and
// 1.3-1.4x for QAT at 1,024 (a range: malloc's freed memory from loading the data is reused
// first); VGG-11 QAT at 224x224, batch 32: 8.8 GiB peak resident, 8.8 GiB predicted (2.2 GiB
// held before the step + 6.6 GiB). Fast (the arena configure_runtime sets up): up to 2x (VGG-11:
// 13.2 GiB peak resident for 6.9 GiB of live tensors).
constexpr double kOverhead = 1.3;
constexpr double kFastOverhead = 2.0;

// Bytes of one training step at batch b: fixed + per_image * b.
struct StepFit {
  double fixed = 0, per_image = 0;
};

int64_t read_int_file(const std::string& path) {
  std::ifstream f(path);
  std::string s;
  if (!(f >> s) || s.empty() || !std::isdigit(static_cast<unsigned char>(s[0]))) return -1;
  try {
    return std::stoll(s);
  } catch (const std::exception&) {
    return -1;  // "max" or more than int64 holds: no limit
  }
}

int64_t meminfo_available() {
  std::ifstream f("/proc/meminfo");
  std::string key;
  int64_t kb = 0;
  std::string unit;
  while (f >> key >> kb) {
    std::getline(f, unit);
    if (key == "MemAvailable:") return kb * 1024;
  }
  return -1;
}

int64_t resident_bytes() {
  std::ifstream f("/proc/self/statm");
  int64_t size = 0, resident = 0;
  if (!(f >> size >> resident)) return 0;
  return resident * sysconf(_SC_PAGESIZE);
}

// Freed memory glibc keeps for reuse (the trainer keeps it: M_TRIM_THRESHOLD).
int64_t malloc_free_bytes() {
  struct mallinfo2 mi = mallinfo2();
  return static_cast<int64_t>(mi.fordblks);
}

std::string human(double bytes) {
  const double mib = bytes / (1024.0 * 1024);
  if (mib < 10) return fmt::format("{:.1f} MiB", mib);
  return mib < 1024 ? fmt::format("{:.0f} MiB", mib) : fmt::format("{:.1f} GiB", mib / 1024);
}

// One pass of the module over a batch (x, y) whose memory is measured.
using Pass = std::function<void(const torch::Tensor& x, const torch::Tensor& y)>;

// A pass to measure: its name in the cache, the module's mode, the pass.
struct PassKind {
  std::string name;
  bool train_mode;
  Pass pass;
};

PassKind training_kind(GraphModule& m) {
  return {"train", true, [&m](const torch::Tensor& x, const torch::Tensor& y) {
            torch::nn::functional::cross_entropy(m.forward(x), y).backward();
          }};
}

PassKind inference_kind(GraphModule& m) {
  return {"infer", false, [&m](const torch::Tensor& x, const torch::Tensor&) {
            torch::NoGradGuard no_grad;
            m.forward(x);
          }};
}

// Peak live tensor bytes of the pass (the module in train or eval mode as it says) at batches 4
// and 8, fitted to a line.
StepFit measure(GraphModule& m, const Dataset& d, const PassKind& kind) {
  const int64_t b1 = 4, b2 = 8;
  // Everything a step changes comes back: running statistics and other buffers, gradients,
  // train/eval mode, LibTorch's RNG (dropout), the observer.
  std::vector<torch::Tensor> buffers;
  for (const torch::Tensor& b : m.buffers()) buffers.push_back(b.detach().clone());
  std::vector<torch::Tensor> grads;
  for (const torch::Tensor& p : m.parameters())
    grads.push_back(p.grad().defined() ? p.grad().detach().clone() : torch::Tensor());
  const bool was_training = m.is_training();
  at::Generator gen = at::detail::getDefaultCPUGenerator();
  torch::Tensor rng_state;
  {
    std::lock_guard<std::mutex> lock(gen.mutex());
    rng_state = gen.get_state();
  }
  auto observer = std::move(m.observer);
  m.observer = nullptr;

  std::vector<int64_t> idx(static_cast<size_t>(b2));
  for (int64_t i = 0; i < b2; ++i) idx[static_cast<size_t>(i)] = i;
  const Batcher batcher{d, m.graph()};
  int64_t peak[2] = {0, 0};
  {
    Counting counting;
    m.train(kind.train_mode);
    for (int k = 0; k < 2; ++k) {
      const int64_t b = k == 0 ? b1 : b2;
      for (const torch::Tensor& p : m.parameters()) p.mutable_grad() = torch::Tensor();
      const int64_t base = counting.start();
      kind.pass(batcher.images(idx.data(), b, nullptr, 0, false), batcher.labels(idx.data(), b));
      peak[k] = counting.peak_above(base);
    }
  }

  {
    torch::NoGradGuard no_grad;
    size_t i = 0;
    for (const torch::Tensor& b : m.buffers()) b.copy_(buffers[i++]);
  }
  size_t i = 0;
  for (const torch::Tensor& p : m.parameters()) p.mutable_grad() = grads[i++];
  m.train(was_training);
  {
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(rng_state);
  }
  m.observer = std::move(observer);

  StepFit f;
  f.per_image =
      std::max(0.0, static_cast<double>(peak[1] - peak[0]) / static_cast<double>(b2 - b1));
  f.fixed = std::max(0.0, static_cast<double>(peak[0]) - f.per_image * static_cast<double>(b1));
  return f;
}

// One measurement per kind of module, input and pass (the bit widths do not change the tensors
// a step holds): Phase 2's many short trainings measure once.
StepFit cached_fit(GraphModule& m, const Dataset& d, const PassKind& kind) {
  static std::mutex mu;
  static std::map<std::string, StepFit> cache;
  int64_t numel = 0;
  for (const torch::Tensor& p : m.parameters()) numel += p.numel();
  std::string key =
      fmt::format("{}|{}|{}|{}|{}|{}", kind.name, m.graph().name, m.graph().nodes.size(), numel,
                  m.quant() ? typeid(*m.quant()).name() : "fp32", fmt::join(d.image_shape, "x"));
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache.find(key);
    if (it != cache.end()) return it->second;
  }
  StepFit f = measure(m, d, kind);
  std::lock_guard<std::mutex> lock(mu);
  cache[key] = f;
  return f;
}

// From here on, tensors of 64 MiB and more get their own mmap (returned on free) instead of
// malloc's arena (configure_runtime's default, which reuses memory without page faults but
// fragments it: VGG-11 QAT at 224 x 224, batch 32, peaked at 14.2 GB resident this way and at
// 9.2 GB lean, 17 % slower per step). Chosen only when the fast way would not fit.
void lean_malloc() {
  static std::atomic<bool> done{false};
  if (!done.exchange(true)) mallopt(M_MMAP_THRESHOLD, 64 << 20);
}

}  // namespace

int64_t parse_memory_size(const std::string& s, const std::string& where) {
  if (s == "off" || s == "none") return -1;
  if (s == "auto") return 0;
  size_t pos = 0;
  double v = -1;
  try {
    v = std::stod(s, &pos);
  } catch (const std::exception&) {
    pos = 0;
  }
  std::string unit = s.substr(pos);
  for (char& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (!unit.empty() && unit.back() == 'B') unit.pop_back();
  if (unit.size() == 2 && unit[1] == 'I') unit.pop_back();  // GiB = G
  double scale = 0;
  if (unit.empty())
    scale = 1;
  else if (unit == "K")
    scale = 1024.0;
  else if (unit == "M")
    scale = 1024.0 * 1024;
  else if (unit == "G")
    scale = 1024.0 * 1024 * 1024;
  else if (unit == "T")
    scale = 1024.0 * 1024 * 1024 * 1024;
  if (pos == 0 || scale == 0 || !(v > 0) || v * scale > 9e18)
    fail(
        "{} '{}': expected a size such as 512M, 16G or 16GiB (binary units), auto (what the "
        "machine has) or off (no check)",
        where, s);
  return static_cast<int64_t>(v * scale);
}

int64_t available_memory_bytes(int64_t limit) {
  const int64_t reusable = malloc_free_bytes();
  if (limit > 0)
    return std::max<int64_t>(0, limit - std::max<int64_t>(0, resident_bytes() - reusable));
  int64_t avail = meminfo_available();
  // A container's limit (cgroup v2, then v1) is usually below what the host has free.
  int64_t max = read_int_file("/sys/fs/cgroup/memory.max");
  int64_t cur = read_int_file("/sys/fs/cgroup/memory.current");
  if (max < 0) {
    max = read_int_file("/sys/fs/cgroup/memory/memory.limit_in_bytes");
    cur = read_int_file("/sys/fs/cgroup/memory/memory.usage_in_bytes");
    if (max > (int64_t{1} << 60)) max = -1;  // v1's "unlimited"
  }
  if (max > 0 && cur >= 0)
    avail = std::max<int64_t>(0, avail < 0 ? max - cur : std::min(avail, max - cur));
  if (avail < 0) return -1;  // unknown: no check
  return avail + reusable;
}

int64_t MemoryEstimate::largest_batch() const {
  if (available < 0) return -1;
  const double room = static_cast<double>(available) - fixed;
  if (room < per_image) return 0;
  if (per_image <= 0) return std::numeric_limits<int64_t>::max();
  return static_cast<int64_t>(std::min(room / per_image, 9e18));
}

namespace {

int optimizer_copies(const TrainOptions& o) {
  return o.optimizer == "adam" ? 2 : o.momentum > 0 ? 1 : 0;
}

// One measurement of a pass against what is available: the estimates under both allowances
// derive from it (the fit is cached; `available` is read once).
struct Measured {
  StepFit fit;
  double state = 0;  // the optimizer's state: plain tensors allocated once
  int64_t available = -1;

  MemoryEstimate at(double overhead) const {
    MemoryEstimate e;
    e.available = available;
    e.fixed = overhead * fit.fixed + state;
    e.per_image = overhead * fit.per_image;
    return e;
  }
  // Whether a pass at `batch` fits: as is (true), lean after lean_malloc() (true), or not at all.
  bool fits_switching_to_lean(int64_t batch) const {
    if (at(kFastOverhead).bytes(batch) <= static_cast<double>(available)) return true;
    if (at(kOverhead).bytes(batch) > static_cast<double>(available)) return false;
    lean_malloc();
    return true;
  }
};

Measured measured(GraphModule& m, const Dataset& d, int optimizer_copies, int64_t memory_limit,
                  const PassKind& kind) {
  Measured r;
  r.available = available_memory_bytes(memory_limit);
  if (d.size() < 8) return r;  // a few images: no measurement (and nothing big to fear)
  r.fit = cached_fit(m, d, kind);
  for (const torch::Tensor& p : m.parameters())
    if (p.requires_grad()) r.state += static_cast<double>(p.numel() * p.element_size());
  r.state *= optimizer_copies;
  return r;
}

}  // namespace

void check_training_memory(GraphModule& m, const Dataset& d, int64_t batch, int optimizer_copies,
                           int64_t memory_limit, const std::string& what) {
  if (memory_limit < 0 || batch < 1 || d.size() < 8) return;
  const Measured r = measured(m, d, optimizer_copies, memory_limit, training_kind(m));
  if (r.available < 0 || r.fits_switching_to_lean(batch)) return;
  const MemoryEstimate e = r.at(kOverhead);
  const int64_t fits = e.largest_batch();
  const std::string has =
      memory_limit > 0
          ? fmt::format("--memory-limit {} leaves {}", human(static_cast<double>(memory_limit)),
                        human(static_cast<double>(e.available)))
          : fmt::format("this machine has {} available", human(static_cast<double>(e.available)));
  const std::string parts =
      fmt::format("{} per image of {} and {} for the gradients, optimizer state and the rest",
                  human(e.per_image), fmt::join(d.image_shape, "x"), human(e.fixed));
  if (fits < 1)
    fail(
        "{}: a training step does not fit in memory even at batch 1: it needs about {} ({}), "
        "and {} (--memory-limit off skips this check)",
        what, human(e.bytes(1)), parts, has);
  fail(
      "{}: a training step at batch {} needs about {} ({}), and {}: at most {} images per "
      "batch fit — pass --batch-size {} or less (--memory-limit sets the limit, off skips this "
      "check)",
      what, batch, human(e.bytes(batch)), parts, has, fits, fits);
}

void check_training_memory(GraphModule& m, const Dataset& d, const TrainOptions& o,
                           const std::string& what) {
  if (!checks_memory(o)) return;
  check_training_memory(m, d, std::min(o.batch_size, d.size()), optimizer_copies(o), o.memory_limit,
                        what);
}

namespace {
int64_t batch_that_fits(GraphModule& m, const Dataset& d, int64_t batch, const PassKind& kind,
                        int64_t memory_limit) {
  batch = std::min(batch, d.size());
  if (batch <= 8 || memory_limit < 0) return std::max<int64_t>(batch, 1);
  const Measured r = measured(m, d, 0, memory_limit, kind);
  if (r.available < 0 || r.fits_switching_to_lean(batch)) return batch;
  return std::max<int64_t>(1, std::min(batch, r.at(kOverhead).largest_batch()));
}
}  // namespace

int64_t inference_batch(GraphModule& m, const Dataset& d, int64_t batch, int64_t memory_limit) {
  return batch_that_fits(m, d, batch, inference_kind(m), memory_limit);
}

int64_t batch_that_fits(
    GraphModule& m, const Dataset& d, int64_t batch, const std::string& kind,
    const std::function<void(const torch::Tensor&, const torch::Tensor&)>& pass) {
  return batch_that_fits(m, d, batch, PassKind{kind, false, pass}, 0);
}

bool checks_memory(const TrainOptions& o) {
  return o.memory_limit >= 0 && !o.dist && o.device == "cpu";
}

MemoryEstimate estimate_training_memory(GraphModule& m, const Dataset& d, const TrainOptions& o) {
  return measured(m, d, optimizer_copies(o), o.memory_limit, training_kind(m)).at(kOverhead);
}

MemoryEstimate estimate_training_memory(const Graph& g, const Dataset& d, const TrainOptions& o) {
  Graph c = g;  // as train() does: the data's statistics where the model has none
  if (c.input_mean.empty()) channel_stats(d, c.input_mean, c.input_std);
  GraphModule m(c);
  return estimate_training_memory(m, d, o);
}

}  // namespace sq
