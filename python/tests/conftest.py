"""Shared fixtures: the source tree, the shipped LeNet-5 and small generated data sets."""
import os
import pathlib

import numpy as np
import pytest

import sigmaquant as sq

SOURCE_DIR = pathlib.Path(os.environ.get("SQ_SOURCE_DIR", pathlib.Path(__file__).parents[2]))


def synthetic(n, seed, classes=10):
    """n images 1x28x28 in [0, 1]: a class-dependent bright square on noise, labels 0..9."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=n)
    images = rng.uniform(0.0, 0.3, size=(n, 1, 28, 28)).astype(np.float32)
    for i, k in enumerate(labels):
        r, c = 2 + 8 * (k // 4), 2 + 6 * (k % 4)
        images[i, 0, r:r + 6, c:c + 6] = 1.0
    return images, labels.astype(np.int64)


@pytest.fixture(scope="session")
def source_dir():
    return SOURCE_DIR


@pytest.fixture(scope="session")
def lenet_path():
    return SOURCE_DIR / "models" / "lenet5-fmnist.sqg"


@pytest.fixture(scope="session")
def lenet(lenet_path):
    return sq.load_model(lenet_path)


@pytest.fixture(scope="session")
def data():
    """200 training and 100 test images, 10 classes."""
    train = sq.Dataset(*synthetic(200, seed=1), num_classes=10, name="synthetic")
    test = sq.Dataset(*synthetic(100, seed=2), num_classes=10, name="synthetic")
    return sq.Data(train, test)


def write_npy_data(directory, train=200, test=100):
    """The npy layout load_data("npy", dir) reads."""
    for split, n, seed in (("train", train, 1), ("test", test, 2)):
        images, labels = synthetic(n, seed)
        np.save(directory / f"{split}_images.npy", (images * 255).astype(np.uint8))
        np.save(directory / f"{split}_labels.npy", labels)
    return directory


# Short settings: every test run is a few seconds on two cores.
FAST = dict(final_epochs=0.05, cycle_epochs=0.05, max_iterations=1, val_samples=40,
            kl_samples=32, calib_samples=64, batch_size=32)
