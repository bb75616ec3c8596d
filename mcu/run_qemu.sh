#!/usr/bin/env bash
# The C export on a Cortex-M under emulation (docs/mcu.md): quantizes a model (sigmaquant ptq),
# exports it as C (sigmaquant export --format c), cross-builds it bare metal with
# arm-none-eabi-gcc + newlib for each CPU asked for, runs N test images under qemu-system-arm on an
# MPS2 board with semihosted I/O, and compares every logit with the integer engine's (sq_mcu_ref)
# bit for bit. Also reports the footprint (flash, RAM) and the instructions per inference next to
# the `mcu` cost model's figures. Exit status: 0 all equal, 1 a mismatch or a failed step, 2 bad
# usage or missing tools (0 with "SKIP:" under --skip-missing).
#
#   mcu/run_qemu.sh --model models/lenet5-fmnist.sqg --wbits 8 [--abits 8]     (or --bits FILE)
#                   [--qmodel q.sqg] [--cpu m4,m7] [--images 100] [--offset 0] [--work DIR]
#                   [--sigmaquant build/bin/sigmaquant] [--ref build/bin/sq_mcu_ref]
#                   [--c-target portable,cortex-m-dsp] [--target targets/mcu.json] [--skip-missing]
#                   [--qemu-timeout 900]
# --c-target: the export's kernels, comma-separated: each is exported, cross-built and checked.
# --qmodel: an already quantized model (skips ptq; --model and the bits still give the cost model's
# figures). --offset/--images: which test images (Fashion-MNIST test split).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"

model="" qmodel="" wbits="" abits="8" bits="" cpus="m4,m7" images=100 offset=0 work=""
sq="$root/build/bin/sigmaquant" ref="$root/build/bin/sq_mcu_ref" c_target="portable"
target="$root/targets/mcu.json" skip_missing=0 qemu_timeout=900

die() { echo "run_qemu.sh: $1" >&2; exit "${2:-1}"; }
usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --model) model="$2"; shift 2 ;;
    --qmodel) qmodel="$2"; shift 2 ;;
    --wbits) wbits="$2"; shift 2 ;;
    --abits) abits="$2"; shift 2 ;;
    --bits) bits="$2"; shift 2 ;;
    --cpu) cpus="$2"; shift 2 ;;
    --images) images="$2"; shift 2 ;;
    --offset) offset="$2"; shift 2 ;;
    --work) work="$2"; shift 2 ;;
    --sigmaquant) sq="$2"; shift 2 ;;
    --ref) ref="$2"; shift 2 ;;
    --c-target) c_target="$2"; shift 2 ;;
    --target) target="$2"; shift 2 ;;
    --qemu-timeout) qemu_timeout="$2"; shift 2 ;;
    --skip-missing) skip_missing=1; shift ;;
    -h|--help) usage ;;
    *) echo "run_qemu.sh: unknown argument '$1'" >&2; usage ;;
  esac
done

# ---- tools ----
missing=()
for t in arm-none-eabi-gcc arm-none-eabi-size qemu-system-arm; do
  command -v "$t" >/dev/null 2>&1 || missing+=("$t")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  rdimon="$(arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16 \
    -print-file-name=librdimon.a)"
  [[ -f "$rdimon" ]] || missing+=("newlib's librdimon.a (libnewlib-arm-none-eabi)")
