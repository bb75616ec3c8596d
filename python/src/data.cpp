// Datasets: from numpy arrays (images N x C x H x W in [0, 1], integer labels) or from files
// (load_data: fashion-mnist, mnist, idx, cifar10, cifar100, npy).
#include "sigmaquant/data.h"

#include <fmt/format.h>
#include <pybind11/numpy.h>
#include <pybind11/stl.h>
#include <pybind11/stl/filesystem.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>

#include "bindings.h"
#include "sigmaquant/error.h"

namespace sqpy {
namespace {

// uint8 images are scaled by 1/255 (as load_npy does); any other dtype is taken as float values
// that must lie in [0, 1]. 3-d input is N x H x W (one channel).
void set_images(sq::Dataset& d, const py::array& images) {
  const bool u8 = images.dtype().kind() == 'u' && images.dtype().itemsize() == 1;
  auto a = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(images);
  if (!a)
    sq::fail("Dataset: images of dtype {} cannot be read as float32",
             py::str(images.dtype()).cast<std::string>());
  if (a.ndim() != 4 && a.ndim() != 3)
    sq::fail("Dataset: images must be N x C x H x W (or N x H x W), got {} dimensions", a.ndim());
  const int64_t n = a.shape(0);
  d.image_shape = a.ndim() == 4 ? sq::Shape{a.shape(1), a.shape(2), a.shape(3)}
                                : sq::Shape{1, a.shape(1), a.shape(2)};
  if (sq::numel(d.image_shape) <= 0)
    sq::fail("Dataset: empty images {}", sq::shape_str(d.image_shape));
  d.images.assign(a.data(), a.data() + n * sq::numel(d.image_shape));
  if (u8) {
    for (float& v : d.images) v /= 255.0f;
    return;
  }
  for (size_t i = 0; i < d.images.size(); ++i)
    if (!(d.images[i] >= 0.0f && d.images[i] <= 1.0f))
      sq::fail(
          "Dataset: image {} holds {} (expected values in [0, 1]: scale uint8 pixels by "
          "1/255, or pass the uint8 array)",
          static_cast<int64_t>(i) / sq::numel(d.image_shape), d.images[i]);
}

void set_labels(sq::Dataset& d, const py::array& labels, int64_t num_classes) {
  const char kind = labels.dtype().kind();
  if (kind != 'i' && kind != 'u')
    sq::fail("Dataset: labels must have an integer dtype (got {})",
             py::str(labels.dtype()).cast<std::string>());
  auto a = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(labels);
  if (a.ndim() != 1) sq::fail("Dataset: labels must be 1-d (got {} dimensions)", a.ndim());
  if (a.shape(0) * sq::numel(d.image_shape) != static_cast<int64_t>(d.images.size()))
    sq::fail("Dataset: {} labels for {} images", a.shape(0),
             static_cast<int64_t>(d.images.size()) / sq::numel(d.image_shape));
  int64_t max_label = 0;
  d.labels.resize(static_cast<size_t>(a.shape(0)));
  for (int64_t i = 0; i < a.shape(0); ++i) {
    const int64_t v = a.data()[i];
    if (v < 0 || (num_classes > 0 && v >= num_classes))
      sq::fail("Dataset: label {} at index {} is out of range (expected 0..{})", v, i,
               num_classes > 0 ? num_classes - 1 : INT32_MAX);
    if (v > INT32_MAX) sq::fail("Dataset: label {} at index {} does not fit int32", v, i);
    max_label = std::max(max_label, v);
    d.labels[static_cast<size_t>(i)] = static_cast<int32_t>(v);
  }
  // As load_idx: the labels' count of classes (at least 2) unless given.
  d.num_classes = num_classes > 0 ? num_classes : std::max<int64_t>(2, max_label + 1);
}

sq::Dataset make_dataset(const py::array& images, const py::array& labels, int64_t num_classes,
                         const std::string& name) {
  sq::Dataset d;
  d.name = name;
  set_images(d, images);
  set_labels(d, labels, num_classes);
  return d;
}

py::array_t<float> images_of(const sq::Dataset& d) {
  std::vector<py::ssize_t> shape = {d.size()};
  for (int64_t s : d.image_shape) shape.push_back(s);
  py::array_t<float> a(shape);
  std::memcpy(a.mutable_data(), d.images.data(), d.images.size() * sizeof(float));
  return a;
}

py::array_t<int32_t> labels_of(const sq::Dataset& d) {
  py::array_t<int32_t> a(d.size());
  std::memcpy(a.mutable_data(), d.labels.data(), d.labels.size() * sizeof(int32_t));
  return a;
}

}  // namespace

void bind_data(py::module_& m) {
  py::class_<sq::Dataset>(m, "Dataset",
                          "Images (float32 in [0, 1], N x C x H x W) and integer labels.")
      .def(py::init(&make_dataset), py::arg("images"), py::arg("labels"),
           py::arg("num_classes") = 0, py::arg("name") = "numpy",
           "images: N x C x H x W (or N x H x W) floats in [0, 1], or uint8 pixels (scaled by "
           "1/255); labels: N integers in [0, num_classes); num_classes 0: max label + 1 (at "
           "least 2).")
      .def_readwrite("name", &sq::Dataset::name)
      .def_property_readonly(
          "image_shape", [](const sq::Dataset& d) { return py::tuple(py::cast(d.image_shape)); })
      .def_readonly("num_classes", &sq::Dataset::num_classes)
      .def_property_readonly("images", &images_of, "a copy, N x C x H x W float32")
      .def_property_readonly("labels", &labels_of, "a copy, N int32")
      .def("__len__", &sq::Dataset::size)
      .def("take", &sq::take, py::arg("n"), "the first n samples")
      .def(
          "split",
          [](const sq::Dataset& d, double val_fraction, uint64_t seed) {
            return sq::split(d, val_fraction, seed);
          },
          py::arg("val_fraction"), py::arg("seed") = 1, "a seeded random (train, validation) split")
      .def("__repr__", [](const sq::Dataset& d) {
        return fmt::format("<sigmaquant.Dataset '{}': {} images {}, {} classes>", d.name, d.size(),
                           sq::shape_str(d.image_shape), d.num_classes);
      });

  py::class_<sq::DataBundle>(m, "Data", "A training set and a test set.")
      .def(py::init([](sq::Dataset train, sq::Dataset test) {
             return sq::DataBundle{std::move(train), std::move(test)};
           }),
           py::arg("train"), py::arg("test"))
      .def_readwrite("train", &sq::DataBundle::train)
      .def_readwrite("test", &sq::DataBundle::test)
      .def("__repr__", [](const sq::DataBundle& d) {
        return fmt::format("<sigmaquant.Data '{}': {} train, {} test>", d.train.name,
                           d.train.size(), d.test.size());
      });

  m.def(
      "load_data",
      [](const std::string& format, const std::optional<std::filesystem::path>& dir) {
        sq::DataSpec spec;
        spec.format = format;
        if (dir) spec.dir = dir->string();
        py::gil_scoped_release unlocked;
        return sq::load_data(spec);
      },
      py::arg("format") = "fashion-mnist", py::arg("dir") = py::none(),
      "Loads a data set: fashion-mnist, mnist, idx, cifar10, cifar100 or npy (dir holds "
      "train_images.npy, train_labels.npy, test_images.npy, test_labels.npy); dir None: the "
      "format's default directory.");
}

}  // namespace sqpy
