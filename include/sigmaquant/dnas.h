// The channel-wise differentiable precision search (Risso et al., "Channel-wise Mixed-precision
// Assignment for DNN Inference on Constrained Edge Nodes", IGSC 2022; PLiNIO's MPS method), and
// its layer-wise variant from the same code.
//
// Every output channel c of every weight layer picks a weight width p from a candidate set
// (default {0, 2, 4, 8}; 0 = the channel is pruned; the last layer never prunes), every
// activation quantization point picks a width a (default {8}: not searched; {2, 4, 8} searches).
// The search trains one shared float weight tensor with
//     W_hat_c = sum_p theta_{p,c} Q_p(W_c),  x_hat = sum_a theta_a Q_a(x),
//     theta = softmax(alpha / tau),  tau_0 = 5,  tau <- tau * exp(-0.045) per epoch,
// and loss = task + lambda * R(theta), where R is the expected cost of the assignment under the
// target's own cost model (this file: a table built by probing sq::CostEvaluator, so every model
// — size, BOPs, shift-add, MPIC, MCU, custom — is covered without a second formula), each
// budgeted metric divided by its budget. The argmax of theta is the assignment.
//
//   sq::DnasSpace s = sq::make_dnas_space(folded, {0, 2, 4, 8}, {2, 4, 8}, pinned, true);
//   sq::DnasCostTable t = sq::make_dnas_cost(s, folded, evaluator, budgets);
//   double r = sq::table_cost(t, s, choice);   // = the normalised cost of a hard choice
//   sq::BitConfig b = sq::dnas_bits(s, folded, choice);
//
// The training loop (LibTorch) is dnas_search() below, implemented in src/torch/dnas.cpp.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "sigmaquant/bits.h"
#include "sigmaquant/cost.h"
#include "sigmaquant/data.h"
#include "sigmaquant/graph.h"
#include "sigmaquant/search.h"

