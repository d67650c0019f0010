#ifndef QSH_CSHIMS_H
#define QSH_CSHIMS_H

/* Interrupts: Ctrl-C (and SIGTERM) set a flag that long-running commands poll between steps.
   Installing the handlers also ignores SIGXFSZ, so a file-size limit fails a write instead of
   killing the process. */
void qsh_install_interrupt_handler(void);
int qsh_interrupt_requested(void);
/* Lowers the flag, unless SIGTERM raised it: then it stays up until the process exits. */
void qsh_clear_interrupt(void);
/* Whether SIGTERM arrived; qsh then stops like Ctrl-C and exits with status 143. */
int qsh_termination_requested(void);
/* Raise the flag without a signal (tests, and the REPL when a line is abandoned). */
void qsh_request_interrupt(void);
/* While set, Ctrl-C calls this instead of raising the flag (the line editor abandons the line). */
void qsh_set_prompt_interrupt_handler(void (*handler)(void));

/* CPU features, for kernels that dispatch at run time. */
int qsh_cpu_has_avx2_fma(void);
int qsh_cpu_has_avx512f(void);

/* OpenMP (oneDNN's threads) busy-waits between parallel regions by default. A training step runs
   thousands of short regions, and on a machine with other work the spinning threads take the
   cores from the ones with work: a fine-tuning epoch ran 10x slower. The wait policy is read
   when libgomp loads, before main, so when OMP_WAIT_POLICY is unset this sets it to passive
   and re-executes the program with the same arguments; a user's own setting is left alone.
   Returns only when no re-execution happened. */
void qsh_prefer_passive_openmp_waiting(char **argv);

#endif
