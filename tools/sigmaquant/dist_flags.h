// Flags of the commands that run data-parallel (train, qat, pareto): `--nproc N` starts N local
// workers; a worker (RANK/WORLD_SIZE in its environment, as torchrun sets them) joins the job.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "sigmaquant/distributed.h"

namespace sqcli {

struct DistFlags {
  int nproc = 0;         // > 0: start this many local workers and wait for them
  double timeout = 300;  // seconds a rank waits for its peers
  bool sync_bn = false;  // synchronised batch norm (commands that train data-parallel)
};
void add_dist_flags(CLI::App* cmd, DistFlags& f);
// --sync-bn (train, qat, quantize: the commands whose training runs data-parallel).
void add_sync_bn_flag(CLI::App* cmd, DistFlags& f);

// Thrown to make main() return this status (the launcher's workers' result).
struct ExitStatus {
  int code;
};
// The program's own arguments, recorded by main() (the launcher re-runs them without --nproc).
void set_program_args(int argc, char** argv);

// With --nproc N: runs this command as N local workers and throws ExitStatus with their result.
void launch_if_asked(const DistFlags& f);
// Joins the job described by the environment (nullptr: one process). Rank 0 prints the layout
// (ranks, per-rank and global batch) when `print`.
std::shared_ptr<sq::DistContext> join_job(const DistFlags& f, int64_t batch_size, bool print);

// {"world_size", "batch_per_rank", "global_batch", "allreduce_bytes_per_step",
// "allreduce_calls_per_step"} of this rank's training (world_size 1 without a job).
nlohmann::json data_parallel_json(const sq::DistContext* d, int64_t batch_size);

}  // namespace sqcli
