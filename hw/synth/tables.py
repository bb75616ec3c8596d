#!/usr/bin/env python3
"""Markdown tables of the shift-add RTL's figures (hw/results/energy.json from sa_report,
hw/results/area.json from area.py), as pasted into docs/results.md."""
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
E = json.load(open(os.path.join(ROOT, "hw", "results", "energy.json")))
A = json.load(open(os.path.join(ROOT, "hw", "results", "area.json")))


def pct(model, meas):
    return f"{100.0 * (model - meas) / meas:+.1f} %"


print("Cycles and switching per inference,", E["network"])
print()
print("| assignment | mean w bits | variant | RTL cycles | model (round_robin) | model (even) "
      "| even error | bit flips | flips / datapath cycle | model energy | model datapath energy |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for a in E["assignments"]:
    for v in ("bit_serial", "csd"):
        r = a[v]
        print(f"| {a['name']} | {a['mean_wbits']:.2f} | {v.replace('_', '-')} | "
              f"{r['rtl_cycles']:,} | {r['model_cycles']:,.0f} | {r['even_model_cycles']:,.0f} | "
              f"{r['even_model_error_pct']:+.2f} % | {r['toggles']:,} | "
              f"{r['toggles_per_datapath_cycle']:.1f} | {r['model_energy_uj']:.3f} uJ | "
              f"{r['model_compute_energy_uj']:.3f} uJ |")
print()
print("Energy against uniform w8, measured (bit flips) and modeled, and the rankings:")
print()
print("| assignment | variant | bit flips vs uniform w8 | model energy vs uniform w8 "
      "| model datapath energy vs uniform w8 |")
print("|---|---|---|---|---|")
for v in ("bit_serial", "csd"):
    u8 = next(a[v] for a in E["assignments"] if a["name"] == "uniform w8")
    for a in E["assignments"]:
        r = a[v]
        print(f"| {a['name']} | {v.replace('_', '-')} | "
              f"{100.0 * (r['toggles'] / u8['toggles'] - 1):+.1f} % | "
              f"{100.0 * (r['model_energy_uj'] / u8['model_energy_uj'] - 1):+.1f} % | "
              f"{100.0 * (r['model_compute_energy_uj'] / u8['model_compute_energy_uj'] - 1):+.1f} % |")
print()
runs = [(a["name"], v, a[v]) for a in E["assignments"] for v in ("bit_serial", "csd")]
by_t = [f"{n} {v.replace('_', '-')}" for n, v, r in sorted(runs, key=lambda x: x[2]["toggles"])]
by_m = [f"{n} {v.replace('_', '-')}" for n, v, r in
        sorted(runs, key=lambda x: x[2]["model_energy_uj"])]
print("Ranking by bit flips (lowest first):", "; ".join(by_t))
print()
print("Ranking by model energy (lowest first):", "; ".join(by_m))
print()
print("Per layer (csd, the first assignment):")
print()
print("| layer | RTL cycles | model (round_robin) | model (even) | even error |")
print("|---|---|---|---|---|")
for l in E["assignments"][0]["csd"]["layers"]:
    print(f"| {l['layer']} | {l['rtl_cycles']:,} | {l['model_cycles']:,.0f} | "
          f"{l['even_model_cycles']:,.1f} | {pct(l['even_model_cycles'], l['rtl_cycles'])} |")
print()
print("Bit assignments:")
print()
for a in E["assignments"]:
    bits = ", ".join(f"{k} w{v[0]}" for k, v in a["bits"].items())
    print(f"- {a['name']}: {bits}")
print()
print("Synthesis (one datapath, Yosys generic gates):")
print()
print("| configuration | cells | flip-flops | transistors | area (45 nm est.) | model logic_area_um2 "
      "| model error |")
print("|---|---|---|---|---|---|---|")
for r in A["configs"]:
    print(f"| {r['name']} | {r['cells']:,} | {r['flops']:,} | {r['transistors']:,} | "
          f"{r['area_um2']:,.0f} um2 | {r['model_logic_um2']:,} um2 | {r['model_error_pct']:+.1f} % |")
if "provisioned" in A:
    print()
    print("Designs provisioned per assignment (8 datapaths + memories at 0.5 um2/bit):")
    print()
    print("| assignment | variant | widths | logic | memory | total | vs uniform w8 | model vs "
          "uniform w8 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in A["provisioned"]:
        w = r["widths"]
        print(f"| {r['assignment']} | {r['variant'].replace('_', '-')} | w{w['wmin']}-{w['wmax']} "
              f"a{w['amin']}-{w['amax']} | {r['logic_um2']:,.0f} um2 | {r['memory_um2']:,.0f} um2 | "
              f"{r['total_um2'] / 1e6:.4f} mm2 | {r['saving_vs_uniform_w8_pct']:+.1f} % | "
              f"{r['model_saving_vs_uniform_w8_pct']:+.1f} % |")
