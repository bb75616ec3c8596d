#!/usr/bin/env bash
# Data-parallel QAT throughput (issue 17): images/s of resnet20 QAT (W4A4, LSQ) on a fixed slice
# of Fashion-MNIST with 1 process and with N local processes (Gloo over loopback), each process
# on one LibTorch thread; the scaling efficiency (images/s with N / (N x images/s with 1)) and
# the gradient all-reduce volume per step. The global batch is the same in every row
# (per-rank batch = global / N), so every row trains the same steps.
# Usage: bench/data_parallel.sh [build/bin/sigmaquant] [images] [global batch] [max procs]
set -euo pipefail
BIN=${1:-build/bin/sigmaquant}
IMAGES=${2:-12800}
GLOBAL=${3:-128}
MAXP=${4:-2}
MODEL=${MODEL:-models/resnet20-fmnist.sqg}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
echo "resnet20 QAT W4A4 (LSQ), $IMAGES images, global batch $GLOBAL, 1 thread per process; $(nproc) CPUs"
printf '%6s %10s %10s %12s %12s %16s %10s\n' procs batch/rank s/epoch img/s efficiency allreduce-B/step buckets
BASE=""
for p in $(seq 1 "$MAXP"); do
  B=$((GLOBAL / p))
  NP=""
  [ "$p" -gt 1 ] && NP="--nproc $p"
  # shellcheck disable=SC2086
  "$BIN" qat -m "$MODEL" --wbits 4 --abits 4 --epochs 1 -b "$B" --limit-train "$IMAGES" \
    --limit-test 256 --calib-samples 256 --threads 1 --quiet --json $NP -o "$TMP/q$p.sqg" \
    > "$TMP/out$p.json"
  read -r SECS IPS BYTES CALLS < <(python3 -c "
import json; j=json.load(open('$TMP/out$p.json')); d=j['data_parallel']
print(j['qat_seconds'], j['images_per_second'], d['allreduce_bytes_per_step'], d['allreduce_calls_per_step'])")
  [ -z "$BASE" ] && BASE=$IPS
  python3 -c "
p=$p; ips=$IPS; base=$BASE
print('%6d %10d %10.1f %12.1f %11.0f%% %16.0f %10.0f' % (p, $B, $SECS, ips, 100*ips/(p*base), $BYTES, $CALLS))"
done
