#!/usr/bin/python3
"""Makes tests/data/fmnist_cnn.onnx: a small float CNN trained with PyTorch on Fashion-MNIST.

  apt-get install python3-torch python3-onnx
  /usr/bin/python3 scripts/make_onnx_fixture.py [--data /usr/share/datasets/fashion-mnist]

Conv-BN-ReLU x2 (max-pooled), Linear; about one epoch on 2 threads (~1 minute). The model takes
the raw image (x in [0, 1], N x 1 x 28 x 28) and returns logits; it is exported with
torch.onnx.export at opset 13 with BatchNormalization kept as its own operator (so that the
importer's BN path is exercised). The test accuracy goes to tests/data/fmnist_cnn.json, which the
CLI test compares with `sigmaquant eval` of the imported model.
"""
import argparse
import gzip
import json
import os

import numpy as np
import torch
import torch.nn as nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.pool = nn.MaxPool2d(2)
        self.drop = nn.Dropout(0.1)
        self.fc = nn.Linear(16 * 7 * 7, 10)

    def forward(self, x):
        x = self.pool(torch.relu(self.bn1(self.conv1(x))))
        x = self.pool(torch.relu(self.bn2(self.conv2(x))))
        return self.fc(self.drop(torch.flatten(x, 1)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "data", "fmnist_cnn.onnx"))
    ap.add_argument("--epochs", type=int, default=1)
    args = ap.parse_args()
    torch.manual_seed(1)
    torch.set_num_threads(2)
    load = lambda n: torch.from_numpy(idx(os.path.join(args.data, n)).copy())
    xtr = load("train-images-idx3-ubyte.gz").float().div(255).unsqueeze(1)
    ytr = load("train-labels-idx1-ubyte.gz").long()
    xte = load("t10k-images-idx3-ubyte.gz").float().div(255).unsqueeze(1)
    yte = load("t10k-labels-idx1-ubyte.gz").long()

    net = Net()
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    for epoch in range(args.epochs):
        net.train()
        perm = torch.randperm(len(xtr))
        for s in range(0, len(xtr), 128):
            i = perm[s:s + 128]
            loss = nn.functional.cross_entropy(net(xtr[i]), ytr[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
        print(f"epoch {epoch + 1}: loss {loss.item():.4f}")
    net.eval()
    with torch.no_grad():
        correct = sum((net(xte[s:s + 1000]).argmax(1) == yte[s:s + 1000]).sum().item()
                      for s in range(0, len(xte), 1000))
    acc = correct / len(xte)
    print(f"test accuracy (float, PyTorch): {100 * acc:.2f}%")

    torch.onnx.export(net, torch.zeros(1, 1, 28, 28), args.out, opset_version=13,
                      input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}},
                      training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=True)
    with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
        json.dump({"test_accuracy": acc, "epochs": args.epochs, "torch": torch.__version__,
                   "opset": 13}, f, indent=1)
        f.write("\n")
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes)")


if __name__ == "__main__":
    main()
