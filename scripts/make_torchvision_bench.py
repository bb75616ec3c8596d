#!/usr/bin/python3
"""Makes the inputs of bench/torchvision.sh: full-size torchvision classification networks as a
user's torch.onnx.export writes them, and data to run them on.

  apt-get install python3-torch python3-torchvision python3-onnx
  /usr/bin/python3 scripts/make_torchvision_bench.py --out runs/torchvision [--models a,b] \
      [--opsets 13,17] [--train 256] [--test 64] [--size S] [--fit-epochs E]

No weights can be downloaded here, so every network has torchvision's random initialization
(seeded). Its BatchNorm statistics are then set the way training would leave them: one pass in
train mode with cumulative averages (momentum None) over the training images, so every BN layer
really normalizes and the activations have the spread of a trained network's (with the default
statistics, mean 0 / variance 1, a random ResNet-50's activations grow by orders of magnitude
through the residual adds).

Data: Fashion-MNIST images (Debian's dataset-fashion-mnist) resized bilinearly to the network's
input size (224, Inception-v3 299) and repeated over 3 channels, uint8 N x 3 x S x S .npy files
(values / 255 are the input), with their Fashion-MNIST labels (classes 0..9 of the 1,000 outputs).

Two ways to give the network weights (neither downloads anything):
- default (--fit-epochs 0): random features with a refitted head (below);
- --fit-epochs E: the whole network trained here on the --train images for E epochs (SGD with
  momentum, cosine learning rate, cross-entropy on the 10 Fashion-MNIST labels of the 1,000
  outputs), after the BN pass above. A trained network's activations carry the signal, not noise,
  so its top-1 is as stable under 8-bit rounding as a real model's; a random one amplifies every
  rounding difference (W8A8 agrees with its own FP32 on about half the images). --size makes this
  affordable on a CPU (e.g. 96: Inception-v3's smallest input is 75).

The head: a random network's 1,000 logits lie within a few percent of each other, closer than
8-bit quantization moves them, so top-1 comparisons would be coin tosses. The last weight layer is
therefore refitted (ridge regression on the training images' features to 10 x one-hot labels):
random features + a trained linear probe, a weak but real Fashion-MNIST classifier with decisive
margins (see fit_head).

For each model M the script writes OUT/M/:
  M-op<K>.onnx             torch.onnx.export at opset K, dynamic batch axis (default opsets 13, 17)
  data/{train,test}_{images,labels}.npy   the data above (--data npy --data-dir OUT/M/data)
  torch_logits.f32         PyTorch's FP32 logits on the test images (float32, N x 1000)
  test_images.f32          the test images as raw float32 in [0, 1] (run_ort.js's input)
  info.json                input size, parameter count, counts
"""
import argparse
import gzip
import json
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

# name -> (constructor keyword arguments, input size)
MODELS = {
    "resnet18": ({}, 224),
    "resnet50": ({}, 224),
    "inception_v3": ({"aux_logits": False, "init_weights": False}, 299),
    "googlenet": ({"aux_logits": False, "init_weights": False}, 224),
    "mobilenet_v2": ({}, 224),
    "mobilenet_v3_small": ({}, 224),
    "mobilenet_v3_large": ({}, 224),
    "efficientnet_b0": ({}, 224),
    "mnasnet1_0": ({}, 224),
    "squeezenet1_1": ({}, 224),
    "shufflenet_v2_x1_0": ({}, 224),
    "densenet121": ({}, 224),
    "resnext50_32x4d": ({}, 224),
    "regnet_y_400mf": ({}, 224),
    "vgg11_bn": ({}, 224),
}


def read_idx_images(path):
    op = gzip.open if path.endswith(".gz") else open
    with op(path, "rb") as f:
        magic, n, h, w = struct.unpack(">IIII", f.read(16))
        if magic != 0x803:
            sys.exit(f"{path}: not an idx image file (magic {magic:#x})")
        return np.frombuffer(f.read(n * h * w), dtype=np.uint8).reshape(n, h, w)


def read_idx_labels(path):
    op = gzip.open if path.endswith(".gz") else open
    with op(path, "rb") as f:
        magic, n = struct.unpack(">II", f.read(8))
        if magic != 0x801:
            sys.exit(f"{path}: not an idx label file (magic {magic:#x})")
        return np.frombuffer(f.read(n), dtype=np.uint8).astype(np.int64)


