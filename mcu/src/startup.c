/* Reset and fault handlers and the vector table of the Cortex-M check (mcu/, docs/mcu.md), for
 * the linker script link/mps2.ld: enable the FPU, copy .data from flash, zero .bss, paint the
 * stack (for mcu_stack_used), open the semihosted stdio, run main, exit with its status. */
#include <stdint.h>
#include <stdio.h>

#include "semihost.h"

extern uint32_t __data_start__[], __data_end__[], __data_load__[];
extern uint32_t __bss_start__[], __bss_end__[];
extern uint32_t __stack_bottom__[], __stack_top__[];

extern void initialise_monitor_handles(void); /* librdimon: semihosted stdin/stdout/stderr */
int main(void);

void Reset_Handler(void) __attribute__((noreturn, naked));
void Fault_Handler(void) __attribute__((noreturn, naked));
static void reset_c(void) __attribute__((noreturn, used));

void Reset_Handler(void) {
  /* Set the stack pointer (the core has already loaded it from the table) and call into C. */
  __asm__ volatile(
      "ldr r0, =__stack_top__\n"
      "mov sp, r0\n"
      "b reset_c\n");
}

static void reset_c(void) {
  uint32_t *dst, *src;
  volatile uint32_t* const cpacr = (volatile uint32_t*)0xE000ED88u;
  /* Full access to CP10/CP11 (the FPU) before any floating-point instruction runs. */
  *cpacr |= 0xFu << 20;
  __asm__ volatile("dsb\n isb" ::: "memory");
  for (dst = __data_start__, src = __data_load__; dst < __data_end__;) *dst++ = *src++;
  for (dst = __bss_start__; dst < __bss_end__;) *dst++ = 0;
  {
    /* Paint the stack below the current frame (256 bytes spared). */
    uint32_t here;
    uint32_t* limit = (uint32_t*)((uintptr_t)&here - 256u);
    for (dst = __stack_bottom__; dst < limit;) *dst++ = 0xDEADBEEFu;
  }
  initialise_monitor_handles();
  mcu_exit(main());
}

/* Any fault: name the exception, the faulting PC and LR from the stacked frame, and the fault
 * status registers, then stop the emulation with status 3 (never hang). */
static void fault_report(const uint32_t* frame) __attribute__((noreturn, used));
static void fault_report(const uint32_t* frame) {
  uint32_t ipsr;
  __asm__ volatile("mrs %0, ipsr" : "=r"(ipsr));
  fprintf(stderr,
          "mcu: fault: exception %lu at pc 0x%08lx (lr 0x%08lx), CFSR 0x%08lx BFAR 0x%08lx\n",
          (unsigned long)(ipsr & 0x1FFu), (unsigned long)frame[6], (unsigned long)frame[5],
          (unsigned long)*(volatile uint32_t*)0xE000ED28u,
          (unsigned long)*(volatile uint32_t*)0xE000ED38u);
  fflush(stderr);
  mcu_exit(3);
}

void Fault_Handler(void) {
  __asm__ volatile(
      "tst lr, #4\n"
      "ite eq\n"
      "mrseq r0, msp\n"
      "mrsne r0, psp\n"
      "b fault_report\n");
}

/* Cortex-M exception table: initial SP, reset, then NMI .. SysTick (all faults stop the run). */
__attribute__((section(".isr_vector"), used)) void (*const mcu_vectors[16])(void) = {
    (void (*)(void))(uintptr_t)__stack_top__,
    Reset_Handler,
    Fault_Handler, /* NMI */
    Fault_Handler, /* HardFault */
    Fault_Handler, /* MemManage */
    Fault_Handler, /* BusFault */
    Fault_Handler, /* UsageFault */
    0,
    0,
    0,
    0,
    Fault_Handler, /* SVCall */
    Fault_Handler, /* DebugMonitor */
    0,
    Fault_Handler, /* PendSV */
    Fault_Handler, /* SysTick */
};
