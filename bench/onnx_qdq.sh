#!/usr/bin/env bash
# ONNX Runtime throughput of the QDQ export against the float ONNX (docs/results.md, "ONNX
# Runtime"). Networks: the PyTorch-trained Fashion-MNIST CNN of tests/data/fmnist_cnn.onnx
# (imported, PTQ, exported) and resnet20 (models/resnet20-fmnist.sqg, PTQ, exported; its float
# ONNX is `export --format onnx` of the FP32 model), each at W8A8 (uint8 weights: ORT's exact
# u8u8 kernels) and W6A8 (int8 weights: its u8s8 kernels, exact at <= 7 bits), resnet20 also with
# the mixed assignment of examples/resnet20-mixed.bits.json and, for comparison, W8A8 forced to
# int8 weights (`--onnx-weights s8`: faster, but it saturates on x86 CPUs without VNNI — its
# accuracy shows it). Every model runs in one ONNX Runtime process after another, 1 intra-op
# thread, at batch 1 and 64, on the first 1,000 Fashion-MNIST test images; the accuracy of each
# on those images is printed next to it, and the ratio of its images/s to its network's float
# ONNX (the accuracy of each simulated quantized model, as `ptq` measured it on the same images,
# is printed first).
#
# Usage: bench/onnx_qdq.sh [BIN] [OUT_DIR]
#   SECONDS_PER_RUN (default 5): how long each model/batch is timed.
#   EXTRA_ONNX="name=path.onnx ..." adds models to the same run.
#   BEFORE_EXPORTER=prog: a program `prog Q.sqg OUT.onnx` that writes the QDQ export the way an
#   older build did (e.g. export.cpp of commit 44f075d linked into a 5-line main); its exports of
#   the same quantized models join the run as cnn-qdq-before and resnet20-qdq-before.
# Then the integer engine on the same W8A8 and mixed models (`sigmaquant bench`, 1 thread), with
# its ratio to ONNX Runtime on the float ONNX and on the QDQ export, in the same run.
# Needs node + onnxruntime-node (scripts/setup_onnxruntime.sh) and the Fashion-MNIST files.
set -euo pipefail
BIN=${1:-build/bin/sigmaquant}
OUT=${2:-runs/onnx-qdq}
SECS=${SECONDS_PER_RUN:-5}
DATA_DIR=${DATA_DIR:-/usr/share/datasets/fashion-mnist}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$OUT"
bash "$ROOT/scripts/setup_onnxruntime.sh" > /dev/null

# 1,000 test images as raw float32 in [0, 1] (N x 1 x 28 x 28).
node -e '
const fs = require("fs"), zlib = require("zlib");
const raw = zlib.gunzipSync(fs.readFileSync(process.argv[1]));
const n = 1000, per = 28 * 28, off = 16;
const f = new Float32Array(n * per);
for (let i = 0; i < n * per; ++i) f[i] = raw[off + i] / 255;
fs.writeFileSync(process.argv[2], Buffer.from(f.buffer));
' "$DATA_DIR/t10k-images-idx3-ubyte.gz" "$OUT/images.f32"
acc() {  # top-1 accuracy of N x 10 float32 logits against the test labels
  node -e '
const fs = require("fs"), zlib = require("zlib");
const lab = zlib.gunzipSync(fs.readFileSync(process.argv[1]));
const b = fs.readFileSync(process.argv[2]);
const y = new Float32Array(b.buffer, b.byteOffset, b.length / 4);
const n = y.length / 10;
let right = 0;
for (let i = 0; i < n; ++i) {
  let k = 0;
  for (let j = 1; j < 10; ++j) if (y[i * 10 + j] > y[i * 10 + k]) k = j;
  right += k === lab[8 + i];
}
console.log((100 * right / n).toFixed(1));
' "$DATA_DIR/t10k-labels-idx1-ubyte.gz" "$1"
}

"$BIN" import "$ROOT/tests/data/fmnist_cnn.onnx" -o "$OUT/cnn.sqg" --input-mean 0 --input-std 1 \
  > /dev/null
# name:fp32 model:bits (w8a8, w6a8 or a bits file)
for m in cnn:"$OUT/cnn.sqg":w8a8 cnn-w6:"$OUT/cnn.sqg":w6a8 \
         resnet20:"$ROOT/models/resnet20-fmnist.sqg":w8a8 \
         resnet20-w6:"$ROOT/models/resnet20-fmnist.sqg":w6a8 \
         resnet20-mixed:"$ROOT/models/resnet20-fmnist.sqg":"$ROOT/examples/resnet20-mixed.bits.json"; do
  name=${m%%:*} rest=${m#*:}
  fp32=${rest%%:*} bits=${rest#*:}
  case $bits in
    w8a8) bflags=(--wbits 8 --abits 8) ;;
    w6a8) bflags=(--wbits 6 --abits 8) ;;
    *) bflags=(--bits "$bits") ;;
  esac
  "$BIN" ptq -m "$fp32" "${bflags[@]}" --calib-samples 256 --limit-train 2048 \
    --limit-test 1000 --quiet --json -o "$OUT/$name.q.sqg" > "$OUT/$name.ptq.json"
  "$BIN" export -m "$OUT/$name.q.sqg" --format onnx -o "$OUT/$name.qdq.onnx" > /dev/null
