/* The real libc functions behind every interposed symbol.
 *
 * They are resolved once, with dlsym(RTLD_NEXT), in the library's constructor
 * (shim/init.c).  A call that arrives before it (another library's
 * constructor) goes through REAL(), which resolves that one symbol on the
 * spot and passes the call straight through. */
#ifndef RSTSHIM_REAL_H
#define RSTSHIM_REAL_H

#include <stdio.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <pthread.h>
#include <spawn.h>

struct real_functions {
    int (*socket)(int, int, int);
    int (*connect)(int, const struct sockaddr *, socklen_t);
    int (*listen)(int, int);
    int (*accept)(int, struct sockaddr *, socklen_t *);
    int (*accept4)(int, struct sockaddr *, socklen_t *, int);
    int (*close)(int);
    int (*close_range)(unsigned int, unsigned int, int);
    void (*closefrom)(int);
    int (*dup)(int);
    int (*dup2)(int, int);
    int (*dup3)(int, int, int);
    int (*fcntl)(int, int, ...);
    int (*fcntl64)(int, int, ...);
    int (*setsockopt)(int, int, int, const void *, socklen_t);
    int (*shutdown)(int, int);
    ssize_t (*recv)(int, void *, size_t, int);
    ssize_t (*recvfrom)(int, void *, size_t, int, struct sockaddr *, socklen_t *);
    ssize_t (*recvmsg)(int, struct msghdr *, int);
    ssize_t (*read)(int, void *, size_t);
    ssize_t (*readv)(int, const struct iovec *, int);
    ssize_t (*__recv_chk)(int, void *, size_t, size_t, int);
    ssize_t (*__recvfrom_chk)(int, void *, size_t, size_t, int, struct sockaddr *, socklen_t *);
    ssize_t (*__read_chk)(int, void *, size_t, size_t);
    ssize_t (*send)(int, const void *, size_t, int);
    ssize_t (*sendto)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
    ssize_t (*sendmsg)(int, const struct msghdr *, int);
    ssize_t (*write)(int, const void *, size_t);
    ssize_t (*writev)(int, const struct iovec *, int);
    int (*fclose)(FILE *);
    pid_t (*fork)(void);
    int (*execve)(const char *, char *const[], char *const[]);
    int (*execv)(const char *, char *const[]);
    int (*execvp)(const char *, char *const[]);
    int (*execvpe)(const char *, char *const[], char *const[]);
    int (*fexecve)(int, char *const[], char *const[]);
    int (*posix_spawn)(pid_t *, const char *, const posix_spawn_file_actions_t *,
                       const posix_spawnattr_t *, char *const[], char *const[]);
    int (*posix_spawnp)(pid_t *, const char *, const posix_spawn_file_actions_t *,
                        const posix_spawnattr_t *, char *const[], char *const[]);
    void (*_exit)(int);
    void (*_Exit)(int);
    int (*prctl)(int, ...);
    int (*pthread_setname_np)(pthread_t, const char *);
};

extern struct real_functions real;

/* Fills `real` in the constructor. */
void real_resolve(void);

/* Resolves one symbol for a call that arrives before the constructor ran
 * (another library's constructor); the slot is filled for later calls. */
void *real_resolve_one(void **slot, const char *name);

/* REAL(close)(fd): the real function, resolved now if the constructor has
 * not run yet.  After initialisation this is one predictable branch. */
#define REAL(name)                                                             \
    (__builtin_expect(real.name != NULL, 1)                                    \
         ? real.name                                                           \
         : (__typeof__(real.name))real_resolve_one((void **)&real.name, #name))

#endif