namespace sq {

// ---- the search space (torch-free) ----

struct DnasSpace {
  struct Layer {
    std::string name;
    int node = -1;
    int64_t channels = 0;
    std::vector<int> wbits;  // candidate weight widths, ascending; one entry = fixed (pinned)
    int point = -1;          // index into points: the quantization point this layer reads
    bool channelwise = true; // one choice per output channel (else one for the whole layer)
    int64_t choices() const { return channelwise ? channels : 1; }
  };
  struct Point {
    int node = -1;
    std::string name;
    std::vector<int> abits;   // candidate widths, ascending; one entry = fixed
    std::vector<int> layers;  // indices into layers: the weight layers that read it
  };
  std::vector<Layer> layers;
  std::vector<Point> points;
};

// A hard choice: per layer, per channel (or one entry when layer-wise) an index into wbits; per
// point an index into abits.
struct DnasChoice {
  std::vector<std::vector<int>> w;
  std::vector<int> a;
};

// The space over a BN-folded graph. `pinned` layers (name -> width) get that weight width and
// their input point that activation width. 0 is removed from the last weight layer's widths (its
// outputs are the logits) and from every layer-wise layer (a layer cannot be pruned whole).
// Points read by no weight layer (a residual add's operands) stay at 8 bits and are not listed.
DnasSpace make_dnas_space(const Graph& folded, const std::vector<int>& wbits,
                          const std::vector<int>& abits,
                          const std::map<std::string, int>& pinned, bool channelwise);

// The widest choice everywhere (the warm start's assignment).
DnasChoice widest_choice(const DnasSpace& s);
// The assignment of a choice (layer-wise layers get wbits; channel-wise ones channel_wbits unless
// every channel agrees; abits from the layer's point).
BitConfig dnas_bits(const DnasSpace& s, const Graph& folded, const DnasChoice& c);

// The expected cost as a table. Per layer l, per candidate activation width a (of its point) and
// weight width p:  cost(l) = fixed[a] + sum over channels of per_channel[a][p], with, for a
// point q and its readers set to a (every other layer at the reference: its widest choice),
//   per_channel[a][p] = (M(q at a, l at p) - M(q at a, l pruned)) / channels
//   fixed[a]          =  M(q at a, l pruned) - M(q at a)  [+ M(q at a) - M(reference) for q's
//                                                          first reader]
// so the cost of any choice is M(reference) + the sum over layers. Exact for the metrics that add
// up over points, layers and channels (weight bytes up to byte rounding, BOPs, the cycles and
// energy of every model, activation traffic); first order where two points meet (a buffer read by
// layers of two points, the activation-memory peak).
struct DnasCostTable {
  std::vector<std::string> metrics;  // budget keys: weight_kib, bops, latency_ms, energy_uj, ...
  std::vector<double> divisor;       // each metric's budget (or its reference value if none)
  double reference = 0;              // normalised cost of the reference assignment
  struct Layer {
    std::vector<double> fixed;        // [a index]
    std::vector<double> per_channel;  // [a index * wbits.size() + p index]
    // The same per metric k (fixed, per_channel are their sums over k):
    std::vector<double> metric_fixed;        // [k * abits.size() + a index]
    std::vector<double> metric_per_channel;  // [(k * abits.size() + a index) * wbits.size() + p]
  };
  std::vector<Layer> layers;  // parallel to DnasSpace::layers; normalised (sum of M_k / divisor_k)
  std::vector<double> metric_reference;  // per metric k: M_k(reference) / divisor_k
};
// The metrics are the budgeted ones; with no budgets, energy where the model defines it, else
// weight memory.
DnasCostTable make_dnas_cost(const DnasSpace& s, const Graph& folded, const CostEvaluator& ce,
                             const Budgets& budgets);
// sum_k M_k / divisor_k of a hard choice, by the table.
double table_cost(const DnasCostTable& t, const DnasSpace& s, const DnasChoice& c);
// The same quantity measured by the evaluator (for checks and for the repair step).
double measured_cost(const DnasCostTable& t, const CostReport& r);
// Its terms: M_k / divisor_k per metric of t.
std::vector<double> metric_costs(const DnasCostTable& t, const CostReport& r);

// Lowers a choice until it fits every budget: repeatedly the single move (one channel's or one
// layer's weight width, or one point's activation width, one step down) with the largest drop of
// table cost per unit of lost preference (`score[l][c][p]`: the search's theta; equal scores make
// it cost-greedy), checked against the evaluator. Returns false if even the narrowest choice
// everywhere does not fit.
//
// `group` > 1 keeps a choice snapped to channel groups (below) snapped: in a channel-wise layer a
// weight move lowers a whole group at once, the `group` channels of one width with the least
// preference lost (or every channel of that width when it holds fewer: the layer's remainder).
bool repair_choice(const DnasSpace& s, const Graph& folded, const CostEvaluator& ce,
                   const Budgets& b, const DnasCostTable& t,
                   const std::vector<std::vector<std::vector<double>>>& wscore,
                   const std::vector<std::vector<double>>& ascore, DnasChoice& c, int group = 1);

// Why no choice of s fits: the budgets the narrowest choice (every channel and activation at its
// lowest width) still breaks, e.g. "the energy budget (energy_uj) needs at least 267.2 uJ against
// 250 uJ, over by ..."; "" when it fits.
std::string narrowest_choice_breaks(const DnasSpace& s, const Graph& folded,
                                    const CostEvaluator& ce, const Budgets& b);

// The quantization damage n_c·σ_c²·4^(−b) of output channel c at each weight width b of layer l
// (b = 0, pruned: n_c·σ_c²), negated so that larger is preferred — the score form repair_choice and
// fill_choice take: [l][c][p]. n_c, σ_c: the channel's weight count and the population std of
// its weights in `folded`. A layer-wise layer has one score row per channel too.
std::vector<std::vector<std::vector<double>>> channel_damage_scores(const DnasSpace& s,
                                                                    const Graph& folded);
// σ_c of every output channel of every layer of s: [l][c].
std::vector<std::vector<double>> channel_sigmas(const DnasSpace& s, const Graph& folded);

// Raises a fitting choice while every budget holds (the counterpart of repair_choice, so no
// budget is left unused that a step up could spend): repeatedly the weight step up with the most
// score gained (`wscore`, e.g. channel_damage_scores: damage removed) per unit of added table
// cost — one channel; a whole layer-wise layer; or with `group` > 1 the `group` channels of one
// width of a layer that gain most (every channel of that width when fewer), so a snapped choice
// stays snapped — checked against the evaluator and undone when a budget breaks; passes repeat
// until no step up fits. Then, with `activations`, the activation widths alike: one point a step
// up, most quantization noise removed (its elements × (4^-a − 4^-a'), unit variance) per unit of
// its readers' added table cost first.
void fill_choice(const DnasSpace& s, const Graph& folded, const CostEvaluator& ce, const Budgets& b,
                 const DnasCostTable& t,
                 const std::vector<std::vector<std::vector<double>>>& wscore, DnasChoice& c,
                 int group = 1, bool activations = false);

// ---- channel groups (issue 13: the engine computes tiles of 16 output channels) ----
//
// A choice is snapped to groups of G channels when, in every channel-wise layer of C channels,
// the number of channels at each weight width (0 = pruned included) is a multiple of G, except
// at one width which also holds the remainder C mod G (a layer with C < G: all its channels at
// one width). Layer-wise and pinned layers are untouched; which channels take which width is the
// allocator's preference, not their position (the engine groups channels itself).
//
// snap_channel_groups rounds, per layer, each cumulative count "channels at width >= w" to the
// nearest of {0, G, 2G, ..., floor(C/G) G, C} (ties down: the cheaper), which is monotone in w and
// so defines counts; the channels, ranked by their current width and then by preference
// (`wscore[l][c][p]`, larger = preferred: the gain of their step up, at the top width the loss of
// their step down), take the widths in that order. Each cumulative count moves by at most
// min(G, C)/2, so a layer's mean weight width moves by at most
//     (w_max - w_min) x min(G, C) / (2 C)                                    (*)
// and the model's average weight bits (a weighted mean over layers) by at most the largest (*).
// G <= 1 returns the choice unchanged. Budgets are not looked at (fit_channel_groups does).
void snap_channel_groups(const DnasSpace& s,
                         const std::vector<std::vector<std::vector<double>>>& wscore, int group,
                         DnasChoice& c);
// True when every channel-wise layer of c is snapped to groups of `group` (as defined above).
bool is_group_snapped(const DnasSpace& s, const DnasChoice& c, int group);
// snap_channel_groups, then repair_choice(..., group) when a budget no longer holds: afterwards
// every budget holds and the choice is still snapped. Returns false if nothing fits.
bool fit_channel_groups(const DnasSpace& s, const Graph& folded, const CostEvaluator& ce,
                        const Budgets& b, const DnasCostTable& t,
                        const std::vector<std::vector<std::vector<double>>>& wscore,
                        const std::vector<std::vector<double>>& ascore, int group, DnasChoice& c);

// ---- SigmaQuant per channel: Phase 1 over per-channel sigma (src/alloc/sigmaquant_channel.cpp) ----
//
// sigma_c = population std of output channel c's BN-folded weights; exact 1-D k-means on
// log sigma over every channel of the non-pinned layers (k by silhouette, as Phase 1); clusters
// mapped in sigma order to the k highest candidates; then the budget fitting of Phase 1 at channel
// level: lower (repair_choice with damage scores: table cost saved per unit of added damage
// n_c sigma_c^2 4^-b) until every budget holds, then raise one channel at a time, most damage
// removed per unit of added cost first, while every budget still holds. No Phase 2 (its KL moves
// are per layer).
struct ChannelPhase1Result {
  BitConfig bits;
  int k = 0;
  std::vector<double> centers;    // cluster centres in sigma units, ascending
  std::vector<int> cluster_bits;  // initial width of each cluster
  int64_t channels = 0;           // clustered channels
};
// `group` > 1: the clustered assignment is snapped to channel groups (fit_channel_groups, with
// the damage scores as preference) and the lowering and raising move whole groups.
ChannelPhase1Result sigmaquant_channel_phase1(const Graph& folded, const CostEvaluator& ce,
                                              const Budgets& budgets,
                                              const std::vector<int>& candidates, int abits,
                                              const std::map<std::string, int>& pinned,
                                              int group = 1);

// ---- the search (LibTorch: src/torch/dnas.cpp) ----

// The regulariser R(theta) of the search (DnasOptions::penalty), with e_k = E_theta[M_k] / B_k the
// expected cost of budgeted metric k over its budget (the table, per metric):
//   Cost    R = sum_k e_k                  the paper's: every metric pushed down at any level
//   Excess  R = sum_k max(0, e_k - 1)      only what exceeds a budget: below its budget a metric
//                                          is free, so the search spends it on accuracy
enum class DnasPenalty { Cost, Excess };
const char* dnas_penalty_name(DnasPenalty p);  // "cost" | "excess"
DnasPenalty parse_dnas_penalty(const std::string& s, const std::string& where);

struct DnasOptions {
  int epochs = 4;                 // search epochs per lambda tried
  double lambda = 0;              // > 0: this strength; 0: budget mode (bisect lambda)
  DnasPenalty penalty = DnasPenalty::Cost;
  int bisect_steps = 3;           // budget mode: bisection steps after the bracket is found
  // > 0: each lambda's argmax is scored by its validation accuracy after this much QAT (a
  // fraction of an epoch, from the searched weights: a QatOracle with select_qat's settings —
  // the pipeline passes its own QAT settings), not by PTQ alone — an argmax near chance before
  // any fine-tuning says little about the model fine-tuning makes of it.
  double select_epochs = 0;
  OracleOptions select_qat;
  double tau0 = 5, tau_decay = 0.045;
  // > 0: tau falls geometrically from tau0 to tau_end over the search's steps instead (so a
  // search of a few epochs ends as hard as the paper's long one: 0.045 an epoch takes ~50 epochs
  // to bring 5 down to 0.5); 0: the paper's per-epoch schedule above.
  double tau_end = 0;
  // The architecture logits' optimiser. The paper's is SGD (lr 0.01, momentum 0.9) over searches
  // of many epochs; the default here is Adam, whose steps do not shrink with the normalised
  // cost's small per-channel gradients, with lr 0 = automatic: large enough that the logits can
  // travel twice their initial gap over the search's alpha steps (at least 0.05), so a search of
  // a few epochs on a small data set can still change the argmax (docs/method.md). "sgd" with
  // alpha_lr 0.01 is the paper's.
  std::string alpha_optimizer = "adam";
  double alpha_lr = 0, alpha_momentum = 0.9;
  double weight_lr = 1e-3;                       // Adam on the weights and PACT clips
  double alpha_fraction = 0.2;  // share of each epoch's batches that update alpha
  double init_preference = 0.5; // initial theta of the widest candidate (the rest share the rest)
  int64_t batch_size = 128;
  int64_t memory_limit = 0;  // TrainOptions::memory_limit: the search's step is checked first
  int64_t calib_samples = 1024;
  uint64_t seed = 1;
  bool augment = false;
  int augment_pad = 2;
  bool augment_flip = false;
  bool progress = false;
  // Channel groups (snap_channel_groups) of the channel-wise argmax; 1 = free per-channel widths.
  int channel_group = 1;
  // Budget mode (lambda 0): each lambda's fitting argmax is raised while every budget holds
  // (fill_choice: weights by the damage scores of the searched weights, then activations), so
  // dnas is compared with the other allocators at the budgets they all spend. false: the argmax
  // as the search left it.
  bool fill = true;
};

// The temperature during epoch e (0-based), `within` (0..1) of the way through it:
// tau0 x exp(-tau_decay x e), or with tau_end > 0, tau0 x (tau_end / tau0)^((e + within) / epochs).
double dnas_temperature(const DnasOptions& o, int epoch, double within = 0);

struct DnasTrial {
  double lambda = 0;
  bool fits = false;         // the argmax fits every budget (before any repair)
  double cost = 0;           // normalised cost of the argmax (measured)
  double val_accuracy = 0;   // of the argmax model (searched weights, PTQ scales; after
                             // select_epochs of QAT when that is > 0)
  double avg_bits = 0;
  double epochs = 0;
  double seconds = 0;
  BitConfig bits;  // the argmax (repaired when it did not fit; filled: DnasOptions::fill)
  double argmax_avg_bits = 0;  // average weight bits of the (repaired) argmax before the fill
};

struct DnasOutcome {
  BitConfig bits;   // fits every budget
  Graph trained;    // the searched float weights (BN-folded graph) to fine-tune from
  double lambda = 0;
  double val_accuracy = 0;
  double epochs = 0;  // search epochs spent in all (QAT-epoch equivalents: one pass each)
  std::vector<DnasTrial> trials;
};

// Which of the (fitting) trials the budget mode keeps, measured on `val_images` validation
// images: among the trials whose accuracy is within two binomial standard errors of the best
// (2·√(p(1 − p)/n), p the best accuracy: differences that size are noise), the one that uses the
// most of the budgets (largest cost), at equal cost the more accurate. A trial is not kept for a
// noise-level accuracy edge while it leaves budget unused: when every argmax is near chance
// before fine-tuning (resnet8 at 2 bits), accuracy cannot choose, and the most budget is the
// better start. Returns an index into trials (which must not be empty).
size_t choose_dnas_trial(const std::vector<DnasTrial>& trials, int64_t val_images);

// folded: the BN-folded FP32 model (its weights are the warm start); train/val: search data and
// the validation images that choose among the lambdas tried (choose_dnas_trial).
DnasOutcome dnas_search(const Graph& folded, const Dataset& train, const Dataset& val,
                        const DnasSpace& s, const DnasCostTable& t, const CostEvaluator& ce,
                        const Budgets& budgets, const DnasOptions& o,
                        const std::function<void(const DnasTrial&)>& on_trial = {});

}  // namespace sq