done
"$BIN" export -m "$OUT/resnet20.q.sqg" --format onnx --onnx-weights s8 \
  -o "$OUT/resnet20.qdq-s8.onnx" > /dev/null

# resnet20's float ONNX: SigmaQuant's own float export of the FP32 model (BatchNorm as it is).
"$BIN" export -m "$ROOT/models/resnet20-fmnist.sqg" --format onnx -o "$OUT/resnet20.float.onnx" \
  > /dev/null
models=("cnn-float=$ROOT/tests/data/fmnist_cnn.onnx" "cnn-qdq=$OUT/cnn.qdq.onnx"
        "cnn-w6-qdq=$OUT/cnn-w6.qdq.onnx"
        "resnet20-float=$OUT/resnet20.float.onnx" "resnet20-qdq=$OUT/resnet20.qdq.onnx"
        "resnet20-w6-qdq=$OUT/resnet20-w6.qdq.onnx"
        "resnet20-mixed-qdq=$OUT/resnet20-mixed.qdq.onnx"
        "resnet20-qdq-s8=$OUT/resnet20.qdq-s8.onnx")
if [ -n "${BEFORE_EXPORTER:-}" ]; then
  for name in cnn resnet20; do
    "$BEFORE_EXPORTER" "$OUT/$name.q.sqg" "$OUT/$name.qdq-before.onnx"
    models+=("$name-qdq-before=$OUT/$name.qdq-before.onnx")
  done
fi
for e in ${EXTRA_ONNX:-}; do models+=("$e"); done
for name in cnn cnn-w6 resnet20 resnet20-w6 resnet20-mixed; do
  node -e 'const j = JSON.parse(require("fs").readFileSync(process.argv[1]));
console.log(`${process.argv[2]} simulated accuracy ${(100 * j.accuracy).toFixed(1)} %, fp32 ` +
            `${(100 * j.fp32_accuracy).toFixed(1)} %, ${j.avg_weight_bits.toFixed(2)} weight bits ` +
            `(first 1,000 test images)`);' \
    "$OUT/$name.ptq.json" "$name"
done
printf '%-20s %14s %14s %10s %16s\n' model 'img/s batch 1' 'img/s batch 64' 'ORT acc %' '/ float (1, 64)'
declare -A base1 base64 qdq1 qdq64
for m in "${models[@]}"; do
  name=${m%%=*} path=${m#*=}
  r1=$(node "$ROOT/tools/onnx/run_ort.js" "$path" "$OUT/images.f32" "$OUT/$name.logits.f32" \
         --shape 1,28,28 --batch 1 --threads 1 --bench "$SECS")
  r64=$(node "$ROOT/tools/onnx/run_ort.js" "$path" "$OUT/images.f32" "$OUT/$name.logits.f32" \
          --shape 1,28,28 --batch 64 --threads 1 --bench "$SECS")
  ips() { node -e 'console.log(JSON.parse(process.argv[1]).images_per_s.toFixed(0))' "$1"; }
  i1=$(ips "$r1") i64=$(ips "$r64") net=${name%%-*} ratio=
  case $name in *-qdq) qdq1[${name%-qdq}]=$i1 qdq64[${name%-qdq}]=$i64 ;; esac
  if [ "$name" = "$net-float" ]; then
    base1[$net]=$i1 base64[$net]=$i64
  elif [ -n "${base1[$net]:-}" ]; then
    ratio=$(awk -v a="$i1" -v b="${base1[$net]}" -v c="$i64" -v d="${base64[$net]}" \
              'BEGIN { printf "%.2fx / %.2fx", a / b, c / d }')
  fi
  printf '%-20s %14s %14s %10s %16s\n' "$name" "$i1" "$i64" "$(acc "$OUT/$name.logits.f32")" "$ratio"
done

# The integer engine on the same quantized models, in the same run (`sigmaquant bench`: 1 thread,
# random images, best of 3), against ONNX Runtime's float and QDQ figures above.
printf '\n%-20s %14s %14s %22s %22s\n' 'engine' 'img/s batch 1' 'img/s batch 64' \
  '/ ORT float (1, 64)' '/ ORT QDQ (1, 64)'
for name in cnn resnet20 resnet20-mixed; do
  "$BIN" export -m "$OUT/$name.q.sqg" --format sqm -o "$OUT/$name.sqm" > /dev/null
  j=$("$BIN" bench -m "$OUT/$name.sqm" --images "${ENGINE_IMAGES:-2000}" --repeats 3 --json)
  read -r e1 e64 < <(node -e '
const r = JSON.parse(process.argv[1]).results.filter(x => x.runtime === "engine" && x.threads === 1);
const at = b => r.find(x => x.batch === b).images_per_second.toFixed(0);
console.log(at(1), at(64));' "$j")
  net=${name%%-*}
  q1=${qdq1[$name]:-} q64=${qdq64[$name]:-}
  printf '%-20s %14s %14s %22s %22s\n' "$name" "$e1" "$e64" \
    "$(awk -v a="$e1" -v b="${base1[$net]}" -v c="$e64" -v d="${base64[$net]}" \
       'BEGIN { printf "%.2fx / %.2fx", a / b, c / d }')" \
    "$(awk -v a="$e1" -v b="$q1" -v c="$e64" -v d="$q64" \
       'BEGIN { if (b > 0) printf "%.2fx / %.2fx", a / b, c / d; else print "-" }')"
done
