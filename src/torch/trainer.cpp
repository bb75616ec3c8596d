// FP32 training and evaluation of IR graphs with LibTorch.
//
// Reproducibility: every random choice (shuffling, augmentation) is drawn from std::mt19937_64
// streams seeded by (seed, epoch), so an epoch's batches depend only on the seed and the epoch
// number — which is also what makes --resume continue exactly where a run stopped. LibTorch's own
// RNG is seeded too; with one thread the CPU kernels are deterministic.
#include <malloc.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <exception>
#include <numeric>
#include <sstream>
#include <thread>

#include "distributed_internal.h"
#include "graph_module.h"
#include "sigmaquant/error.h"
#include "sigmaquant/fileutil.h"
#include "sigmaquant/graph_io.h"
#include "sigmaquant/progress.h"
#include "sigmaquant/train.h"
#include "train_internal.h"

namespace sq {

// Fisher–Yates with our own RNG (std::shuffle's algorithm is library-specific).
std::vector<int64_t> permutation(int64_t n, uint64_t seed) {
  std::vector<int64_t> p(static_cast<size_t>(n));
  std::iota(p.begin(), p.end(), 0);
  std::mt19937_64 rng(seed);
  for (int64_t i = n - 1; i > 0; --i) {
    int64_t j = static_cast<int64_t>(rng() % static_cast<uint64_t>(i + 1));
    std::swap(p[i], p[j]);
  }
  return p;
}

torch::Tensor Batcher::images(const int64_t* idx, int64_t n, std::mt19937_64* aug_rng, int pad,
                              bool flip) const {
  const int64_t per = d.image_numel();
  torch::Tensor x = torch::empty({n, d.image_shape[0], d.image_shape[1], d.image_shape[2]});
  float* dst = x.data_ptr<float>();
  for (int64_t k = 0; k < n; ++k) {
    normalized_image(d, idx[k], g.input_mean, g.input_std, dst + k * per);
    if (aug_rng) augment_image(dst + k * per, d.image_shape, pad, flip, *aug_rng);
  }
  return x;
}

torch::Tensor Batcher::labels(const int64_t* idx, int64_t n) const {
  torch::Tensor y = torch::empty({n}, torch::kInt64);
  int64_t* p = y.data_ptr<int64_t>();
  for (int64_t k = 0; k < n; ++k) p[k] = d.labels[idx[k]];
  return y;
}

namespace {

torch::Device parse_device(const std::string& d) {
  if (d == "cpu") return torch::kCPU;
  if (d == "cuda" || d.rfind("cuda:", 0) == 0) {
    if (!torch::cuda::is_available())
      fail("--device {}: this LibTorch build has no usable CUDA device (use --device cpu)", d);
    return torch::Device(d);
  }
  fail("--device '{}' is not supported (expected cpu or cuda)", d);
}

void check_compatible(const Graph& g, const Dataset& d) {
  if (d.size() == 0) fail("dataset '{}' is empty", d.name);
  if (d.image_shape != g.input_shape)
    fail("model '{}' expects inputs of shape {} but dataset '{}' has {}", g.name,
         shape_str(g.input_shape), d.name, shape_str(d.image_shape));
  if (d.num_classes > g.num_classes)
    fail("model '{}' has {} outputs but dataset '{}' has {} classes", g.name, g.num_classes, d.name,
         d.num_classes);
}

void set_lr(torch::optim::Optimizer& opt, const std::string& kind, double lr) {
  for (auto& group : opt.param_groups()) {
    if (kind == "adam")
      static_cast<torch::optim::AdamOptions&>(group.options()).lr(lr);
    else
      static_cast<torch::optim::SGDOptions&>(group.options()).lr(lr);
  }
}

double lr_at(const TrainOptions& o, int64_t step, int64_t steps_per_epoch) {
  int64_t total = static_cast<int64_t>(o.epochs) * steps_per_epoch;
  int64_t warm = static_cast<int64_t>(o.warmup_epochs) * steps_per_epoch;
  if (step < warm) return o.lr * static_cast<double>(step + 1) / static_cast<double>(warm);
  if (o.schedule == "constant") return o.lr;
  double t = static_cast<double>(step - warm) / static_cast<double>(std::max<int64_t>(1, total - warm));
  return 0.5 * o.lr * (1.0 + std::cos(M_PI * t));
}

nlohmann::json options_json(const TrainOptions& o) {
  nlohmann::json j = {{"epochs", o.epochs},
                      {"batch_size", o.batch_size},
                      {"optimizer", o.optimizer},
                      {"lr", o.lr},
                      {"momentum", o.momentum},
                      {"weight_decay", o.weight_decay},
                      {"schedule", o.schedule},
                      {"warmup_epochs", o.warmup_epochs},
                      {"seed", o.seed},
                      {"augment", o.augment},
                      {"augment_pad", o.augment_pad},
                      {"augment_flip", o.augment_flip}};
  // batch_size is per rank: a resume must keep the world size (absent for one process, so that
  // checkpoints of one process stay as they were).
  if (dist_world_size(o.dist.get()) > 1) {
    j["world_size"] = dist_world_size(o.dist.get());
    if (o.sync_bn) j["sync_bn"] = true;
  }
  return j;
}

// Rank r's share [lo, hi) of a global batch of gbs positions (per-rank batch b).
std::pair<int64_t, int64_t> local_range(int64_t gbs, int64_t b, int rank) {
  const int64_t lo = std::min(gbs, b * rank);
  return {lo, std::min(gbs, lo + b)};
}

// Draws the augmentation random numbers of positions [from, to) without keeping the images, so
// that every rank's stream stays where one process's would be (the draws per image vary).
void skip_augmentation(const Dataset& d, int64_t count, std::mt19937_64& rng, int pad, bool flip) {
  std::vector<float> scratch(static_cast<size_t>(d.image_numel()));
  for (int64_t k = 0; k < count; ++k) augment_image(scratch.data(), d.image_shape, pad, flip, rng);
}

// Forward and backward of this rank's share (x, y) of a global batch of gbs images (no pass when
// the share is empty, unless batch norm is synchronised), with the gradients all-reduced during
// the backward pass. Returns the global batch's mean loss and correct count (they travel with the
// gradients).
std::pair<double, int64_t> data_parallel_step(GraphModule& m, DistContext& dist,
                                              const torch::Tensor& x, const torch::Tensor& y,
                                              int64_t gbs, bool sync_bn) {
  // Each rank's loss is its share of the global batch's mean (sum / global batch), so the
  // all-reduced sum of the gradients is the one-process gradient of the global batch.
  const int64_t bs = x.size(0);
  double local_sum = 0;
  int64_t correct = 0;
  dist.begin_step();
  if (bs == 0 && sync_bn) {
    // No images here, but synchronised batch norm all-reduces inside the forward and backward
    // passes: run them on one blank image that counts for nothing (its statistics and its loss
    // are multiplied by zero), so that this rank issues the same collectives in the same order.
    std::vector<int64_t> shape = x.sizes().vec();
    shape[0] = 1;
    m.set_sync_bn(&dist, false);
    if (m.quant()) m.quant()->batch_factor = static_cast<double>(gbs);
    torch::Tensor out = m.forward(torch::zeros(shape, x.options()));
    (torch::nn::functional::cross_entropy(out, torch::zeros({1}, y.options())) * 0.0).backward();
    m.set_sync_bn(&dist, true);
  }
  if (bs > 0) {
    if (m.quant()) m.quant()->batch_factor = static_cast<double>(gbs) / static_cast<double>(bs);
    torch::Tensor out = m.forward(x);
    torch::Tensor loss =
        torch::nn::functional::cross_entropy(
            out, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum)) /
        static_cast<double>(gbs);
    loss.backward();
    local_sum = loss.item<double>() * static_cast<double>(gbs);
    correct = out.argmax(1).eq(y).sum().item<int64_t>();
  }
  torch::Tensor extra = torch::tensor({local_sum, static_cast<double>(correct)}, torch::kDouble);
  dist.finish_step(extra);
  return {extra[0].item<double>() / static_cast<double>(gbs),
          static_cast<int64_t>(std::llround(extra[1].item<double>()))};
}

// The parameters and buffers of m, in registration order (the same on every rank).
std::vector<torch::Tensor> state_tensors(GraphModule& m) {
  std::vector<torch::Tensor> v = m.parameters();
  for (const torch::Tensor& b : m.buffers()) v.push_back(b);
  return v;
}

nlohmann::json epoch_json(const EpochStats& e) {
  return {{"epoch", e.epoch}, {"lr", e.lr}, {"train_loss", e.train_loss},
          {"train_accuracy", e.train_accuracy}, {"val_accuracy", e.val_accuracy},
          {"seconds", e.seconds}, {"images_per_second", e.images_per_second}};
}

EpochStats epoch_from_json(const nlohmann::json& j) {
  EpochStats e;
  e.epoch = j.at("epoch");
  e.lr = j.at("lr");
  e.train_loss = j.at("train_loss");
  e.train_accuracy = j.at("train_accuracy");
  e.val_accuracy = j.at("val_accuracy");
  e.seconds = j.at("seconds");
  e.images_per_second = j.at("images_per_second");
  return e;
}

EvalResult evaluate_module(GraphModule& m, const Dataset& data, const EvalOptions& o,
                           torch::Device dev, std::vector<float>* logits_out, int64_t limit) {
  torch::NoGradGuard ng;
  m.eval();
  const int64_t n = limit > 0 ? std::min(limit, data.size()) : data.size();
  if (o.dist && logits_out) fail("predict: not data-parallel (every rank needs every logit)");
  // This rank's share [lo, hi) of the images (all of them in one process).
  const int rank = dist_rank(o.dist), world = dist_world_size(o.dist);
  const int64_t lo = n * rank / world, hi = n * (rank + 1) / world;
  std::vector<int64_t> idx(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), 0);
  Batcher b{data, m.graph()};
  Progress bar("eval", hi - lo, "img", o.progress);
  int64_t correct = 0;
  double loss_sum = 0;
  // At most the batch that fits in memory (a 224 x 224 network at the default 512 may not).
  const int64_t batch = dev.is_cpu() ? inference_batch(m, data, o.batch_size) : o.batch_size;
  for (int64_t s = lo; s < hi; s += batch) {
    int64_t bs = std::min(batch, hi - s);
    torch::Tensor x = b.images(idx.data() + s, bs, nullptr, 0, false).to(dev);
    torch::Tensor y = b.labels(idx.data() + s, bs).to(dev);
    torch::Tensor out = m.forward(x);
    loss_sum += torch::nn::functional::cross_entropy(
                    out, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                    .item<double>();
    correct += out.argmax(1).eq(y).sum().item<int64_t>();
    if (logits_out) {
      Tensor t = from_torch(out);
      logits_out->insert(logits_out->end(), t.data.begin(), t.data.end());
    }
    bar.update(s + bs - lo);
  }
  bar.finish();
  if (o.dist) {
    torch::Tensor sums = torch::tensor({static_cast<double>(correct), loss_sum}, torch::kDouble);
    o.dist->allreduce(sums, fmt::format("rank {}: evaluation", rank));
    correct = std::llround(sums[0].item<double>());
    loss_sum = sums[1].item<double>();
  }
  EvalResult r;
  r.samples = n;
  r.accuracy = static_cast<double>(correct) / static_cast<double>(n);
  r.loss = loss_sum / static_cast<double>(n);
  r.seconds = bar.elapsed_seconds();
  r.images_per_second = r.seconds > 0 ? static_cast<double>(n) / r.seconds : 0;
  return r;
}

}  // namespace

