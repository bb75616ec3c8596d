// Loading a dataset by format name: which files a format expects and where they are by default.
#include <sys/stat.h>

#include <algorithm>

#include "sigmaquant/data.h"
#include "sigmaquant/error.h"
#include "sigmaquant/fileutil.h"

namespace sq {
namespace {

constexpr const char* kKnownFormats = "fashion-mnist, mnist, idx, cifar10, cifar100, npy";

bool is_idx_format(const std::string& f) {
  return f == "fashion-mnist" || f == "mnist" || f == "idx";
}

// What a format's directory must hold, for messages.
const char* expected_files(const std::string& format) {
  if (is_idx_format(format))
    return "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
           "t10k-labels-idx1-ubyte, each optionally .gz";
  if (format == "cifar10")
    return "data_batch_1.bin .. data_batch_5.bin and test_batch.bin (or a cifar-10-batches-bin "
           "subdirectory holding them)";
  if (format == "cifar100")
    return "train.bin and test.bin (or a cifar-100-binary subdirectory holding them)";
  return "train_images.npy, train_labels.npy, test_images.npy and test_labels.npy";
}

bool is_dir(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string join(const std::string& dir, const std::string& name) {
  return !dir.empty() && dir.back() == '/' ? dir + name : dir + "/" + name;
}

// dir/name, checked to exist, naming what the format expects otherwise.
std::string require_file(const std::string& dir, const std::string& name,
                         const std::string& format) {
  const std::string path = join(dir, name);
  if (!file_exists(path))
    fail("{}: missing file (data format '{}' expects {} in {})", path, format,
         expected_files(format), dir);
  return path;
}

// idx files: the .gz version if present, else the raw one.
std::string idx_file(const std::string& dir, const std::string& base, const std::string& format) {
  const std::string gz = join(dir, base + ".gz");
  if (file_exists(gz)) return gz;
  const std::string raw = join(dir, base);
  if (file_exists(raw)) return raw;
  fail("{}: missing file (expected {} or {}.gz in {} for data format '{}')", raw, base, base, dir,
       format);
}

// CIFAR archives unpack into a subdirectory; accept either the directory or its parent.
std::string cifar_dir(const std::string& dir, const std::string& first_file,
                      const std::string& subdir) {
  if (!file_exists(join(dir, first_file)) && is_dir(join(dir, subdir))) return join(dir, subdir);
  return dir;
}

// An inferred class count (max label + 1) must be seen in training: every class below the largest
// label has at least one sample, else the largest label is most likely a stray one.
void check_classes_present(const Dataset& train, const std::string& labels_file) {
  if (train.labels.empty()) return;
  const auto max_it = std::max_element(train.labels.begin(), train.labels.end());
  const int32_t max_label = *max_it;
  std::vector<int64_t> count(static_cast<size_t>(max_label) + 1, 0);
  for (int32_t l : train.labels) ++count[static_cast<size_t>(l)];
  std::vector<int32_t> missing;
  for (int32_t c = 0; c < max_label; ++c)
    if (count[static_cast<size_t>(c)] == 0) missing.push_back(c);
  if (missing.empty()) return;
  std::string list;
  for (size_t k = 0; k < missing.size() && k < 5; ++k)
    list += (k ? ", " : "") + std::to_string(missing[k]);
  if (missing.size() > 5) list += fmt::format(", ... ({} in all)", missing.size());
  fail(
      "{}: no training sample has class {} although the largest label is {} (at index {}, {} "
      "sample{} with it): the class count would be {}; if {} is a stray label, fix it, else give "
      "the class count explicitly (--classes)",
      labels_file, list, max_label, max_it - train.labels.begin(),
      count[static_cast<size_t>(max_label)], count[static_cast<size_t>(max_label)] == 1 ? "" : "s",
      int64_t{max_label} + 1, max_label);
}

// A format with a fixed class count: an explicit count must agree with it.
int64_t fixed_classes(const std::string& format, int64_t fixed, int64_t given) {
  if (given > 0 && given != fixed)
    fail("data format '{}' has {} classes (got a class count of {})", format, fixed, given);
  return fixed;
}

}  // namespace

std::string default_data_dir(const std::string& format) {
  if (format == "fashion-mnist") return "/usr/share/datasets/fashion-mnist";
  if (format == "mnist") return "/usr/share/datasets/mnist";
  if (format == "idx" || format == "cifar10" || format == "cifar100" || format == "npy") return "";
  fail("unknown data format '{}' (expected one of: {})", format, kKnownFormats);
}

DataBundle load_data(const DataSpec& spec) {
  const std::string& format = spec.format;
  const std::string default_dir = default_data_dir(format);  // also rejects unknown formats
  const std::string dir = spec.dir.empty() ? default_dir : spec.dir;
  if (dir.empty())
    fail("data format '{}' has no default directory (expected a directory holding {})", format,
         expected_files(format));
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0)
    fail("{}: missing directory (data format '{}' expects it to hold {})", dir, format,
         expected_files(format));
  if (!S_ISDIR(st.st_mode))
    fail("{}: not a directory (data format '{}' expects a directory holding {})", dir, format,
         expected_files(format));

