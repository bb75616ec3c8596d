// A quantized model: the (BN-folded) float graph plus everything that says how it is quantized.
// PTQ produces one, QAT refines it, integerization turns it into integer tensors, cost models and
// allocators read its bit assignment. Stored as a .sqg file whose meta holds a "quant" section.
//
// Where activations are quantized (the "quantization points", one per tensor = node output):
//   - every tensor read by a weight layer (conv2d / linear), at the largest abits among the
//     weight layers that read it (a tensor is quantized once, whoever reads it);
//   - every input and the output of a residual add, a channel concat and a mul (squeeze-
//     excitation's gate), at 8 bits unless already a point above (the integer engine adds two
//     requantized 8-bit operands, maps each concat input's codes to the output's by a table,
//     multiplies two zero-point-centred codes and requantizes the product) — except a concat's
//     input that is a channel slice (its codes are already a point's: the table maps those);
//   - the output of an average pooling read by another average pooling, at 8 bits;
//   - the input of a channel shuffle, at 8 bits unless a weight layer reads it at more (the
//     engine permutes the codes; its output is a point only if something above makes it one);
//   - the input of a channel slice, likewise, unless that input is itself a channel shuffle or
//     slice (which hold their input point's codes): the engine reads a range of the codes in
//     place, so a slice's output is at its input's point unless something above makes it one;
//   - the input and the output of every table-driven activation (sigmoid, hardsigmoid,
//     hardswish, silu, leaky_relu), at 8 bits unless already a point above (the engine maps the
//     input's codes to the output's by a 256-entry table);
//   - around a batchnorm that no conv/linear absorbs (DenseNet's pre-activation BN after a
//     concat) and that does not read the graph input (the engine folds that one into the input
//     normalization): its input, and the end of the ReLU/ReLU6 chain after it unless that chain
//     reaches a point (the engine maps the input's codes per channel by a 256-entry table
//     computed as the simulation's batchnorm, through the ReLU, to that point), at 8 bits unless
//     already a point above.
// Weights: per weight layer, w_q = clamp(round(w / s[c]), -qmax[c], qmax[c]) with
// qmax[c] = 2^(bits[c]-1) - 1 (0-bit channels are zero); s from max|w| (PTQ) or learned (LSQ).
#pragma once

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sigmaquant/bits.h"
#include "sigmaquant/calibrate.h"
#include "sigmaquant/graph.h"
#include "sigmaquant/graph_io.h"

namespace sq {

constexpr int kAddBits = 8;

struct QuantModel {
  Graph graph;  // float weights, usually BN-folded
  BitConfig bits;
  std::map<std::string, std::vector<float>> weight_scales;  // weight layer -> per channel (or 1)
  std::map<std::string, ActQuant> acts;                     // node name -> its output's quantizer
  nlohmann::json meta = nlohmann::json::object();          // how it was made, accuracy, ...
};

// node index -> activation bits, by the rule above.
std::map<int, int> activation_quant_points(const Graph& g, const BitConfig& bits);
// A batchnorm that fold_batchnorm leaves (its input is no conv/linear read by it alone) and that
// does not read the graph input: the engine runs it as per-channel tables between two points.
bool standalone_batchnorm(const Graph& g, int node);

// Sets the first and the last weight layer to `bits` (weights and input activations).
void pin_first_last(BitConfig& b, const Graph& g, int bits);

// Max-based symmetric weight scales for every weight layer (quant.h's quantizer).
std::map<std::string, std::vector<float>> max_weight_scales(const Graph& g, const BitConfig& b);

// Integer weights of one layer under qm's scales and bits (row-major like the float weights).
std::vector<int32_t> quantized_weights(const QuantModel& qm, const std::string& layer);

// The .sqg representation (graph + meta.quant), e.g. to embed in a checkpoint.
GraphFile to_graph_file(const QuantModel& qm);
QuantModel from_graph_file(GraphFile f, const std::string& where);

void save_qmodel(const std::string& path, const QuantModel& qm);
// Throws sq::Error if the file is not a quantized model (e.g. an FP32 .sqg) or is inconsistent.
QuantModel load_qmodel(const std::string& path);
bool is_qmodel(const nlohmann::json& meta);

}  // namespace sq
