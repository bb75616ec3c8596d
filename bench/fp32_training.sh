#!/usr/bin/env bash
# FP32 training throughput on this machine: seconds per epoch and images/s of one full
# Fashion-MNIST epoch (60,000 images, batch 128), per model and thread count.
# Usage: bench/fp32_training.sh [build/bin/sigmaquant] [models...]
set -euo pipefail
BIN=${1:-build/bin/sigmaquant}
shift || true
MODELS=${*:-lenet5 resnet20}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
printf '%-10s %7s %10s %10s\n' model threads s/epoch img/s
for m in $MODELS; do
  for t in 1 2; do
    "$BIN" train -m "$m" --epochs 1 --threads "$t" --quiet --json -o "$TMP/$m.sqg" > "$TMP/out.json"
    python3 -c "
import json,sys; j=json.load(open('$TMP/out.json')); e=j['history'][0]
print('%-10s %7d %10.1f %10.0f' % ('$m', $t, e['seconds'], e['images_per_second']))"
  done
done
