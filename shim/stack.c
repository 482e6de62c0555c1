/* Call stacks for flagged lines (see include/stack.h). */
#include "stack.h"

#include <dlfcn.h>
#include <execinfo.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

#include "guard.h"

static void *own_base; /* the shim's load address: its frames are left out */
/* The loader names the main program as it was started (argv[0], maybe a
 * relative path): frames of an object named without a '/' at the start
 * are the main program's, named by its absolute path instead. */
static char exe_path[4096];

void stack_warm_up(void)
{
    void *frames[2];
    Dl_info info;
    backtrace(frames, 2);
    if (dladdr((void *)stack_warm_up, &info))
        own_base = info.dli_fbase;
    ssize_t n = readlink("/proc/self/exe", exe_path, sizeof exe_path - 1);
    exe_path[n > 0 ? n : 0] = '\0';
}

void stack_capture(struct stack *stack)
{
    stack->count = backtrace(stack->frames, STACK_MAX_FRAMES);
}

void logline_stack(struct logline *line, const char *key, const struct stack *stack)
{
    char text[STACK_MAX_FRAMES][320]; /* 5 KiB of stack; a path past 220 bytes is cut */
    const char *frames[STACK_MAX_FRAMES];
    int count = 0;
    if (!line->active)
        return;
    for (int i = 0; i < stack->count; i++) {
        Dl_info info;
        /* A return address: the call itself is the byte before it. */
        uintptr_t pc = (uintptr_t)stack->frames[i] - 1;
        if (!dladdr((void *)pc, &info) || !info.dli_fname) {
            snprintf(text[count], sizeof text[count], "?+0x%lx", (unsigned long)pc);
        } else if (info.dli_fbase == own_base) {
            continue;
        } else {
            unsigned long offset = (unsigned long)(pc - (uintptr_t)info.dli_fbase);
            const char *object =
                info.dli_fname[0] == '/' || !exe_path[0] ? info.dli_fname : exe_path;
            if (info.dli_sname)
                snprintf(text[count], sizeof text[count], "%.220s+0x%lx (%.80s)", object, offset,
                         info.dli_sname);
            else
                snprintf(text[count], sizeof text[count], "%.220s+0x%lx", object, offset);
        }
        frames[count] = text[count];
        count++;
    }
    json_line_strings(&line->json, key, frames, (unsigned)count);
}