void configure_runtime(int threads, bool deterministic) {
  // glibc serves allocations above M_MMAP_THRESHOLD with fresh mmaps that page-fault on every
  // training step and trims freed memory eagerly; keep both high so the arena is reused.
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  if (threads > 0) {
    torch::set_num_threads(threads);
    torch::set_num_interop_threads(1);
  }
  if (deterministic) at::globalContext().setDeterministicAlgorithms(true, /*warn_only=*/true);
}

TrainResult train_module(GraphModule& m, const Dataset& train_set, const Dataset* val,
                         const TrainOptions& o, const CheckpointHooks& hooks) {
  const Graph& g = m.graph();
  check_compatible(g, train_set);
  if (val) check_compatible(g, *val);
  if (o.epochs < 1) fail("--epochs must be at least 1 (got {})", o.epochs);
  if (o.batch_size < 1) fail("--batch-size must be at least 1 (got {})", o.batch_size);
  if (o.optimizer != "sgd" && o.optimizer != "adam")
    fail("--optimizer '{}' is not supported (expected sgd or adam)", o.optimizer);
  if (o.schedule != "cosine" && o.schedule != "constant")
    fail("--schedule '{}' is not supported (expected cosine or constant)", o.schedule);
  if (g.input_mean.empty()) fail("model '{}' has no input normalization", g.name);
  torch::Device dev = parse_device(o.device);
  check_training_memory(m, train_set, o, o.label == "epoch" ? "training" : o.label);
  torch::manual_seed(o.seed);

  TrainResult result;
  m.to(dev);
  std::unique_ptr<torch::optim::Optimizer> opt;
  if (o.optimizer == "adam")
    opt = std::make_unique<torch::optim::Adam>(
        m.parameters(), torch::optim::AdamOptions(o.lr).weight_decay(o.weight_decay));
  else
    opt = std::make_unique<torch::optim::SGD>(
        m.parameters(), torch::optim::SGDOptions(o.lr)
                            .momentum(o.momentum)
                            .nesterov(o.momentum > 0)
                            .weight_decay(o.weight_decay));

  DistContext* dist = o.dist.get();
  const int rank = dist_rank(dist), world = dist_world_size(dist);
  int start_epoch = 0;
  // Every rank resumes from rank 0's checkpoint: rank 0 reads it, the store hands the bytes over.
  std::string ck_bytes;
  if (rank == 0 && o.resume && !o.checkpoint.empty() && file_exists(o.checkpoint))
    ck_bytes = "+" + read_file(o.checkpoint);
  if (dist && o.resume) ck_bytes = dist->share_from_rank0("checkpoint", ck_bytes);
  if (!ck_bytes.empty()) {
    GraphFile ck = parse_graph_file(ck_bytes.substr(1), o.checkpoint);
    ck_bytes.clear();
    if (graph_to_json(ck.graph)["nodes"] != graph_to_json(g)["nodes"])
      fail("{}: the checkpoint holds a different architecture than model '{}'", o.checkpoint,
           g.name);
    const auto& c = ck.meta.value("checkpoint", nlohmann::json::object());
    if (!c.contains("epoch") || !ck.blobs.count("optimizer"))
      fail("{}: not a training checkpoint (no epoch / optimizer state)", o.checkpoint);
    if (c.value("options", nlohmann::json()) != options_json(o))
      fail("{}: was written with different training options ({}); resume with the same ones",
           o.checkpoint, c.value("options", nlohmann::json()).dump());
    hooks.restore(ck);
    std::istringstream is(ck.blobs["optimizer"]);
    torch::serialize::InputArchive ar;
    ar.load_from(is, dev);
    opt->load(ar);
    start_epoch = c["epoch"].get<int>();
    for (const auto& e : c["history"]) result.epochs.push_back(epoch_from_json(e));
    result.resumed_from_epoch = start_epoch;
    if (o.progress && rank == 0)
      fmt::print(stderr, "resuming from {} after epoch {}/{}\n", o.checkpoint, start_epoch,
                 o.epochs);
  }
  if (dist) {
    // The same starting point everywhere, whatever each rank initialised.
    std::vector<torch::Tensor> st = state_tensors(m);
    dist->broadcast(st, fmt::format("rank {}: broadcast of the parameters", rank));
  }

  const int64_t n = train_set.size();
  const int64_t global_batch = o.batch_size * world;
  const int64_t steps_per_epoch = (n + global_batch - 1) / global_batch;
  const bool show = o.progress && rank == 0;
  Batcher batcher{train_set, m.graph()};
  if (dist) dist->attach(m.parameters());  // gradient hooks: all-reduce during backward
  if (dist && o.sync_bn) m.set_sync_bn(dist);
  struct Detach {
    DistContext* d;
    GraphModule& m;
    ~Detach() {
      if (d) d->detach();
      m.set_sync_bn(nullptr);
    }
  } detach_hooks{dist, m};
  for (int epoch = start_epoch; epoch < o.epochs; ++epoch) {
    m.train();
    const uint64_t epoch_seed = o.seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(epoch);
    std::vector<int64_t> order = permutation(n, epoch_seed);
    std::mt19937_64 aug_rng(epoch_seed ^ 0xA5A5A5A5ULL);
    Progress bar(fmt::format("{} {}/{}", o.label, epoch + 1, o.epochs), n, "img", show);
    double loss_sum = 0;
    int64_t correct = 0, seen = 0;
    EpochStats st;
    st.epoch = epoch + 1;
    for (int64_t step = 0; step < steps_per_epoch; ++step) {
      const int64_t gs = step * global_batch, gbs = std::min(global_batch, n - gs);
      const auto [lo, hi] = local_range(gbs, o.batch_size, rank);
      const int64_t s = gs + lo, bs = hi - lo;
      if (world > 1 && o.augment)
        skip_augmentation(train_set, lo, aug_rng, o.augment_pad, o.augment_flip);
      torch::Tensor x = batcher.images(order.data() + s, bs, o.augment ? &aug_rng : nullptr,
                                       o.augment_pad, o.augment_flip)
                            .to(dev);
      if (world > 1 && o.augment)
        skip_augmentation(train_set, gbs - hi, aug_rng, o.augment_pad, o.augment_flip);
      torch::Tensor y = batcher.labels(order.data() + s, bs).to(dev);
      st.lr = lr_at(o, epoch * steps_per_epoch + step, steps_per_epoch);
      set_lr(*opt, o.optimizer, st.lr);
      opt->zero_grad();
      double l = 0;
      int64_t step_correct = 0;
      if (!dist) {
        torch::Tensor out = m.forward(x);
        torch::Tensor loss = torch::nn::functional::cross_entropy(out, y);
        loss.backward();
        l = loss.item<double>();
        step_correct = out.argmax(1).eq(y).sum().item<int64_t>();
      } else {
        std::tie(l, step_correct) = data_parallel_step(m, *dist, x, y, gbs, o.sync_bn);
      }
      opt->step();
      if (!std::isfinite(l))
        fail("training diverged at epoch {} step {} (loss {}); try a lower --lr", epoch + 1, step,
             l);
      if (o.record_step_losses) result.step_losses.push_back(l);
      loss_sum += l * static_cast<double>(gbs);
      correct += step_correct;
      seen += gbs;
      bar.update(seen, fmt::format("loss {:.4f} acc {:.2f}%", loss_sum / static_cast<double>(seen),
                                   100.0 * static_cast<double>(correct) / static_cast<double>(seen)));
    }
    st.seconds = bar.elapsed_seconds();
    st.images_per_second = static_cast<double>(n) / st.seconds;
    st.train_loss = loss_sum / static_cast<double>(seen);
    st.train_accuracy = static_cast<double>(correct) / static_cast<double>(seen);
    if (val) st.val_accuracy = evaluate_module(m, *val, {o.eval_batch_size, o.device, false}, dev,
                                               nullptr, 0).accuracy;
    bar.finish(fmt::format("loss {:.4f} acc {:.2f}%{}", st.train_loss, 100 * st.train_accuracy,
                           val ? fmt::format(" val {:.2f}%", 100 * st.val_accuracy) : ""));
    result.epochs.push_back(st);

    if (!o.checkpoint.empty() && rank == 0) {
      GraphFile ck = hooks.snapshot();
      nlohmann::json hist = nlohmann::json::array();
      for (const auto& e : result.epochs) hist.push_back(epoch_json(e));
      ck.meta["checkpoint"] = {{"epoch", epoch + 1}, {"options", options_json(o)},
                               {"history", hist}};
      std::ostringstream os;
      torch::serialize::OutputArchive ar;
      opt->save(ar);
      ar.save_to(os);
      ck.blobs["optimizer"] = os.str();
      save_graph_file(o.checkpoint, ck);
    }
    if (o.stop_after_epoch > 0 && epoch + 1 >= o.stop_after_epoch) break;
  }
  return result;
}

