#!/usr/bin/env bash
# A network trained here with squeeze-excitation and channel concat (the zoo's squeezese: fire
# modules + SE blocks with hardsigmoid gates) on Fashion-MNIST, quantized by SigmaQuant, run on
# the integer engine over the whole test set against the simulated quantized model (issue 15;
# docs/results.md, "torchvision networks").
#
# Usage: bench/squeezese.sh [BIN] [OUT_DIR]     EPOCHS (default 4), AVG_BITS (default 4), SEED (1)
set -euo pipefail
BIN=${1:-build/bin/sigmaquant}
OUT=${2:-runs/squeezese}
EPOCHS=${EPOCHS:-4}
AVG_BITS=${AVG_BITS:-4}
SEED=${SEED:-1}
mkdir -p "$OUT"
T0=$SECONDS
[ -f "$OUT/fp32.sqg" ] ||
  "$BIN" train -m squeezese --epochs "$EPOCHS" --seed "$SEED" --quiet -o "$OUT/fp32.sqg"
"$BIN" eval -m "$OUT/fp32.sqg" --quiet
[ -f "$OUT/sq/model.sqg" ] ||
  "$BIN" quantize -m "$OUT/fp32.sqg" --method sigmaquant --avg-bits "$AVG_BITS" --seed "$SEED" \
    --quiet --no-report -o "$OUT/sq"
"$BIN" export -m "$OUT/sq/model.sqg" --format sqm -o "$OUT/sq.sqm"
"$BIN" run -m "$OUT/sq.sqm" --compare "$OUT/sq/model.sqg"
echo "total wall time: $((SECONDS - T0)) s"
