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
  firenet  SqueezeNet / Inception-like: Conv-BN-ReLU stem, MaxPool(3, 2, ceil_mode=True) as in
           SqueezeNet (the ceiling adds a window), two fire modules (1x1 squeeze, then
           1x1 and 3x3 expands concatenated along the channels: Concat of computed tensors), a
           three-branch block (1x1, 3x3, MaxPool 3/1/1) concatenated, nn.AvgPool2d(3, 2,
           padding=1) (torch writes Pad -> AveragePool), x.mean((2, 3)) (ReduceMean,
           keepdims 0), Linear.
  senet    MobileNetV3 / EfficientNet-like squeeze-excitation: a block whose gate is
           AdaptiveAvgPool2d(1) -> 1x1 Conv -> ReLU -> 1x1 Conv -> Hardsigmoid (torchvision's
           SqueezeExcitation), a block whose gate is x.mean((2, 3)) -> Linear -> ReLU -> Linear
           -> Sigmoid -> view(b, c, 1, 1) (the dynamic-batch view folds), each multiplying the
           feature map (Mul with a channel broadcast), x.mean((2, 3), keepdim=True), flatten,
           Linear and Softmax: its fixture stores PyTorch's probabilities ("softmax": true) and
           the import ends in the logits.
  shufflenet  ShuffleNet-like unit: grouped 1x1 convs (groups 3), torchvision's channel_shuffle
           (view -> transpose -> view: Reshape -> Transpose -> Reshape with a dynamic batch),
           depthwise conv, residual add, a second shuffle (groups 4), global pooling, Linear.
  rectnet  Inception-v3-like non-square windows: a Conv-BN-ReLU stem, then branches concatenated
           along the channels: 1x7 (padding (0, 3)) -> 7x1 (padding (3, 0)), 1x1 -> 1x3 and 3x1
           (padding (0, 1) / (1, 0)), a 3x3 conv of dilation 2 (padding 2), and torchvision
           Inception's pool branch F.avg_pool2d(x, 3, 1, 1) -> 1x1 (Pad -> AveragePool), an
           nn.ZeroPad2d((1, 2, 0, 1)) -> 2x4 conv without padding of its own (Pad -> Conv: how
           "same" padding of TensorFlow-style ports and explicit zero padding export); then a
           3x3 conv of stride (2, 1), MaxPool(3, 2), a 1x1 Conv-BN-ReLU (as Inception's
           Conv2d_3b after its max pooling), global pooling, Linear.
  shufflev2  torchvision ShuffleNetV2-like, width-reduced: a Conv-BN-ReLU stem (stride 2), then
           torchvision's InvertedResidual units: stride 2 (branch1: depthwise 3x3 stride 2 -> 1x1;
           branch2: 1x1 -> depthwise 3x3 stride 2 -> 1x1; concatenated) and stride 1
           (x.chunk(2, dim=1): two Slice nodes on the channels, or a Split; the second half
           through branch2, concatenated with the first), each followed by channel_shuffle(x, 2);
           a 1x1 Conv-BN-ReLU head, x.mean([2, 3]), Linear.
  densenet  torchvision's DenseNet class, width-reduced (growth 4, two blocks of two layers, 8
           initial features, bn_size 2): 7x7 stride-2 Conv-BN-ReLU stem, MaxPool(3, 2, 1), dense
           layers whose pre-activation BN -> ReLU -> 1x1 conv reads the concat of every earlier
           output (a BN no conv absorbs), a transition BN -> ReLU -> 1x1 conv -> AvgPool(2, 2),
           the final BN -> ReLU -> adaptive average pooling -> flatten -> Linear.
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


class Fire(nn.Module):
    def __init__(self, cin, squeeze, expand):
        super().__init__()
        self.s = nn.Sequential(nn.Conv2d(cin, squeeze, 1), nn.ReLU())
        self.e1 = nn.Sequential(nn.Conv2d(squeeze, expand, 1), nn.ReLU())
        self.e3 = nn.Sequential(nn.Conv2d(squeeze, expand, 3, padding=1), nn.ReLU())

    def forward(self, x):
        x = self.s(x)
        return torch.cat([self.e1(x), self.e3(x)], 1)


class FireNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
            nn.MaxPool2d(3, 2, ceil_mode=True))  # 8x8 -> 4x4 (3x3 without ceil_mode)
        self.fire1 = Fire(8, 4, 8)
        self.fire2 = Fire(16, 6, 8)
        self.b1 = nn.Sequential(nn.Conv2d(16, 6, 1), nn.ReLU())
        self.b3 = nn.Sequential(nn.Conv2d(16, 6, 3, padding=1), nn.ReLU())
        self.bp = nn.MaxPool2d(3, 1, 1)
        self.pool = nn.AvgPool2d(3, 2, padding=1)
        self.fc = nn.Linear(28, 10)

    def forward(self, x):
        x = self.fire2(self.fire1(self.stem(x)))
        x = torch.cat([self.b1(x), self.b3(x), self.bp(x)], 1)
        return self.fc(self.pool(x).mean((2, 3)))


class SEConv(nn.Module):  # torchvision's SqueezeExcitation with MobileNetV3's hardsigmoid
    def __init__(self, c, r):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(c, r, 1)
        self.fc2 = nn.Conv2d(r, c, 1)

    def forward(self, x):
        s = torch.relu(self.fc1(self.pool(x)))
        return x * nn.functional.hardsigmoid(self.fc2(s))


class SELinear(nn.Module):  # the classic SE-Net block: linear layers, view back to b, c, 1, 1
    def __init__(self, c, r):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(c, r), nn.ReLU(), nn.Linear(r, c), nn.Sigmoid())

    def forward(self, x):
        b, c = x.size(0), x.size(1)
        return x * self.fc(x.mean((2, 3))).view(b, c, 1, 1)


