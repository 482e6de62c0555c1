/* RSTSHIM_STACK=1: where in the program a flagged close (or a SO_LINGER
 * {1,0}) happened, as "object+0xoffset (symbol)" frames.
 *
 * Captured with backtrace() into a fixed array (no allocation once glibc's
 * unwinder is loaded, which the constructor does); named with dladdr()
 * only when the line is written. */
#ifndef RSTSHIM_STACK_H
#define RSTSHIM_STACK_H

#include "log.h"

#define STACK_MAX_FRAMES 16

struct stack {
    int count;
    void *frames[STACK_MAX_FRAMES];
};

/* In the constructor, when RSTSHIM_STACK is on: backtrace()'s first call
 * loads libgcc_s (and allocates); later calls do not. */
void stack_warm_up(void);
void stack_capture(struct stack *stack);
/* "stack": [...] with the shim's own frames left out. */
void logline_stack(struct logline *line, const char *key, const struct stack *stack);

#endif