fi
if [[ ${#missing[@]} -gt 0 ]]; then
  msg="cross tools not installed: ${missing[*]} (Debian: gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm, scripts/setup.sh installs them)"
  if [[ $skip_missing -eq 1 ]]; then echo "SKIP: $msg"; exit 0; fi
  die "$msg" 2
fi

# ---- arguments ----
[[ -n "$model" ]] || die "--model is required (the FP32 .sqg the bits apply to)" 2
[[ -f "$model" ]] || die "--model $model: no such file" 2
[[ -x "$sq" ]] || die "--sigmaquant $sq: not an executable (build the sigmaquant target)" 2
[[ -x "$ref" ]] || die "--ref $ref: not an executable (build the sq_mcu_ref target)" 2
[[ "$images" =~ ^[1-9][0-9]*$ ]] || die "--images '$images': expected a positive integer" 2
[[ "$offset" =~ ^[0-9]+$ ]] || die "--offset '$offset': expected a non-negative integer" 2
[[ "$qemu_timeout" =~ ^[1-9][0-9]*$ ]] || die "--qemu-timeout '$qemu_timeout': expected seconds" 2
IFS=',' read -r -a target_list <<< "$c_target"
[[ ${#target_list[@]} -gt 0 ]] || die "--c-target: expected portable and/or cortex-m-dsp" 2
for t in "${target_list[@]}"; do
  case "$t" in portable|cortex-m-dsp) ;; *)
    die "--c-target '$t': expected portable and/or cortex-m-dsp (comma-separated)" 2 ;; esac
done
bitflags=()
if [[ -n "$bits" ]]; then
  [[ -z "$wbits" ]] || die "give --bits or --wbits, not both" 2
  [[ -f "$bits" ]] || die "--bits $bits: no such file" 2
  bitflags=(--bits "$bits")
  label="$(basename "$bits" .json)"
else
  [[ "$wbits" =~ ^[1-8]$ ]] || die "--wbits '$wbits': expected 1..8 (or --bits FILE)" 2
  [[ "$abits" =~ ^[0-9]+$ ]] || die "--abits '$abits': expected an integer" 2
  bitflags=(--wbits "$wbits" --abits "$abits")
  label="w${wbits}a${abits}"
fi
name="$(basename "$model" .sqg)"
[[ -n "$work" ]] || work="$root/runs/mcu/$name-$label"
mkdir -p "$work"
work="$(cd "$work" && pwd)"
IFS=',' read -r -a cpu_list <<< "$cpus"
for cpu in "${cpu_list[@]}"; do
  case "$cpu" in m4|m7) ;; *) die "--cpu '$cpu': expected m4 and/or m7 (comma-separated)" 2 ;; esac
done

# Writes stdin to $1 atomically.
atomic() { local t; t="$(mktemp "$1.tmp.XXXXXX")"; cat > "$t"; mv -f "$t" "$1"; }

# ---- quantize, export, host reference ----
if [[ -z "$qmodel" ]]; then
  qmodel="$work/q.sqg"
  echo "== ptq $name ${bitflags[*]}"
  "$sq" ptq -m "$model" "${bitflags[@]}" --calib-samples 512 --limit-test 1000 -q -o "$qmodel"
fi
[[ -f "$qmodel" ]] || die "--qmodel $qmodel: no such file" 2
for t in "${target_list[@]}"; do
  echo "== export --format c --c-target $t"
  rm -rf "$work/c-$t"
  export_flags=()
  # portable is the default: exported without the flag, as by every earlier CLI.
  [[ "$t" == "portable" ]] || export_flags=(--c-target "$t")
  "$sq" export -m "$qmodel" --format c "${export_flags[@]}" -o "$work/c-$t" -q
done
echo "== host: $images test images from $offset and the integer engine's logits"
"$ref" images --offset "$offset" --count "$images" -o "$work/images.f32" --labels "$work/labels.u8"
"$ref" logits -m "$qmodel" --images "$work/images.f32" -o "$work/engine.f32"
"$sq" cost -m "$model" "${bitflags[@]}" -t "$target" --json | atomic "$work/cost.json"
# A field of a JSON file by its dotted path ("int": rounded down to an integer).
jget() {
  python3 -c 'import json, math, sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."): v = v[k]
print(math.floor(v) if sys.argv[3:] == ["int"] else v)' "$@"
}
cost_w="$(jget "$work/cost.json" cost.total.weight_bytes int)"
cost_a="$(jget "$work/cost.json" cost.total.activation_bytes int)"
cost_cyc="$(jget "$work/cost.json" cost.total.cycles int)"
avg_bits="$(jget "$work/cost.json" average_wbits)"
c0="$work/c-${target_list[0]}"
classes="$(sed -n 's/^#define SQ_MODEL_OUTPUT_SIZE \([0-9]*\).*/\1/p' "$c0/model.h")"
arena="$(sed -n 's/^#define SQ_MODEL_ARENA_BYTES \([0-9]*\).*/\1/p' "$c0/model.h")"

# Sums the sizes of an object's sections whose names match an extended regex.
sec() { arm-none-eabi-size -A "$1" | awk -v re="$2" '$1 ~ re {s += $2} END {print s + 0}'; }
pct() { awk -v m="$1" -v c="$2" 'BEGIN { if (c == 0) print "n/a"; else printf "%+.1f%%", 100 * (m - c) / c }'; }

# Cross-builds the export of target $1 for cpu $2, runs it under QEMU, compares the logits and
# appends the figures to the summary. Returns 1 on any failure.
check_one() {
  local t="$1" cpu="$2" machine b src rc verdict first img nd correct md rt
  local w_packed w_const code ram_static stack insns elf_flash elf_ram
  local -a cflags
  case "$cpu" in
    m4) machine=mps2-an386 cflags=(-mcpu=cortex-m4 -mthumb -mfpu=fpv4-sp-d16 -mfloat-abi=hard) ;;
    m7) machine=mps2-an500 cflags=(-mcpu=cortex-m7 -mthumb -mfpu=fpv5-d16 -mfloat-abi=hard) ;;
  esac
  # -ffp-contract=off: no fused multiply-add may merge the logits' (acc − b)·unit + b_float.
  cflags+=(-std=c99 -O2 -ffp-contract=off -ffunction-sections -fdata-sections
           -Wall -Wextra -Werror -I "$work/c-$t" -I "$here/src")
  b="$work/$t-$cpu"
  rm -rf "$b"; mkdir -p "$b"
  echo "== $t $cpu: arm-none-eabi-gcc ${cflags[*]:0:4} ... ($machine)"
  for src in "$work/c-$t/model_data.c" "$work/c-$t/sq_runtime.c" "$here/src/main_mcu.c" \
             "$here/src/semihost.c" "$here/src/startup.c"; do
    arm-none-eabi-gcc "${cflags[@]}" -c "$src" -o "$b/$(basename "$src" .c).o" ||
      { echo "FAIL: $t $cpu: $src does not compile" >&2; return 1; }
  done
  # (set -e does not apply inside a function called from `||`: every step checks its status.)
  arm-none-eabi-gcc "${cflags[@]}" --specs=rdimon.specs -nostartfiles -T "$here/link/mps2.ld" \
    -Wl,--gc-sections -Wl,-Map="$b/sq_mcu.map" \
    "$b/startup.o" "$b/main_mcu.o" "$b/semihost.o" "$b/model_data.o" "$b/sq_runtime.o" \
    -lm -o "$b/sq_mcu.elf" || { echo "FAIL: $t $cpu: the link failed" >&2; return 1; }
  arm-none-eabi-size -A "$b/sq_mcu.elf" > "$b/size.txt" || return 1

  echo "== $t $cpu: qemu-system-arm -M $machine -icount shift=0, $images images"
  set +e
  (cd "$b" && timeout "$qemu_timeout" qemu-system-arm -M "$machine" -nographic -monitor none \
     -serial none -icount shift=0 \
     -semihosting-config "enable=on,target=native,arg=sq_mcu,arg=../images.f32,arg=mcu.f32,arg=counts.txt" \
     -kernel sq_mcu.elf) > "$b/qemu.log" 2>&1
  rc=$?
  set -e
  cat "$b/qemu.log"
  if [[ $rc -ne 0 ]]; then
    [[ $rc -eq 124 ]] && echo "run_qemu.sh: $t $cpu: qemu timed out after ${qemu_timeout} s" >&2
    echo "FAIL: $t $cpu: the emulated program exited with status $rc" >&2
    return 1
  fi
  if ! grep -q "measured as $((2 * 100000))\$" "$b/qemu.log"; then
    echo "FAIL: $t $cpu: the instruction counter does not count instructions (-icount?)" >&2
    return 1
  fi

  # ---- bit-for-bit comparison ----
  if [[ ! -f "$b/mcu.f32" ]] || [[ $(stat -c %s "$b/mcu.f32") -ne $(stat -c %s "$work/engine.f32") ]]; then
    echo "FAIL: $t $cpu: $(stat -c %s "$b/mcu.f32" 2>/dev/null || echo 0) bytes of logits, expected $(stat -c %s "$work/engine.f32")" >&2
    return 1
  fi
  if cmp -s "$b/mcu.f32" "$work/engine.f32"; then
    verdict="identical"
    echo "OK: $t $cpu: all $(( $(stat -c %s "$work/engine.f32") / 4 )) logits of $images images bit-identical to the integer engine"
  else
    first="$( (cmp "$b/mcu.f32" "$work/engine.f32" || true) | awk '{sub(",", "", $5); print $5}')"
    img=$(( (first - 1) / 4 / classes ))
    nd="$( (cmp -l "$b/mcu.f32" "$work/engine.f32" || true) | awk -v c="$classes" '{i = int(($1 - 1) / 4 / c); if (!(i in s)) {s[i] = 1; n++}} END {print n + 0}')"
    echo "FAIL: $t $cpu: logits differ from the integer engine's in $nd of $images images (first: image $((offset + img)))" >&2
    verdict="DIFFER($nd)"
  fi
  correct="$(od -An -v -tu1 -w1 "$work/labels.u8" | awk 'NR==FNR {lab[NR-1] = $1; next} {if ($2 == lab[$1]) c++} END {print c + 0}' - "$b/counts.txt")"

  # ---- footprint and instructions ----
  md="$b/model_data.o" rt="$b/sq_runtime.o"
  w_packed="$(arm-none-eabi-size -A "$md" | awk '$1 ~ /^\.rodata\.L[0-9]+_.*_w$/ {s += $2} END {print s + 0}')"
  w_const="$(sec "$md" '^\.rodata')"
  code="$(( $(sec "$md" '^\.text') + $(sec "$rt" '^\.text') + $(sec "$rt" '^\.rodata') ))"
  ram_static="$(( $(sec "$md" '^\.(bss|data)') + $(sec "$rt" '^\.(bss|data)') ))"
  stack="$(sed -n 's/^sq_mcu: stack used \([0-9]*\) B$/\1/p' "$b/qemu.log")"
  insns="$(sed -n 's/.*instructions per inference min \([0-9]*\) mean \([0-9]*\) max \([0-9]*\)$/\2/p' "$b/qemu.log")"
  elf_flash="$(awk '$1 ~ /^\.(isr_vector|text|rodata|ARM\.exidx|init_array|data)$/ {s += $2} END {print s}' "$b/size.txt")"
  elf_ram="$(awk '$1 ~ /^\.(data|bss)$/ {s += $2} END {print s}' "$b/size.txt")"
  echo "   flash: model constants $w_const B (packed weights $w_packed B) vs cost model weight memory $cost_w B ($(pct "$w_const" "$cost_w")); runtime + plan code $code B; whole linked image $elf_flash B (with newlib and the harness's semihosted stdio)"
  echo "   RAM:   arena $arena B vs cost model activation memory $cost_a B ($(pct "$arena" "$cost_a")); model static RAM $ram_static B (arena + conv scratch) + stack $stack B; whole image data+bss $elf_ram B"
  echo "   speed: $insns instructions per inference (mean of $images; cost model $cost_cyc cycles); top-1 $correct/$images"
  echo "c_target=$t cpu=$cpu machine=$machine logits=$verdict top1=$correct insns_mean=$insns model_const_bytes=$w_const packed_weight_bytes=$w_packed code_bytes=$code arena_bytes=$arena model_ram_bytes=$ram_static stack_bytes=$stack elf_flash_bytes=$elf_flash elf_ram_bytes=$elf_ram" >> "$summary.part"
  [[ "$verdict" == "identical" ]]
}

status=0
summary="$work/summary.txt"
{
  echo "model=$name bits=$label avg_wbits=$avg_bits images=$images offset=$offset"
  echo "cost_weight_bytes=$cost_w cost_activation_bytes=$cost_a cost_cycles=$cost_cyc"
} > "$summary.part"
for t in "${target_list[@]}"; do
  for cpu in "${cpu_list[@]}"; do
    check_one "$t" "$cpu" || status=1
  done
done
mv -f "$summary.part" "$summary"
echo "== summary: $summary"
exit $status
