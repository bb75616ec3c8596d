#!/usr/bin/env bash
# Channel-wise against layer-wise allocation (issue 13): dnas (per channel, 0 = pruned), dnas-layer,
# SigmaQuant (layer), SigmaQuant per channel (Phase 1), Hessian and uniform, at equal average
# weight budgets, under the MPIC and shift-add targets; dnas searches activation widths {2,4,8}
# (the other methods run at 8-bit activations). One `pareto` per (network, target): table,
# pareto.csv and report.html in $OUT/<net>-<target>. Resumable (rerun the script).
#
#   bash bench/channelwise.sh                         # lenet5 (shipped model), full data
#   NETS="lenet5 resnet20" bash bench/channelwise.sh  # add resnet20 (hours on 2 cores)
#   DATA="--limit-train 12000 --limit-test 5000" TARGETS=mpic BUDGETS=2,4 bash bench/channelwise.sh
#                                                     # the docs/results.md table (see there)
set -euo pipefail
BIN=${BIN:-build/bin/sigmaquant}
OUT=${OUT:-runs/bench-channelwise}
NETS=${NETS:-lenet5}
TARGETS=${TARGETS:-"mpic shiftadd"}
BUDGETS=${BUDGETS:-2,3,4}
METHODS=${METHODS:-dnas,dnas-layer,sigmaquant,sigmaquant-channel,hessian,uniform}
COMMON=(--bits-set 2,4,8 --dnas-wbits 0,2,4,8 --abits-set 2,4,8 --dnas-epochs "${DNAS_EPOCHS:-2}"
        --dnas-bisect "${DNAS_BISECT:-2}" --cycle-epochs 0.1 --max-iterations 4
        --final-epochs "${FINAL_EPOCHS:-1}" --channel-group "${CHANNEL_GROUP:-16}"
        --threads "${THREADS:-2}" --quiet --resume
        ${DATA:-})
mkdir -p "$OUT"
for net in $NETS; do
  for target in $TARGETS; do
    "$BIN" pareto -m "models/$net-fmnist.sqg" -t "targets/$target.json" "${COMMON[@]}" \
      --methods "$METHODS" --budgets "$BUDGETS" -o "$OUT/$net-$target"
  done
done
