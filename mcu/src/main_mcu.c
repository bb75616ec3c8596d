/* The Cortex-M harness of the C export check (mcu/run_qemu.sh, docs/mcu.md): runs an exported
 * model (model.h, model_data.c, sq_runtime.c from `sigmaquant export --format c`) on images read
 * through semihosting, writes the logits back the same way, and counts the instructions of each
 * inference.
 *
 *   qemu-system-arm -M mps2-an386 -icount shift=0 -semihosting-config enable=on,target=native,
 *       arg=sq_mcu,arg=images.f32,arg=logits.f32[,arg=counts.txt] -nographic -kernel sq_mcu.elf
 *
 * images.f32: N images of SQ_MODEL_INPUT_SIZE native-endian float32 values (C, H, W) back to back
 * (both ends are little-endian); logits.f32: N × SQ_MODEL_OUTPUT_SIZE float32. counts.txt: one
 * line per image, "index class instructions". Exit status 0 when every image ran. */
#include <stdio.h>

#include "model.h"
#include "semihost.h"

static float image[SQ_MODEL_INPUT_SIZE];
static float logits[SQ_MODEL_OUTPUT_SIZE];

int main(void) {
  char* argv[8];
  const int argc = mcu_cmdline(argv, 8);
  FILE *in, *out, *counts = NULL;
  unsigned long n = 0;
  unsigned long long total = 0;
  uint32_t lo = 0xFFFFFFFFu, hi = 0;
  const uint32_t calib_n = 100000u;
  uint32_t calib;
  if (argc < 3 || argc > 4) {
    fprintf(stderr, "usage: sq_mcu images.f32 logits.f32 [counts.txt] (semihosting arguments)\n");
    return 2;
  }
  in = fopen(argv[1], "rb");
  if (!in) {
    fprintf(stderr, "sq_mcu: %s: cannot open\n", argv[1]);
    return 1;
  }
  out = fopen(argv[2], "wb");
  if (!out) {
    fprintf(stderr, "sq_mcu: %s: cannot open for writing\n", argv[2]);
    return 1;
  }
  if (argc == 4 && !(counts = fopen(argv[3], "w"))) {
    fprintf(stderr, "sq_mcu: %s: cannot open for writing\n", argv[3]);
    return 1;
  }
  mcu_counter_start();
  /* The counter against a loop of 2·calib_n instructions (+ the two reads): off by more than a
   * tick or two when QEMU runs without -icount shift=0. */
  calib = mcu_calibrate(calib_n);
  printf("sq_mcu: model %s, %d inputs, %d logits, arena %d B, packed weights %d B\n", SQ_MODEL_NAME,
         SQ_MODEL_INPUT_SIZE, SQ_MODEL_OUTPUT_SIZE, SQ_MODEL_ARENA_BYTES, SQ_MODEL_WEIGHT_BYTES);
  printf("sq_mcu: counter calibration: loop of %lu instructions measured as %lu\n",
         (unsigned long)(2u * calib_n), (unsigned long)(calib * MCU_INSNS_PER_TICK));
  while (fread(image, sizeof(float), SQ_MODEL_INPUT_SIZE, in) == SQ_MODEL_INPUT_SIZE) {
    uint32_t t0, t1, insns;
    int c, best = 0;
    t0 = mcu_counter_ticks();
    sq_model_run(image, logits);
    t1 = mcu_counter_ticks();
    insns = (t1 - t0) * MCU_INSNS_PER_TICK;
    total += insns;
    if (insns < lo) lo = insns;
    if (insns > hi) hi = insns;
    for (c = 1; c < SQ_MODEL_OUTPUT_SIZE; ++c)
      if (logits[c] > logits[best]) best = c;
    if (fwrite(logits, sizeof(float), SQ_MODEL_OUTPUT_SIZE, out) != SQ_MODEL_OUTPUT_SIZE) {
      fprintf(stderr, "sq_mcu: %s: write failed\n", argv[2]);
      return 1;
    }
    if (counts) fprintf(counts, "%lu %d %lu\n", n, best, (unsigned long)insns);
    ++n;
  }
  fclose(in);
  if (fclose(out) != 0 || (counts && fclose(counts) != 0)) {
    fprintf(stderr, "sq_mcu: write failed\n");
    return 1;
  }
  if (n == 0) {
    fprintf(stderr, "sq_mcu: %s holds no complete image\n", argv[1]);
    return 1;
  }
  printf("sq_mcu: %lu images; instructions per inference min %lu mean %lu max %lu\n", n,
         (unsigned long)lo, (unsigned long)(total / n), (unsigned long)hi);
  printf("sq_mcu: stack used %lu B\n", (unsigned long)mcu_stack_used());
  return 0;
}
