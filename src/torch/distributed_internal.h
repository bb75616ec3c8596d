// The c10d side of sq::DistContext (include/sigmaquant/distributed.h), for the trainer.
#pragma once

#include <torch/torch.h>

#include <atomic>
#include <thread>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <vector>

#include "sigmaquant/distributed.h"

namespace sq {

class DistContext {
 public:
  explicit DistContext(const DistConfig& cfg);
  ~DistContext();
  DistContext(const DistContext&) = delete;
  DistContext& operator=(const DistContext&) = delete;

  const DistConfig& config() const { return cfg_; }
  int rank() const { return cfg_.rank; }
  int world() const { return cfg_.world_size; }

  // Gradient reduction overlapped with the backward pass, as torch's DDP does it: attach() puts
  // a hook on every parameter and cuts them (in reverse registration order, the order the
  // backward pass produces their gradients) into buckets of at most bucket_bytes. During
  // backward, a bucket whose gradients are all there is flattened into one buffer and its
  // all-reduce (sum) starts at once, while autograd computes the next ones; buckets start in
  // index order on every rank so that the collectives match. finish_step() starts what the
  // backward did not reach (a rank with an empty share runs no backward), sums `extra` too,
  // waits, and writes the sums into the parameters' .grad.
  void attach(const std::vector<torch::Tensor>& params);
  // The hooks stay on the tensors but do nothing after detach() (or once this context is gone).
  void detach();
  void begin_step();
  void finish_step(torch::Tensor& extra);
  // Sums a tensor across the ranks in place.
  void allreduce(torch::Tensor& t, const std::string& what);
  // Rank 0's values of `tensors`, on every rank.
  void broadcast(std::vector<torch::Tensor>& tensors, const std::string& what);
  void wait_all(const std::string& what);
  std::string share_from_rank0(const std::string& key, const std::string& bytes);
  std::string share_from(int root, const std::string& key, const std::string& bytes);

  int64_t bucket_bytes = 256 << 10;
  DistStats stats;

 private:
  void wait_work(const c10::intrusive_ptr<c10d::Work>& w, const std::string& what);
  // The ranks whose heartbeat stopped (the store's host when the store cannot be reached).
  std::string gone_ranks_message();
  [[noreturn]] void fail_collective(const std::string& what, const std::string& detail);
  std::vector<int> ranks_silent(std::chrono::milliseconds window);

  DistConfig cfg_;
  c10::intrusive_ptr<c10d::Store> store_;     // this thread's connection
  c10::intrusive_ptr<c10d::Store> hb_store_;  // the heartbeat thread's own connection
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg_;
  std::thread heartbeat_;
  std::atomic<bool> stop_{false};
  int64_t wait_seq_ = 0;
  int64_t share_seq_ = 0;
  void on_grad(size_t k, const torch::Tensor& g);
  void launch_ready();
  void launch(size_t b);
  std::vector<torch::Tensor> params_;
  std::shared_ptr<std::atomic<bool>> attached_;  // shared with the hooks
  std::vector<std::vector<size_t>> buckets_;     // parameter indices per bucket
  std::vector<size_t> bucket_of_;                // per parameter
  std::vector<torch::Tensor> pending_;           // this step's gradient per parameter
  std::vector<size_t> ready_;                    // per bucket: gradients there
  std::vector<torch::Tensor> flat_;              // per bucket: the buffer being reduced
  std::vector<c10::intrusive_ptr<c10d::Work>> works_;
  size_t next_launch_ = 0;
};

}  // namespace sq
