#!/usr/bin/env bash
# The Cortex-M measurements of docs/results.md ("Microcontroller"): for each FP32 model, three bit
# assignments — uniform 8 bits, uniform 4 bits (activations 8) and SigmaQuant Phase 1
# (`sigmaquant allocate`, no training) on the `mcu` target under a budget of
# weight memory halfway between the uniform 4- and 5-bit models' — each run through
# mcu/run_qemu.sh (ptq, C export per --c-target, Cortex-M4 and M7 under QEMU, bit-for-bit check),
# then one markdown table of footprint and instructions against the `mcu` cost model. Exit status 1
# if any check failed.
#
#   mcu/report.sh [--sigmaquant BIN] [--ref BIN] [--images N] [--cpu m4,m7] [--out DIR]
#                 [--c-target portable,cortex-m-dsp] MODEL.sqg...
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
sq="$root/build/bin/sigmaquant" ref="$root/build/bin/sq_mcu_ref" images=100 cpus="m4,m7"
out="$root/runs/mcu" c_target=portable,cortex-m-dsp models=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --sigmaquant) sq="$2"; shift 2 ;;
    --ref) ref="$2"; shift 2 ;;
    --images) images="$2"; shift 2 ;;
    --cpu) cpus="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --c-target) c_target="$2"; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
    -*) echo "report.sh: unknown flag '$1'" >&2; exit 2 ;;
    *) models+=("$1"); shift ;;
  esac
done
[[ ${#models[@]} -gt 0 ]] || { echo "report.sh: name at least one FP32 model (.sqg)" >&2; exit 2; }
mkdir -p "$out"

status=0
runs=()
for m in "${models[@]}"; do
  [[ -f "$m" ]] || { echo "report.sh: $m: no such file" >&2; exit 2; }
  name="$(basename "$m" .sqg)"
  # SigmaQuant Phase 1 on the mcu target, weight budget halfway between uniform 4 and 5 bits.
  wbytes() {
    "$sq" cost -m "$m" -t "$root/targets/mcu.json" --wbits "$1" --json |
      python3 -c 'import json, sys; print(json.load(sys.stdin)["cost"]["total"]["weight_bytes"])'
  }
  w4="$(wbytes 4)" w5="$(wbytes 5)"
  python3 -c 'import json, sys
t = json.load(open(sys.argv[1]))
t["name"] = "mcu-w4.5-budget"
t["budgets"] = {"weight_kib": int(sys.argv[2]) / 1024}
json.dump(t, open(sys.argv[3], "w"), indent=2)' \
    "$root/targets/mcu.json" "$(( (w4 + w5) / 2 ))" "$out/$name-mcu-budget.json"
  "$sq" allocate -m "$m" -t "$out/$name-mcu-budget.json" -o "$out/$name-sigmaquant.bits.json" \
    > "$out/$name-allocate.txt"
  for spec in "--wbits 8 --abits 8" "--wbits 4 --abits 8" "--bits $out/$name-sigmaquant.bits.json"; do
    # shellcheck disable=SC2086
    label="$(echo $spec | sed 's/--wbits \([0-9]\) --abits \([0-9]\)/w\1a\2/; s/--bits .*/sigmaquant/')"
    w="$out/$name-$label"
    # shellcheck disable=SC2086
    if ! bash "$here/run_qemu.sh" --model "$m" $spec --images "$images" --cpu "$cpus" \
        --work "$w" --sigmaquant "$sq" --ref "$ref" --c-target "$c_target" > "$w.log" 2>&1; then
      status=1
      echo "report.sh: $name $label: FAILED (see $w.log)" >&2
    fi
    [[ -f "$w/summary.txt" ]] && runs+=("$w/summary.txt:$label")
  done
done

# One row per (model, assignment, cpu), from the summaries' key=value lines.
kv() { tr ' ' '\n' < "$1" | sed -n "s/^$2=//p" | head -1; }
cpu_kv() { grep "^c_target=$2 cpu=$3 " "$1" | tr ' ' '\n' | sed -n "s/^$4=//p"; }
pct() { awk -v m="$1" -v c="$2" 'BEGIN { printf "%+.1f %%", 100 * (m - c) / c }'; }
echo
echo "| model | bits | avg w bits | kernels | cpu | model constants (flash) | cost weight memory | error | arena (RAM) | cost activation memory | error | code | stack | instructions / inference | cost cycles | logits vs engine | top-1 |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for r in "${runs[@]}"; do
  f="${r%%:*}" label="${r##*:}"
  for t in ${c_target//,/ }; do
  for cpu in ${cpus//,/ }; do
    grep -q "^c_target=$t cpu=$cpu " "$f" || continue
    cw="$(kv "$f" cost_weight_bytes)" ca="$(kv "$f" cost_activation_bytes)"
    mc="$(cpu_kv "$f" "$t" "$cpu" model_const_bytes)" ar="$(cpu_kv "$f" "$t" "$cpu" arena_bytes)"
    printf '| %s | %s | %.2f | %s | %s | %s B | %s B | %s | %s B | %s B | %s | %s B | %s B | %s | %s | %s | %s/%s |\n' \
      "$(kv "$f" model)" "$label" "$(kv "$f" avg_wbits)" "$t" "$cpu" "$mc" "$cw" "$(pct "$mc" "$cw")" \
      "$ar" "$ca" "$(pct "$ar" "$ca")" "$(cpu_kv "$f" "$t" "$cpu" code_bytes)" \
      "$(cpu_kv "$f" "$t" "$cpu" stack_bytes)" "$(cpu_kv "$f" "$t" "$cpu" insns_mean)" \
      "$(kv "$f" cost_cycles)" "$(cpu_kv "$f" "$t" "$cpu" logits)" "$(cpu_kv "$f" "$t" "$cpu" top1)" \
      "$(kv "$f" images)"
  done
  done
done
exit $status
