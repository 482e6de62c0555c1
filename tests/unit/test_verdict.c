/* The verdict at close, case by case, as the kernel behaves (KERNEL-FACTS.md). */
#include <netinet/tcp.h>

#include "check.h"
#include "verdict.h"

/* A released, accepted, established connection, 5 s old, clean. */
static struct close_facts connection(void)
{
    struct close_facts f = {0};
    f.accepted = true;
    f.unread_bytes = 0;
    f.linger_onoff = 0;
    f.tcp_state = TCP_ESTABLISHED;
    f.pending = -1;
    f.age_ms = 5000;
    f.immediate_ms = 100;
    f.bytes_read = 10;
    f.bytes_written = 10;
    f.notsent_bytes = 0;
    return f;
}

static void clean_close(void)
{
    struct close_facts f = connection();
    struct close_verdict v = verdict_on_close(&f);
    CHECK(v.flags == 0);
    CHECK(v.rst == RST_NO);
}

static void unread_data(void)
{
    struct close_facts f = connection();
    f.unread_bytes = 7;
    struct close_verdict v = verdict_on_close(&f);
    CHECK(v.flags == FLAG_UNREAD_DATA);
    CHECK(v.rst == RST_YES);
    /* In CLOSE_WAIT (peer sent data and FIN) unread data still resets. */
    f.tcp_state = TCP_CLOSE_WAIT;
    CHECK(verdict_on_close(&f).rst == RST_YES);
    /* Already reset by the peer: nothing left to send. */
    f.tcp_state = TCP_CLOSE;
    v = verdict_on_close(&f);
    CHECK(v.flags == 0);
    CHECK(v.rst == RST_NO);
    /* State unknown: believe the unread bytes. */
    f.tcp_state = -1;
    CHECK(verdict_on_close(&f).rst == RST_YES);
}

static void linger_zero(void)
{
    struct close_facts f = connection();
    f.linger_onoff = 1;
    f.linger_seconds = 0;
    struct close_verdict v = verdict_on_close(&f);
    CHECK(v.flags == FLAG_LINGER_ZERO);
    CHECK(v.rst == RST_YES);
    f.tcp_state = TCP_CLOSE_WAIT;
    CHECK(verdict_on_close(&f).rst == RST_YES);
    f.tcp_state = TCP_FIN_WAIT2; /* after SHUT_WR: still an RST */
    CHECK(verdict_on_close(&f).rst == RST_YES);
    f.tcp_state = TCP_CLOSE;
    CHECK(verdict_on_close(&f).flags == 0);
    f.tcp_state = TCP_SYN_SENT; /* a connect still in progress is not reset */
    CHECK(verdict_on_close(&f).rst == RST_NO);
    /* CLOSING and LAST_ACK: an RST only while something (data, the FIN) is
     * still unsent (tcp_disconnect: snd_nxt != write_seq). */
    f.tcp_state = TCP_LAST_ACK;
    CHECK(verdict_on_close(&f).rst == RST_NO);
    f.notsent_bytes = 1;
    v = verdict_on_close(&f);
    CHECK(v.flags == FLAG_LINGER_ZERO && v.rst == RST_YES);
    f.tcp_state = TCP_CLOSING;
    CHECK(verdict_on_close(&f).rst == RST_YES);
    f.notsent_bytes = 0;
    CHECK(verdict_on_close(&f).flags == 0);
    f.notsent_bytes = -1; /* unknown: as the kernel does without unsent data */
    CHECK(verdict_on_close(&f).rst == RST_NO);
    f.tcp_state = TCP_FIN_WAIT1; /* after SHUT_WR, FIN not yet acked */
    CHECK(verdict_on_close(&f).rst == RST_YES);
    /* A positive linger is graceful. */
    f = connection();
    f.linger_onoff = 1;
    f.linger_seconds = 5;
    CHECK(verdict_on_close(&f).flags == 0);
    CHECK(verdict_on_linger(1, 0) == FLAG_LINGER_ZERO);
    CHECK(verdict_on_linger(1, 3) == 0);
    CHECK(verdict_on_linger(0, 0) == 0);
}

