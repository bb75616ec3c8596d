#!/usr/bin/env python3
"""Synthesize the shift-add accelerator (hw/rtl) with Yosys for several configurations and set
the gate counts against the shiftadd cost model's area formula (docs/hardware.md).

    python3 hw/synth/area.py [--quick] [--energy hw/results/energy.json]

For each configuration: `synth -top sa_core` to Yosys's generic gate library, then `stat` and
`stat -tech cmos` (transistor estimate). Area estimate: transistors / 4 = NAND2 equivalents
(a CMOS NAND2 has 4 transistors) x 0.798 um^2 (the NAND2_X1 cell of the 45 nm Nangate open cell
library), the process of the cost model's constants (Horowitz, ISSCC 2014). Writes
hw/results/area.json and, with the simulation's figures (hw/results/energy.json from sa_report),
targets/shiftadd_rtl.json: the shiftadd target with the RTL's logic area, schedule and
energy per datapath cycle.
"""
import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RTL = [os.path.join(ROOT, "hw", "rtl", f) for f in ("sa_pe.v", "sa_core.v")]
NAND2_UM2 = 0.798       # Nangate 45 nm NAND2_X1
TRANSISTORS_PER_GE = 4  # one NAND2 gate equivalent
MODEL_LOGIC_UM2 = 1500  # targets/shiftadd.json logic_area_um2 (per datapath)
MEM_UM2_PER_BIT = 0.5   # targets/shiftadd.json memory_area_um2_per_bit

# name, NDP, DPW, WMIN, WMAX, AMIN, AMAX, CSD_EN
CONFIGS = [
    ("dp32 w1-8 a2-8 bit-serial", 1, 32, 1, 8, 2, 8, 0),
    ("dp32 w1-8 a2-8 csd", 1, 32, 1, 8, 2, 8, 1),
    ("dp16 w1-8 a2-8 csd", 1, 16, 1, 8, 2, 8, 1),
    ("dp64 w1-8 a2-8 csd", 1, 64, 1, 8, 2, 8, 1),
    ("dp32 w1-4 a2-8 bit-serial", 1, 32, 1, 4, 2, 8, 0),
    ("dp32 w1-4 a2-8 csd", 1, 32, 1, 4, 2, 8, 1),
    ("dp32 w8 a8 bit-serial (uniform 8-bit)", 1, 32, 8, 8, 8, 8, 0),
    ("dp32 w8 a8 csd (uniform 8-bit)", 1, 32, 8, 8, 8, 8, 1),
]


CACHE = os.path.join(ROOT, "hw", "results", "synth_cache.json")


def synth(ndp, dpw, wmin, wmax, amin, amax, csd):
    """Yosys figures of one configuration; cached by the RTL's hash and the parameters."""
    params = dict(NDP=ndp, DPW=dpw, WMIN=wmin, WMAX=wmax, AMIN=amin, AMAX=amax, CSD_EN=csd)
    h = hashlib.sha256()
    for f in RTL:
        h.update(open(f, "rb").read())
    key = h.hexdigest()[:16] + " " + json.dumps(params, sort_keys=True)
    cache = json.load(open(CACHE)) if os.path.exists(CACHE) else {}
    if key not in cache:
        cache[key] = run_yosys(params)
        os.makedirs(os.path.dirname(CACHE), exist_ok=True)
        with open(CACHE, "w") as f:
            json.dump(cache, f, indent=1)
    return dict(cache[key])


