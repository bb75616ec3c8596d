/* Semihosting and the instruction counter of the Cortex-M check (mcu/, docs/mcu.md).
 *
 * stdio (fopen/fread/fwrite/printf) goes through newlib's librdimon, which turns it into ARM
 * semihosting calls that QEMU serves from the host's file system (-semihosting-config
 * enable=on,target=native). This header adds what librdimon does not give a bare-metal program
 * started by our own reset handler: the command line, an exit status, and a counter. */
#ifndef MCU_SEMIHOST_H
#define MCU_SEMIHOST_H

#include <stdint.h>

/* Splits the semihosting command line (QEMU's -semihosting-config arg=...) into argv; returns
 * argc (at most max), or -1 if the host gives none. */
int mcu_cmdline(char** argv, int max);

/* Ends the emulation with an exit status (SYS_EXIT, or SYS_EXIT_EXTENDED for a non-zero status). */
void mcu_exit(int status) __attribute__((noreturn));

/* Guest instructions executed, read from the CMSDK APB timer 0 (25 MHz on every MPS2 board) while
 * QEMU runs with -icount shift=0: the virtual clock then advances exactly 1 ns per guest
 * instruction, so one timer tick is MCU_INSNS_PER_TICK instructions (the counter's resolution).
 * Without -icount the value is host time, not instructions: mcu/run_qemu.sh always passes it and
 * main_mcu.c checks it against a loop of known length (mcu_calibrate). */
#define MCU_INSNS_PER_TICK 40u
void mcu_counter_start(void);
uint32_t mcu_counter_ticks(void); /* ticks since mcu_counter_start (wraps after 2^32) */

/* Runs exactly 2·n + a few instructions (a subs/bne loop) and returns the ticks it took. */
uint32_t mcu_calibrate(uint32_t n);

/* Bytes of the stack ever used, from the pattern the reset handler painted below the stack top. */
uint32_t mcu_stack_used(void);

#endif
