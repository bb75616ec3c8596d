#!/usr/bin/env bash
# Allocators compared with error bars (issue 16): every method × network × average-weight budget
# × seed under one target, the same final QAT for all, then per network the summary over seeds
# (mean ± std, Welch's t-test against each budget's best method, weight memory saved against
# uniform at equal accuracy, search cost in seconds and QAT-epoch equivalents) in
# $OUT/<net>/summary.md and the fronts with error bars in $OUT/<net>/report.html.
#
# Every run is its own directory ($OUT/<net>/seed<s>/<method>-<b>bits) and is reused when the
# script runs again (resumable: interrupt it and rerun). Independent (network, seed, budget)
# groups run $JOBS at a time, one LibTorch thread each.
#
#   bash bench/allocators.sh                              # the defaults below (hours on 2 cores)
#   NETS=lenet5 JOBS=1 bash bench/allocators.sh           # one network
#   PARTS=abits NETS=lenet5 bash bench/allocators.sh      # the searched-activation-bits budget:
#       $ABITS_TARGET (mpic) with its latency budget at $ABITS_LATENCY of the network's W8A8
#       latency (a budget only lower activation widths meet there) and --avg-bits $ABITS_BUDGET,
#       every method with --abits-set $ABITS_SET
#   DATA="--limit-train 12000 --limit-test 5000" ...      # a slice of the data (say so)
#
# Networks: models/<net>-fmnist.sqg (lenet5, resnet8, resnet20 and mobilenetv2 are shipped); a
# network without a shipped model is trained once into $OUT/models (15 epochs, seed 1).
# Seed = the validation split, the PTQ calibration sample and the QAT order of the run.
set -euo pipefail
BIN=${BIN:-build/bin/sigmaquant}
OUT=${OUT:-runs/bench-allocators}
NETS=${NETS:-"lenet5 resnet8"}
METHODS=${METHODS:-sigmaquant,hessian,adaptive,uniform,random,dnas}
BUDGETS=${BUDGETS:-2,2.5,3,4}
SEEDS=${SEEDS:-1,2,3}
JOBS=${JOBS:-2}
TARGET=${TARGET:-targets/shiftadd.json}
PARTS=${PARTS:-"layer"}
ABITS_METHODS=${ABITS_METHODS:-sigmaquant,sigmaquant-ptq,hessian,adaptive,uniform,random,dnas,dnas-layer}
ABITS_BUDGET=${ABITS_BUDGET:-3}
ABITS_SET=${ABITS_SET:-2,4,8}
ABITS_TARGET=${ABITS_TARGET:-targets/mpic.json}
ABITS_LATENCY=${ABITS_LATENCY:-0.6}
# The same for every method: Phase 2 cycles of 0.1 epoch (at most 6), final QAT 0.5 epoch from
# the PTQ model at the chosen assignment (FINAL_START=ptq: no method's final QAT inherits the
# training its search did; FINAL_START=search, as every run before 2026-11-30: SigmaQuant's and
# dnas' final QAT start from their trained search state), dnas 2 search epochs per lambda and 2
# bisection steps.
FINAL_START=${FINAL_START:-ptq}
COMMON=(--cycle-epochs 0.1 --max-iterations 6 --final-epochs 0.5 --final-start "$FINAL_START"
        --dnas-epochs 2 --dnas-bisect 2 --threads 1 --quiet --resume ${DATA:-})
mkdir -p "$OUT"
start=$(date +%s)

abits_target() {  # $ABITS_TARGET with its latency budget at $ABITS_LATENCY x the W8A8 latency
  local model=$1 out=$2 lat
  lat=$("$BIN" cost -m "$model" -t "$ABITS_TARGET" --wbits 8 --abits 8 --json |
        /usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["cost"]["total"]["latency_s"])')
  /usr/bin/python3 - "$ABITS_TARGET" "$lat" "$ABITS_LATENCY" "$out" <<'PY'
import json, sys
src, lat, frac, dst = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
t = json.load(open(src))
t["name"] += "-latency"
t.setdefault("budgets", {})["latency_ms"] = lat * frac * 1e3
json.dump(t, open(dst, "w"), indent=2)
PY
}

model_of() {  # the FP32 model of a network, trained once when not shipped
  local net=$1 m="models/$1-fmnist.sqg"
  if [ ! -f "$m" ]; then
    m="$OUT/models/$net-fmnist.sqg"
    if [ ! -f "$m" ]; then
      mkdir -p "$OUT/models"
      echo "training $net (15 epochs, seed 1) -> $m" >&2
      "$BIN" train -m "$net" --epochs 15 --seed 1 --threads 2 --quiet --resume -o "$m" >&2
    fi
  fi
  echo "$m"
}

run_parallel() {  # runs the given commands, $JOBS at a time; fails if any failed
  local pids=() failed=0
  for cmd in "$@"; do
    bash -c "$cmd" &
    pids+=($!)
    if [ ${#pids[@]} -ge "$JOBS" ]; then wait "${pids[0]}" || failed=1; pids=("${pids[@]:1}"); fi
  done
  for p in "${pids[@]}"; do wait "$p" || failed=1; done
  return $failed
}

IFS=, read -r -a seeds <<< "$SEEDS"
IFS=, read -r -a budgets <<< "$BUDGETS"
for net in $NETS; do
  model=$(model_of "$net")
  if [[ " $PARTS " == *" layer "* ]]; then
    dir="$OUT/$net"
    mkdir -p "$dir/logs"
    cmds=()
    for s in "${seeds[@]}"; do
      for b in "${budgets[@]}"; do
        cmds+=("$BIN pareto -m $model -t $TARGET ${COMMON[*]} --methods $METHODS --budgets $b --seeds $s \
                -o $dir > $dir/logs/seed$s-$b.txt 2>&1 || { echo 'failed: see $dir/logs/seed$s-$b.txt' >&2; exit 1; }")
      done
    done
    run_parallel "${cmds[@]}"
    # Every run exists now: the combined table, summary and report reuse them.
    "$BIN" pareto -m "$model" -t "$TARGET" "${COMMON[@]}" --methods "$METHODS" --budgets "$BUDGETS" \
      --seeds "$SEEDS" -o "$dir" > "$dir/combined.txt"
    cat "$dir/summary.md"
  fi
  if [[ " $PARTS " == *" abits "* ]]; then
    dir="$OUT/$net-abits"
    mkdir -p "$dir/logs"
    [ -f "$dir/target.json" ] || abits_target "$model" "$dir/target.json"
    cmds=()
    for s in "${seeds[@]}"; do
      cmds+=("$BIN pareto -m $model -t $dir/target.json ${COMMON[*]} --abits-set $ABITS_SET --methods $ABITS_METHODS \
              --budgets $ABITS_BUDGET --seeds $s -o $dir > $dir/logs/seed$s.txt 2>&1 \
              || { echo 'failed: see $dir/logs/seed$s.txt' >&2; exit 1; }")
    done
    run_parallel "${cmds[@]}"
    "$BIN" pareto -m "$model" -t "$dir/target.json" "${COMMON[@]}" --abits-set "$ABITS_SET" \
      --methods "$ABITS_METHODS" \
      --budgets "$ABITS_BUDGET" --seeds "$SEEDS" -o "$dir" > "$dir/combined.txt"
    cat "$dir/summary.md"
  fi
done
echo "wall time: $(( $(date +%s) - start )) s (this invocation; reused runs cost nothing)"
