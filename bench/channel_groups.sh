#!/usr/bin/env bash
# Channel-wise models in the engine (issue 13): the figures of docs/results.md, "Channel-wise
# models in the engine". Runs sq_bench's interleaved benchmarks (bench/bench_channels.cpp) from the
# repository root and prints, per network, each assignment's median images/s and the medians of
# the per-round ratios, then per resnet20 layer the grouped plan's speed-up over the plan that
# runs every channel on the widest channel's kernel (the engine before issue 13).
#
#   bash bench/channel_groups.sh                 # build-core/bin/sq_bench (torch-free build)
#   BIN=build/bin/sq_bench bash bench/channel_groups.sh
set -euo pipefail
BIN=${BIN:-build-core/bin/sq_bench}
OUT=${OUT:-runs/bench-channel-groups}
mkdir -p "$OUT"
"$BIN" --benchmark_filter="${FILTER:-ModelPaired/|LayerPaired/}" --benchmark_format=json \
  > "$OUT/channel_groups.json"
python3 - "$OUT/channel_groups.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
print(f"{d['context']['date']}  load average {d['context'].get('load_avg', '?')}")
for b in d["benchmarks"]:
    name = b["name"]
    counters = {k: v for k, v in b.items()
                if isinstance(v, float) and k not in ("real_time", "cpu_time", "iterations")}
    print(f"\n{name}")
    if name.startswith(("ModelPaired", "SnapPaired")):
        models = [k for k in counters if "/" not in k]
        for m in models:
            ratios = "  ".join(f"÷{k.split('/')[1]} {v:.3f}" for k, v in counters.items()
                               if k.startswith(m + "/"))
            print(f"  {m:14s} {counters[m]:9.0f} images/s   {ratios}")
    else:
        for k, v in counters.items():
            print(f"  {k:16s} grouped / widest speed-up {v:.3f}")
EOF
