/* soak_agent.c - the shared-memory side of the soak test
 * (tests/stress/soak_test.py): one libatomq agent that, for as long as the
 * test runs, publishes and subscribes, sends to, fetches from and acks
 * mailboxes shared with NATS and datagram clients, answers NATS requests,
 * and creates and destroys mailboxes and dataplane channels.
 *
 *      soak_agent CONTROL_SOCKET
 *
 * It talks to the test on its standard streams, one line each:
 *   out "ready"                      subscribed; the test may start its load
 *   in  "stop"                       stop producing (publishes, sends, churn)
 *   out "stopped pub=N aa=N an=N"    everything produced, flushed and acked
 *   in  "drain"                      fetch the mailboxes until they are empty
 *   out "report key=value ..."       what was received, then exit 0
 * Any failed call is a line on stderr and exit status 1.
 *
 * Payloads carry sequence numbers: "N 17" is the 18th broadcast of the
 * NATS publisher (sources N, U, A: NATS, datagrams, this agent); a mailbox
 * message is its producer's sequence number in that mailbox, in decimal.
 */
#include <atomq/atomq.h>
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SID_BCAST 1
#define SID_RR 2
#define SID_CH0 3
#define SID_CH1 4
#define PUB_BURST 4           /* broadcasts per loop pass */
#define FETCH_MAX 16
#define RECV_MAX 512          /* deliveries taken per loop pass */
#define PASS_NS 2000000ll     /* a pass every 2 ms at most: moderate load */
#define DRAIN_QUIET_NS 1500000000ll /* no delivery for this long: all in */
#define DRAIN_MAX_NS 30000000000ll  /* a drain that takes longer has failed */
#define SEQ_MAX (1u << 24)    /* a bound on sequence numbers we track */

static const char *const bc_src = "NUA"; /* broadcast sources, in this order */

/* What one consumed mailbox gave: a bitmap of producer sequence numbers. */
struct mbox {
        const char *name;
        uint64_t h;
        uint8_t *seen;
        uint32_t cap;       /* bytes of seen */
        uint64_t got, dups, redelivered;
};

/* One broadcast source as seen by our subscription. */
struct bsrc {
        uint64_t got, next, reorder, idx_sum;
};

static struct {
        struct atomq *a;
        struct mbox in[3];  /* mailboxes we consume: aa, na, ua */
        uint64_t aa_h, an_h;
        uint64_t pub, aa_sent, an_sent;
        struct bsrc bc[3];
        uint64_t bc_other, replies, churn_mbox, churn_chan;
        bool producing;
} s;

static int64_t now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

static void die(const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "soak_agent: ");
        vfprintf(stderr, fmt, ap);
        fprintf(stderr, "\n");
        va_end(ap);
        exit(1);
}

/* rc must be want; else the call's name and the error end the agent. */
static void must(int rc, int want, const char *what)
{
        if (rc != want)
                die("%s: %d (%s), want %d", what, rc, atomq_strerror(rc), want);
}

static void mbox_mark(struct mbox *m, uint64_t seq)
{
        if (seq >= SEQ_MAX)
                die("%s: sequence number %llu beyond the bound", m->name,
                    (unsigned long long)seq);
        uint32_t byte = (uint32_t)(seq / 8);
        if (byte >= m->cap) {
                uint32_t cap = m->cap != 0 ? m->cap : 4096;
                while (cap <= byte)
                        cap *= 2;
                m->seen = realloc(m->seen, cap);
                if (m->seen == NULL)
                        die("out of memory");
                memset(m->seen + m->cap, 0, cap - m->cap);
                m->cap = cap;
        }
        uint8_t bit = (uint8_t)(1u << (seq % 8));
        if (m->seen[byte] & bit)
                m->dups++;
        m->seen[byte] |= bit;
        m->got++;
}

static uint64_t parse_u64(const void *data, uint32_t len, const char *what)
{
        char buf[24];
        if (len == 0 || len >= sizeof(buf))
                die("%s: a payload of %u bytes", what, len);
        memcpy(buf, data, len);
        buf[len] = 0;
        char *end;
        unsigned long long v = strtoull(buf, &end, 10);
        if (*end != 0)
                die("%s: payload '%s' is not a number", what, buf);
        return v;
}

