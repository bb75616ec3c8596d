#!/usr/bin/env bash
# The main job (`make run`) on the default data, Fashion-MNIST:
#   1. the FP32 model: the shipped models/resnet20-fmnist.sqg (made by the project's own `train`
#      command, see docs/results.md), or trained here when it is missing (~47 min on 2 cores);
#   2. its test accuracy;
#   3. SigmaQuant (Phase 1 + Phase 2 + final QAT) under the shift-add accelerator target and its
#      budgets (targets/shiftadd.json), and uniform quantization at the same budgets (the widest
#      uniform width that fits), with the same final QAT;
#   4. the side-by-side table and the HTML report (path printed at the end).
# Search and QAT are shortened so that the whole job stays within 15 minutes on 2 cores; the
# figures in docs/results.md use longer settings (bench/allocation.sh).
set -euo pipefail
BIN=${1:-build/bin/sigmaquant}
RUN_DIR=${2:-runs/default}
THREADS=${SQ_THREADS:-2}
mkdir -p "$RUN_DIR"

MODEL=models/resnet20-fmnist.sqg
if [ ! -f "$MODEL" ]; then
  MODEL="$RUN_DIR/resnet20-fmnist.sqg"
  if [ ! -f "$MODEL" ]; then
    echo "== training the FP32 model (resumable: rerun 'make run' to continue) =="
    "$BIN" train -m resnet20 --epochs 40 --seed 1 --threads "$THREADS" --resume -o "$MODEL"
  fi
fi

echo "== FP32 model: $MODEL =="
"$BIN" info -m "$MODEL" | tail -n 1
echo "== test accuracy on Fashion-MNIST =="
"$BIN" eval -m "$MODEL" --threads "$THREADS"

echo "== SigmaQuant vs uniform under targets/shiftadd.json (resumable: rerun to continue) =="
"$BIN" pareto -m "$MODEL" -t targets/shiftadd.json --methods sigmaquant,uniform \
  --budgets target --cycle-epochs 0.05 --max-iterations 5 --final-epochs 0.25 \
  --threads "$THREADS" --resume -o "$RUN_DIR/compare"
echo "report: $RUN_DIR/compare/report.html"
