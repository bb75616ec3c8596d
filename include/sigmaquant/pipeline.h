// The product's main flow as one library call: a trained FP32 network, a hardware target with its
// budgets, a method → a mixed-precision quantized model that fits every budget, its run log and
// (optionally) its files. The command-line program (`quantize`, `pareto`) and the Python module
// are thin front ends over this header.
//
//   sq::AllocationRequest req;
//   req.model = sq::load_graph_file("models/resnet20-fmnist.sqg").graph;
//   req.target = sq::resolve_target("targets/shiftadd.json");
//   req.method = "sigmaquant";          // any name in sq::method_names()
//   req.avg_bits = 3;                   // optional: replaces the target's weight-memory budget
//   req.out_dir = "runs/r20-sq";        // optional: bits.json, model.sqg, log.json, report.html
//   sq::DataBundle data = sq::load_data({});
//   sq::RunResult r = sq::run_allocation(req, data);
//   // r.model: the quantized model (simulated); r.log.final->accuracy: its test accuracy
//
// Units: every accuracy, drop and band in this header is a FRACTION in [0, 1]; front ends convert
// to and from percent. Budgets are in base units (bytes, seconds, joules).
//
// Guarantees: the returned assignment fits every budget; the returned model is never worse on the
// validation images than the state it held before its last training step (the final QAT keeps the
// better of "before" and "after", and the log says which); with out_dir and resume, a killed run
// continues from its last recorded step.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "sigmaquant/bits.h"
#include "sigmaquant/cost.h"
#include "sigmaquant/data.h"
#include "sigmaquant/dnas.h"
#include "sigmaquant/graph.h"
#include "sigmaquant/qmodel.h"
#include "sigmaquant/run_log.h"
#include "sigmaquant/search.h"
#include "sigmaquant/train.h"