/* Fetches up to FETCH_MAX from m and acks each; returns how many came. */
static int mbox_consume(struct mbox *m)
{
        struct atomq_batch b;
        struct atomq_delivery d;
        uint64_t seqs[FETCH_MAX];
        int n = 0, rc = atomq_fetch(s.a, m->h, NULL, 0, FETCH_MAX, &b);
        if (rc < 0)
                die("fetch %s: %s", m->name, atomq_strerror(rc));
        /* The batch is borrowed until the next call: read it all first. */
        while (n < rc && atomq_batch_next(&b, &d) == 1) {
                mbox_mark(m, parse_u64(d.data, d.len, m->name));
                m->redelivered += (d.flags & ATOMQ_DELIVERY_F_REDELIVERY) != 0;
                seqs[n++] = d.seq;
        }
        if (n != rc)
                die("fetch %s: %d messages announced, %d in the batch", m->name, rc, n);
        atomq_batch_release(s.a, &b);
        for (int i = 0; i < n; i++)
                must(atomq_ack(s.a, m->h, seqs[i]), 0, "ack");
        return n;
}

static int send_seq(uint64_t h, uint64_t seq)
{
        char buf[24];
        int len = snprintf(buf, sizeof(buf), "%llu", (unsigned long long)seq);
        return atomq_send(s.a, h, NULL, NULL, buf, (uint32_t)len, NULL, NULL);
}

static void produce(void)
{
        for (int i = 0; i < PUB_BURST; i++) {
                char buf[32];
                int len = snprintf(buf, sizeof(buf), "A %llu", (unsigned long long)s.pub);
                must(atomq_publish(s.a, "soak.bc.agent", buf, (uint32_t)len, NULL), 0,
                     "publish");
                s.pub++;
        }
        must(send_seq(s.aa_h, s.aa_sent), 0, "send soak.mb.aa");
        s.aa_sent++;
        must(send_seq(s.an_h, s.an_sent), 0, "send soak.mb.an");
        s.an_sent++;
}

/* A mailbox made, used and destroyed with a message still in it; named
 * and anonymous by turns. */
static void churn_mailbox(void)
{
        char name[48];
        uint64_t h, seq;
        struct atomq_batch b;
        struct atomq_delivery d;
        snprintf(name, sizeof(name), "soak.ach.%llu", (unsigned long long)s.churn_mbox);
        bool named = s.churn_mbox++ % 2 == 0;
        must(atomq_create(s.a, ATOMQ_MODE_MAILBOX, named ? name : NULL, NULL, &h), 0,
             "churn create");
        must(atomq_send(s.a, h, NULL, NULL, "one", 3, NULL, NULL), 0, "churn send");
        must(atomq_send(s.a, h, NULL, NULL, "two", 3, NULL, NULL), 0, "churn send");
        must(atomq_fetch(s.a, h, NULL, 0, 1, &b), 1, "churn fetch");
        must(atomq_batch_next(&b, &d), 1, "churn batch");
        if (d.len != 3 || memcmp(d.data, "one", 3) != 0)
                die("churn mailbox gave '%.*s', want 'one'", (int)d.len, (const char *)d.data);
        seq = d.seq;
        atomq_batch_release(s.a, &b);
        must(atomq_ack(s.a, h, seq), 0, "churn ack");
        must(atomq_destroy(s.a, h, NULL), 0, "churn destroy");
        must(atomq_send(s.a, h, NULL, NULL, "late", 4, NULL, NULL), -ESTALE, "send after destroy");
}

/* A dataplane channel with both ends held by us: one message each way,
 * then both ends leave and the channel goes with the last. */
