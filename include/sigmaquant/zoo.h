// The model zoo, built on the IR and sized from the input shape.
//   lenet5     — LeNet-5 (conv 6, conv 16, fc 120, fc 84); inputs smaller than 32x32 are padded.
//   resnet8    — MLPerf Tiny image-classification ResNet-8 (16/32/64 channels, 1x1-conv shortcuts).
//   resnet20   — ResNet-20 (3 stages x 3 basic blocks, 16/32/64 channels, 1x1-conv+BN shortcuts).
//   mobilenetv2 — a small MobileNetV2-style network (inverted residuals, depthwise 3x3, ReLU6).
//   mlp        — flatten, 256, 128, classes.
#pragma once

#include <string>
#include <vector>

#include "sigmaquant/graph.h"

namespace sq {

std::vector<std::string> zoo_names();
bool is_zoo_name(const std::string& name);
// Builds the named architecture with initialised parameters. Throws sq::Error on an unknown name
// (listing the known ones) or an input too small for the architecture.
Graph make_zoo_model(const std::string& name, const Shape& input_shape, int64_t num_classes,
                     uint64_t seed = 1);

}  // namespace sq