namespace sq {

// ---- training settings shared by every command that trains ----

enum class AugmentMode { Auto, On, Off };
enum class KlMode { Output, Weight };
const char* augment_mode_name(AugmentMode m);  // "auto" | "on" | "off"
AugmentMode parse_augment_mode(const std::string& s, const std::string& where);
const char* kl_mode_name(KlMode m);  // "output" | "weight"
KlMode parse_kl_mode(const std::string& s, const std::string& where);
// Where the final QAT starts (AllocationRequest::final_start).
enum class FinalStart { Search, Ptq };
const char* final_start_name(FinalStart f);  // "search" | "ptq"
FinalStart parse_final_start(const std::string& s, const std::string& where);

struct TrainingSettings {
  double lr = 0.001;
  int64_t batch_size = 128;
  int64_t memory_limit = 0;  // TrainOptions::memory_limit (parse_memory_size: "16G", "off")
  AugmentMode augment = AugmentMode::Auto;
  int augment_pad = 2;        // when augmenting: random shift in pixels (capped at H/8)
  std::optional<bool> flip;   // when augmenting: horizontal flip (default: the data set's)
};

// What augmentation a data set gets. Auto: random shift + horizontal flip for the natural-image
// sets the project knows (fashion-mnist, cifar10, cifar100), shift only for mnist (a mirrored
// digit is another glyph), none for idx/npy data (unknown content: a flip or shift may change the
// class). The shift never exceeds an eighth of the image side (2 px on 28x28, 1 px on 8x8).
struct Augmentation {
  bool on = false;
  int pad = 0;
  bool flip = false;
  std::string why;  // one line, printed by the front ends
};
Augmentation resolve_augmentation(const TrainingSettings& t, const Dataset& d);
std::string describe(const Augmentation& a);
// Puts the resolved augmentation on training options (the one place that maps it).
void apply(const Augmentation& a, TrainOptions& o);

// ---- the request ----

struct AllocationRequest {
  std::string method = "sigmaquant";  // a registered method (method_names())
  Graph model;                        // the trained FP32 network
  std::string model_path;             // where it came from (log, resume identity); may be ""
  Target target;                      // its budgets apply unless avg_bits replaces the memory one
  double avg_bits = 0;                // > 0: weight-memory budget of this average width
  double accuracy_target = 0;         // fraction; 0: FP32 validation accuracy - max_drop
  double max_drop = 0.005;            // fraction
  std::vector<int> bits_set = {2, 3, 4, 5, 6, 8};  // candidate weight widths
  int abits = 8;
  int first_last_bits = 0;  // > 0: pin the first and the last weight layer to this width
  // Phase 2 (sigmaquant)
  double cycle_epochs = 0.1;
  int max_iterations = 6;
  double band = 0.005;  // fraction above the accuracy target
  bool minimize = false;
  int max_raises = 2;
  KlMode kl = KlMode::Output;
  // training (search cycles and final QAT)
  double final_epochs = 1;  // < 1: that fraction of the training set
  // Where the final QAT starts: Search, the method's trained search state where it has one
  // (sigmaquant's best Phase 2 model, dnas' searched weights), else the PTQ model at its
  // assignment; Ptq, the PTQ model for every method — the same final QAT for all, so that a
  // comparison measures the assignments and not the extra training a search did (issue 16).
  FinalStart final_start = FinalStart::Search;
  TrainingSettings training;
  int64_t val_samples = 2000;  // held out of the training set (at most a fifth of it)
  int64_t kl_samples = 512, calib_samples = 1024;
  // baselines
  int64_t hessian_samples = 512;
  int hessian_probes = 4;
  int64_t adaptive_samples = 1000;
  double adaptive_drop = 0.01;  // fraction
  int64_t exhaustive_limit = 2000;
  // dnas / dnas-layer (the differentiable search, include/sigmaquant/dnas.h)
  std::vector<int> abits_set;                 // searched activation widths (empty: {abits})
  std::vector<int> dnas_wbits = {0, 2, 4, 8};  // weight widths per channel (0 = pruned)
  int dnas_epochs = 4;                        // search epochs per lambda tried
  double dnas_lambda = 0;                     // > 0: fixed strength; 0: chosen to meet the budgets
  int dnas_bisect_steps = 3;
  // The regulariser: the expected cost (Cost, the paper's) or its excess over the budgets
  // (Excess: below its budget a metric costs nothing; DnasPenalty)
  DnasPenalty dnas_penalty = DnasPenalty::Cost;
  double dnas_tau_end = 0;  // > 0: the temperature falls to this over the search (DnasOptions)
  // Budget mode: each argmax raised while every budget holds (DnasOptions::fill); false: as the
  // search left it
  bool dnas_fill = true;
  // > 0: each lambda's argmax is scored after this much QAT (a fraction of an epoch) from the
  // searched weights, not by PTQ alone (DnasOptions::select_epochs)
  double dnas_select_epochs = 0;
  // dnas / sigmaquant-channel: every layer's channel count per weight width a multiple of this
  // (snap_channel_groups, include/sigmaquant/dnas.h); 16 = the engine's tile; 1 = free widths
  int channel_group = 16;
  uint64_t seed = 1;
  // output
  std::string out_dir;  // "": nothing is written (no resume)
  bool resume = false;
  bool write_report = true;
  bool progress = false;  // training progress bars on stderr
  // Data parallel (distributed.h; nullptr: one process). Every rank of the job calls
  // run_allocation with the same request; training.batch_size is per rank (global batch x
  // world). Phase 2's QAT cycles and the final QAT train data-parallel, evaluations are shared
  // out and all-reduced, `exhaustive` shares its candidates out over the ranks; every rank takes
  // the same decisions and returns the same result. Only rank 0 writes into out_dir; a resume
  // reads it on every rank (across machines out_dir must be on a shared file system).
  std::shared_ptr<DistContext> dist;
};

// ---- progress for any front end ----

class Observer {
 public:
  virtual ~Observer() = default;
  // One line of news: the split, the augmentation, which model was kept, resume, ...
  virtual void message(const std::string& /*line*/) {}
  // After every search step (Phase 1/2 iteration, exhaustive candidate) is recorded.
  virtual void iteration(const RunIteration& /*it*/) {}
  // Stage changes: "search", "final QAT", "report", "done".
  virtual void stage(const std::string& /*name*/) {}
};

// ---- the allocation methods: a registry ----

// What a method gets: the prepared problem and the run's services.
struct MethodContext {
  const AllocationRequest& request;
  const Graph& fp32;
  const Graph& folded;  // BN folded: what the cost model and the quantized model see
  const CostEvaluator& cost;
  const Budgets& budgets;
  const std::vector<int>& candidates;  // candidate_widths(request.bits_set, target)
  const std::map<std::string, int>& pinned;
  const Dataset& train;
  const Dataset& val;
  const OracleOptions& oracle;  // QAT-cycle settings for methods that train
  double accuracy_target = 0;   // fraction
  const RunLog* previous = nullptr;  // an interrupted run's log when resuming (else null)
  RunLog& log;                       // methods add clusters / measurements / iterations
  Observer& observer;
  // Records the log (and, if given, the model of the last step) so a killed run resumes here.
  std::function<void(const QuantModel* last_model)> checkpoint;
};

struct MethodResult {
  BitConfig bits;                          // must fit every budget
  std::optional<QuantModel> start_model;   // trained state for the final QAT (else PTQ)
  double search_qat_epochs = 0;
  std::map<std::string, double> layer_kl;  // per layer at its final bits (for the log)
  std::map<std::string, int> phase1_bits, cluster;  // sigmaquant: per layer (for the log)
};

using MethodFn = std::function<MethodResult(MethodContext&)>;

struct MethodInfo {
  std::string name, description;
  bool trains = false;  // its search runs QAT cycles
  MethodFn run;
  bool searches_abits = false;  // it chooses activation widths from request.abits_set
};
// Adds (or replaces) a method; the built-ins (sigmaquant, sigmaquant-channel, uniform, adaptive,
// hessian, random, exhaustive, dnas, dnas-layer) are registered on first use of the registry.
void register_method(MethodInfo m);
std::vector<std::string> method_names();
const MethodInfo& find_method(const std::string& name);  // throws, listing the known names

// ---- one run ----

struct RunResult {
  RunLog log;
  QuantModel model;  // the returned quantized model (simulated; integerize/export it)
  BitConfig bits;
};

// Validates the request (errors name the field), splits the training set (seeded), runs the
// method, the final QAT (keeping the better validated state) and writes the outputs.
RunResult run_allocation(const AllocationRequest& req, const DataBundle& data,
                         Observer* observer = nullptr);

// ---- the Pareto sweep ----

struct ParetoRequest {
  AllocationRequest base;  // method and avg_bits set per run; abits_set only for searches_abits
  std::vector<std::string> methods = {"sigmaquant", "uniform", "adaptive", "hessian"};
  std::vector<double> budgets = {2.5, 3, 4};  // average weight bits; 0 = the target's budgets
  // Seeds (split, initial order, final QAT); each (method, budget) runs once per seed. Empty:
  // base.seed alone, runs in out_dir/<method>-<b>bits; else in out_dir/seed<s>/<method>-<b>bits
  // (the layout of `pareto --seed s -o out_dir/seed<s>`, so such runs are reused).
  std::vector<uint64_t> seeds;
  std::string out_dir = "runs/pareto";  // one sub-directory per run; pareto.{json,csv}
  std::string reference = "uniform";    // the summary's iso-accuracy memory reference
  // Several ranks (distributed.h): run i of the sweep (seed-major, then budget, then method)
  // goes to rank i % world; rank 0 then collects every run from out_dir (shared by the ranks)
  // and writes the table, summary and report. Each run trains in one process. nullptr: every
  // run here.
  std::shared_ptr<DistContext> dist;
};
// Every method at every budget and seed (finished runs in out_dir are reused with base.resume),
// then pareto.json, pareto.csv, summary.json / summary.md (sq::summarize_pareto: mean ± std,
// Welch's t-test, iso-accuracy memory saving) and report.html in out_dir.
ParetoResult pareto_sweep(const ParetoRequest& req, const DataBundle& data,
                          Observer* observer = nullptr);

}  // namespace sq
