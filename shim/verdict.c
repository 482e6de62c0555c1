/* The verdict at close: which flags, and whether the kernel sends RST now.
 *
 * These rules follow what the kernel's tcp_close() does (and what
 * ../shared/KERNEL-FACTS.md measured): unread bytes in the receive queue
 * turn the FIN into an RST; SO_LINGER {1,0} aborts the connection in the
 * states where tcp_disconnect() sends one; a listener's close resets every
 * completed connection still queued.  A socket already reset by its peer
 * (state CLOSE) sends nothing, whatever it had. */
#include "verdict.h"

#include <netinet/tcp.h>
#include <stddef.h>

#include "guard.h"

static const char *const flag_names[FLAG_COUNT] = {
    "unread_data", "linger_zero", "immediate_close", "recv_timeout", "pending_connections", "shared",
    "tcp_linger2",
};

const char *verdict_flag_name(unsigned bit_index)
{
    return bit_index < FLAG_COUNT ? flag_names[bit_index] : NULL;
}

/* The RST causes: a close that sends no RST must not name one (SPEC). */
#define RST_CAUSES \
    (FLAG_UNREAD_DATA | FLAG_LINGER_ZERO | FLAG_PENDING_CONNECTIONS | FLAG_TCP_LINGER2)

static bool state_unknown(int state) { return state < 0; }

/* tcp_disconnect() sends RST from these states (tcp_need_reset()), and
 * from CLOSING and LAST_ACK while something (data, or the FIN itself) is
 * still queued unsent (snd_nxt != write_seq). */
static bool linger_zero_resets(int state, long long notsent)
{
    if ((state == TCP_CLOSING || state == TCP_LAST_ACK) && notsent > 0)
        return true;
    return state_unknown(state) || state == TCP_ESTABLISHED || state == TCP_CLOSE_WAIT ||
           state == TCP_FIN_WAIT1 || state == TCP_FIN_WAIT2 || state == TCP_SYN_RECV;
}

/* TCP_LINGER2 < 0: an orphan may not wait in FIN_WAIT2.  A close there
 * aborts at once (TCPAbortOnLinger); a close that still has its FIN to
 * send or to see acked (ESTABLISHED, SYN_RECV, FIN_WAIT1) aborts when the
 * peer's ACK of it comes: on loopback before close() returns, elsewhere a
 * round trip later, as sure as the peer is alive.  Measured on the wire
 * (scenarios linger2, linger2_close). */
static bool linger2_resets(int state)
{
    return state == TCP_ESTABLISHED || state == TCP_SYN_RECV || state == TCP_FIN_WAIT1 ||
           state == TCP_FIN_WAIT2;
}

/* Unread data resets unless the socket is already closed (reset by its peer). */
static bool unread_resets(int state)
{
    return state != TCP_CLOSE && state != TCP_LISTEN;
}

static bool is_linger_zero(const struct close_facts *f)
{
    return f->linger_onoff > 0 && f->linger_seconds == 0;
}

/* The peer can still send (and so draw an RST) only while we have not seen
 * its FIN: in CLOSE_WAIT it is done sending; in CLOSE it is gone. */
static bool peer_may_still_send(int state)
{
    return state_unknown(state) || state == TCP_ESTABLISHED || state == TCP_FIN_WAIT1 ||
           state == TCP_FIN_WAIT2 || state == TCP_SYN_RECV;
}

static bool is_immediate(const struct close_facts *f)
{
    return f->accepted && f->age_ms >= 0 && f->age_ms < f->immediate_ms && f->bytes_read == 0 &&
           f->bytes_written == 0 && peer_may_still_send(f->tcp_state);
}

struct close_verdict verdict_on_close(const struct close_facts *f)
{
    struct close_verdict v = {0, RST_NO};

    /* Not the last holder: nothing goes on the wire now; the last release
     * decides.  A dup we can count; another process we cannot see. */
    if (f->refs_left > 0) {
        v.flags = FLAG_SHARED;
        return v;
    }
    if (f->shared_with_process) {
        /* A socket already dead (reset by its peer) sends nothing whether
         * this release is the last or not: nothing to flag either way. */
        if (f->tcp_state == TCP_CLOSE)
            return v;
        v.flags = FLAG_SHARED;
        v.rst = RST_UNKNOWN;
        return v;
    }

    if (f->listener) {
        if (f->pending > 0)
            v.flags |= FLAG_PENDING_CONNECTIONS;
    } else {
        if (f->unread_bytes > 0 && unread_resets(f->tcp_state))
            v.flags |= FLAG_UNREAD_DATA;
        if (is_linger_zero(f) && linger_zero_resets(f->tcp_state, f->notsent_bytes))
            v.flags |= FLAG_LINGER_ZERO;
        if (f->linger2_abort && linger2_resets(f->tcp_state))
            v.flags |= FLAG_TCP_LINGER2;
        if (is_immediate(f))
            v.flags |= FLAG_IMMEDIATE_CLOSE;
        if (f->recv_timed_out && f->tcp_state != TCP_CLOSE)
            v.flags |= FLAG_RECV_TIMEOUT;
    }
    if (v.flags & RST_CAUSES)
        v.rst = RST_YES;
    return v;
}

struct close_verdict verdict_after_release(struct close_verdict shared,
                                           struct close_verdict if_last,
                                           enum release_outcome outcome)
{
    switch (outcome) {
    case RELEASE_HELD:
        shared.rst = RST_NO;
        return shared;
    case RELEASE_RESET:
        return if_last;
    case RELEASE_ORPHAN:
        /* It went out with a FIN: whatever would have reset it was gone
         * by then (the other process read the data, say). */
        if_last.flags &= ~RST_CAUSES;
        if_last.rst = RST_NO;
        return if_last;
    default:
        return shared;
    }
}

bool verdict_needs_tcp_info(const struct close_facts *f, bool app_read_or_wrote)
{
    if (f->refs_left > 0 || f->shared_with_process || f->listener)
        return false;
    /* The state decides whether unread data or linger 0 really reset. */
    if (f->unread_bytes > 0 || is_linger_zero(f) || f->linger2_abort)
        return true;
    /* immediate_close needs the byte counts, unless a wrapper saw traffic. */
    return f->accepted && !app_read_or_wrote && f->age_ms >= 0 && f->age_ms < f->immediate_ms;
}

unsigned verdict_on_linger(int onoff, int seconds)
{
    return onoff && seconds == 0 ? FLAG_LINGER_ZERO : 0;
}

const char *verdict_state_name(int state)
{
    switch (state) {
    case TCP_ESTABLISHED: return "ESTABLISHED";
    case TCP_SYN_SENT: return "SYN_SENT";
    case TCP_SYN_RECV: return "SYN_RECV";
    case TCP_FIN_WAIT1: return "FIN_WAIT1";
    case TCP_FIN_WAIT2: return "FIN_WAIT2";
    case TCP_TIME_WAIT: return "TIME_WAIT";
    case TCP_CLOSE: return "CLOSE";
    case TCP_CLOSE_WAIT: return "CLOSE_WAIT";
    case TCP_LAST_ACK: return "LAST_ACK";
    case TCP_LISTEN: return "LISTEN";
    case TCP_CLOSING: return "CLOSING";
    default: return NULL;
    }
}
