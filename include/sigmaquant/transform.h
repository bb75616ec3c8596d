// Graph transforms that prepare a float model for quantization (torch-free).
//
//   sq::Graph f = sq::fold_batchnorm(g);        // conv/linear + BN -> conv/linear with bias
//   sq::cross_layer_equalize(f, true);           // DFQ-style weight range equalization
#pragma once

#include "sigmaquant/graph.h"

namespace sq {

// Folds every batchnorm whose input is a conv2d/linear read by nothing else into that layer, in
// eval-mode semantics: with a = gamma / sqrt(running_var + eps),
//   W'[o] = a[o] * W[o],   b'[o] = a[o] * (b[o] - running_mean[o]) + beta[o].
// The folded layer gains a bias. Other batchnorms are kept. Node names are preserved.
Graph fold_batchnorm(const Graph& g);
// Whether fold_batchnorm absorbs batchnorm `node`: its input is a conv/linear layer that it alone
// reads.
bool batchnorm_folds(const Graph& g, int node);

// Cross-layer equalization (Nagel et al., "Data-Free Quantization", 2019) on every pair
// layer1 -> [relu] -> layer2 where layer1's output (and the activation's) is read only by layer2,
// and layer2 is a plain or depthwise conv (or linear after linear). For each channel i between
// them, with r1 = max|W1[i]| and r2 = max|W2[:, i]|, s = sqrt(r1 / r2):
//   W1[i] /= s,  b1[i] /= s,  W2[:, i] *= s
// which leaves the function unchanged because relu(x / s) = relu(x) / s for s > 0. ReLU6 is not
// scale-invariant: with `relu6_to_relu` the pairs through a relu6 are equalized and the relu6 is
// replaced by relu (as the paper does); otherwise they are skipped. Repeats `iterations` sweeps.
// Returns the number of layer pairs equalized. Run after fold_batchnorm.
int cross_layer_equalize(Graph& g, bool relu6_to_relu, int iterations = 10);

// Indices of the nodes that read node i's output.
std::vector<int> consumers(const Graph& g, int i);

}  // namespace sq
