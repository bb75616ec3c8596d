// Datasets: idx (MNIST / Fashion-MNIST, gzip or raw), CIFAR-10/100 binary, NumPy .npy arrays.
//
//   sq::DataSpec spec;                      // defaults to Fashion-MNIST in its Debian location
//   sq::DataBundle d = sq::load_data(spec); // d.train, d.test
//   auto [train, val] = sq::split(d.train, 0.1, /*seed=*/1);
//
// Images are stored as float32 in [0, 1], N x C x H x W; labels as int32 in [0, num_classes).
// Every malformed input throws sq::Error naming the file and what was wrong.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "sigmaquant/tensor.h"

namespace sq {

struct Dataset {
  std::string name;
  Shape image_shape;  // {C, H, W}
  int64_t num_classes = 0;
  std::vector<float> images;   // size() * C * H * W, values in [0, 1]
  std::vector<int32_t> labels;  // size()

  int64_t size() const { return static_cast<int64_t>(labels.size()); }
  int64_t image_numel() const { return numel(image_shape); }
  const float* image(int64_t i) const { return images.data() + i * image_numel(); }
};

// ---- single-file-pair loaders ----
// idx3 images (ubyte) + idx1 labels (ubyte), gzip or raw. num_classes = max label + 1, at least 2,
// unless given (> 0), in which case labels must be below it.
Dataset load_idx(const std::string& images_path, const std::string& labels_path,
                 int64_t num_classes = 0);
// CIFAR binary: records of <label byte(s)><3072 pixel bytes>. CIFAR-10: 1 label byte, 10 classes.
// CIFAR-100: 2 label bytes (coarse, fine); the fine label (100 classes) is used.
Dataset load_cifar(const std::vector<std::string>& paths, bool cifar100);
// .npy images: uint8 (scaled by 1/255) or float32/float64 (taken as is, must lie in [0, 1]),
// shape N x C x H x W, N x H x W (C = 1) or N x H x W x C (C in {1, 3, 4}, transposed).
// A 4-d shape is taken as N x H x W x C when its last dimension is in {1, 3, 4} and its second is
// not; otherwise (e.g. (N, 3, 4, 4)) as N x C x H x W.
// .npy labels: integer dtype (u1, i1, i2, i4, i8, u2, u4, u8), shape N.
Dataset load_npy(const std::string& images_path, const std::string& labels_path,
                 int64_t num_classes = 0);

// ---- a dataset by name ----
struct DataSpec {
  // "fashion-mnist" | "mnist" | "idx" (standard MNIST file names in dir) | "cifar10" | "cifar100" |
  // "npy" (dir holds train_images.npy, train_labels.npy, test_images.npy, test_labels.npy).
  std::string format = "fashion-mnist";
  std::string dir;  // empty: the default directory of the format (fashion-mnist:
                    // /usr/share/datasets/fashion-mnist; mnist: /usr/share/datasets/mnist)
  // The class count, when known to the caller (> 0): every label must be below it. 0: the
  // format's own count (10 or 100), or for idx / npy inferred from the training labels.
  int64_t num_classes = 0;
};
struct DataBundle {
  Dataset train;
  Dataset test;
};
// Both sets are named after the format (e.g. "fashion-mnist") and share one num_classes: 10 for
// mnist / fashion-mnist / cifar10, 100 for cifar100 (a label at or above it is refused, naming
// the file, the index and the value; spec.num_classes, if given, must equal it). For idx and npy:
// spec.num_classes if given (every label below it), else max training label + 1 (at least 2),
// refused when a class below the largest label has no training sample — a stray label (12 among
// 0..9) would silently make a 13-class model: the error names the labels file, the missing
// class and the largest label with its index. Test labels must lie below the training set's
// count.
DataBundle load_data(const DataSpec& spec);
std::string default_data_dir(const std::string& format);

// ---- subsets, splits, normalization, augmentation ----
// The first n samples (n <= 0 or n >= size: a copy of all).
Dataset take(const Dataset& d, int64_t n);
// Samples [from, to) (0 <= from <= to <= size).
Dataset take_range(const Dataset& d, int64_t from, int64_t to);
// n seeded images uniform in [0, 1) of the given shape, labels i mod classes (name "random"): a
// throughput benchmark's input, where the work per image does not depend on the pixels.
Dataset uniform_dataset(const Shape& image_shape, int64_t classes, int64_t n, uint64_t seed);
// A seeded random split: (train, validation) with round(val_fraction * size) validation samples.
// The same seed gives the same split on every platform; each part keeps the original order.
std::pair<Dataset, Dataset> split(const Dataset& d, double val_fraction, uint64_t seed);
// Per-channel mean and standard deviation over the whole dataset.
void channel_stats(const Dataset& d, std::vector<float>& mean, std::vector<float>& stddev);
// Copies image i of d into dst (C*H*W floats), normalized: (x - mean[c]) / std[c]
// (a channel with std 0 is only centred).
void normalized_image(const Dataset& d, int64_t i, const std::vector<float>& mean,
                      const std::vector<float>& stddev, float* dst);
// In-place augmentation of one C x H x W image: random translation by up to `pad` pixels in each
// direction (zero fill, as random crop of a zero-padded image) and, if `flip`, a random horizontal
// flip with probability 1/2.
void augment_image(float* chw, const Shape& image_shape, int pad, bool flip, std::mt19937_64& rng);

}  // namespace sq
