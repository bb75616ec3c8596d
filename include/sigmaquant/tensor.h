// A minimal dense float32 tensor (row-major), the torch-free container for parameters and data.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sq {

using Shape = std::vector<int64_t>;

int64_t numel(const Shape& s);
std::string shape_str(const Shape& s);  // "[16, 3, 3, 3]"

struct Tensor {
  Shape shape;
  std::vector<float> data;

  Tensor() = default;
  explicit Tensor(Shape s, float fill = 0.0f) : shape(std::move(s)), data(numel(shape), fill) {}
  int64_t size() const { return static_cast<int64_t>(data.size()); }
  bool operator==(const Tensor& o) const { return shape == o.shape && data == o.data; }
};

}  // namespace sq