static void immediate_close(void)
{
    struct close_facts f = connection();
    f.age_ms = 3;
    f.bytes_read = 0;
    f.bytes_written = 0;
    struct close_verdict v = verdict_on_close(&f);
    CHECK(v.flags == FLAG_IMMEDIATE_CLOSE);
    CHECK(v.rst == RST_NO); /* a FIN now; the peer's next send draws the RST */
    f.age_ms = 100;         /* the threshold itself is not "within" */
    CHECK(verdict_on_close(&f).flags == 0);
    f.age_ms = 3;
    f.bytes_written = 1;
    CHECK(verdict_on_close(&f).flags == 0);
    f.bytes_written = -1; /* unknown bytes: never guess */
    CHECK(verdict_on_close(&f).flags == 0);
    f.bytes_written = 0;
    f.tcp_state = TCP_CLOSE_WAIT; /* the peer already finished sending */
    CHECK(verdict_on_close(&f).flags == 0);
    f.tcp_state = TCP_ESTABLISHED;
    f.accepted = false; /* connected sockets are never "immediate" */
    CHECK(verdict_on_close(&f).flags == 0);
    f.accepted = true;
    f.unread_bytes = 4; /* data arrived but was not read: both flags */
    f.bytes_read = 0;
    v = verdict_on_close(&f);
    CHECK(v.flags == (FLAG_UNREAD_DATA | FLAG_IMMEDIATE_CLOSE));
    CHECK(v.rst == RST_YES);
}

static void recv_timeout(void)
{
    struct close_facts f = connection();
    f.recv_timed_out = true;
    struct close_verdict v = verdict_on_close(&f);
    CHECK(v.flags == FLAG_RECV_TIMEOUT);
    CHECK(v.rst == RST_NO);
    f.unread_bytes = 2;
    v = verdict_on_close(&f);
    CHECK(v.flags == (FLAG_RECV_TIMEOUT | FLAG_UNREAD_DATA));
    CHECK(v.rst == RST_YES);
}

static void listener(void)
{
    struct close_facts f = {0};
    f.listener = true;
    f.unread_bytes = -1;
    f.linger_onoff = -1;
    f.tcp_state = TCP_LISTEN;
    f.age_ms = -1;
    f.pending = 3;
    f.immediate_ms = 100;
    struct close_verdict v = verdict_on_close(&f);
    CHECK(v.flags == FLAG_PENDING_CONNECTIONS);
    CHECK(v.rst == RST_YES);
    f.pending = 0;
    v = verdict_on_close(&f);
    CHECK(v.flags == 0);
    CHECK(v.rst == RST_NO);
    CHECK(!verdict_needs_tcp_info(&f, false)); /* the caller asks TCP_INFO for pending itself */
}

static void shared(void)
{
    struct close_facts f = connection();
    f.unread_bytes = 100;
    f.refs_left = 1; /* a dup is still open */
    struct close_verdict v = verdict_on_close(&f);
    CHECK(v.flags == FLAG_SHARED);
    CHECK(v.rst == RST_NO);
    f.refs_left = 0;
    f.shared_with_process = true; /* a forked child may hold it: cannot know */
    v = verdict_on_close(&f);
    CHECK(v.flags == FLAG_SHARED);
    CHECK(v.rst == RST_UNKNOWN);
    f.tcp_state = TCP_CLOSE; /* already reset by the peer: nothing to send, last or not */
    v = verdict_on_close(&f);
    CHECK(v.flags == 0);
    CHECK(v.rst == RST_NO);
}

