#!/usr/bin/env bash
# The allocation figures of docs/results.md: SigmaQuant against uniform, adaptive (Zhou et al.)
# and Hessian-aware allocation on resnet20 / Fashion-MNIST under the shift-add target at average
# weight budgets of 2.5, 3 and 4 bits; SigmaQuant against the exhaustive optimum on lenet5 with
# bits {2,4,8}; output-KL against weight-KL in Phase 2. Every run is resumable (rerun the script).
#
#   bash bench/allocation.sh                 # everything, one budget per process (2 at a time)
#   PARTS=resnet20 bash bench/allocation.sh  # only the resnet20 table
# Settings (same for every method): Phase 2 cycles of 0.1 epoch, at most 6 iterations; final QAT
# 0.5 epoch at lr 0.001; validation 2,000 held-out training images; test = the 10,000 test images.
set -euo pipefail
BIN=${BIN:-build/bin/sigmaquant}
OUT=${OUT:-runs/bench-allocation}
JOBS=${JOBS:-2}
PARTS=${PARTS:-"resnet20 lenet5 kl"}
COMMON=(-t targets/shiftadd.json --cycle-epochs 0.1 --max-iterations 6 --final-epochs 0.5
        --threads 1 --quiet --resume)
mkdir -p "$OUT"

run_parallel() {  # runs the given commands, $JOBS at a time
  local pids=()
  for cmd in "$@"; do
    bash -c "$cmd" &
    pids+=($!)
    if [ ${#pids[@]} -ge "$JOBS" ]; then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
  done
  wait
}

if [[ " $PARTS " == *" resnet20 "* ]]; then
  R20=(-m models/resnet20-fmnist.sqg "${COMMON[@]}" --methods sigmaquant,uniform,adaptive,hessian
       -o "$OUT/resnet20")
  run_parallel "$BIN pareto ${R20[*]} --budgets 2.5 > $OUT/resnet20-2.5.txt" \
               "$BIN pareto ${R20[*]} --budgets 3 > $OUT/resnet20-3.txt" \
               "$BIN pareto ${R20[*]} --budgets 4 > $OUT/resnet20-4.txt"
  "$BIN" pareto "${R20[@]}" --budgets 2.5,3,4   # reuses the runs above: the combined table
fi
if [[ " $PARTS " == *" lenet5 "* ]]; then
  L5=(-m models/lenet5-fmnist.sqg "${COMMON[@]}" --bits-set 2,4,8 --methods sigmaquant,exhaustive
      -o "$OUT/lenet5")
  run_parallel "$BIN pareto ${L5[*]} --budgets 3 > $OUT/lenet5-3.txt" \
               "$BIN pareto ${L5[*]} --budgets 4 > $OUT/lenet5-4.txt"
  "$BIN" pareto "${L5[@]}" --budgets 3,4
fi
if [[ " $PARTS " == *" kl "* ]]; then
  # Phase 2 with weight-KL instead of output-KL; the output-KL run is resnet20/sigmaquant-3bits.
  "$BIN" quantize -m models/resnet20-fmnist.sqg "${COMMON[@]}" --avg-bits 3 --kl weight \
    -o "$OUT/kl-weight" | head -n 1
fi