def find_fmnist(d):
    for name in ("train-images-idx3-ubyte.gz", "train-images-idx3-ubyte"):
        if os.path.exists(os.path.join(d, name)):
            t = "t10k-images-idx3-ubyte" + (".gz" if name.endswith(".gz") else "")
            return os.path.join(d, name), os.path.join(d, t)
    sys.exit(f"no Fashion-MNIST idx files in {d} (apt-get install dataset-fashion-mnist)")


def resize3(images, size):
    """uint8 N x H x W -> uint8 N x 3 x size x size (bilinear, 3 equal channels)."""
    out = []
    for i in range(0, len(images), 64):
        x = torch.from_numpy(images[i:i + 64].astype(np.float32)).unsqueeze(1)
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        out.append(x.round().clamp(0, 255).to(torch.uint8).repeat(1, 3, 1, 1).numpy())
    return np.concatenate(out)


def fit_head(m, x, labels, scale=10.0):
    """Refits the network's last weight layer (Linear, or SqueezeNet's 1x1 Conv) by ridge
    regression of its inputs on scale x one-hot(label): random features + a trained linear probe,
    a real (if weak) Fashion-MNIST classifier whose top-2 margins are as decisive as a trained
    network's. A random head's 1,000 logits lie within a few percent of each other, closer than
    8-bit quantization moves them, which makes every top-1 comparison a coin toss. A conv head
    (followed by ReLU and average pooling) is fitted per pixel on the same targets."""
    last = [mod for mod in m.modules() if isinstance(mod, (nn.Linear, nn.Conv2d))][-1]
    feats = []
    h = last.register_forward_hook(lambda mod, inp, out: feats.append(inp[0].detach()))
    with torch.no_grad():
        for i in range(0, len(x), 32):
            m(x[i:i + 32])
    h.remove()
    f = torch.cat(feats).double()
    y = torch.zeros(len(x), last.weight.shape[0], dtype=torch.float64)
    y[torch.arange(len(x)), torch.as_tensor(labels)] = scale
    if f.dim() == 4:  # N x C x H x W: every pixel is a sample with its image's target
        hw = f.shape[2] * f.shape[3]
        f = f.permute(0, 2, 3, 1).reshape(-1, f.shape[1])
        y = y.repeat_interleave(hw, 0)
    f1 = torch.cat([f, torch.ones(len(f), 1, dtype=f.dtype)], 1)
    g = f1.T @ f1
    lam = 1.0 * g.diagonal().mean()
    sol = torch.linalg.solve(g + lam * torch.eye(len(g), dtype=g.dtype), f1.T @ y)
    with torch.no_grad():
        last.weight.copy_(sol[:-1].T.reshape(last.weight.shape).float())
        if last.bias is not None:
            last.bias.copy_(sol[-1].float())


def set_bn_statistics(m, x):
    """BN statistics as training leaves them: cumulative averages (momentum None) over one pass
    in train mode over the images, without changing any weight; leaves m in eval mode."""
    for mod in m.modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            mod.reset_running_stats()
            mod.momentum = None
    m.train()
    with torch.no_grad():
        for i in range(0, len(x), 32):
            m(x[i:i + 32])
    m.eval()