class SENet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16),
            nn.Hardswish())
        self.dw = nn.Sequential(
            nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.se1 = SEConv(16, 8)
        self.pw = nn.Sequential(nn.Conv2d(16, 24, 1, bias=False), nn.BatchNorm2d(24), nn.SiLU())
        self.se2 = SELinear(24, 6)
        self.head = nn.Conv2d(24, 32, 1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = self.se2(self.pw(self.se1(self.dw(self.stem(x)))))
        x = torch.relu(self.head(x)).mean((2, 3), keepdim=True)
        return torch.softmax(self.fc(torch.flatten(x, 1)), 1)


def channel_shuffle(x, groups):  # torchvision's ShuffleNetV2 channel_shuffle
    b, c, h, w = x.size()
    x = x.view(b, groups, c // groups, h, w)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(b, -1, h, w)


class ShuffleNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 12, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(12), nn.ReLU())
        self.g1 = nn.Sequential(nn.Conv2d(12, 12, 1, groups=3, bias=False), nn.BatchNorm2d(12),
                                nn.ReLU())
        self.dw = nn.Sequential(nn.Conv2d(12, 12, 3, padding=1, groups=12, bias=False),
                                nn.BatchNorm2d(12))
        self.g2 = nn.Sequential(nn.Conv2d(12, 12, 1, groups=3, bias=False), nn.BatchNorm2d(12))
        self.fc = nn.Linear(12, 10)

    def forward(self, x):
        x = self.stem(x)
        y = self.g2(self.dw(channel_shuffle(self.g1(x), 3)))
        x = channel_shuffle(torch.relu(x + y), 4)
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def cbr(i, o, k, stride=1, padding=0, dilation=1):
    return nn.Sequential(
        nn.Conv2d(i, o, k, stride=stride, padding=padding, dilation=dilation, bias=False),
        nn.BatchNorm2d(o), nn.ReLU())


class RectNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = cbr(3, 12, 3, padding=1)
        self.b7 = nn.Sequential(cbr(12, 8, (1, 7), padding=(0, 3)), cbr(8, 8, (7, 1), padding=(3, 0)))
        self.b3 = cbr(12, 8, 1)
        self.b3a = cbr(8, 6, (1, 3), padding=(0, 1))
        self.b3b = cbr(8, 6, (3, 1), padding=(1, 0))
        self.dil = cbr(12, 8, 3, padding=2, dilation=2)
        self.pool = cbr(12, 4, 1)
        self.s21 = cbr(36, 16, 3, stride=(2, 1), padding=1)
        self.head = cbr(16, 24, 1)
        self.fc = nn.Linear(24, 10)
        self.zpad = nn.Sequential(nn.ZeroPad2d((1, 2, 0, 1)), cbr(12, 4, (2, 4)))

    def forward(self, x):
        x = self.stem(x)
        b = self.b3(x)
        p = self.pool(nn.functional.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        x = torch.cat([self.b7(x), self.b3a(b), self.b3b(b), self.dil(x), p, self.zpad(x)], 1)
        x = self.head(nn.functional.max_pool2d(self.s21(x), kernel_size=3, stride=2))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class InvertedResidual(nn.Module):  # torchvision's ShuffleNetV2 unit
    def __init__(self, inp, oup, stride):
        super().__init__()
        self.stride = stride
        bf = oup // 2
        if stride > 1:
            self.branch1 = nn.Sequential(
                nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False), nn.BatchNorm2d(inp),
                nn.Conv2d(inp, bf, 1, bias=False), nn.BatchNorm2d(bf), nn.ReLU())
        self.branch2 = nn.Sequential(
            nn.Conv2d(inp if stride > 1 else bf, bf, 1, bias=False), nn.BatchNorm2d(bf), nn.ReLU(),
            nn.Conv2d(bf, bf, 3, stride, 1, groups=bf, bias=False), nn.BatchNorm2d(bf),
            nn.Conv2d(bf, bf, 1, bias=False), nn.BatchNorm2d(bf), nn.ReLU())

    def forward(self, x):
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleV2(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = cbr(3, 12, 3, stride=2, padding=1)
        self.units = nn.Sequential(
            InvertedResidual(12, 24, 2), InvertedResidual(24, 24, 1), InvertedResidual(24, 24, 1),
            InvertedResidual(24, 48, 2), InvertedResidual(48, 48, 1))
        self.head = cbr(48, 64, 1)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = self.head(self.units(self.stem(x)))
        return self.fc(x.mean([2, 3]))


def DenseNetSmall():  # torchvision's own DenseNet class, width-reduced
    import torchvision
    return torchvision.models.DenseNet(growth_rate=4, block_config=(2, 2), num_init_features=8,
                                       bn_size=2, num_classes=10)


MODELS = {"viewnet": ViewNet, "hswishnet": HSwishNet, "silunet": SiLUNet, "firenet": FireNet,
          "senet": SENet, "shufflenet": ShuffleNet, "rectnet": RectNet,
          "shufflev2": ShuffleV2, "densenet": DenseNetSmall}
EXPORTS = {  # (opset, dynamic batch)
    "viewnet": [(11, True), (13, True), (13, False), (17, True)],
    "hswishnet": [(13, True), (17, True)],
    "silunet": [(13, True), (17, True)],
    "firenet": [(13, True), (17, True)],
    "senet": [(13, True), (17, True)],
    "shufflenet": [(13, True), (17, True)],
    "rectnet": [(13, True), (17, True)],
    "shufflev2": [(13, True), (17, True)],
    "densenet": [(13, True), (17, True)],
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
                                    "classes": int(y.shape[1]),
                                    "softmax": name == "senet"})
            print(f"{path}: {os.path.getsize(path)} bytes")
    with open(os.path.join(OUT, "fixtures.json"), "w") as f:
        json.dump(index, f)


if __name__ == "__main__":
    main()
