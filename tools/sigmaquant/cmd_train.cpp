// sigmaquant train — FP32 training of a zoo model (or a model file) with checkpoints and resume.
#include <fmt/format.h>

#include "common.h"
#include "dist_flags.h"
#include "sigmaquant/error.h"
#include "sigmaquant/fileutil.h"
#include "sigmaquant/graph_io.h"
#include "sigmaquant/train.h"
#include "training_flags.h"

namespace sqcli {
namespace {

struct TrainFlags {
  ModelFlags model;
  DataFlags data;
  Common common;
  sq::TrainOptions opts;
  std::string out;
  double val_fraction = 0.0;
  TrainingFlags training;
  DistFlags dist;
  bool step_losses = false;
};

void run_train(TrainFlags& f) {
  sq::configure_runtime(f.common.threads);
  launch_if_asked(f.dist);
  sq::TrainOptions o = f.opts;
  o.dist = join_job(f.dist, o.batch_size, !f.common.json);
  o.sync_bn = f.dist.sync_bn;
  // Rank 0 alone writes and prints; the other ranks only train.
  const bool rank0 = sq::dist_rank(o.dist.get()) == 0;
  o.seed = f.model.seed;
  o.progress = !f.common.quiet && rank0;
  o.record_step_losses = f.step_losses;
  if (f.out.empty()) f.out = "runs/" + f.model.model + ".sqg";
  if (o.checkpoint.empty()) o.checkpoint = f.out + ".ckpt";
  if (rank0) {
    prepare_output(f.out, "--out");
    prepare_output(o.checkpoint, "--checkpoint");
  }

  sq::DataBundle d = load_data(f.data);
  sq::Dataset train_set = d.train, val;
  if (f.val_fraction > 0) std::tie(train_set, val) = sq::split(d.train, f.val_fraction, o.seed);
  apply_training_flags(f.training, d.train, o, !f.common.json && !f.common.quiet && rank0);
  sq::Graph g = resolve_model(f.model.model, d.train.image_shape, d.train.num_classes, o.seed);
  if (!f.common.json && rank0)
    fmt::print(stderr, "training {} ({} parameters) on {}: {} train / {} val / {} test images, "
               "{} epochs, batch {}, {} threads\n",
               g.name, g.total_params(), d.train.name, train_set.size(), val.size(), d.test.size(),
               o.epochs, o.batch_size, f.common.threads);
  if (o.lr <= 0) {
    // Plain (BN-free) networks diverge at the rate that suits batch-normalized ones.
    bool has_bn = false;
    for (const auto& n : g.nodes) has_bn |= n.op == sq::Op::BatchNorm;
    o.lr = o.optimizer == "adam" ? 1e-3 : has_bn ? 0.1 : 0.02;
  }
  sq::TrainResult r = sq::train(g, train_set, f.val_fraction > 0 ? &val : nullptr, o);
  if (!rank0) return;
  sq::EvalResult e = sq::evaluate(g, d.test, {o.eval_batch_size, o.device, false});

  nlohmann::json hist = nlohmann::json::array();
  double total_s = 0;
  for (const auto& ep : r.epochs) {
    total_s += ep.seconds;
    hist.push_back({{"epoch", ep.epoch}, {"lr", ep.lr}, {"train_loss", ep.train_loss},
                    {"train_accuracy", ep.train_accuracy}, {"val_accuracy", ep.val_accuracy},
                    {"seconds", ep.seconds}, {"images_per_second", ep.images_per_second}});
  }
  nlohmann::json summary = {{"model", g.name},
                            {"data", d.train.name},
                            {"train_samples", train_set.size()},
                            {"test_samples", e.samples},
                            {"test_accuracy", e.accuracy},
                            {"test_loss", e.loss},
                            {"epochs", o.epochs},
                            {"lr", o.lr},
                            {"seed", o.seed},
                            {"threads", f.common.threads},
                            {"train_seconds", total_s},
                            {"resumed_from_epoch", r.resumed_from_epoch},
                            {"history", hist},
                            {"out", f.out},
                            {"data_parallel", data_parallel_json(o.dist.get(), o.batch_size)}};
  if (f.step_losses) summary["step_losses"] = r.step_losses;
  sq::GraphFile file{g, {{"train", summary}}, {}};
  file.meta["train"].erase("step_losses");
  sq::save_graph_file(f.out, file);

  if (f.common.json) {
    print_json(summary);
    return;
  }
  double ips = 0;
  for (const auto& ep : r.epochs) ips += ep.images_per_second / static_cast<double>(r.epochs.size());
  fmt::print("{}: test accuracy {:.2f}% (loss {:.4f}) after {} epochs; {:.1f} s/epoch, "
             "{:.0f} img/s; saved {}\n",
             g.name, 100 * e.accuracy, e.loss, o.epochs, total_s / std::max<size_t>(1, r.epochs.size()),
             ips, f.out);
}

}  // namespace

void add_train(CLI::App& app) {
  auto f = std::make_shared<TrainFlags>();
  CLI::App* cmd = app.add_subcommand("train", "train an FP32 model (zoo name or model file)");
  add_model_flags(cmd, f->model, false);
  add_data_flags(cmd, f->data);
  add_common_flags(cmd, f->common);
  auto& o = f->opts;
  cmd->add_option("--out,-o", f->out, "output model file (default runs/<model>.sqg)");
  cmd->add_option("--epochs,-e", o.epochs, "training epochs")->capture_default_str();
  cmd->add_option("--batch-size,-b", o.batch_size, "batch size")->capture_default_str();
  cmd->add_option("--optimizer", o.optimizer, "sgd (Nesterov) or adam")->capture_default_str();
  o.lr = 0;
  cmd->add_option("--lr", o.lr,
                  "peak learning rate (default: sgd 0.1 with batchnorm, 0.02 without; adam 1e-3)")
      ->check(positive_number());
  cmd->add_option("--momentum", o.momentum, "SGD momentum")->capture_default_str();
  cmd->add_option("--weight-decay,--wd", o.weight_decay, "weight decay")->capture_default_str();
  cmd->add_option("--schedule", o.schedule, "cosine or constant")->capture_default_str();
  cmd->add_option("--warmup-epochs", o.warmup_epochs, "linear warm-up epochs")
      ->capture_default_str();
  add_training_flags(cmd, f->training);
  cmd->add_option("--val-fraction", f->val_fraction, "hold out this fraction of train for validation")
      ->capture_default_str();
  cmd->add_option("--checkpoint", o.checkpoint, "checkpoint file (default <out>.ckpt)");
  cmd->add_flag("--resume", o.resume, "continue from the checkpoint if it exists");
  cmd->add_option("--stop-after", o.stop_after_epoch,
                  "stop after this epoch (checkpoint written); continue later with --resume");
  cmd->add_option("--device", o.device, "cpu or cuda")->capture_default_str();
  add_dist_flags(cmd, f->dist);
  add_sync_bn_flag(cmd, f->dist);
  cmd->add_flag("--step-losses", f->step_losses, "include every step's loss in the JSON output");
  cmd->callback([f] { run_train(*f); });
}

}  // namespace sqcli
