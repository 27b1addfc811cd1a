/* dp_dgram.h - atomq datagrams on a worker (atomq/dgram.h, the protocol in
 * docs/protocol.md): sessions of UDP peers, whichever backend carries their
 * datagrams (the kernel's UDP on the worker's io_uring, or a DPDK queue).
 *
 * A worker owns one struct dp_dgram and drives it from its loop:
 *
 *      backend poll -> dp_dgram_input     each datagram: check, execute
 *      dp_dgram_poll(d, now_ns)           answers that came back, leases,
 *                                         request timeouts
 *      dp_worker_on_deliver -> dp_dgram_deliver   a subscription's message
 *
 * Sessions are the worker's own: the backend hashes a peer to one worker
 * (SO_REUSEPORT, RSS), so a session never moves. What a session asks of an
 * entity (send, fetch, ack, create, destroy) runs as a command of the
 * worker's datagram client column (dp_engine_net_client): executed here or
 * forwarded to the entity's owner, the completion comes back to that column
 * and becomes the answer. Publishes and subscriptions are the worker's own
 * shard's, as a NATS connection's are (dp_nats.h): both share one subject
 * space with agents. A request is a publish with a reply subject of the
 * session's (_AQD.<session>.<seq>) on which the session listens.
 *
 * Bounds: max_sessions per worker (a new one beyond is refused: STATUS
 * -EUSERS, counted), DP_DGRAM_SUBS_MAX subscriptions and
 * ATOMQ_DGRAM_WINDOW answers per session, memory allocated at init.
 */
#ifndef ATOMQ_DP_DGRAM_H
#define ATOMQ_DP_DGRAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dataplane/dp_shard.h"
#include "nic/nic_dgram.h"

/* Session endpoints: bits 30 and 29 set, the session's slot below.
 * Agents set bit 30 alone (dp_agent.h), connections neither. */
#define DP_DGRAM_ENDPOINT_BITS (3u << 29)
#define DP_DGRAM_SESSIONS_MAX (1u << 20)
#define DP_DGRAM_SUBS_MAX 32u
/* A request's wait when its frame gives none (ttl_ms 0), and the longest. */
#define DP_DGRAM_REQUEST_MS_DEFAULT 5000u
#define DP_DGRAM_REQUEST_MS_MAX 600000u

struct dp_dgram_config {
        bool enabled;             /* the sessions layer */
        bool kernel;              /* a UDP socket on host:port (io_uring); false: only
                                   * a polled backend (DPDK) brings datagrams */
        char host[64];            /* numeric IPv4 */
        uint16_t port;
        uint32_t max_sessions;    /* per worker, <= DP_DGRAM_SESSIONS_MAX */
        uint32_t lease_ms;        /* a session not heard from for this long ends */
};

/* Backends one worker's sessions may arrive through at once: the kernel's
 * UDP (io_uring) and a DPDK queue. */
#define DP_DGRAM_PORTS_MAX 2u

/* How a backend sends (a session is answered through the one it came in
 * on). */
struct dp_dgram_tx {
        int (*send)(void *ctx, const struct nic_dgram_addr *to, const void *data, size_t len);
        void *ctx;
        uint32_t bytes_max;       /* the largest datagram the backend carries */
};

struct dp_worker;
struct dp_dgram; /* defined in dp_dgram_pvt.h */
struct dp_dgram_port;

/* Off; when on: 127.0.0.1:4223, 1024 sessions a worker, 30 s lease. */
void dp_dgram_config_default(struct dp_dgram_config *cfg);

/* The configuration as one command-line word for the dataplane:
 * "HOST:PORT,sessions=N,lease_ms=N,kernel=0|1". Returns the length or
 * -ENOSPC. */
int dp_dgram_spec_format(const struct dp_dgram_config *cfg, char *buf, size_t len);

/* Reads such a word (keys may be left out) and turns it on. -EINVAL: a bad
 * address (IPv4 only), key or number. */
int dp_dgram_spec_parse(struct dp_dgram_config *cfg, const char *spec);

/* Sets up worker w's sessions; entity commands use completion column
 * `client`. -EINVAL (a bad config), -ENOMEM. */
int dp_dgram_init(struct dp_dgram **out, struct dp_worker *w, const struct dp_dgram_config *cfg,
                  uint32_t client);

/* A backend the sessions arrive through: its datagrams go to
 * dp_dgram_input with the returned port as arg, and their answers leave
 * through tx. NULL: DP_DGRAM_PORTS_MAX are added, or tx is unusable. */
struct dp_dgram_port *dp_dgram_port_add(struct dp_dgram *d, const struct dp_dgram_tx *tx);

/* Ends every session (their subscriptions go) and frees the layer. */
void dp_dgram_fini(struct dp_dgram *d);

/* A datagram from a peer (nic_dgram_fn; arg is the struct dp_dgram_port
 * it came through). */
void dp_dgram_input(void *arg, const struct nic_dgram_addr *from, const uint8_t *data,
                    size_t len);

/* Turns the completions that came back into answers, ends sessions whose
 * lease ran out and requests whose wait did. Returns the work done. */
int dp_dgram_poll(struct dp_dgram *d, uint64_t now_ns);

static inline bool dp_dgram_endpoint_is(uint32_t endpoint)
{
        return (endpoint & DP_DGRAM_ENDPOINT_BITS) == DP_DGRAM_ENDPOINT_BITS;
}

/* A delivery from the shard to a session: a MSG frame, in a datagram that
 * may carry more of that session's messages of this pass. */
void dp_dgram_deliver(struct dp_dgram *d, const struct dp_dispatch *dsp);

/* Hands the pass's last delivery datagram to its backend (before the
 * backends' flush). */
void dp_dgram_flush(struct dp_dgram *d);

/* Has a completion for our column come back (the idle re-check)? */
bool dp_dgram_ready(struct dp_dgram *d);

/* Sets ATOMQ_FRAME_F_CRC and the CRC32C of the frame at f (len bytes, any
 * alignment) for session: what a server answers with and a client in C
 * (tests, atomq-bench) sends. */
void dp_dgram_crc_fill(uint64_t session, uint8_t *f, uint32_t len);

/* Sessions open now. */
uint32_t dp_dgram_sessions(const struct dp_dgram *d);

#endif /* ATOMQ_DP_DGRAM_H */
