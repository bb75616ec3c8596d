/* See semihost.h. */
#include "semihost.h"

#include <string.h>

/* ARM semihosting: operation in r0, argument block in r1, result in r0; BKPT 0xAB on M-profile. */
static int sh_call(int op, void* arg) {
  register int r0 __asm__("r0") = op;
  register void* r1 __asm__("r1") = arg;
  __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}

enum {
  SYS_GET_CMDLINE = 0x15,
  SYS_EXIT = 0x18,
  SYS_EXIT_EXTENDED = 0x20,
  ADP_Stopped_ApplicationExit = 0x20026
};

int mcu_cmdline(char** argv, int max) {
  static char line[512];
  uint32_t block[2];
  int argc = 0;
  char* p = line;
  block[0] = (uint32_t)(uintptr_t)line;
  block[1] = sizeof line - 1;
  if (sh_call(SYS_GET_CMDLINE, block) != 0) return -1;
  line[block[1] < sizeof line ? block[1] : sizeof line - 1] = '\0';
  while (*p && argc < max) {
    while (*p == ' ') *p++ = '\0';
    if (!*p) break;
    argv[argc++] = p;
    while (*p && *p != ' ') ++p;
  }
  return argc;
}

void mcu_exit(int status) {
  if (status == 0) {
    sh_call(SYS_EXIT, (void*)(uintptr_t)ADP_Stopped_ApplicationExit);
  } else {
    uint32_t block[2];
    block[0] = ADP_Stopped_ApplicationExit;
    block[1] = (uint32_t)status;
    sh_call(SYS_EXIT_EXTENDED, block);
  }
  for (;;) {
  }
}

/* CMSDK APB timer 0: a 32-bit down counter clocked at the board's 25 MHz PCLK. */
#define TIMER0_CTRL (*(volatile uint32_t*)0x40000000u)
#define TIMER0_VALUE (*(volatile uint32_t*)0x40000004u)
#define TIMER0_RELOAD (*(volatile uint32_t*)0x40000008u)

void mcu_counter_start(void) {
  TIMER0_CTRL = 0;
  TIMER0_RELOAD = 0xFFFFFFFFu;
  TIMER0_VALUE = 0xFFFFFFFFu;
  TIMER0_CTRL = 1; /* enable, no interrupt */
}

uint32_t mcu_counter_ticks(void) { return 0xFFFFFFFFu - TIMER0_VALUE; }

uint32_t mcu_calibrate(uint32_t n) {
  uint32_t t0, t1;
  t0 = mcu_counter_ticks();
  __asm__ volatile(
      "1: subs %0, %0, #1\n"
      "   bne 1b\n"
      : "+r"(n)
      :
      : "cc");
  t1 = mcu_counter_ticks();
  return t1 - t0;
}

extern uint32_t __stack_bottom__[], __stack_top__[];
#define STACK_PAINT 0xDEADBEEFu

uint32_t mcu_stack_used(void) {
  const uint32_t* p = __stack_bottom__;
  while (p < __stack_top__ && *p == STACK_PAINT) ++p;
  return (uint32_t)((uintptr_t)__stack_top__ - (uintptr_t)p);
}