static void churn_channel(void)
{
        char name[48];
        uint64_t h, found;
        struct atomq_batch b;
        struct atomq_delivery d;
        struct atomq_msg_opts o0 = { .end = 1, .storage = -1 }, o1 = { .end = 2, .storage = -1 };
        snprintf(name, sizeof(name), "soak.achan.%llu", (unsigned long long)s.churn_chan++);
        must(atomq_create(s.a, ATOMQ_MODE_CHANNEL, name, NULL, &h), 0, "channel create");
        must(atomq_watch(s.a, h, NULL, SID_CH0, 1, 0), 0, "channel hold end 0");
        must(atomq_watch(s.a, h, NULL, SID_CH1, 1, 1), 0, "channel hold end 1");
        must(atomq_send(s.a, h, NULL, NULL, "a2b", 3, &o0, NULL), 0, "channel send 0");
        must(atomq_send(s.a, h, NULL, NULL, "b2a", 3, &o1, NULL), 0, "channel send 1");
        must(atomq_fetch(s.a, h, NULL, 2, FETCH_MAX, &b), 1, "channel fetch end 1");
        must(atomq_batch_next(&b, &d), 1, "channel batch");
        if (d.len != 3 || memcmp(d.data, "a2b", 3) != 0)
                die("channel end 1 took '%.*s'", (int)d.len, (const char *)d.data);
        atomq_batch_release(s.a, &b);
        must(atomq_fetch(s.a, h, NULL, 1, FETCH_MAX, &b), 1, "channel fetch end 0");
        atomq_batch_release(s.a, &b);
        must(atomq_unwatch(s.a, h, NULL, SID_CH0), 0, "channel leave end 0");
        must(atomq_unwatch(s.a, h, NULL, SID_CH1), 0, "channel leave end 1");
        must(atomq_lookup(s.a, name, &found), -ENOENT, "lookup of a channel with no party");
}

static void on_broadcast(const struct atomq_delivery *d)
{
        char buf[32];
        const char *src = NULL;
        if (d->len >= 3 && d->len < sizeof(buf))
                src = strchr(bc_src, ((const char *)d->data)[0]);
        if (src == NULL || ((const char *)d->data)[1] != ' ') {
                s.bc_other++;
                return;
        }
        struct bsrc *b = &s.bc[src - bc_src];
        uint64_t idx = parse_u64((const char *)d->data + 2, d->len - 2, "broadcast");
        /* Order per publisher is promised: an index below the next one
         * expected is a copy or a reordering. */
        if (idx < b->next)
                b->reorder++;
        else
                b->next = idx + 1;
        b->got++;
        b->idx_sum += idx;
}

static void on_request(const struct atomq_delivery *d)
{
        char buf[64];
        if (d->len > sizeof(buf) - 3)
                die("request of %u bytes", d->len);
        memcpy(buf, "re:", 3);
        memcpy(buf + 3, d->data, d->len);
        must(atomq_reply(s.a, d, buf, d->len + 3), 0, "reply");
        s.replies++;
}

/* Takes what waits (at most RECV_MAX); returns how many. */
static int deliveries(void)
{
        struct atomq_delivery d;
        int n = 0, rc;
        while (n < RECV_MAX && (rc = atomq_recv(s.a, &d, 0)) == 1) {
                if (d.sid == SID_BCAST)
                        on_broadcast(&d);
                else if (d.sid == SID_RR)
                        on_request(&d);
                else
                        die("a delivery for sid %u", d.sid);
                n++;
        }
        if (n < RECV_MAX && rc != -EAGAIN)
                die("recv: %s", atomq_strerror(rc));
        atomq_release(s.a);
        return n;
}

/* A line from the test, if one waits: 1 "stop", 2 "drain", 0 none. */
static int command(void)
{
        struct pollfd p = { .fd = 0, .events = POLLIN };
        char line[64];
        if (poll(&p, 1, 0) != 1)
                return 0;
        if (fgets(line, sizeof(line), stdin) == NULL)
                die("the test closed our standard input");
        if (strcmp(line, "stop\n") == 0)
                return 1;
        if (strcmp(line, "drain\n") == 0)
                return 2;
        die("unknown command '%s'", line);
        return 0;
}

static void pace(int64_t pass_start)
{
        int64_t left = PASS_NS - (now_ns() - pass_start);
        if (left > 0)
                nanosleep(&(struct timespec){ .tv_nsec = left }, NULL);
}

