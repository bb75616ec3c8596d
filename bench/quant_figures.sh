#!/usr/bin/env bash
# Quantization figures on resnet20 / Fashion-MNIST (docs/results.md):
#   1. W8A8 PTQ with each of the four activation calibrations;
#   2. uniform QAT at W4A8, W3A8 and W2A8 (PTQ initialisation, then QAT epochs).
# Usage: bench/quant_figures.sh [BIN] [OUT_DIR] [extra flags for qat, e.g. --device cuda]
set -euo pipefail
BIN=${1:-build/bin/sigmaquant}
OUT=${2:-runs/quant-figures}
shift 2 || true
EXTRA=("$@")
MODEL=${MODEL:-models/resnet20-fmnist.sqg}
QAT_EPOCHS=${QAT_EPOCHS:-5}
DATA=(${DATA_FLAGS:-})
mkdir -p "$OUT"
for c in minmax percentile mse kl; do
  "$BIN" ptq -m "$MODEL" "${DATA[@]}" --wbits 8 --abits 8 --calib "$c" --quiet --json \
    -o "$OUT/ptq-w8a8-$c.sqg" > "$OUT/ptq-w8a8-$c.json"
  python3 -c "import json;j=json.load(open('$OUT/ptq-w8a8-$c.json'));print('ptq w8a8 %-10s acc %.2f%%  fp32 %.2f%%' % ('$c', 100*j['accuracy'], 100*j['fp32_accuracy']))"
done
for w in 4 3 2; do
  "$BIN" qat -m "$MODEL" "${DATA[@]}" --wbits "$w" --abits 8 --calib mse --epochs "$QAT_EPOCHS" \
    --quiet --json -o "$OUT/qat-w${w}a8.sqg" "${EXTRA[@]}" > "$OUT/qat-w${w}a8.json"
  python3 -c "import json;j=json.load(open('$OUT/qat-w${w}a8.json'));print('qat w${w}a8 %d epochs: acc %.2f%% (ptq %.2f%%, fp32 %.2f%%) %.0f s' % (j['epochs'], 100*j['accuracy'], 100*j['ptq_accuracy'], 100*j['fp32_accuracy'], j['qat_seconds']))"
done
