#!/usr/bin/python3
"""The markdown table of bench/torchvision.sh from its results.jsonl (one JSON object per model)."""
import json
import os
import re
import sys


def pct(r, key="agreement_clear"):
    if not isinstance(r, dict) or r.get(key) is None:
        return "–"
    return f"{100 * r[key]:.1f} %"


def fp32(r):
    if isinstance(r, dict):
        return f"{r['max_abs_diff']:.1e}"
    return "–"


def accuracy(out_dir, model, step):
    """The accuracy `sigmaquant eval` printed in OUT/M/<step>.log, or None."""
    try:
        m = re.search(r"accuracy ([0-9.]+)%", open(os.path.join(out_dir, model, step + ".log")).read())
    except OSError:
        return None
    return float(m.group(1)) if m else None


def main():
    rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
    out_dir = os.path.dirname(os.path.abspath(sys.argv[1]))
    ops = sorted({k.split("op")[1] for r in rows for k in r if k.startswith(("fp32_op", "import_op"))})
    head = (["model", "params", "input", "weights"] + [f"FP32 vs ORT, op{o} (max abs)" for o in ops] +
            ["PyTorch vs ORT / import vs PyTorch (max abs)", "accuracy FP32 / W8A8 / SigmaQuant",
             "W8A8 sim vs FP32", "engine", "C export", "ORT QDQ", "SigmaQuant engine",
             "floor: engine, 6 pixels ±1"])
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        try:
            weights = json.load(open(os.path.join(out_dir, r["model"], "info.json"))).get(
                "weights", "random, head refitted")
        except (OSError, ValueError):
            weights = "–"
        cells = [r["model"], f"{r['params'] / 1e6:.1f} M", f"{r['size']}²", weights]
        for o in ops:
            if f"import_op{o}" in r:
                cells.append("refused: " + r[f"import_op{o}"].replace("|", "/")[:120])
            else:
                cell = fp32(r.get(f"fp32_op{o}"))
                if isinstance(r.get(f"fp32_noopt_op{o}"), dict):
                    cell += f" (ORT unoptimized: {fp32(r[f'fp32_noopt_op{o}'])})"
                cells.append(cell)
        cells.append(f"{fp32(r.get('torch_vs_ort'))} / {fp32(r.get('import_vs_torch'))}")
        accs = [accuracy(out_dir, r["model"], s) for s in (f"eval-op{ops[-1]}", "sim", "sq-sim")]
        cells += [" / ".join("–" if a is None else f"{a:.1f}" for a in accs),
                  pct(r.get("sim_vs_fp32"), "agreement"), pct(r.get("engine")), pct(r.get("c")),
                  pct(r.get("ort-qdq")), pct(r.get("sq_engine")), pct(r.get("floor"))]
        print("| " + " | ".join(cells) + " |")
    print()
    print("FP32 columns: largest |logit difference| between `sigmaquant eval` on the imported model "
          "and ONNX Runtime on PyTorch's ONNX; PyTorch vs ORT / import vs PyTorch: the same between "
          "PyTorch's own logits and ONNX Runtime's, and between the import's and PyTorch's (last "
          "opset) — two float32 runtimes' summation-order noise on this network. Accuracy: on the "
          "test images' Fashion-MNIST labels (FP32 network, W8A8 PTQ simulated, SigmaQuant "
          "simulated). \"W8A8 sim vs FP32\": top-1 agreement with the FP32 network on all test "
          "images. engine / C export / ORT QDQ / "
          "SigmaQuant engine: top-1 agreement with the simulated quantized model on the test images "
          "whose FP32 top-2 margin is at least 1 % of their logit range. Floor: the same agreement "
          "between the engine on the test images and on copies with 6 pixels moved by one grey "
          "level (bench/perturb_images.py): what a runtime that rounds differently at a few "
          "quantization points can be expected to reach.")


if __name__ == "__main__":
    main()
