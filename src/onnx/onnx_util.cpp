#include "onnx_util.h"

namespace sq::onnx_util {
namespace {

onnx::TensorProto int_tensor(const std::string& name, const std::vector<int64_t>& dims,
                             const std::vector<int32_t>& values, int dtype) {
  onnx::TensorProto t;
  t.set_name(name);
  t.set_data_type(dtype);
  for (int64_t d : dims) t.add_dims(d);
  // int8/uint8 go to raw_data, one byte each (two's complement for int8).
  std::string raw(values.size(), '\0');
  for (size_t i = 0; i < values.size(); ++i) raw[i] = static_cast<char>(static_cast<uint8_t>(values[i] & 0xff));
  t.set_raw_data(raw);
  return t;
}

}  // namespace

onnx::TensorProto float_tensor(const std::string& name, const std::vector<int64_t>& dims,
                               const std::vector<float>& values) {
  onnx::TensorProto t;
  t.set_name(name);
  t.set_data_type(onnx::TensorProto::FLOAT);
  for (int64_t d : dims) t.add_dims(d);
  for (float v : values) t.add_float_data(v);
  return t;
}

onnx::TensorProto int8_tensor(const std::string& name, const std::vector<int64_t>& dims,
                              const std::vector<int32_t>& values) {
  return int_tensor(name, dims, values, onnx::TensorProto::INT8);
}

onnx::TensorProto int64_tensor(const std::string& name, const std::vector<int64_t>& dims,
                               const std::vector<int64_t>& values) {
  onnx::TensorProto t;
  t.set_name(name);
  t.set_data_type(onnx::TensorProto::INT64);
  for (int64_t d : dims) t.add_dims(d);
  for (int64_t v : values) t.add_int64_data(v);
  return t;
}

onnx::TensorProto int32_tensor(const std::string& name, const std::vector<int64_t>& dims,
                               const std::vector<int32_t>& values) {
  onnx::TensorProto t;
  t.set_name(name);
  t.set_data_type(onnx::TensorProto::INT32);
  for (int64_t d : dims) t.add_dims(d);
  std::string raw(values.size() * sizeof(int32_t), '\0');
  for (size_t i = 0; i < values.size(); ++i) {  // little-endian, as ONNX raw_data requires
    const uint32_t v = static_cast<uint32_t>(values[i]);
    for (int k = 0; k < 4; ++k) raw[4 * i + k] = static_cast<char>((v >> (8 * k)) & 0xff);
  }
  t.set_raw_data(std::move(raw));
  return t;
}

onnx::TensorProto uint8_tensor(const std::string& name, const std::vector<int64_t>& dims,
                               const std::vector<int32_t>& values) {
  return int_tensor(name, dims, values, onnx::TensorProto::UINT8);
}

onnx::NodeProto* add_node(onnx::GraphProto& g, const std::string& op, const std::string& name,
                          const std::vector<std::string>& inputs,
                          const std::vector<std::string>& outputs) {
  onnx::NodeProto* n = g.add_node();
  n->set_op_type(op);
  n->set_name(name);
  for (const auto& i : inputs) n->add_input(i);
  for (const auto& o : outputs) n->add_output(o);
  return n;
}

void set_int(onnx::NodeProto& n, const std::string& attr, int64_t v) {
  onnx::AttributeProto* a = n.add_attribute();
  a->set_name(attr);
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(v);
}

void set_ints(onnx::NodeProto& n, const std::string& attr, const std::vector<int64_t>& v) {
  onnx::AttributeProto* a = n.add_attribute();
  a->set_name(attr);
  a->set_type(onnx::AttributeProto::INTS);
  for (int64_t x : v) a->add_ints(x);
}

void set_window(onnx::NodeProto& n, const Window2d& w) {
  set_ints(n, "kernel_shape", {w.kernel_h, w.kernel_w});
  set_ints(n, "strides", {w.stride_h, w.stride_w});
  set_ints(n, "pads", {w.pad_top, w.pad_left, w.pad_bottom, w.pad_right});
}

void set_float(onnx::NodeProto& n, const std::string& attr, float v) {
  onnx::AttributeProto* a = n.add_attribute();
  a->set_name(attr);
  a->set_type(onnx::AttributeProto::FLOAT);
  a->set_f(v);
}

}  // namespace sq::onnx_util
