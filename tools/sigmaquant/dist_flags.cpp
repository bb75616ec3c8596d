#include "dist_flags.h"

#include <fmt/format.h>

namespace sqcli {
namespace {
std::vector<std::string> g_args;
}

void add_dist_flags(CLI::App* cmd, DistFlags& f) {
  cmd->add_option("--nproc", f.nproc,
                  "run as N local data-parallel workers (Gloo); without it the job is read from "
                  "torchrun's RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT")
      ->check(CLI::Range(1, 1024));
  cmd->add_option("--dist-timeout", f.timeout,
                  "seconds a rank waits for its peers (rendezvous, collectives)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
}

void add_sync_bn_flag(CLI::App* cmd, DistFlags& f) {
  cmd->add_flag("--sync-bn", f.sync_bn,
                "data parallel: batch norm with the statistics of the global batch (all ranks), "
                "running statistics equal on every rank (default: each rank's own share)");
}

void set_program_args(int argc, char** argv) { g_args.assign(argv, argv + argc); }

void launch_if_asked(const DistFlags& f) {
  if (f.nproc <= 0) return;
  std::vector<std::string> args;
  for (size_t i = 0; i < g_args.size(); ++i) {
    if (g_args[i] == "--nproc") {
      ++i;  // and its value
      continue;
    }
    if (g_args[i].rfind("--nproc=", 0) == 0) continue;
    args.push_back(g_args[i]);
  }
  throw ExitStatus{sq::launch_local_workers(f.nproc, args, f.timeout)};
}

std::shared_ptr<sq::DistContext> join_job(const DistFlags& f, int64_t batch_size, bool print) {
  std::shared_ptr<sq::DistContext> d = sq::init_distributed(sq::dist_config_from_env(f.timeout));
  const int world = sq::dist_world_size(d.get());
  if (d && print && sq::dist_rank(d.get()) == 0)
    fmt::print(stderr, "data parallel: {} ranks (Gloo) x batch {} = global batch {}\n", world,
               batch_size, batch_size * world);
  return d;
}

nlohmann::json data_parallel_json(const sq::DistContext* d, int64_t batch_size) {
  const int world = sq::dist_world_size(d);
  const sq::DistStats s = sq::dist_stats(d);
  const double steps = static_cast<double>(std::max<int64_t>(1, s.steps));
  return {{"world_size", world},
          {"batch_per_rank", batch_size},
          {"global_batch", batch_size * world},
          {"allreduce_bytes_per_step", static_cast<double>(s.allreduce_bytes) / steps},
          {"allreduce_calls_per_step", static_cast<double>(s.allreduce_calls) / steps}};
}

}  // namespace sqcli