static void run(void)
{
        for (uint64_t pass = 0;; pass++) {
                int64_t t0 = now_ns();
                int cmd = command();
                if (cmd == 2)
                        die("drain before stop");
                if (cmd == 1) {
                        must(atomq_flush(s.a), 0, "flush");
                        printf("stopped pub=%llu aa=%llu an=%llu\n", (unsigned long long)s.pub,
                               (unsigned long long)s.aa_sent, (unsigned long long)s.an_sent);
                        fflush(stdout);
                        return;
                }
                produce();
                if (pass % 8 == 0)
                        churn_mailbox();
                if (pass % 32 == 0)
                        churn_channel();
                for (int i = 0; i < 3; i++)
                        mbox_consume(&s.in[i]);
                deliveries();
                pace(t0);
        }
}

/* After "drain": every mailbox until it is empty, and deliveries until
 * none came for DRAIN_QUIET_NS (the publishers have stopped). */
static void drain(void)
{
        while (command() != 2)
                if (deliveries() == 0)
                        nanosleep(&(struct timespec){ .tv_nsec = 1000000 }, NULL);
        int64_t start = now_ns(), quiet_since = start;
        for (;;) {
                int got = deliveries();
                for (int i = 0; i < 3; i++)
                        got += mbox_consume(&s.in[i]);
                if (got != 0)
                        quiet_since = now_ns();
                else if (now_ns() - quiet_since > DRAIN_QUIET_NS)
                        return;
                if (now_ns() - start > DRAIN_MAX_NS)
                        die("still receiving after %lld s of drain", DRAIN_MAX_NS / 1000000000ll);
                if (got == 0)
                        nanosleep(&(struct timespec){ .tv_nsec = 1000000 }, NULL);
        }
}

/* The highest sequence number + 1 seen in m, with every one below it
 * seen: the count of an unbroken run from 0. */
static uint64_t mbox_contiguous(const struct mbox *m)
{
        uint64_t n = 0;
        while (n / 8 < m->cap && (m->seen[n / 8] & (1u << (n % 8))))
                n++;
        return n;
}

static void report(void)
{
        printf("report dropped=%llu replies=%llu bc_other=%llu churn_mbox=%llu churn_chan=%llu",
               (unsigned long long)atomq_dropped(s.a), (unsigned long long)s.replies,
               (unsigned long long)s.bc_other, (unsigned long long)s.churn_mbox,
               (unsigned long long)s.churn_chan);
        for (int i = 0; i < 3; i++)
                printf(" bc_%c_got=%llu bc_%c_next=%llu bc_%c_reorder=%llu bc_%c_sum=%llu",
                       bc_src[i], (unsigned long long)s.bc[i].got, bc_src[i],
                       (unsigned long long)s.bc[i].next, bc_src[i],
                       (unsigned long long)s.bc[i].reorder, bc_src[i],
                       (unsigned long long)s.bc[i].idx_sum);
        for (int i = 0; i < 3; i++) {
                const struct mbox *m = &s.in[i];
                const char *k = m->name + strlen("soak.mb.");
                printf(" %s_got=%llu %s_dups=%llu %s_redelivered=%llu %s_contiguous=%llu", k,
                       (unsigned long long)m->got, k, (unsigned long long)m->dups, k,
                       (unsigned long long)m->redelivered, k,
                       (unsigned long long)mbox_contiguous(m));
        }
        printf("\n");
        fflush(stdout);
}

int main(int argc, char **argv)
{
        static const char *const in_names[3] = { "soak.mb.aa", "soak.mb.na", "soak.mb.ua" };
        uint64_t sub;
        if (argc != 2)
                die("usage: soak_agent CONTROL_SOCKET");
        must(atomq_connect(argv[1], &s.a), 0, "connect");
        for (int i = 0; i < 3; i++) {
                s.in[i].name = in_names[i];
                must(atomq_lookup(s.a, in_names[i], &s.in[i].h), 0, in_names[i]);
        }
        s.aa_h = s.in[0].h;
        must(atomq_lookup(s.a, "soak.mb.an", &s.an_h), 0, "soak.mb.an");
        must(atomq_subscribe(s.a, "soak.bc.>", NULL, SID_BCAST, &sub), 0, "subscribe");
        must(atomq_subscribe(s.a, "soak.rr.agent", NULL, SID_RR, &sub), 0, "subscribe");
        printf("ready\n");
        fflush(stdout);
        run();
        drain();
        report();
        atomq_close(s.a);
        return 0;
}
