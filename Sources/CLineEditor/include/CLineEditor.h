#ifndef QSH_CLINEEDITOR_H
#define QSH_CLINEEDITOR_H

/* GNU readline set-up that Swift cannot express directly: its globals and callbacks. */
void qsh_readline_configure(const char *app_name);
/* While a prompt is open, Ctrl-C abandons the line being typed instead of interrupting. */
void qsh_readline_set_prompt_open(int open);
/* The prompt Ctrl-C returns to after abandoning a continuation line. */
void qsh_readline_set_fresh_prompt(const char *prompt);
/* Whether Ctrl-C abandoned input since the last call; clears the mark. */
int qsh_readline_take_abandoned(void);
/* Completion: the host supplies candidates for the word being completed. */
typedef char *(*qsh_completion_generator)(const char *text, int state);
void qsh_readline_set_completer(qsh_completion_generator generator);
/* The line typed so far and the cursor, so completion can see the command and option. */
const char *qsh_readline_line_buffer(void);
int qsh_readline_point(void);

#endif
