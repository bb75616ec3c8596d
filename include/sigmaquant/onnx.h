// ONNX export (QDQ, opset 13) of a quantized model and import of float CNNs from ONNX.
//
// Export: QuantizeLinear/DequantizeLinear ("QDQ") graph of a QuantModel (BN already folded):
//   - weights are the integers with per-output-channel (axis 0) float scales, per layer as int8
//     (zero point 0) where ONNX Runtime's u8s8 kernels cannot saturate on x86 without VNNI
//     (2 * max input code * max |q| <= 32767, e.g. any layer of <= 7-bit weights after 8-bit
//     activations), else as the integers + 128 in uint8 (zero point 128: its exact u8u8 kernels);
//     OnnxExportOptions::weights forces one or the other; sub-8-bit layers use the narrow range
//     |q| <= 2^(b-1)-1 inside the 8-bit container and their true bitwidth is recorded in
//     metadata_props ("sigmaquant.wbits.<layer>") and in the DequantizeLinear node's doc_string;
//   - activations are quantized (uint8 QuantizeLinear -> DequantizeLinear) at
//     activation_quant_points(), with the ActQuant scale / zero point of the QuantModel, and also
//     at the output of every node from which ReLU / max-pool / flatten lead to a point (with that
//     point's quantizer, which commutes with them: same numbers), so that ONNX Runtime fuses
//     DequantizeLinear -> Conv/Gemm -> QuantizeLinear into QLinearConv / QGemm;
//   - biases are int32 at scale s_x * s_w[c] behind a DequantizeLinear (the fusable form);
//   - the graph input is the raw image in [0, 1] ("input", float32 [N, C, H, W], N dynamic),
//     normalized by Sub(mean) / Div(std) when the graph has input_mean / input_std; the output
//     is "logits", float32 [N, num_classes].
// The model is checked with onnx::checker and shape inference before it is written atomically.
//
//   sq::QuantModel qm = sq::load_qmodel("model.q.sqg");
//   sq::export_onnx(qm, "model.onnx");
//   sq::Graph g = sq::import_onnx("float_cnn.onnx");  // float CNN -> SigmaQuant graph
//
// Import: float CNNs made of Conv, Gemm, MatMul(+Add), Relu, Clip(0,6), Add, MaxPool,
// AveragePool (a Pad of zeros before it folded in), GlobalAveragePool, ReduceMean over H, W,
// Flatten / Reshape (to 2-D), BatchNormalization, Sigmoid, HardSigmoid, HardSwish, LeakyRelu,
// Concat along the channels, Mul (same shape or a per-channel gate), Reshape -> Transpose ->
// Reshape as a channel shuffle, Identity, Dropout, and a
// Softmax at the output (dropped: the graph ends in the logits; a note says so); shape arithmetic on constants (Shape, Gather, Unsqueeze, Squeeze, Concat, Cast, Slice)
// is folded, so PyTorch's dynamic-batch flatten imports; a leading Sub(mean) / Div(std) becomes the
// graph's input_mean / input_std (otherwise they stay empty). Anything else throws sq::Error
// naming, in one message, every unsupported operator and attribute with its nodes.
#pragma once

#include <string>
#include <vector>

#include "sigmaquant/graph.h"
#include "sigmaquant/qmodel.h"

namespace sq {

// How export_onnx stores a layer's weight codes (docs/formats.md, "Weights").
enum class OnnxWeights {
  Auto,  // per layer: int8 where ONNX Runtime's x86 u8s8 kernels cannot saturate, else uint8
  U8,    // every layer uint8 with zero point 128 (exact in ONNX Runtime on every CPU)
  S8,    // every layer int8 with zero point 0 (exact on VNNI CPUs; may saturate on others)
};
// "auto", "u8" or "s8"; throws sq::Error naming the value otherwise.
OnnxWeights parse_onnx_weights(const std::string& s);

struct OnnxExportOptions {
  OnnxWeights weights = OnnxWeights::Auto;
};

// Writes qm as a QDQ ONNX model (opset 13) to path. Throws sq::Error on failure.
void export_onnx(const QuantModel& qm, const std::string& path, const OnnxExportOptions& opt = {});

// The ONNX model bytes that export_onnx writes.
std::string export_onnx_bytes(const QuantModel& qm, const OnnxExportOptions& opt = {});

// Writes an FP32 graph (BatchNorm folded or not) as a float ONNX model (opset 13): the same
// input, normalization and output as export_onnx, float weights and biases, no quantization —
// the baseline to time the QDQ export against. Throws sq::Error on failure.
void export_onnx_float(const Graph& g, const std::string& path);
std::string export_onnx_float_bytes(const Graph& g);

// Reads a float CNN from an ONNX file. Throws sq::Error naming the file and the problem.
// `notes`, if given, receives what the import changed that a user should know (e.g. a final
// Softmax dropped).
Graph import_onnx(const std::string& path, std::vector<std::string>* notes = nullptr);
// Same, from the bytes of a model; `where` names it in error messages.
Graph import_onnx_bytes(const std::string& bytes, const std::string& where,
                        std::vector<std::string>* notes = nullptr);

}  // namespace sq
