#!/usr/bin/python3
"""The markdown table of bench/torchvision.sh from its results.jsonl (one JSON object per model)."""
import json
import sys


def pct(r, key="agreement_clear"):
    if not isinstance(r, dict) or r.get(key) is None:
        return "–"
    return f"{100 * r[key]:.1f} %"


def fp32(r):
    if isinstance(r, dict):
        return f"{r['max_abs_diff']:.1e}"
    return "–"


def main():
    rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
    ops = sorted({k.split("op")[1] for r in rows for k in r if k.startswith(("fp32_op", "import_op"))})
    head = (["model", "params", "input"] + [f"FP32 vs ORT, op{o} (max abs)" for o in ops] +
            ["W8A8 sim vs FP32", "engine", "C export", "ORT QDQ", "SigmaQuant vs FP32",
             "SigmaQuant engine"])
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        cells = [r["model"], f"{r['params'] / 1e6:.1f} M", f"{r['size']}²"]
        for o in ops:
            if f"import_op{o}" in r:
                cells.append("refused: " + r[f"import_op{o}"].replace("|", "/")[:120])
            else:
                cells.append(fp32(r.get(f"fp32_op{o}")))
        cells += [pct(r.get("sim_vs_fp32"), "agreement"), pct(r.get("engine")), pct(r.get("c")),
                  pct(r.get("ort-qdq")), pct(r.get("sq_vs_fp32"), "agreement"),
                  pct(r.get("sq_engine"))]
        print("| " + " | ".join(cells) + " |")
    print()
    print("FP32 columns: largest |logit difference| between `sigmaquant eval` on the imported model "
          "and ONNX Runtime on PyTorch's ONNX. \"vs FP32\": top-1 agreement with the FP32 network on "
          "all test images. engine / C export / ORT QDQ / SigmaQuant engine: top-1 agreement with "
          "the simulated quantized model on the test images whose FP32 top-2 margin is at least 1 % "
          "of their logit range.")


if __name__ == "__main__":
    main()
