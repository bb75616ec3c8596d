#!/usr/bin/env bash
# The main job (`make run`) on the default data, Fashion-MNIST.
#   1. the FP32 model: the shipped models/resnet20-fmnist.sqg (made by the project's own `train`
#      command, see docs/results.md), or trained here when it is missing (~35 min on 2 cores);
#   2. its size and test accuracy;
#   3. post-training quantization at W8A8 and W4A8, and the W4A8 cost on the shift-add target.
# Later stages (mixed-precision allocation, report) extend this script.
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

echo "== post-training quantization, W8A8 (MSE calibration) =="
"$BIN" ptq -m "$MODEL" --wbits 8 --abits 8 --calib mse --threads "$THREADS" --quiet \
  -o "$RUN_DIR/resnet20-w8a8.sqg"
echo "== post-training quantization, W4A8 =="
"$BIN" ptq -m "$MODEL" --wbits 4 --abits 8 --calib mse --threads "$THREADS" --quiet \
  -o "$RUN_DIR/resnet20-w4a8.sqg"
echo "== W4A8 on the shift-add accelerator target =="
"$BIN" cost -m "$MODEL" --target targets/shiftadd.json --wbits 4 --abits 8 | tail -n 15
