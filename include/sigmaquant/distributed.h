// Data-parallel training over LibTorch's c10d (ProcessGroupGloo on CPU), launched like a torchrun
// job. This header is torch-free; the implementation is src/torch/distributed.cpp.
//
//   // every process of the job (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT in its environment):
//   sq::DistConfig cfg = sq::dist_config_from_env(60);   // world_size 1 when WORLD_SIZE is unset
//   std::shared_ptr<sq::DistContext> dist = sq::init_distributed(cfg);  // rendezvous
//   sq::TrainOptions o;  o.batch_size = 64;  o.dist = dist;  // global batch = 64 x world size
//   sq::train(g, data.train, nullptr, o);                   // rank 0 writes the checkpoints
//
// What is synchronised (docs/distributed.md): the parameters (broadcast from rank 0 at the start
// and after a resume), every gradient (bucketed all-reduce after the backward pass; the LSQ/PACT
// quantizer parameters are parameters and reduce like weights), the epoch's loss and accuracy, the
// checkpoint that a resume starts from (rank 0 reads it and hands the bytes to every rank through
// the store). Batch norm: per rank by default (each rank's batch statistics and its own running
// statistics; rank 0's are saved); with TrainOptions::sync_bn (--sync-bn) over the global batch,
// running statistics equal on every rank (src/torch/sync_batchnorm.h). An allocation
// (AllocationRequest::dist) trains Phase 2's cycles and the final QAT this way, evaluates in
// shares and shares exhaustive's candidates out over the ranks.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace sq {

struct DistConfig {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  // How long a rank waits for its peers: at the rendezvous, in a collective, at a barrier.
  double timeout_s = 300;
  // The store is hosted by the launcher (torchrun's agent, or `--nproc`), not by rank 0:
  // TORCHELASTIC_USE_AGENT_STORE=True, as torchrun sets it.
  bool agent_store = false;
};

// The torchrun environment: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT,
// TORCHELASTIC_USE_AGENT_STORE. Without WORLD_SIZE: a single process (world_size 1). A variable
// that is set but malformed or out of range is an error that names it.
DistConfig dist_config_from_env(double timeout_s);

// One process's membership of a job: the rendezvous store, the Gloo process group, a heartbeat
// thread that lets every rank tell which peer has gone when a collective fails.
class DistContext;

// Rendezvous at master_addr:master_port (rank 0 hosts the TCPStore unless agent_store), then the
// Gloo group. Fails within timeout_s naming the ranks that did not arrive. world_size 1: nullptr
// (callers treat a null context as a single process).
std::shared_ptr<DistContext> init_distributed(const DistConfig& cfg);

int dist_rank(const DistContext* d);        // 0 for nullptr
int dist_world_size(const DistContext* d);  // 1 for nullptr
// Waits until every rank has reached this point (through the store, so a rank that is still
// working holds the others without a timeout as long as its heartbeat is alive). `what` names the
// point in the error when a rank has gone.
void dist_wait_all(DistContext* d, const std::string& what);
// Rank 0's bytes, on every rank (through the store).
std::string dist_share_from_rank0(DistContext* d, const std::string& key, const std::string& bytes);
// Rank `root`'s bytes, on every rank (through the store, waiting without a deadline while the
// ranks' heartbeats live: the root may still be working).
std::string dist_share_from(DistContext* d, int root, const std::string& key,
                            const std::string& bytes);
// Sums v over the ranks in place (Gloo all-reduce of doubles): every rank gets the same sums.
// `what` names the point in the error when a rank has gone. Nothing happens for nullptr.
void dist_allreduce_sum(DistContext* d, std::vector<double>& v, const std::string& what);
// Fails on every rank that holds other values than its peers (e.g. a search whose ranks took
// different decisions), naming `what`. Exact comparison: meant for integers (bit widths, counts).
void dist_check_same(DistContext* d, const std::vector<double>& v, const std::string& what);
// Bytes all-reduced so far by gradient buckets (for the benchmark), and the bucket count.
struct DistStats {
  int64_t allreduce_bytes = 0;
  int64_t allreduce_calls = 0;
  int64_t steps = 0;
};
DistStats dist_stats(const DistContext* d);

// `--nproc N`: runs `argv` (this program's arguments, without --nproc) as N local workers with
// RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/MASTER_PORT set, hosting the rendezvous store itself on a
// free port (or MASTER_PORT when set). Waits for them; when one dies (signal or non-zero exit) it
// names the rank on stderr, gives the others timeout_s to stop on their own, then kills them.
// Returns the exit status for the launcher: 0 when every worker exited 0.
int launch_local_workers(int nproc, const std::vector<std::string>& argv, double timeout_s);

}  // namespace sq
