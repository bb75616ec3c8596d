#!/usr/bin/python3
"""The smallest change an image can take: a copy of an npy data directory whose test images differ
from the original in K pixels per image by one grey level (±1 of 255), chosen at random (seeded).

  perturb_images.py DATA_DIR OUT_DIR [--pixels 6] [--seed 0]

Used by bench/torchvision.sh for the "sensitivity floor" of a quantized network: the top-1
agreement of the engine with itself on the original and on the perturbed images. A runtime that
computes the same network with other rounding (ONNX Runtime evaluating the QDQ export in float,
the simulation in LibTorch) differs from the engine at about as many quantization points as such
a perturbation changes, so it cannot agree with the engine better than this floor
(docs/results.md, "Why ONNX Runtime disagrees").

DATA_DIR holds {train,test}_{images,labels}.npy as `sigmaquant --data npy` reads them, images
uint8; OUT_DIR gets the same files, test images perturbed (written to a temporary name, then
renamed). Exits non-zero naming the file when the images are not uint8.
"""
import argparse
import os
import shutil
import sys

import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data_dir")
    ap.add_argument("out_dir")
    ap.add_argument("--pixels", type=int, default=6, help="pixels changed per image (default 6)")
    ap.add_argument("--seed", type=int, default=0)
    o = ap.parse_args()
    src = os.path.join(o.data_dir, "test_images.npy")
    try:
        images = np.load(src)
    except (OSError, ValueError) as e:
        sys.exit(f"perturb_images.py: {src}: {e}")
    if images.dtype != np.uint8 or images.ndim < 2:
        sys.exit(f"perturb_images.py: {src}: expected uint8 images N x ..., got {images.dtype} "
                 f"{images.shape}")
    flat = images.reshape(len(images), -1).astype(np.int16)
    if o.pixels < 1 or o.pixels > flat.shape[1]:
        sys.exit(f"perturb_images.py: --pixels must be in [1, {flat.shape[1]}] (got {o.pixels})")
    rng = np.random.default_rng(o.seed)
    for i in range(len(flat)):
        idx = rng.choice(flat.shape[1], o.pixels, replace=False)
        step = rng.choice(np.array([-1, 1], dtype=np.int16), o.pixels)
        v = flat[i, idx]
        # at 0 or 255 the step goes the other way, so every chosen pixel changes
        step[(v + step < 0) | (v + step > 255)] *= -1
        flat[i, idx] = v + step
    os.makedirs(o.out_dir, exist_ok=True)
    for name in ("train_images.npy", "train_labels.npy", "test_labels.npy"):
        shutil.copyfile(os.path.join(o.data_dir, name), os.path.join(o.out_dir, name))
    tmp = os.path.join(o.out_dir, f"test_images.tmp.{os.getpid()}.npy")
    np.save(tmp, flat.reshape(images.shape).astype(np.uint8))
    os.replace(tmp, os.path.join(o.out_dir, "test_images.npy"))


if __name__ == "__main__":
    main()