/* TCP_LINGER2 < 0: the orphan may not wait in FIN_WAIT2: a close that has
 * sent or will send its FIN resets (at once in FIN_WAIT2, at the peer's ACK
 * otherwise); after the peer's FIN (CLOSE_WAIT) it changes nothing. */
static void linger2(void)
{
    struct close_facts f = connection();
    f.linger2_abort = true;
    CHECK(verdict_needs_tcp_info(&f, true)); /* the state decides */
    f.tcp_state = TCP_FIN_WAIT2;
    struct close_verdict v = verdict_on_close(&f);
    CHECK(v.flags == FLAG_TCP_LINGER2 && v.rst == RST_YES);
    f.tcp_state = TCP_ESTABLISHED;
    CHECK(verdict_on_close(&f).flags == FLAG_TCP_LINGER2);
    f.tcp_state = TCP_FIN_WAIT1;
    CHECK(verdict_on_close(&f).rst == RST_YES);
    f.tcp_state = TCP_CLOSE_WAIT; /* the peer closed first: LAST_ACK, no FIN_WAIT2 */
    CHECK(verdict_on_close(&f).flags == 0);
    f.tcp_state = TCP_CLOSE;
    CHECK(verdict_on_close(&f).rst == RST_NO);
    f.tcp_state = TCP_FIN_WAIT2;
    f.linger2_abort = false;
    CHECK(verdict_on_close(&f).rst == RST_NO);
}

/* A shared socket's close, settled by the kernel afterwards. */
static void after_release(void)
{
    struct close_verdict shared = {FLAG_SHARED, RST_UNKNOWN};
    struct close_verdict if_last = {FLAG_UNREAD_DATA | FLAG_IMMEDIATE_CLOSE, RST_YES};
    struct close_verdict v = verdict_after_release(shared, if_last, RELEASE_HELD);
    CHECK(v.flags == FLAG_SHARED && v.rst == RST_NO);
    v = verdict_after_release(shared, if_last, RELEASE_RESET);
    CHECK(v.flags == (FLAG_UNREAD_DATA | FLAG_IMMEDIATE_CLOSE) && v.rst == RST_YES);
    /* A FIN went out: no RST cause may be named (the data was read elsewhere). */
    v = verdict_after_release(shared, if_last, RELEASE_ORPHAN);
    CHECK(v.flags == FLAG_IMMEDIATE_CLOSE && v.rst == RST_NO);
    v = verdict_after_release(shared, if_last, RELEASE_UNKNOWN);
    CHECK(v.flags == FLAG_SHARED && v.rst == RST_UNKNOWN);
}

static void tcp_info_only_when_needed(void)
{
    struct close_facts f = connection();
    CHECK(!verdict_needs_tcp_info(&f, true));
    f.unread_bytes = 1;
    CHECK(verdict_needs_tcp_info(&f, true));
    f = connection();
    f.age_ms = 2;
    CHECK(verdict_needs_tcp_info(&f, false)); /* immediate_close candidate */
    CHECK(!verdict_needs_tcp_info(&f, true)); /* a wrapper saw traffic */
    f.refs_left = 1;
    f.unread_bytes = 9;
    CHECK(!verdict_needs_tcp_info(&f, false));
}

static void names(void)
{
    CHECK_STR(verdict_flag_name(0), "unread_data");
    CHECK_STR(verdict_flag_name(4), "pending_connections");
    CHECK_STR(verdict_flag_name(5), "shared");
    CHECK_STR(verdict_flag_name(6), "tcp_linger2");
    CHECK(verdict_flag_name(FLAG_COUNT) == NULL);
    CHECK_STR(verdict_state_name(TCP_CLOSE_WAIT), "CLOSE_WAIT");
    CHECK(verdict_state_name(99) == NULL);
}

void test_verdict(void)
{
    clean_close();
    unread_data();
    linger_zero();
    immediate_close();
    recv_timeout();
    listener();
    shared();
    after_release();
    linger2();
    tcp_info_only_when_needed();
    names();
}
