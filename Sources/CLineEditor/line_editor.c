#include "CLineEditor.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <readline/readline.h>
#include <readline/history.h>
#include <CShims.h>

static char fresh_prompt[256] = "qsh> ";
static volatile int abandoned = 0;

static void abandon_line(void) {
    abandoned = 1;
    rl_free_line_state();
    rl_replace_line("", 0);
    rl_set_prompt(fresh_prompt);
    rl_crlf();
    rl_on_new_line();
    rl_redisplay();
}

static qsh_completion_generator host_generator = NULL;

static char *generator_trampoline(const char *text, int state) {
    if (!host_generator) return NULL;
    return host_generator(text, state);
}

static char **complete(const char *text, int start, int end) {
    (void)start; (void)end;
    rl_attempted_completion_over = 1; /* never fall back to file names */
    return rl_completion_matches(text, generator_trampoline);
}

void qsh_readline_configure(const char *app_name) {
    rl_readline_name = app_name;
    rl_catch_signals = 0;
    rl_attempted_completion_function = complete;
    rl_basic_word_break_characters = " \t\n=;,{}";
}

void qsh_readline_set_prompt_open(int open) {
    qsh_set_prompt_interrupt_handler(open ? abandon_line : 0);
}
void qsh_readline_set_completer(qsh_completion_generator generator) { host_generator = generator; }
const char *qsh_readline_line_buffer(void) { return rl_line_buffer ? rl_line_buffer : ""; }
int qsh_readline_point(void) { return rl_point; }

void qsh_readline_set_fresh_prompt(const char *prompt) {
    strncpy(fresh_prompt, prompt, sizeof fresh_prompt - 1);
    fresh_prompt[sizeof fresh_prompt - 1] = 0;
}

int qsh_readline_take_abandoned(void) {
    int value = abandoned;
    abandoned = 0;
    return value;
}
