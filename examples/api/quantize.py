#!/usr/bin/env python3
"""Quantize an FP32 model from Python, export it for the integer engine and run it there.

    PYTHONPATH=build/python python3 examples/api/quantize.py \
        --model models/lenet5-fmnist.sqg --target targets/shiftadd.json --out runs/api-py

Data: Fashion-MNIST by default (--data/--data-dir take any sigmaquant.load_data format, e.g.
npy); the first --limit-train / --limit-test images. The search is kept short: a demonstration.
"""
import argparse
import os

import numpy as np

import sigmaquant as sq


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="models/lenet5-fmnist.sqg", help="FP32 model (.sqg)")
    p.add_argument("--target", default="targets/shiftadd.json", help="file or builtin name")
    p.add_argument("--method", default="sigmaquant", choices=sq.methods())
    p.add_argument("--avg-bits", type=float, default=4, help="average weight bits budget")
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--limit-train", type=int, default=2000)
    p.add_argument("--limit-test", type=int, default=1000)
    p.add_argument("--out", default="runs/api-py", help="output directory")
    a = p.parse_args()

    model = sq.load_model(a.model)
    target = sq.load_target(a.target)
    data = sq.load_data(a.data, a.data_dir)
    data = sq.Data(data.train.take(a.limit_train), data.test.take(a.limit_test))
    print(model, target, data, sep="\n")

    # 1. What the FP32 model would cost at 8 bits everywhere.
    fp = sq.cost(model, target, bits=8)
    print(f"uniform 8-bit: {fp['cost']['total']['weight_bytes']} weight bytes, "
          f"fits the target: {fp['fits']}")

    # 2. Mixed precision under the target's budgets and an average of avg_bits weight bits (the
    #    model given by its path, which the run log records).
    r = sq.quantize(a.model, target, method=a.method, data=data, avg_bits=a.avg_bits,
                    out_dir=a.out, max_drop=0.01, final_epochs=0.05, cycle_epochs=0.02,
                    max_iterations=1, val_samples=min(500, len(data.train) // 5),
                    kl_samples=128, calib_samples=256,
                    on_message=lambda line: print("  " + line))
    print(r.summary())
    print("bits per layer:", {name: e["wbits"] for name, e in r.bits["layers"].items()})

    # 3. The integer engine's model file, and the model run on the integer engine.
    sqm = os.path.join(a.out, "model.sqm")
    r.model.export_sqm(sqm)
    engine = sq.Engine(sqm)
    logits = engine.run(data.test.images)  # N x C x H x W float32 in [0, 1] -> N x classes
    accuracy = float(np.mean(logits.argmax(axis=1) == data.test.labels))
    print(f"{sqm}: {r.model.avg_bits:.2f} average weight bits; integer engine accuracy "
          f"{100 * accuracy:.2f}% on {len(data.test)} test images (simulated "
          f"{100 * r.accuracy:.2f}%, FP32 {100 * r.log['model']['fp32_accuracy']:.2f}%)")


if __name__ == "__main__":
    main()
