/* setsockopt: the options that decide how a close ends. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "guard.h"
#include "lifecycle.h"
#include "process.h"
#include "real.h"

#ifndef SO_RCVTIMEO_NEW
#define SO_RCVTIMEO_NEW 66
#endif
#ifndef SO_RCVTIMEO_OLD
#define SO_RCVTIMEO_OLD 20
#endif

static void after_linger(int fd, struct socket_record *rec, const void *value, socklen_t len)
{
    if (!value || len < (socklen_t)sizeof(struct linger))
        return;
    const struct linger *lg = value;
    rec->linger_onoff = lg->l_onoff ? 1 : 0;
    rec->linger_seconds = lg->l_linger;
    event_linger(fd, rec, lg->l_onoff, lg->l_linger);
}

/* On x86-64 both the old and the new option take a 64-bit seconds and
 * microseconds pair, laid out as struct timeval. */
static void after_rcvtimeo(int fd, struct socket_record *rec, const void *value, socklen_t len)
{
    if (!value || len < (socklen_t)sizeof(struct timeval))
        return;
    const struct timeval *tv = value;
    /* {0,0} turns the timeout off; a negative one is taken by the kernel as
     * "no wait at all": a blocking receive then gives up at once. */
    rec->rcvtimeo_set = tv->tv_sec != 0 || tv->tv_usec != 0;
    event_rcvtimeo(fd, rec, (long long)tv->tv_sec * 1000 + tv->tv_usec / 1000);
}

/* TCP_LINGER2: how long an orphan waits in FIN_WAIT2; negative: not at all,
 * its close is an RST. */
static void after_linger2(int fd, struct socket_record *rec, const void *value, socklen_t len)
{
    if (!value || len < (socklen_t)sizeof(int))
        return;
    int seconds = *(const int *)value;
    rec->linger2_abort = seconds < 0;
    event_linger2(fd, rec, seconds);
}

static bool is_tracked_option(int level, int name)
{
    if (level == SOL_SOCKET)
        return name == SO_LINGER || name == SO_RCVTIMEO_OLD || name == SO_RCVTIMEO_NEW;
    return level == IPPROTO_TCP && name == TCP_LINGER2;
}

/* RSTSHIM_FIX=linger: SO_LINGER {1,0} on a tracked socket is not passed to
 * the kernel (the close stays graceful); the call reports success. */
static bool ignore_linger_zero(int fd, int level, int name, const void *value, socklen_t len)
{
    if (!shim_config.fix_linger || level != SOL_SOCKET || name != SO_LINGER || !value ||
        len < (socklen_t)sizeof(struct linger) || !fdtab_get(fd))
        return false;
    const struct linger *lg = value;
    if (!lg->l_onoff || lg->l_linger != 0 || !guard_enter())
        return false;
    int saved = errno;
    event_linger_ignored(fd, fdtab_get(fd));
    guard_leave();
    errno = saved;
    return true;
}

SHIM_EXPORT int setsockopt(int fd, int level, int name, const void *value, socklen_t len)
{
    if (SHIM_UNLIKELY(ignore_linger_zero(fd, level, name, value, len)))
        return 0;
    int ret = REAL(setsockopt)(fd, level, name, value, len);
    if (ret != 0 || !is_tracked_option(level, name) || !guard_enter())
        return ret;
    int saved = errno;
    struct socket_record *rec = fdtab_get(fd);
    if (rec && level == IPPROTO_TCP)
        after_linger2(fd, rec, value, len);
    else if (rec && name == SO_LINGER)
        after_linger(fd, rec, value, len);
    else if (rec)
        after_rcvtimeo(fd, rec, value, len);
    guard_leave();
    errno = saved;
    return ret;
}
