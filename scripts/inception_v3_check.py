#!/usr/bin/python3
"""Exports torchvision's Inception-v3 (random weights) for the by-hand import check of issue 15.

  /usr/bin/python3 scripts/inception_v3_check.py DIR
  SQ_INCEPTION_DIR=DIR build/bin/sq_torch_tests --gtest_filter=OnnxInception.*

Writes DIR/inception_v3.onnx (torch.onnx.export, opset 13, dynamic batch; ~95 MB, not committed)
and DIR/ref.json with 2 random 3x299x299 images (values in [0, 1]) and PyTorch's logits for them.
The test (tests/torch/test_onnx_cli.cpp, skipped without SQ_INCEPTION_DIR) imports the file with
`sigmaquant import` and compares the float logits within 1e-4.
"""
import json
import os
import sys

import torch
import torchvision


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "."
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    m = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False).eval()
    x = torch.rand(2, 3, 299, 299, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = m(x)
    torch.onnx.export(m, x, os.path.join(out, "inception_v3.onnx"), opset_version=13,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
                      do_constant_folding=True)
    with open(os.path.join(out, "ref.json"), "w") as f:
        json.dump({"input_shape": [3, 299, 299], "images": x.flatten().tolist(),
                   "logits": y.flatten().tolist()}, f)
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}: logits "
          f"{tuple(y.shape)}, max |logit| {float(y.abs().max()):.4g}")


if __name__ == "__main__":
    main()