def run_yosys(params):
    chp = " ".join(f"-set {k} {v}" for k, v in params.items())
    with tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, "stat.txt")
        script = (f"read_verilog {' '.join(RTL)}; chparam {chp} sa_core; "
                  f"synth -top sa_core -flatten; tee -q -o {log} stat; "
                  f"tee -q -a {log} stat -tech cmos")
        t0 = time.time()
        out = subprocess.run(["yosys", "-q", "-p", script], capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"yosys failed for {params}:\n{out.stderr[-3000:]}")
        txt = open(log).read()
    # `stat` prints the cell table twice (plain, then -tech cmos); take the first table's cells.
    first = txt.split("Estimated number of transistors")[0]
    cells = {}
    for m in re.finditer(r"^\s+(\$_\w+_)\s+(\d+)\s*$", first, re.M):
        cells[m.group(1)] = cells.get(m.group(1), 0) + int(m.group(2))
    total = int(re.search(r"Number of cells:\s+(\d+)", txt).group(1))
    trans = int(re.search(r"Estimated number of transistors:\s+(\d+)", txt).group(1))
    flops = sum(v for k, v in cells.items() if "DFF" in k or "SDFF" in k or "DLATCH" in k)
    return dict(params=params, cells=total, flops=flops, cell_types=cells, transistors=trans,
                gate_equivalents=trans / TRANSISTORS_PER_GE,
                area_um2=trans / TRANSISTORS_PER_GE * NAND2_UM2, seconds=round(time.time() - t0, 1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="only the first two configurations")
    ap.add_argument("--energy", default=os.path.join(ROOT, "hw", "results", "energy.json"))
    ap.add_argument("--out", default=os.path.join(ROOT, "hw", "results", "area.json"))
    ap.add_argument("--target", default=os.path.join(ROOT, "targets", "shiftadd_rtl.json"))
    a = ap.parse_args()
    rows = []
    for cfg in CONFIGS[:2] if a.quick else CONFIGS:
        r = synth(*cfg[1:])
        r["name"] = cfg[0]
        r["area_per_datapath_um2"] = r["area_um2"] / cfg[1]
        r["model_logic_um2"] = MODEL_LOGIC_UM2 * cfg[1]
        r["model_error_pct"] = 100.0 * (MODEL_LOGIC_UM2 * cfg[1] - r["area_um2"]) / r["area_um2"]
        rows.append(r)
        print(f"{cfg[0]:48s} cells {r['cells']:7d} flops {r['flops']:5d} "
              f"transistors {r['transistors']:8d} area {r['area_um2']:9.0f} um2 "
              f"(model {r['model_logic_um2']} um2, {r['model_error_pct']:+.1f} %) "
              f"[{r['seconds']} s]", flush=True)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump({"nand2_um2": NAND2_UM2, "configs": rows}, f, indent=1)
    print(f"wrote {a.out}")

    # Designs provisioned for each bit assignment of sa_report (the widths it uses: fewer
    # supported widths, fewer lanes or narrower lanes), 8 datapaths, plus the memories the
    # assignment needs at the cost model's SRAM area per bit.
    if os.path.exists(a.energy) and not a.quick:
        en = json.load(open(a.energy))
        cache = {}
        prov = []
        for asg in en["assignments"]:
            w = asg["widths"]
            for variant in ("bit_serial", "csd"):
                key = (w["wmin"], w["wmax"], w["amin"], w["amax"], variant == "csd")
                if key not in cache:
                    cache[key] = synth(1, 32, *key[:4], int(key[4]))
                pe = cache[key]
                v = asg[variant]
                mem_bits = 8 * (v["weight_bytes"] + v["activation_bytes"])
                row = dict(assignment=asg["name"], variant=variant, widths=w,
                           logic_um2=8 * pe["area_um2"], memory_um2=MEM_UM2_PER_BIT * mem_bits,
                           model_logic_um2=8 * MODEL_LOGIC_UM2)
                row["total_um2"] = row["logic_um2"] + row["memory_um2"]
                row["model_total_um2"] = row["model_logic_um2"] + row["memory_um2"]
                prov.append(row)
        for variant in ("bit_serial", "csd"):
            u8 = next(r for r in prov if r["variant"] == variant and r["assignment"] == "uniform w8")
            for r in prov:
                if r["variant"] != variant:
                    continue
                r["saving_vs_uniform_w8_pct"] = 100.0 * (1 - r["total_um2"] / u8["total_um2"])
                r["model_saving_vs_uniform_w8_pct"] = 100.0 * (
                    1 - r["model_total_um2"] / u8["model_total_um2"])
                print(f"{r['assignment']:26s} {variant:10s} w{r['widths']['wmin']}-"
                      f"{r['widths']['wmax']} a{r['widths']['amin']}-{r['widths']['amax']}  "
                      f"logic {r['logic_um2']:8.0f}  memory {r['memory_um2']:8.0f}  total "
                      f"{r['total_um2']:8.0f} um2 ({r['saving_vs_uniform_w8_pct']:+.1f} % vs "
                      f"uniform w8; model {r['model_saving_vs_uniform_w8_pct']:+.1f} %)",
                      flush=True)
        with open(a.out) as f:
            res = json.load(f)
        res["provisioned"] = prov
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)

    # The target file from the RTL's figures: logic area per datapath of the shipped
    # configuration (dp32 w1-8 a2-8 csd), energy per datapath cycle from the simulation.
    ref = next((r for r in rows if r["name"] == "dp32 w1-8 a2-8 csd"), None)
    if ref is None or not os.path.exists(a.energy):
        print("no targets file written (needs the dp32 csd row and " + a.energy + ")")
        return
    en = json.load(open(a.energy))
    tgt = {
        "format": "sigmaquant-target", "version": 1, "name": "shiftadd-rtl",
        "description": ("The shift-add accelerator of hw/rtl as measured: csd (zero-skipping) "
                        "datapaths, channels dealt round-robin (cycle-exact against the "
                        "Verilator simulation), logic area per datapath from Yosys "
                        f"({ref['transistors']} transistors, 4 per NAND2 equivalent x "
                        f"{NAND2_UM2} um2), energy per datapath cycle = measured bit flips per "
                        f"datapath cycle ({en['toggles_per_datapath_cycle']:.1f}) x "
                        f"{en['fj_per_toggle']} fJ. Written by hw/synth/area.py."),
        "model": "shiftadd",
        "params": {
            "variant": "csd", "datapaths": 8, "datapath_bits": 32, "subword": "product",
            "guard_bits": 0, "schedule": "round_robin", "clock_mhz": 500,
            "energy_pj_per_cycle": round(en["toggles_per_datapath_cycle"] * en["fj_per_toggle"]
                                         / 1000.0, 4),
            "weight_memory_pj_per_bit": 0.16, "activation_memory_pj_per_bit": 0.16,
            "logic_area_um2": round(ref["area_per_datapath_um2"], 1),
            "memory_area_um2_per_bit": MEM_UM2_PER_BIT,
        },
        "storage": {"scale_bits": 32, "bias_bits": 32, "output_bits": 32},
        "budgets": {"weight_kib": 128, "activation_kib": 64, "latency_ms": 16, "energy_uj": 14},
    }
    with open(a.target, "w") as f:
        json.dump(tgt, f, indent=2)
        f.write("\n")
    print(f"wrote {a.target}")


if __name__ == "__main__":
    main()