  if (spec.num_classes < 0)
    fail("data format '{}': class count {} (expected > 0, or 0 to infer it)", format,
         spec.num_classes);
  DataBundle b;
  std::string test_images;  // for the shape-agreement message
  if (is_idx_format(format)) {
    const int64_t classes =
        format == "idx" ? spec.num_classes : fixed_classes(format, 10, spec.num_classes);
    const std::string tr_img = idx_file(dir, "train-images-idx3-ubyte", format);
    const std::string tr_lab = idx_file(dir, "train-labels-idx1-ubyte", format);
    test_images = idx_file(dir, "t10k-images-idx3-ubyte", format);
    const std::string te_lab = idx_file(dir, "t10k-labels-idx1-ubyte", format);
    b.train = load_idx(tr_img, tr_lab, classes);
    if (classes == 0) check_classes_present(b.train, tr_lab);
    // The test labels must be classes the model is trained on.
    b.test = load_idx(test_images, te_lab, b.train.num_classes);
  } else if (format == "cifar10") {
    fixed_classes(format, 10, spec.num_classes);
    const std::string d = cifar_dir(dir, "data_batch_1.bin", "cifar-10-batches-bin");
    std::vector<std::string> train_files;
    for (int i = 1; i <= 5; ++i)
      train_files.push_back(require_file(d, "data_batch_" + std::to_string(i) + ".bin", format));
    test_images = require_file(d, "test_batch.bin", format);
    b.train = load_cifar(train_files, false);
    b.test = load_cifar({test_images}, false);
  } else if (format == "cifar100") {
    fixed_classes(format, 100, spec.num_classes);
    const std::string d = cifar_dir(dir, "train.bin", "cifar-100-binary");
    const std::string train_file = require_file(d, "train.bin", format);
    test_images = require_file(d, "test.bin", format);
    b.train = load_cifar({train_file}, true);
    b.test = load_cifar({test_images}, true);
  } else {  // npy
    const std::string tr_img = require_file(dir, "train_images.npy", format);
    const std::string tr_lab = require_file(dir, "train_labels.npy", format);
    test_images = require_file(dir, "test_images.npy", format);
    const std::string te_lab = require_file(dir, "test_labels.npy", format);
    b.train = load_npy(tr_img, tr_lab, spec.num_classes);
    if (spec.num_classes == 0) check_classes_present(b.train, tr_lab);
    b.test = load_npy(test_images, te_lab, b.train.num_classes);
  }

  if (b.test.image_shape != b.train.image_shape)
    fail("{}: test images are {} but the training images are {} (expected the same shape)",
         test_images, shape_str(b.test.image_shape), shape_str(b.train.image_shape));
  // One class count: the training set's (test labels were checked against it).
  b.test.num_classes = b.train.num_classes;
  b.train.name = b.test.name = format;
  return b;
}

}  // namespace sq
