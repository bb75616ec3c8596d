#!/usr/bin/env bash
# Runs every libFuzzer target for a bounded time: fuzz/run.sh BUILD_DIR SECONDS [TARGET...]
# Corpora grow in BUILD_DIR/corpus/<target> (seeded by sq_fuzz_seeds), crash inputs land in
# BUILD_DIR/artifacts/<target>/, logs in BUILD_DIR/logs/<target>.log. Prints one summary line per
# target (executions, seconds, crashes) and exits non-zero if any target found something.
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:?usage: fuzz/run.sh BUILD_DIR SECONDS [TARGET...]}
seconds=${2:?usage: fuzz/run.sh BUILD_DIR SECONDS [TARGET...]}
shift 2
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(idx_images idx_labels cifar npy sqg bits target run_log pareto onnx_import sqm)

"$build/bin/sq_fuzz_seeds" "$build/corpus" || exit 1
cp targets/*.json "$build/corpus/target/"
cp examples/*.bits.json "$build/corpus/bits/" 2>/dev/null
mkdir -p "$build/corpus/onnx_import" && cp tests/data/*.onnx "$build/corpus/onnx_import/"
mkdir -p "$build/logs"
status=0
for t in "${targets[@]}"; do
  mkdir -p "$build/corpus/$t" "$build/artifacts/$t"
  touch "$build/logs/$t.start"  # crash inputs of earlier runs are kept but not counted again
  args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -use_value_profile=1
        -print_final_stats=1 -artifact_prefix="$build/artifacts/$t/")
  [ -f "fuzz/$t.dict" ] && args+=(-dict="fuzz/$t.dict")
  [ "$t" = cifar ] && args+=(-max_len=8192)  # room for two 3074-byte CIFAR-100 records
  [ "$t" = sqg ] && args+=(-max_len=16384)
  [ "$t" = sqm ] && args+=(-max_len=16384)
  [ "$t" = onnx_import ] && args+=(-max_len=65536)  # the seed model is ~38 KB
  # Crash reports are the fuzzer's own; ASan must not return null from oversized allocations.
  ASAN_OPTIONS=allocator_may_return_null=0:detect_leaks=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    nice "$build/bin/fuzz_$t" "${args[@]}" "$build/corpus/$t" >"$build/logs/$t.log" 2>&1
  rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$build/logs/$t.log" | tail -1)
  crashes=$(find "$build/artifacts/$t" -type f -newer "$build/logs/$t.start" | wc -l)
  printf 'fuzz_%-11s %10s executions in %ss, exit %d, %d crash/timeout/oom inputs in %s\n' \
    "$t" "${runs:-?}" "$seconds" "$rc" "$crashes" "$build/artifacts/$t/"
  if [ $rc -ne 0 ] || [ "$crashes" -ne 0 ]; then
    status=1
    grep -m3 -E 'ERROR|runtime error|deadly signal|terminate' "$build/logs/$t.log" | sed 's/^/    /'
  fi
done
exit $status
