#ifndef QSH_CSHIMS_H
#define QSH_CSHIMS_H

/* Interrupts: Ctrl-C sets a flag that long-running commands poll between steps. */
void qsh_install_interrupt_handler(void);
int qsh_interrupt_requested(void);
void qsh_clear_interrupt(void);
/* Raise the flag without a signal (tests, and the REPL when a line is abandoned). */
void qsh_request_interrupt(void);
/* While set, Ctrl-C calls this instead of raising the flag (the line editor abandons the line). */
void qsh_set_prompt_interrupt_handler(void (*handler)(void));

/* CPU features, for kernels that dispatch at run time. */
int qsh_cpu_has_avx2_fma(void);
int qsh_cpu_has_avx512f(void);

#endif