TrainResult train(Graph& g, const Dataset& train_set, const Dataset* val, const TrainOptions& o) {
  check_compatible(g, train_set);
  if (g.input_mean.empty()) channel_stats(train_set, g.input_mean, g.input_std);
  GraphModule m(g);
  CheckpointHooks hooks;
  hooks.snapshot = [&] {
    GraphFile f{g, {}, {}};
    m.export_to(f.graph);
    return f;
  };
  hooks.restore = [&](const GraphFile& f) { m.import_from(f.graph); };
  TrainResult r = train_module(m, train_set, val, o, hooks);
  m.export_to(g);
  return r;
}

EvalResult evaluate_module(GraphModule& m, const Dataset& data, const EvalOptions& o) {
  check_compatible(m.graph(), data);
  torch::Device dev = parse_device(o.device);
  m.to(dev);
  return evaluate_module(m, data, o, dev, nullptr, 0);
}

std::vector<float> predict_module(GraphModule& m, const Dataset& data, int64_t n) {
  check_compatible(m.graph(), data);
  m.to(torch::kCPU);
  std::vector<float> logits;
  evaluate_module(m, data, {}, torch::kCPU, &logits, n);
  return logits;
}

torch::Tensor normalized_batch(const Dataset& d, const Graph& g, int64_t first, int64_t n) {
  std::vector<int64_t> idx(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), first);
  return Batcher{d, g}.images(idx.data(), n, nullptr, 0, false);
}

