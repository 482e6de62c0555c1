/* A minimal check harness: every CHECK counts as one test. */
#ifndef RSTSHIM_CHECK_H
#define RSTSHIM_CHECK_H

#include <stdio.h>
#include <string.h>

extern int checks_passed, checks_failed;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (cond) {                                                                                \
            checks_passed++;                                                                       \
        } else {                                                                                   \
            checks_failed++;                                                                       \
            printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                                 \
        }                                                                                          \
    } while (0)

#define CHECK_STR(got, want)                                                                       \
    do {                                                                                           \
        const char *got_ = (got), *want_ = (want);                                                 \
        if (got_ && want_ && !strcmp(got_, want_)) {                                               \
            checks_passed++;                                                                       \
        } else {                                                                                   \
            checks_failed++;                                                                       \
            printf("FAIL %s:%d: %s is \"%s\", want \"%s\"\n", __FILE__, __LINE__, #got,            \
                   got_ ? got_ : "(null)", want_ ? want_ : "(null)");                              \
        }                                                                                          \
    } while (0)

void test_verdict(void);
void test_format(void);
void test_config(void);
void test_json_line(void);
void test_netstat(void);
void test_reads(void);
void test_seen(void);
void test_forks(void);

#endif
