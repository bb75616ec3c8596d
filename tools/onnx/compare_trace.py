#!/usr/bin/python3
"""Where ONNX Runtime, running a QDQ export, departs from the integer engine: the codes at every
quantization point of one image, side by side.

  sigmaquant run -m MODEL.sqm --data ... --trace /tmp/tr --trace-image K
  /usr/bin/python3 tools/onnx/compare_trace.py MODEL.onnx /tmp/tr IMAGES.f32 --shape C,H,W \
      --image K [--optimize 0|1]

MODEL.onnx is `sigmaquant export --format onnx` of the same model; IMAGES.f32 holds the images
as raw float32 N x C x H x W (the values the .sqm's --data gives the engine, before its input
normalization: run_ort.js's input). The script adds the output of every activation
QuantizeLinear to the graph's outputs, runs ONNX Runtime (tools/onnx/run_ort.js) on image K and
prints, per QuantizeLinear in graph order, the engine step that wrote the same point and the share
of codes that differ, the largest and the mean difference. A conv step writes the point after its
fused activation, so a QuantizeLinear after Conv → Relu is matched to the Conv's step; a point no
engine step writes (the input; points the engine folds away) is listed as such.

Needs Debian's python3-onnx and python3-numpy, node and ONNX Runtime
(scripts/setup_onnxruntime.sh). Exits non-zero naming the file when an input cannot be read.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

try:
    import onnx
    from onnx import TensorProto, helper
except ImportError:
    sys.exit("compare_trace.py: needs python3-onnx (apt-get install python3-onnx; run it with "
             "/usr/bin/python3)")


def owners(q, producer):
    """The node names whose engine step may hold Q's codes: Q's own node, then back through
    Relu/Clip to the op they follow (the conv a fused activation belongs to)."""
    names = [q.name[:-len(".quantize")] if q.name.endswith(".quantize") else q.name]
    t = q.input[0]
    while t in producer:
        n = producer[t]
        names.append(n.name)
        if n.op_type in ("Relu", "Clip") and n.input and n.input[0] in producer:
            t = n.input[0]
            continue
        break
    return names


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("trace", help="the PREFIX given to sigmaquant run --trace")
    ap.add_argument("images")
    ap.add_argument("--shape", required=True, help="C,H,W")
    ap.add_argument("--image", type=int, default=0, help="the --trace-image the trace ran")
    ap.add_argument("--optimize", default="1", choices=["0", "1"],
                    help="ONNX Runtime's graph optimizations (0: the QDQ graph run literally)")
    o = ap.parse_args()
    try:
        trace = json.load(open(o.trace + ".json"))
        codes = np.fromfile(o.trace + ".u8", dtype=np.uint8)
    except (OSError, ValueError) as e:
        sys.exit(f"compare_trace.py: {o.trace}.json/.u8: {e}")
    if trace.get("image") != o.image:
        sys.exit(f"compare_trace.py: {o.trace}.json traced image {trace.get('image')}, not "
                 f"--image {o.image}")
    try:
        m = onnx.load(o.model)
    except Exception as e:  # onnx raises several types for a bad file
        sys.exit(f"compare_trace.py: {o.model}: {e}")
    c, h, w = (int(v) for v in o.shape.split(","))
    per = c * h * w
    try:
        images = np.fromfile(o.images, dtype=np.float32)
    except OSError as e:
        sys.exit(f"compare_trace.py: {o.images}: {e}")
    if images.size % per or images.size // per <= o.image:
        sys.exit(f"compare_trace.py: {o.images}: {images.size} floats hold no image {o.image} of "
                 f"{c}x{h}x{w}")

    g = m.graph
    producer = {t: n for n in g.node for t in n.output}
    inits = {i.name for i in g.initializer}
    qs = [n for n in g.node if n.op_type == "QuantizeLinear" and n.input[0] not in inits]
    del g.output[:]
    for q in qs:
        g.output.append(helper.make_tensor_value_info(q.output[0], TensorProto.UINT8, None))
    root = os.path.dirname(os.path.abspath(__file__))
    with tempfile.TemporaryDirectory() as tmp:
        onnx.save(m, os.path.join(tmp, "traced.onnx"))
        images.reshape(-1, per)[o.image].tofile(os.path.join(tmp, "image.f32"))
        r = subprocess.run(["node", os.path.join(root, "run_ort.js"), os.path.join(tmp, "traced.onnx"),
                            os.path.join(tmp, "image.f32"), os.path.join(tmp, "first.f32"),
                            "--shape", o.shape, "--batch", "1", "--optimize", o.optimize,
                            "--outputs-json", os.path.join(tmp, "outputs.json")],
                           capture_output=True, text=True)
        if r.returncode:
            sys.exit(f"compare_trace.py: ONNX Runtime failed: {r.stderr.strip()}")
        ort = json.load(open(os.path.join(tmp, "outputs.json")))

    engine = {}
    for st in trace["steps"]:  # the last write of a node's buffer holds it complete
        engine[st["node"].split("//")[0]] = codes[st["offset"]:st["offset"] + st["bytes"]]
    print(f"{'QuantizeLinear':60s} {'codes':>7s} {'differ':>8s} {'max':>4s} {'mean':>7s}")
    for q in qs:
        got = np.asarray(ort[q.output[0]], dtype=np.int32)
        hit = next((n for n in owners(q, producer) if n in engine and engine[n].size == got.size),
                   None)
        if hit is None:
            print(f"{q.name[:60]:60s} {got.size:7d}   (no engine step writes this point)")
            continue
        d = np.abs(engine[hit].astype(np.int32) - got)
        print(f"{q.name[:60]:60s} {got.size:7d} {100 * np.mean(d > 0):7.2f}% {d.max():4d} "
              f"{d.mean():7.4f}")


if __name__ == "__main__":
    main()