EvalResult evaluate(const Graph& g, const Dataset& data, const EvalOptions& o) {
  GraphModule m(g);
  return evaluate_module(m, data, o);
}

namespace {
// LibTorch's intra-op thread count for the calling thread. LibTorch sets its inter-op pool once
// per process; configure_runtime sets the intra-op count first, so its complaint about a second
// setting of the former is ignored.
void intra_op_threads(int threads) {
  try {
    configure_runtime(threads);
  } catch (const std::exception&) {
  }
}
}  // namespace

double inference_throughput(const Graph& g, const Dataset& data, int64_t batch, int threads,
                            bool split) {
  if (batch < 1 || threads < 1 || data.size() < batch)
    fail(
        "inference_throughput: batches of {} on {} threads over {} images (expected 1 <= batch "
        "<= images, threads >= 1)",
        batch, threads, data.size());
  if (!split) {
    intra_op_threads(threads);
    EvalOptions o;
    o.batch_size = batch;
    evaluate(g, take(data, batch), o);  // warm-up
    return evaluate(g, data, o).images_per_second;
  }
  const int64_t n = data.size(), per = std::max<int64_t>(1, batch / threads);
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::exception_ptr> errors(static_cast<size_t>(threads));
  auto work = [&](int k) {
    bool counted = false;
    try {
      intra_op_threads(1);
      const Dataset share = take_range(data, n * k / threads, n * (k + 1) / threads);
      EvalOptions o;
      o.batch_size = per;
      evaluate(g, take(share, per), o);  // warm-up
      counted = true;
      ++ready;
      while (!go.load()) std::this_thread::yield();
      evaluate(g, share, o);
    } catch (...) {
      errors[static_cast<size_t>(k)] = std::current_exception();
      if (!counted) ++ready;  // the others must not wait for it
    }
  };
  std::vector<std::thread> pool;
  for (int k = 0; k < threads; ++k) pool.emplace_back(work, k);
  while (ready.load() < threads) std::this_thread::yield();
  const auto t0 = std::chrono::steady_clock::now();
  go = true;
  for (auto& t : pool) t.join();
  for (const std::exception_ptr& e : errors)
    if (e) std::rethrow_exception(e);
  const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return static_cast<double>(n) / sec;
}

std::vector<float> predict(const Graph& g, const Dataset& data, int64_t n) {
  GraphModule m(g);
  return predict_module(m, data, n);
}

}  // namespace sq
