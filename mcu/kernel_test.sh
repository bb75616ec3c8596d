#!/usr/bin/env bash
# The Cortex-M DSP kernels (--c-target cortex-m-dsp) against the portable runtime, exactly, on
# random layers under QEMU (mcu/src/kernel_test.c, docs/mcu.md). Needs only the cross tools and the
# runtime source src/engine/c_runtime/sq_runtime.{c,h}.
#
#   mcu/kernel_test.sh [--cpu m4,m7] [--cases 2000] [--work DIR] [--runtime DIR] [--skip-missing]
# (--runtime: a directory holding another sq_runtime.{c,h} to check; default the source tree's)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cpus="m4,m7" cases=2000 work="" skip_missing=0 rt="$root/src/engine/c_runtime"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --cpu) cpus="$2"; shift 2 ;;
    --cases) cases="$2"; shift 2 ;;
    --work) work="$2"; shift 2 ;;
    --runtime) rt="$2"; shift 2 ;;
    --skip-missing) skip_missing=1; shift ;;
    *) echo "kernel_test.sh: unknown argument '$1'" >&2; sed -n '2,7p' "$0" >&2; exit 2 ;;
  esac
done
missing=()
for t in arm-none-eabi-gcc qemu-system-arm; do command -v "$t" >/dev/null 2>&1 || missing+=("$t"); done
if [[ ${#missing[@]} -eq 0 ]]; then
  [[ -f "$(arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16 \
    -print-file-name=librdimon.a)" ]] || missing+=("newlib's librdimon.a (libnewlib-arm-none-eabi)")
fi
if [[ ${#missing[@]} -gt 0 ]]; then
  msg="cross tools not installed: ${missing[*]} (Debian: gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm)"
  if [[ $skip_missing -eq 1 ]]; then echo "SKIP: $msg"; exit 0; fi
  echo "kernel_test.sh: $msg" >&2; exit 2
fi
[[ "$cases" =~ ^[1-9][0-9]*$ ]] || { echo "kernel_test.sh: --cases '$cases': expected a positive integer" >&2; exit 2; }
[[ -n "$work" ]] || work="$root/runs/mcu/kernel_test"
mkdir -p "$work"
# The portable copy's public symbols (every function sq_runtime.h declares), renamed ref_* so
# that both copies link into one program.
ren=()
for s in $(grep -oE '^[a-z][a-z0-9_ ]*[ *](sq_[a-z0-9_]+)\(' "$rt/sq_runtime.h" |
           grep -oE 'sq_[a-z0-9_]+' | sort -u); do
  ren+=("-D$s=ref_$s")
done
[[ ${#ren[@]} -ge 12 ]] || { echo "kernel_test.sh: found only ${#ren[@]} functions in $rt/sq_runtime.h" >&2; exit 2; }
status=0
IFS=',' read -r -a cpu_list <<< "$cpus"
for cpu in "${cpu_list[@]}"; do
  case "$cpu" in
    m4) machine=mps2-an386 cflags=(-mcpu=cortex-m4 -mthumb -mfpu=fpv4-sp-d16 -mfloat-abi=hard) ;;
    m7) machine=mps2-an500 cflags=(-mcpu=cortex-m7 -mthumb -mfpu=fpv5-d16 -mfloat-abi=hard) ;;
    *) echo "kernel_test.sh: --cpu '$cpu': expected m4 and/or m7" >&2; exit 2 ;;
  esac
  cflags+=(-std=c99 -O2 -ffp-contract=off -ffunction-sections -fdata-sections -Wall -Wextra -Werror
           -I "$rt" -I "$here/src")
  b="$work/$cpu"; rm -rf "$b"; mkdir -p "$b"
  arm-none-eabi-gcc "${cflags[@]}" "${ren[@]}" -c "$rt/sq_runtime.c" -o "$b/rt_portable.o"
  arm-none-eabi-gcc "${cflags[@]}" -DSQ_TARGET_CORTEX_M_DSP=1 -c "$rt/sq_runtime.c" -o "$b/rt_dsp.o"
  for src in kernel_test semihost startup; do
    arm-none-eabi-gcc "${cflags[@]}" -c "$here/src/$src.c" -o "$b/$src.o"
  done
  arm-none-eabi-gcc "${cflags[@]}" --specs=rdimon.specs -nostartfiles -T "$here/link/mps2.ld" \
    -Wl,--gc-sections "$b"/*.o -lm -o "$b/kernel_test.elf"
  set +e
  timeout 600 qemu-system-arm -M "$machine" -nographic -monitor none -serial none \
    -semihosting-config "enable=on,target=native,arg=kernel_test,arg=$cases" -kernel "$b/kernel_test.elf"
  rc=$?
  set -e
  if [[ $rc -eq 0 ]]; then echo "OK: $cpu ($machine)"; else echo "FAIL: $cpu ($machine): status $rc" >&2; status=1; fi
done
exit $status
