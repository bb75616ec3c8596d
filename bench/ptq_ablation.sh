#!/usr/bin/env bash
# Ablation of the post-training-quantization guideline rules (docs/results.md): each rule on/off
# at W8A8 and W4A8 on resnet20 / Fashion-MNIST, and CLE on the depthwise mobilenetv2.
# Usage: bench/ptq_ablation.sh [BIN] [OUT_DIR]      (env THREADS, MBV2_EPOCHS)
set -euo pipefail
BIN=${1:-build/bin/sigmaquant}
OUT=${2:-runs/ptq-ablation}
T=${THREADS:-2}
MODEL=${MODEL:-models/resnet20-fmnist.sqg}
mkdir -p "$OUT"
row() {  # name, wbits, flags...
  local name=$1 w=$2
  shift 2
  "$BIN" ptq -m "$MODEL" --wbits "$w" --abits 8 --threads "$T" --quiet --json -o "$OUT/q.sqg" "$@" \
    > "$OUT/row.json"
  python3 -c "import json;j=json.load(open('$OUT/row.json'));print('| %-34s | W%sA8 | %6.2f %% | %+6.2f |' % ('$name', '$w', 100*j['accuracy'], -j['drop_points']))"
}
echo "| configuration ($MODEL) | bits | accuracy | vs FP32 |"
echo "|---|---|---:|---:|"
for w in 8 4; do
  row "all rules (per-channel, BN folded, mse)" $w --calib mse
  row "per-tensor weights" $w --calib mse --per-tensor
  row "BN not folded" $w --calib mse --no-fold-bn
  for c in minmax percentile kl; do row "calibration $c" $w --calib $c; done
  row "+ bias correction" $w --calib mse --bias-correction
  row "first/last layer at 8 bits" $w --calib mse --first-last-bits 8
done
# CLE needs a depthwise network: a mobilenetv2 trained here (short schedule).
MB="$OUT/mobilenetv2.sqg"
[ -f "$MB" ] || "$BIN" train -m mobilenetv2 --epochs "${MBV2_EPOCHS:-1}" --threads "$T" --quiet -o "$MB" > /dev/null
MODEL=$MB
for w in 8 4; do
  row "mobilenetv2, no CLE" $w --calib mse
  row "mobilenetv2, CLE" $w --calib mse --cle
  row "mobilenetv2, CLE + bias correction" $w --calib mse --cle --bias-correction
done
