#!/usr/bin/python3
"""Makes the ONNX import fixtures under tests/data/onnx/: small CNNs with random weights,
exported by torch.onnx.export at several opsets, static and dynamic batch, with PyTorch's logits.

  apt-get install python3-torch python3-torchvision
  /usr/bin/python3 scripts/make_onnx_fixtures.py

Every model takes 3 x 16 x 16 images. For each model M and export E the script writes
tests/data/onnx/M-E.onnx; tests/data/onnx/fixtures.json lists them, with 4 input images (values in
[0, 1], N x C x H x W flattened) and PyTorch's logits for them (N x classes flattened), so the
tests (tests/torch/test_onnx_cli.cpp) need no Python. The weights are random (seeded): the tests
compare logits, not accuracy. BatchNorm statistics are randomized too, so folding them is tested.

Models:
  viewnet  Conv-BN-ReLU-MaxPool x2, then x.view(x.size(0), -1) -> Linear: torch writes the
           dynamic-batch flatten Shape -> Gather -> Unsqueeze -> Concat -> Reshape at opsets
           11..17 (with a dynamic batch axis) and a constant Reshape target with a static batch.
  hswishnet  MobileNet-V3-like stem and blocks without squeeze-excitation: Conv-BN-Hardswish,
           depthwise Conv-BN-ReLU, 1x1 Conv-BN-Hardswish, Conv-BN-Hardsigmoid, global pooling,
           Linear. Opset 13 writes hardswish as x * HardSigmoid(x), opset 17 as HardSwish.
  silunet  EfficientNet-like blocks without squeeze-excitation: Conv-BN-SiLU (x * Sigmoid(x)),
           depthwise Conv-BN-SiLU, 1x1 Conv-BN-Sigmoid, Conv-LeakyReLU(0.1), MaxPool, global
           pooling, flatten, Linear.
"""
import json
import os

import torch
import torch.nn as nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "onnx")
SHAPE = (3, 16, 16)


def randomize_bn(m, g):
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            c = mod.num_features
            mod.weight.data = 0.5 + torch.rand(c, generator=g)
            mod.bias.data = 0.2 * torch.randn(c, generator=g)
            mod.running_mean.data = 0.2 * torch.randn(c, generator=g)
            mod.running_var.data = 0.5 + torch.rand(c, generator=g)


class ViewNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.f = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 12, 3, padding=1), nn.BatchNorm2d(12), nn.ReLU(), nn.MaxPool2d(2))
        self.fc = nn.Linear(12 * 4 * 4, 10)

    def forward(self, x):
        x = self.f(x)
        return self.fc(x.view(x.size(0), -1))


class HSwishNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.f = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8), nn.Hardswish(),
            nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 1, bias=False), nn.BatchNorm2d(16), nn.Hardswish(),
            nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.Hardsigmoid(),
            nn.AdaptiveAvgPool2d(1))
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.f(x), 1))


class SiLUNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.f = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.SiLU(),
            nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8, bias=False), nn.BatchNorm2d(8),
            nn.SiLU(),
            nn.Conv2d(8, 12, 1, bias=False), nn.BatchNorm2d(12), nn.Sigmoid(),
            nn.Conv2d(12, 12, 3, padding=1), nn.LeakyReLU(0.1), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(1))
        self.fc = nn.Linear(12, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.f(x), 1))


MODELS = {"viewnet": ViewNet, "hswishnet": HSwishNet, "silunet": SiLUNet}
EXPORTS = {  # (opset, dynamic batch)
    "viewnet": [(11, True), (13, True), (13, False), (17, True)],
    "hswishnet": [(13, True), (17, True)],
    "silunet": [(13, True), (17, True)],
}


def main():
    os.makedirs(OUT, exist_ok=True)
    g = torch.Generator().manual_seed(7)
    x = torch.rand((4,) + SHAPE, generator=g)
    index = {"input_shape": list(SHAPE), "images": x.flatten().tolist(), "models": []}
    for name, cls in MODELS.items():
        torch.manual_seed(11)
        m = cls()
        randomize_bn(m, g)
        m.eval()
        with torch.no_grad():
            y = m(x)
        for opset, dynamic in EXPORTS[name]:
            tag = f"{name}-op{opset}-{'dyn' if dynamic else 'static'}"
            path = os.path.join(OUT, tag + ".onnx")
            torch.onnx.export(
                m, x[:1] if not dynamic else x, path, opset_version=opset,
                input_names=["input"], output_names=["logits"],
                dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}} if dynamic else None,
                do_constant_folding=True)
            index["models"].append({"file": tag + ".onnx", "model": name, "opset": opset,
                                    "dynamic_batch": dynamic, "logits": y.flatten().tolist(),
                                    "classes": int(y.shape[1])})
            print(f"{path}: {os.path.getsize(path)} bytes")
    with open(os.path.join(OUT, "fixtures.json"), "w") as f:
        json.dump(index, f)


if __name__ == "__main__":
    main()
