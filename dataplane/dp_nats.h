/* dp_nats.h - the NATS client protocol on a worker: one session per TCP
 * connection of the worker's io_uring backend (nic/nic_uring.h), speaking
 * what nats-server speaks to its clients.
 *
 * A worker owns one struct dp_nats on its io_uring backend (w->nic,
 * dp_worker_net.c), which calls dp_nats_on_open, _on_data and _on_close
 * from its poll; the worker also calls dp_nats_poll for the timed work
 * (server PINGs, parked fetches), deliveries arrive via dp_nats_deliver,
 * and the worker's flush of the backend sends what the pass produced.
 *
 * Subscriptions of a connection live in its worker's shard, with the
 * connection as endpoint (the nic's connection id, bit 30 clear, so never
 * an agent's) and the subscription's index in the connection as sid. A
 * publish is matched on this shard and fanned out to every other worker
 * (dp_worker_publish_msg), like an agent's, so network clients and agents
 * share one subject space and a publisher's messages reach each shard in
 * order.
 *
 * Limits (all per connection unless said): control line 4 KiB and
 * max_payload (the parser), max_subs subscriptions, max_pending bytes of
 * unsent output (beyond: the connection is a slow consumer, cut off and
 * counted), ping_interval_ms between server PINGs and max_pings_out
 * unanswered before 'Stale Connection'. The connection count is the nic's.
 */
#ifndef ATOMQ_DP_NATS_H
#define ATOMQ_DP_NATS_H

#include <stdbool.h>
#include <stdint.h>

#include "dataplane/dp_shard.h"
#include "nic/nic_uring.h"

/* A subscription id as the client sends it: at most this many bytes. */
#define DP_NATS_SID_MAX 64u

struct dp_nats_config {
        bool enabled;
        char host[64];            /* listen address (numeric) */
        uint16_t port;
        uint32_t max_conns;       /* per worker */
        uint32_t max_payload;     /* announced in INFO, enforced by the parser */
        uint32_t max_subs;        /* per connection */
        uint64_t max_pending;     /* unsent output per connection, bytes */
        uint32_t ping_interval_ms;
        uint32_t max_pings_out;
        /* Authentication: a token, or a user and password (empty: none).
         * They never travel on a command line: atomqd hands them to the
         * dataplane in its environment (dp_nats_config_auth_env). */
        char auth_token[128];
        char auth_user[64];
        char auth_pass[128];
};

#define DP_NATS_ENV_TOKEN "ATOMQ_NATS_TOKEN"
#define DP_NATS_ENV_USER "ATOMQ_NATS_USER"
#define DP_NATS_ENV_PASS "ATOMQ_NATS_PASS"


struct dp_worker;
struct dp_nats; /* defined in dp_nats.c */

/* 127.0.0.1:4222, 16384 connections, nats-server's defaults: 1 MiB
 * max_payload, 64 MiB max_pending, PING every 2 minutes, 2 outstanding. */
void dp_nats_config_default(struct dp_nats_config *cfg);

/* Parses "HOST:PORT" (numeric IPv4, or [IPv6]:PORT) into cfg. -EINVAL. */
int dp_nats_config_addr(struct dp_nats_config *cfg, const char *addr);

/* The configuration as one command-line word, for atomqd to hand the
 * dataplane: "HOST:PORT,conns=N,payload=N,pending=N,subs=N,ping_ms=N".
 * Returns the length, or -ENOSPC when buf is too short. */
int dp_nats_spec_format(const struct dp_nats_config *cfg, char *buf, size_t len);

/* Reads such a word into cfg (keys may be left out: the defaults stay).
 * -EINVAL: a bad address, key or number. */
int dp_nats_spec_parse(struct dp_nats_config *cfg, const char *spec);

/* Takes the credentials from the environment (DP_NATS_ENV_*) into cfg and
 * removes them from it. -EINVAL: one is too long, or a user without a
 * password (or the other way round). */
int dp_nats_config_auth_env(struct dp_nats_config *cfg);

/* Does the listener ask clients for credentials? */
bool dp_nats_auth_required(const struct dp_nats_config *cfg);

/* Sets up the worker's session layer on its backend w->nic, which listens
 * on cfg's address already. *out is allocated here. -EINVAL (no backend,
 * a bad config), -ENOMEM. */
int dp_nats_init(struct dp_nats **out, struct dp_worker *w, const struct dp_nats_config *cfg);

/* Closes every connection and frees the layer. */
void dp_nats_fini(struct dp_nats *n);

/* The backend's callbacks (struct nic_uring_ops), arg the struct dp_nats. */
void dp_nats_on_open(void *arg, uint32_t conn);
void dp_nats_on_data(void *arg, uint32_t conn, const uint8_t *data, size_t len);
void dp_nats_on_close(void *arg, uint32_t conn, enum nic_close_reason reason);

/* The timed work: server PINGs, parked fetches, no-responder waits.
 * Returns the work done. */
int dp_nats_poll(struct dp_nats *n, uint64_t now_ns);

/* Is d for one of our connections (not an agent)? */
bool dp_nats_endpoint_is(uint32_t endpoint);

/* A delivery from the shard to a connection: MSG or HMSG into its output. */
void dp_nats_deliver(struct dp_nats *n, const struct dp_dispatch *d);


/* Parks a fetch of the mailbox or channel end `name` until a message comes
 * or deadline_ns (dp_nats_aq.c). -ENOSPC: DP_AQ_PARKED_MAX are waiting;
 * -EINVAL: a name or reply too long to keep. */
int dp_nats_aq_park(struct dp_nats *n, const char *name, uint32_t name_len, uint8_t end,
                    uint32_t batch, const char *reply, uint32_t reply_len, uint64_t deadline_ns);

void dp_nats_count_aq_lost(struct dp_nats *n);

/* Another shard delivered `delivered` of our publish pub_id (a request
 * waiting to learn whether it has responders anywhere). */
void dp_nats_count_reply(struct dp_nats *n, uint64_t pub_id, uint32_t delivered);

#endif /* ATOMQ_DP_NATS_H */
