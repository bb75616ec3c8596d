#!/usr/bin/python3
"""Compares two logit files (raw float32, images x classes), as bench/torchvision.sh writes them.

  compare_logits.py A.f32 B.f32 --classes C [--ref R.f32] [--margin 0.01] [--json]

Prints the largest |A - B|, the largest |A - B| relative to the largest |B|, and the top-1
agreement of A with B over all images and over the images whose top-2 margin in R (default: B;
give the FP32 logits) is not tiny: at least --margin times that image's logit range (max - min).
Quantization moves logits by a fraction of their range, so an image whose two best classes are
closer than that is a coin toss for any quantized model, not a disagreement worth counting.
"""
import argparse
import json
import sys

import numpy as np


def load(path, classes):
    a = np.fromfile(path, dtype="<f4")
    if a.size == 0 or a.size % classes:
        sys.exit(f"{path}: {a.size} floats is not a multiple of {classes} classes")
    return a.reshape(-1, classes).astype(np.float64)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--classes", type=int, required=True)
    ap.add_argument("--ref")
    ap.add_argument("--margin", type=float, default=0.01)
    ap.add_argument("--json", action="store_true")
    o = ap.parse_args()
    a, b = load(o.a, o.classes), load(o.b, o.classes)
    r = load(o.ref, o.classes) if o.ref else b
    n = min(len(a), len(b), len(r))
    a, b, r = a[:n], b[:n], r[:n]
    diff = np.abs(a - b)
    top2 = np.sort(r, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) >= o.margin * (r.max(1) - r.min(1))
    agree = a.argmax(1) == b.argmax(1)
    res = {
        "images": int(n),
        "max_abs_diff": float(diff.max()),
        "max_rel_diff": float(diff.max() / max(np.abs(b).max(), 1e-30)),
        "agreement": float(agree.mean()),
        "clear_images": int(clear.sum()),
        "agreement_clear": float(agree[clear].mean()) if clear.any() else None,
    }
    if o.json:
        print(json.dumps(res))
    else:
        ac = res["agreement_clear"]
        print(f"{n} images: max |diff| {res['max_abs_diff']:.3g} (relative {res['max_rel_diff']:.3g}), "
              f"top-1 agreement {100 * res['agreement']:.1f} %, on the {res['clear_images']} with a "
              f"clear margin {'-' if ac is None else f'{100 * ac:.1f} %'}")


if __name__ == "__main__":
    main()
