// Small helpers shared by the ONNX exporter and importer (libonnx 1.12 protobuf messages).
#pragma once

#include <onnx/onnx_pb.h>

#include <cstdint>
#include <string>
#include <vector>

#include "sigmaquant/graph.h"

namespace sq::onnx_util {

constexpr int64_t kOpset = 13;  // QuantizeLinear/DequantizeLinear per-axis came with opset 13

onnx::TensorProto float_tensor(const std::string& name, const std::vector<int64_t>& dims,
                               const std::vector<float>& values);
onnx::TensorProto int8_tensor(const std::string& name, const std::vector<int64_t>& dims,
                              const std::vector<int32_t>& values);
onnx::TensorProto int32_tensor(const std::string& name, const std::vector<int64_t>& dims,
                               const std::vector<int32_t>& values);
onnx::TensorProto int64_tensor(const std::string& name, const std::vector<int64_t>& dims,
                               const std::vector<int64_t>& values);
onnx::TensorProto uint8_tensor(const std::string& name, const std::vector<int64_t>& dims,
                               const std::vector<int32_t>& values);

onnx::NodeProto* add_node(onnx::GraphProto& g, const std::string& op, const std::string& name,
                          const std::vector<std::string>& inputs,
                          const std::vector<std::string>& outputs);
void set_int(onnx::NodeProto& n, const std::string& attr, int64_t v);
void set_ints(onnx::NodeProto& n, const std::string& attr, const std::vector<int64_t>& v);
void set_float(onnx::NodeProto& n, const std::string& attr, float v);
// kernel_shape [kh, kw], strides [sh, sw] and pads [top, left, bottom, right] of an IR window
// (Conv, MaxPool, AveragePool; dilations are Conv's and set by the caller).
void set_window(onnx::NodeProto& n, const Window2d& w);

}  // namespace sq::onnx_util