def fit_network(m, x, labels, epochs, lr, batch=32, seed=1):
    """Trains every weight of m on (x, labels) for `epochs` epochs: SGD (momentum 0.9, Nesterov,
    weight decay 5e-5), cosine learning rate from lr with a one-epoch linear warm-up when there
    are several, gradient norm clipped at 5 (a random deep network's first steps are large).
    Prints the running loss and accuracy per epoch."""
    g = torch.Generator().manual_seed(seed)
    y = torch.as_tensor(labels)
    opt = torch.optim.SGD(m.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-5)
    steps_per_epoch = (len(x) + batch - 1) // batch
    total = max(1, int(epochs * steps_per_epoch))
    warm = steps_per_epoch if epochs > 1 else 0
    step = 0
    m.train()
    while step < total:
        order = torch.randperm(len(x), generator=g)
        loss_sum, correct, seen = 0.0, 0, 0
        for i in range(0, len(x), batch):
            if step >= total:
                break
            t = step / total
            f = (step + 1) / warm if step < warm else 0.5 * (1 + np.cos(np.pi * t))
            for pg in opt.param_groups:
                pg["lr"] = lr * f
            idx = order[i:i + batch]
            if len(idx) < 2:  # BatchNorm needs two images
                continue
            out = m(x[idx])
            loss = F.cross_entropy(out, y[idx])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(m.parameters(), 5.0)
            opt.step()
            loss_sum += loss.item() * len(idx)
            correct += (out.argmax(1) == y[idx]).sum().item()
            seen += len(idx)
            step += 1
        print(f"  epoch {step / steps_per_epoch:.2f}: loss {loss_sum / max(seen, 1):.3f}, "
              f"train accuracy {100 * correct / max(seen, 1):.1f} %", flush=True)
    m.eval()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="runs/torchvision")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--opsets", default="13,17")
    ap.add_argument("--train", type=int, default=1024)
    ap.add_argument("--test", type=int, default=64)
    ap.add_argument("--fmnist", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--size", type=int, default=0,
                    help="input size (default: the network's own, 224 or 299)")
    ap.add_argument("--fit-epochs", type=float, default=0,
                    help="train the whole network for this many epochs (default 0: refit the head)")
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--threads", type=int, default=0,
                    help="PyTorch threads (default 0: one per CPU)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads if a.threads > 0 else max(1, os.cpu_count() or 1))
    tr_path, te_path = find_fmnist(a.fmnist)
    tr_raw, te_raw = read_idx_images(tr_path)[:a.train], read_idx_images(te_path)[:a.test]
    tr_lab = read_idx_labels(tr_path.replace("images-idx3", "labels-idx1"))[:a.train]
    te_lab = read_idx_labels(te_path.replace("images-idx3", "labels-idx1"))[:a.test]
    for name in a.models.split(","):
        if name not in MODELS:
            sys.exit(f"--models: unknown '{name}' (expected some of {', '.join(MODELS)})")
        kw, size = MODELS[name]
        if a.size:
            size = max(a.size, 75) if name == "inception_v3" else a.size
        d = os.path.join(a.out, name)
        os.makedirs(os.path.join(d, "data"), exist_ok=True)
        torch.manual_seed(a.seed)
        m = getattr(torchvision.models, name)(weights=None, **kw)
        tr, te = resize3(tr_raw, size), resize3(te_raw, size)
        xtr = torch.from_numpy(tr).float() / 255
        xte = torch.from_numpy(te).float() / 255
        set_bn_statistics(m, xtr)
        if a.fit_epochs > 0:
            for mod in m.modules():
                if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                    mod.momentum = 0.1
            fit_network(m, xtr, tr_lab, a.fit_epochs, a.lr, seed=a.seed)
            set_bn_statistics(m, xtr)  # the final weights' statistics, not a running mix
        else:
            fit_head(m, xtr, tr_lab)
        with torch.no_grad():
            ltr = torch.cat([m(xtr[i:i + 32]) for i in range(0, len(xtr), 32)])
            lte = torch.cat([m(xte[i:i + 32]) for i in range(0, len(xte), 32)])
        np.save(os.path.join(d, "data", "train_images.npy"), tr)
        np.save(os.path.join(d, "data", "test_images.npy"), te)
        np.save(os.path.join(d, "data", "train_labels.npy"), tr_lab)
        np.save(os.path.join(d, "data", "test_labels.npy"), te_lab)
        lte.numpy().astype("<f4").tofile(os.path.join(d, "torch_logits.f32"))
        xte.numpy().astype("<f4").tofile(os.path.join(d, "test_images.f32"))
        for op in [int(o) for o in a.opsets.split(",")]:
            path = os.path.join(d, f"{name}-op{op}.onnx")
            torch.onnx.export(m, xte[:1], path, opset_version=op, input_names=["input"],
                              output_names=["logits"],
                              dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
        info = {"model": name, "size": size, "params": sum(p.numel() for p in m.parameters()),
                "train": len(tr), "test": len(te),
                "weights": f"trained {a.fit_epochs:g} epochs" if a.fit_epochs > 0
                           else "random, head refitted", "classes": int(lte.shape[1]),
                "train_accuracy": float((ltr.argmax(1).numpy() == tr_lab).mean()),
                "test_accuracy": float((lte.argmax(1).numpy() == te_lab).mean()),
                "torch": torch.__version__, "torchvision": torchvision.__version__}
        with open(os.path.join(d, "info.json"), "w") as f:
            json.dump(info, f, indent=1)
        print(f"{name}: {info['params']:,} params, {size}x{size}, Fashion-MNIST accuracy "
              f"{100 * info['train_accuracy']:.1f} % (train) {100 * info['test_accuracy']:.1f} % "
              f"(test)", flush=True)


if __name__ == "__main__":
    main()
