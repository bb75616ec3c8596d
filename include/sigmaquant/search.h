// Bit-allocation searches that need accuracy measurements: SigmaQuant Phase 2 and the baselines
// (uniform, adaptive quantization after Zhou et al., Hessian-aware integer program, random,
// exhaustive).
// This header is torch-free: the searches talk to training through SearchOracle, so a test can
// drive them with a stand-in; src/torch/search.cpp implements the real oracle with LibTorch.
//
//   sq::Budgets b = sq::budgets_for_avg_bits(g, target, 3.0, 8);     // or the target's own
//   sq::Phase1Result p1 = sq::sigmaquant_phase1(g, target, o1);       // every budget holds
//   sq::QatOracle oracle(g, train, val, oracle_opts);                  // LibTorch (below)
//   sq::Phase2Result p2 = sq::sigmaquant_phase2(g, cost, b, p1.bits, oracle, o2);
//
// Every budget holds at every step of every search here: a move that would break one is never
// made (tests/core/test_search.cpp checks it with a stand-in oracle). Every allocator chooses from
// candidate_widths(candidates, target) (alloc.h) and refuses a budget exactly when no assignment
// over those widths meets every budget, with AssignmentSolver::why_infeasible's reason
// (tests/core/test_feasibility.cpp checks it on random budgets, every zoo model and target).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "sigmaquant/alloc.h"
#include "sigmaquant/bits.h"
#include "sigmaquant/cost.h"
#include "sigmaquant/distributed.h"
#include "sigmaquant/graph.h"

