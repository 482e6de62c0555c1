/* Helpers shared by the demo servers and clients.
 *
 * The demos are tiny on purpose: each reproduces one way a server makes
 * its peer see an RST, so that `make demo` can show what the client saw
 * next to what rstshim logged. Everything runs on 127.0.0.1. */
#ifndef RSTSHIM_DEMO_COMMON_H
#define RSTSHIM_DEMO_COMMON_H

#include <stddef.h>

/* Narration, one line each, flushed at once (stdout is a file under the
 * demo runner, and servers may be killed). */
void say(const char *who, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* perror-like, then exit(1): a demo that cannot set itself up says so. */
void die(const char *what) __attribute__((noreturn));

double now_s(void);
void sleep_ms(int ms);

/* Listening socket on 127.0.0.1, kernel-chosen port; prints "PORT n" as the
 * first line of stdout, which the demo runner waits for. */
int listen_local(int backlog);
/* Blocking connect to 127.0.0.1:port, or -1 with errno. */
int connect_local(int port);

/* recv/send once and describe the result the way a user would see it:
 * "recv: 25 bytes \"HTTP/1.0 200 OK\"", "recv: Connection reset by peer". */
int show_recv(const char *who, int fd); /* returns recv()'s result */
void show_send(const char *who, int fd, const char *data);
/* Wait up to ms for fd to become readable; returns 1 readable, 0 timeout. */
int wait_readable(int fd, int ms);

#endif
