#include "CShims.h"
#include <signal.h>
#include <string.h>
#include <stdlib.h>
#include <unistd.h>

static volatile sig_atomic_t interrupt_flag = 0;
static volatile sig_atomic_t terminate_flag = 0;
static void (*volatile prompt_handler)(void) = 0;

static void on_sigint(int signo) {
    (void)signo;
    void (*handler)(void) = prompt_handler;
    if (handler) {
        handler();
        return;
    }
    interrupt_flag = 1;
}

/* SIGTERM stops the running command as Ctrl-C does, and the flag stays up so that nothing after
   it runs; main then exits with 128 + 15. At a REPL prompt nothing is running and the line
   editor would only go on waiting, so the signal takes its default action there. */
static void on_sigterm(int signo) {
    if (prompt_handler) {
        struct sigaction fallback;
        memset(&fallback, 0, sizeof fallback);
        fallback.sa_handler = SIG_DFL;
        sigemptyset(&fallback.sa_mask);
        sigaction(SIGTERM, &fallback, NULL);
        raise(signo); /* delivered when this handler returns */
        return;
    }
    terminate_flag = 1;
    interrupt_flag = 1;
}

void qsh_install_interrupt_handler(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_sigint;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    sigaction(SIGINT, &action, NULL);
    action.sa_handler = on_sigterm;
    sigaction(SIGTERM, &action, NULL);
    /* A file-size limit (ulimit -f) would otherwise kill the process mid-write; ignored, the
       write fails with EFBIG, the temporary file is removed and the error names the file. */
    signal(SIGXFSZ, SIG_IGN);
}

int qsh_interrupt_requested(void) { return interrupt_flag != 0; }
void qsh_clear_interrupt(void) {
    if (!terminate_flag) interrupt_flag = 0;
}
int qsh_termination_requested(void) { return terminate_flag != 0; }
void qsh_request_interrupt(void) { interrupt_flag = 1; }
void qsh_set_prompt_interrupt_handler(void (*handler)(void)) { prompt_handler = handler; }

int qsh_cpu_has_avx2_fma(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

int qsh_cpu_has_avx512f(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
#else
    return 0;
#endif
}

void qsh_prefer_passive_openmp_waiting(char **argv) {
    if (argv == 0 || argv[0] == 0 || getenv("OMP_WAIT_POLICY") != 0) return;
    if (setenv("OMP_WAIT_POLICY", "passive", 1) != 0) return;
    execv("/proc/self/exe", argv);
    /* No /proc (or exec refused): run on with the default policy. */
}