namespace sq {

struct Dataset;
struct QuantModel;

// ---- budgets ----

// The target's budgets with the weight-memory budget replaced by the memory of the model at an
// average of `avg_bits` weight bits: at an integer N exactly the memory of uniform N bits (scales,
// biases and byte rounding included, so uniform N always fits), between integers linear between
// the two neighbouring uniform widths. Other budgets are kept.
Budgets budgets_for_avg_bits(const Graph& g, const Target& t, double avg_bits, int abits);

// Every budget fits?
bool fits(const CostEvaluator& ce, const Budgets& b, const BitConfig& bits);

// The largest uniform weight width in candidate_widths(candidates, target) (abits for
// activations; pinned layers keep their bits) that fits every budget, every width tried (under a
// model not monotone in the weight bits a wider width can fit where a narrower one does not);
// throws sq::Error naming the budget each width breaks and whether a mixed assignment would fit.
int nearest_feasible_uniform(const Graph& g, const CostEvaluator& ce, const Budgets& b,
                             const std::vector<int>& candidates, int abits,
                             const std::map<std::string, int>& pinned = {});
// That assignment.
BitConfig uniform_with_pins(const Graph& g, int wbits, int abits,
                            const std::map<std::string, int>& pinned);

// ---- what the searches need from training ----

class SearchOracle {
 public:
  virtual ~SearchOracle() = default;
  // Puts `bits` on the model (layers whose bits changed get fresh weight scales; the rest keep
  // their trained state), runs a short QAT of `epochs` (a fraction of the training set), and
  // returns the validation accuracy in [0, 1].
  virtual double train_and_evaluate(const BitConfig& bits, double epochs, int iteration) = 0;
  // Sensitivity of weight layer `layer` at `bits` (>= 0, smaller is better): a KL divergence.
  virtual double layer_kl(const std::string& layer, int bits) = 0;
  // The same for activation point `point` (activation_points()) at `bits`: needed only when
  // Phase 2 moves activation widths (Phase2Options::abits_set); the default refuses.
  virtual double point_kl(const std::string& point, int bits);
};

// ---- SigmaQuant Phase 2 ----

struct Phase2Options {
  double target_accuracy = 0;  // absolute, in [0, 1]
  double band = 0.005;         // tolerance band above the target
  bool minimize = false;       // above target + band: lower the smallest-KL layers
  int max_iterations = 6;
  double cycle_epochs = 0.1;  // QAT per cycle (fraction of the training set)
  int max_raises = 2;         // raises per iteration (each paid for by lowerings)
  // Below the target with no swap whose payment costs less KL than its raise removes: try the
  // least unprofitable swap anyway (its QAT cycle decides; the best step is kept), once in a row.
  bool explore = true;
  std::vector<int> candidate_bits = {2, 3, 4, 5, 6, 8};  // then candidate_widths(., target)
  std::map<std::string, int> pinned;  // never moved
  // Two or more widths: activation points (not read by a pinned layer) move too, between these
  // widths, scored by SearchOracle::point_kl like the layers by layer_kl.
  std::vector<int> abits_set;
};

struct BitChange {
  std::string layer;  // a weight layer, or (activation) an activation point
  int from = 0, to = 0;
  std::string why;  // "raise: largest KL per cost", "pay: smallest KL per cost", "minimise: ...",
                    // "raise (explore): ...", "spend leftover budget"
  bool activation = false;  // the width of activation point `layer` (its readers' abits)
};

struct Phase2Step {
  int iteration = 0;  // 0 = the Phase 1 assignment
  BitConfig bits;
  std::vector<BitChange> changes;  // made before this step's QAT cycle
  double accuracy = 0;             // validation, after the cycle
  CostReport cost;
  std::vector<BudgetCheck> budgets;
  double avg_bits = 0;
  double qat_epochs = 0;  // this step's
  double seconds = 0;
  std::map<std::string, double> kl;  // per layer at its bits in this step
};

struct Phase2Result {
  BitConfig bits;  // the best feasible step (highest accuracy; ties: cheaper)
  double accuracy = 0;
  int best_step = 0;
  std::vector<Phase2Step> steps;
  double qat_epochs = 0;
  std::string stop_reason;  // "in band", "fixed point", "iteration limit" (of the search; the
                            // spending step, if any, follows it)
};

// Resumable state: steps done so far (the search continues after the last one).
using Phase2StepHook = std::function<void(const Phase2Step&)>;

// Runs Phase 2 from `start` (which must fit every budget). `done` holds steps of an interrupted
// run to continue from (their accuracies are not re-measured; the oracle must already hold the
// model of the last one). `on_step` is called after every step (to log and checkpoint).
// After the search stops (in band, fixed point or iteration limit), unless `minimize`, the budget
// left at the best step is spent: repeatedly the raise (one layer, to any wider candidate) with the
// largest KL reduction per unit of budget added that keeps every budget, then one more QAT cycle
// on the result, recorded as a step whose changes say "spend leftover budget"; it becomes the
// result only if its validation accuracy is not below the best step's (never a worse state).
Phase2Result sigmaquant_phase2(const Graph& g, const CostEvaluator& ce, const Budgets& b,
                               const BitConfig& start, SearchOracle& oracle,
                               const Phase2Options& o, std::vector<Phase2Step> done = {},
                               const Phase2StepHook& on_step = {});

// One Phase 2 move set (exposed for tests): the raises and their lowerings that the search would
// make from `bits` when accuracy is below target (raise = true) or above the band (false).
std::vector<BitChange> phase2_moves(const Graph& g, const CostEvaluator& ce, const Budgets& b,
                                    const BitConfig& bits, SearchOracle& oracle,
                                    const Phase2Options& o, bool raise,
                                    const std::vector<BitConfig>& visited);

// ---- baselines (torch-free parts) ----

// Adaptive quantization (Zhou et al., AAAI 2018): b_i = c + log_4(p_i / (t_i s_i)) rounded to the
// candidate grid, c the largest offset that fits every budget (every distinct assignment of the
// family tried, not a bisection: cost need not grow with c). If no member fits (a non-monotone
// model, budgets pulling apart), the feasible assignment nearest the closest member (exact
// solver). p: noise gain of layer i on the logits, t: its robustness, s: its parameter count.
BitConfig adaptive_allocation(const Graph& g, const CostEvaluator& ce, const Budgets& b,
                              const std::map<std::string, double>& p,
                              const std::map<std::string, double>& t,
                              const std::vector<int>& candidates, int abits,
                              const std::map<std::string, int>& pinned = {});

// Hessian-aware (HAWQ-V2/V3 style): damage_i(b) = trace_i / n_i * ||Q_b(W_i) - W_i||^2, minimised
// exactly subject to every budget at once (the integer program of AssignmentSolver).
BitConfig hessian_allocation(const Graph& g, const CostEvaluator& ce, const Budgets& b,
                             const std::map<std::string, double>& traces,
                             const std::vector<int>& candidates, int abits,
                             const std::map<std::string, int>& pinned = {});

// A random assignment that fits: bits drawn uniformly from the candidates, then random layers
// lowered until every budget holds (if every layer reaches the bottom still over budget, the
// feasible assignment nearest the draw, ties random), then random raises while one fits.
BitConfig random_allocation(const Graph& g, const CostEvaluator& ce, const Budgets& b,
                            const std::vector<int>& candidates, int abits, uint64_t seed,
                            const std::map<std::string, int>& pinned = {});
// The same at given per-layer activation widths.
BitConfig random_allocation(const Graph& g, const CostEvaluator& ce, const Budgets& b,
                            const std::vector<int>& candidates, const LayerActivationBits& abits,
                            uint64_t seed, const std::map<std::string, int>& pinned = {});

// Every assignment over `candidates` of the layers not pinned that fits (for exhaustive search on
// small networks; throws above `limit` combinations).
std::vector<BitConfig> feasible_assignments(const Graph& g, const CostEvaluator& ce,
                                            const Budgets& b, const std::vector<int>& candidates,
                                            int abits, int64_t limit = 100000,
                                            const std::map<std::string, int>& pinned = {});

// KL divergence between the histogram of a layer's float weights and that of its quantized
// weights (same bins; Laplace smoothing), with per-channel max scales.
double weight_kl(const Node& layer, int bits, int bins = 256);

// Per-channel symmetric scales minimising the rounding MSE (clip ratio searched on a grid):
// better starting scales than max|w| at 2-4 bits.
std::vector<float> mse_weight_scales(const Node& layer, int bits, bool per_channel = true);

// ---- searched activation widths (src/alloc/activation_search.cpp; docs/method.md) ----
//
// An activation point is a tensor read by weight layers (a layer's LayerBits::abits is the width
// of its input point, so every reader of a point gets the same width). The layer-wise allocators
// search the points' widths from a set (--abits-set) by an outer search over point widths around
// their own weight allocation at those widths, scoring weight damage + activation damage (each
// allocator's own units: docs/method.md says which).

struct ActivationPoint {
  int node = -1;
  std::string name;                 // the producing node
  std::vector<std::string> layers;  // the weight layers that read it
  int64_t elements = 0;             // per sample
  bool fixed = false;               // read by a pinned layer: kept at the widest width
};
// The points read by weight layers, in order of their first reader. The graph's shapes must be
// inferred.
std::vector<ActivationPoint> activation_points(const Graph& g,
                                               const std::map<std::string, int>& pinned = {});
// The per-layer activation bits of point widths (point name -> bits; points not given: other).
LayerActivationBits point_widths_to_layers(const std::vector<ActivationPoint>& points,
                                           const std::map<std::string, int>& widths, int other);

struct WeightAllocation {
  BitConfig bits;     // fits every budget at the given activation widths
  double damage = 0;  // the allocator's weight damage of it
};
// The allocator's weight assignment at given activation widths; nullopt when none fits.
using WeightAllocator = std::function<std::optional<WeightAllocation>(const LayerActivationBits&)>;
// Damage of point `point` at `bits` (finite, >= 0; smaller is better).
using PointObjective = std::function<double(const std::string& point, int bits)>;

struct ActivationSearchOptions {
  std::vector<int> abits;   // candidate widths
  // Empty: local search (from the widest everywhere, points lowered one step at a time while no
  // weights fit, then best-improvement moves of one point to any width until none helps).
  // Else a group per point (0 = smallest statistic, e.g. SigmaQuant's sigma clusters): every
  // monotone map of groups to widths (a larger group never gets fewer bits) is scored.
  std::vector<int> groups;
  int max_rounds = 0;  // local search: 0 = 4 x free points x widths
};

struct ActivationSearchResult {
  BitConfig bits;                        // weights and per-layer activation widths
  std::map<std::string, int> point_bits;  // point name -> width
  double weight_damage = 0, activation_damage = 0;
  int evaluations = 0;                    // activation states scored
};

// Throws sq::Error (the exact solver's reason at the narrowest widths) when no activation widths
// let any weight assignment fit every budget.
ActivationSearchResult search_activation_widths(
    const Graph& g, const CostEvaluator& ce, const Budgets& b, const std::vector<int>& candidates,
    const std::map<std::string, int>& pinned, const std::vector<ActivationPoint>& points,
    const ActivationSearchOptions& o, const WeightAllocator& allocate,
    const PointObjective& damage);

// The local search around the exact solver: the weights minimise sum weight_damage subject to
// every budget at each activation state (hessian and adaptive with searched activation widths).
ActivationSearchResult joint_exact_allocation(const Graph& g, const CostEvaluator& ce,
                                              const Budgets& b, const std::vector<int>& candidates,
                                              const std::map<std::string, int>& pinned,
                                              const std::vector<int>& abits,
                                              const LayerObjective& weight_damage,
                                              const PointObjective& point_damage);

// SigmaQuant Phase 1 with searched activation widths: the free points (not read by a pinned
// layer) are clustered by exact 1-D k-means on log sigma of their calibrated activations
// (`point_sigma`, by point name; k by silhouette up to the number of widths), every monotone map
// of clusters to widths (larger sigma, never fewer bits) gets Phase 1 of the weights at those
// widths, and the map with the least total damage proxy wins: Phase 1's weight damage plus
// kappa x n_q sigma_q^2 4^-a per point, kappa = (RMS weight sigma / RMS activation sigma)^2.
// `info` receives the search (point widths, damages). Budgets and candidates as in `o`.
Phase1Result sigmaquant_phase1_with_activations(const Graph& g, const Target& t,
                                                const Phase1Options& o,
                                                const std::vector<int>& abits,
                                                const std::map<std::string, double>& point_sigma,
                                                ActivationSearchResult* info = nullptr);

// The weight damages of the baselines (minimised by the exact solver):
//   hessian:  trace_l / n_l x ||Q_b(W_l) - W_l||^2
//   adaptive: p_l / t_l x ||Q_b(W_l) - W_l||^2   (Zhou's logit noise relative to robustness)
// quantization_error(layer, bits) = ||Q_b(W) - W||^2 with per-channel max scales.
double weight_quantization_error(const Node& layer, int bits);

// ---- LibTorch parts (src/torch/search.cpp) ----

struct OracleOptions {
  std::string kl = "output";   // "output": KL(softmax FP32 || softmax with only the layer
                               // quantized) on kl_samples images; "weight": weight_kl()
  int64_t kl_samples = 512;
  int64_t val_samples = 2000;  // validation subset (held out of the QAT data)
  double lr = 0.001;
  int64_t batch_size = 128;
  int64_t memory_limit = 0;  // TrainOptions::memory_limit of every cycle
  uint64_t seed = 1;
  bool progress = true;
  std::string qat_weight_mode = "lsq", qat_act_mode = "lsq";
  int64_t calib_samples = 1024;
  // Augmentation of the QAT cycles (the pipeline sets it from the data set: resolve_augmentation)
  bool augment = false;
  int augment_pad = 2;
  bool augment_flip = false;
  // Data parallel (distributed.h): every cycle trains with batch_size per rank (the cycle's
  // images: max(batch_size x world, epochs x training set), shared out as in sq::train); the
  // validation accuracy is evaluated in shares and all-reduced, the layer KL computed by rank 0
  // and handed to every rank: every rank gets the same numbers and the search the same
  // decisions. nullptr: one process.
  std::shared_ptr<DistContext> dist;
};

class QatOracle : public SearchOracle {
 public:
  // fp32: the trained float model; train: QAT data (cycles walk through it); val: accuracy.
  QatOracle(const Graph& fp32, const Dataset& train, const Dataset& val, const OracleOptions& o);
  ~QatOracle() override;
  double train_and_evaluate(const BitConfig& bits, double epochs, int iteration) override;
  double layer_kl(const std::string& layer, int bits) override;
  // KL(softmax FP32 || softmax with only that point's activations quantized at `bits`, an affine
  // quantizer over its calibrated range at the MSE-best clip), on the KL images.
  double point_kl(const std::string& point, int bits) override;
  // The model after the last cycle (to checkpoint, or to start the final QAT from).
  const QuantModel& model() const;
  void set_model(const QuantModel& qm);  // resume
  void reset_model();                    // the next cycle starts from PTQ of the FP32 model
  double qat_epochs() const;             // spent so far
 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The quantized model for `bits`, starting from `from` where it has trained state (layers whose
// bits differ get fresh MSE weight scales), else PTQ of the float graph.
QuantModel requantize_model(const Graph& fp32, const QuantModel* from, const BitConfig& bits,
                            const Dataset& calib, int64_t calib_samples, uint64_t seed);

// Hutchinson estimate of each weight layer's Hessian trace of the cross-entropy loss:
// E[v^T H v] over Rademacher v, `iterations` probes on `samples` training images.
std::map<std::string, double> hutchinson_traces(const Graph& g, const Dataset& data,
                                                int64_t samples, int iterations, uint64_t seed);

// Zhou et al.'s measurements: p_i = E||Δlogits||^2 / E||ΔW_i||^2 for small Gaussian weight noise
// on layer i alone; t_i = the logit-noise energy E||Δlogits||^2 at which accuracy (on `samples`
// images) first drops by `drop` when the noise comes from layer i (bisection on the noise scale).
void adaptive_measure(const Graph& g, const Dataset& data, int64_t samples, double drop,
                      uint64_t seed, std::map<std::string, double>& p,
                      std::map<std::string, double>& t);

// ---- activation measurements for searched activation widths (src/torch/search.cpp) ----
// All on the BN-folded graph, per activation point (activation_points(), by node name).

struct ActivationStats {
  double sigma = 0;       // population std over `samples` images and the point's elements
  int64_t elements = 0;   // per sample
  double lo = 0, hi = 0;  // observed range
  // Per width a: E_sample ||Q_a(x) - x||^2 of an affine a-bit quantizer over [lo, hi] shrunk by
  // the clip ratio (of a grid 1, 0.9, ..., 0.3) that minimises it: the quantization noise energy
  // of the point per image.
  std::map<int, double> noise;
  std::map<int, double> clip;  // per width: that clip ratio
};
std::map<std::string, ActivationStats> activation_statistics(const Graph& g, const Dataset& data,
                                                             int64_t samples,
                                                             const std::vector<int>& widths);

// Hutchinson estimate of the Hessian trace of the (batch-mean) cross-entropy with respect to each
// point's activations (HAWQ-V2's activation sensitivity): damage at a bits = trace / elements x
// noise(a), in the units of the weights' trace / n x ||Q_b(W) - W||^2.
std::map<std::string, double> activation_hessian_traces(const Graph& g, const Dataset& data,
                                                        int64_t samples, int iterations,
                                                        uint64_t seed);

// Zhou et al.'s measurements for activation points: Gaussian noise added to one point's
// activations (sigma x 0.01 for the gain, bisection for the robustness), as adaptive_measure does
// for weights: p = E||dlogits||^2 / E||dx||^2 per image, t = the logit-noise energy at which
// accuracy first drops by `drop`.
void adaptive_measure_activations(const Graph& g, const Dataset& data, int64_t samples,
                                  double drop, uint64_t seed,
                                  const std::map<std::string, ActivationStats>& stats,
                                  std::map<std::string, double>& p,
                                  std::map<std::string, double>& t);

}  // namespace sq
