/* dp_dgram_session.c - the datagram sessions of a worker: the table (a
 * slot per session, allocated at init), the session ids, leases and
 * request timeouts, and the layer's configuration and set-up.
 *
 * A session id is the slot in its low 20 bits and 44 bits that are hard
 * to guess above them: a keyed mix of a counter (splitmix64 with a key
 * from getrandom), so finding a session is one index and a compare, and
 * a peer cannot name another's session by guessing. The address check
 * (dp_dgram_input) is what binds a session to its peer; the id keeps a
 * blind spoofer out.
 */
#include "dataplane/dp_dgram_pvt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <arpa/inet.h>

#include "dataplane/dp_cmd.h"
#include "dataplane/dp_shard_pvt.h"
#include "dataplane/dp_worker_pvt.h"
#include "shm/shm_base.h"
#include "shm/shm_clock.h"

#define DP_DGRAM_SLOT_BITS 20u
/* How often leases and request waits are looked at. */
#define DP_DGRAM_SWEEP_NS (50ull * 1000 * 1000)

_Static_assert(DP_DGRAM_SESSIONS_MAX == 1u << DP_DGRAM_SLOT_BITS, "slot bits");

void dp_dgram_config_default(struct dp_dgram_config *cfg)
{
        *cfg = (struct dp_dgram_config){
                .enabled = false,
                .host = "127.0.0.1",
                .port = ATOMQ_DGRAM_PORT,
                .max_sessions = 1024,
                .lease_ms = 30000,
        };
}

int dp_dgram_spec_format(const struct dp_dgram_config *cfg, char *buf, size_t len)
{
        int n = snprintf(buf, len, "%s:%u,sessions=%u,lease_ms=%u,kernel=%d", cfg->host,
                         cfg->port, cfg->max_sessions, cfg->lease_ms, cfg->kernel ? 1 : 0);
        return n < 0 || (size_t)n >= len ? -ENOSPC : n;
}

static int dp_dgram_u32(const char *s, uint32_t min, uint32_t max, uint32_t *out)
{
        char *end;
        unsigned long v = strtoul(s, &end, 10);
        if (end == s || *end != '\0' || v < min || v > max)
                return -EINVAL;
        *out = (uint32_t)v;
        return 0;
}

int dp_dgram_spec_parse(struct dp_dgram_config *cfg, const char *spec)
{
        char buf[256];
        if (strlen(spec) >= sizeof(buf))
                return -EINVAL;
        strcpy(buf, spec);
        char *save = NULL;
        char *addr = strtok_r(buf, ",", &save);
        char *colon = addr != NULL ? strrchr(addr, ':') : NULL;
        struct in_addr ip;
        uint32_t port;
        if (colon == NULL || (size_t)(colon - addr) >= sizeof(cfg->host))
                return -EINVAL;
        *colon = '\0';
        if (inet_pton(AF_INET, addr, &ip) != 1 || dp_dgram_u32(colon + 1, 0, 65535, &port) != 0)
                return -EINVAL;
        strcpy(cfg->host, addr);
        cfg->port = (uint16_t)port;
        cfg->kernel = true;
        uint32_t kernel = 1;
        for (char *kv = strtok_r(NULL, ",", &save); kv != NULL; kv = strtok_r(NULL, ",", &save)) {
                char *eq = strchr(kv, '=');
                if (eq == NULL)
                        return -EINVAL;
                *eq = '\0';
                int rc = strcmp(kv, "sessions") == 0
                                 ? dp_dgram_u32(eq + 1, 1, DP_DGRAM_SESSIONS_MAX, &cfg->max_sessions)
                         : strcmp(kv, "lease_ms") == 0
                                 ? dp_dgram_u32(eq + 1, 100, 3600000, &cfg->lease_ms)
                         : strcmp(kv, "kernel") == 0 ? dp_dgram_u32(eq + 1, 0, 1, &kernel)
                                                     : -EINVAL;
                if (rc != 0)
                        return rc;
        }
        cfg->kernel = kernel != 0;
        cfg->enabled = true;
        return 0;
}

/* ---- ids ---- */

static uint64_t dp_dgram_mix(uint64_t z)
{
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
}

static uint64_t dp_dgram_id_next(struct dp_dgram *d, uint32_t slot)
{
        uint64_t hi;
        do
                hi = dp_dgram_mix((d->id_state += 0x9e3779b97f4a7c15ull) ^ d->id_key) &
                     ~((1ull << DP_DGRAM_SLOT_BITS) - 1);
        while (hi == 0);   /* 0 is no session */
        return hi | slot;
}

struct dp_dgram_session *dp_dgram_session_find(struct dp_dgram *d, uint64_t id)
{
        uint32_t slot = (uint32_t)(id & ((1ull << DP_DGRAM_SLOT_BITS) - 1));
        if (slot >= d->cfg.max_sessions || d->sessions[slot].id != id)
                return NULL;
        return &d->sessions[slot];
}

uint64_t dp_dgram_req_id(const struct dp_dgram *d, const struct dp_dgram_session *s, uint64_t seq)
{
        return (uint64_t)dp_dgram_session_slot(d, s) << 44 | (uint64_t)s->incarnation << 32 |
               (uint32_t)seq;
}

struct dp_dgram_session *dp_dgram_req_session(struct dp_dgram *d, uint64_t req_id)
{
        uint32_t slot = (uint32_t)(req_id >> 44);
        if (slot >= d->cfg.max_sessions)
                return NULL;
        struct dp_dgram_session *s = &d->sessions[slot];
        if (s->id == 0 || s->incarnation != (uint16_t)(req_id >> 32 & 0xfff))
                return NULL;
        return s;
}

/* ---- the table ---- */

struct dp_dgram_session *dp_dgram_session_open(struct dp_dgram *d, uint8_t port,
                                               const struct nic_dgram_addr *peer, uint64_t now_ns)
{
        if (d->free_head == 0)
                return NULL;
        uint32_t slot = d->free_head - 1;
        struct dp_dgram_session *s = &d->sessions[slot];
        d->free_head = s->next_free;
        uint16_t inc = (uint16_t)((s->incarnation + 1) & 0xfff);
        memset(s, 0, sizeof(*s));
        s->incarnation = inc;
        s->id = dp_dgram_id_next(d, slot);
        s->peer = *peer;
        s->port = port;
        s->last_ns = now_ns;
        d->live++;
        return s;
}

void dp_dgram_session_end(struct dp_dgram *d, struct dp_dgram_session *s)
{
        for (uint32_t i = 0; i < DP_DGRAM_SUBS_MAX; i++)
                if (s->subs[i].live)
                        dp_dgram_sub_drop(d, &s->subs[i]);
        if (s->inbox)
                (void)dp_shard_unsubscribe(&d->w->shard, s->inbox_trie);
        s->inbox = false;
        s->id = 0;
        s->next_free = d->free_head;
        d->free_head = dp_dgram_session_slot(d, s) + 1;
        d->live--;
}

/* Requests of s whose wait is over: answered -ETIMEDOUT. */
static int dp_dgram_requests_expire(struct dp_dgram *d, struct dp_dgram_session *s, uint64_t now_ns)
{
        int n = 0;
        for (uint32_t i = 0; i < ATOMQ_DGRAM_WINDOW && s->requests > 0; i++) {
                struct dp_dgram_slot *sl = &s->win[i];
                if (sl->state != DP_DGRAM_PENDING || sl->op != ATOMQ_OP_REQUEST ||
                    now_ns < sl->deadline_ns)
                        continue;
                s->requests--;
                sl->state = DP_DGRAM_DONE;
                sl->status = -ETIMEDOUT;
                dp_counter_inc(&d->stats->request_timeouts);
                dp_dgram_answer(d, s, sl->seq, -ETIMEDOUT, 0, 0, 0);
                n++;
        }
        return n;
}

static int dp_dgram_sweep(struct dp_dgram *d, uint64_t now_ns)
{
        uint64_t lease_ns = (uint64_t)d->cfg.lease_ms * 1000000;
        int work = 0;
        for (uint32_t i = 0; i < d->cfg.max_sessions && d->live > 0; i++) {
                struct dp_dgram_session *s = &d->sessions[i];
                if (s->id == 0)
                        continue;
                /* last_ns may be later than this pass's clock: a datagram
                 * of this very pass renewed it. */
                if (now_ns > s->last_ns && now_ns - s->last_ns >= lease_ns) {
                        dp_counter_inc(&d->stats->sessions_expired);
                        dp_dgram_session_end(d, s);
                        work++;
                        continue;
                }
                if (s->requests > 0)
                        work += dp_dgram_requests_expire(d, s, now_ns);
        }
        return work;
}

int dp_dgram_poll(struct dp_dgram *d, uint64_t now_ns)
{
        d->now_ns = now_ns;
        int work = dp_dgram_cpls_poll(d);
        if (now_ns > d->sweep_ns && now_ns - d->sweep_ns >= DP_DGRAM_SWEEP_NS) {
                d->sweep_ns = now_ns;
                work += dp_dgram_sweep(d, now_ns);
        }
        return work;
}

uint32_t dp_dgram_sessions(const struct dp_dgram *d)
{
        return d->live;
}

/* ---- set-up ---- */

static void dp_dgram_free(struct dp_dgram *d)
{
        free(d->sessions);
        free(d->cache);
        free(d->ans.buf);
        free(d->dlv.buf);
        free(d->cmd);
        free(d);
}

struct dp_dgram_port *dp_dgram_port_add(struct dp_dgram *d, const struct dp_dgram_tx *tx)
{
        if (d->port_count == DP_DGRAM_PORTS_MAX || tx->send == NULL ||
            tx->bytes_max < ATOMQ_DGRAM_SESSION_BYTES + 2 * ATOMQ_FRAME_HDR_BYTES ||
            tx->bytes_max > NIC_DGRAM_BYTES_MAX)
                return NULL;
        struct dp_dgram_port *p = &d->ports[d->port_count];
        *p = (struct dp_dgram_port){ .d = d, .index = (uint8_t)d->port_count, .tx = *tx };
        d->port_count++;
        return p;
}

int dp_dgram_init(struct dp_dgram **out, struct dp_worker *w, const struct dp_dgram_config *cfg,
                  uint32_t client)
{
        if (cfg->max_sessions == 0 || cfg->max_sessions > DP_DGRAM_SESSIONS_MAX ||
            cfg->lease_ms == 0 || client >= w->clients)
                return -EINVAL;
        struct dp_dgram *d = calloc(1, sizeof(*d));
        if (d == NULL)
                return -ENOMEM;
        d->w = w;
        d->stats = &w->stats->dgram;
        d->cfg = *cfg;
        d->client = client;
        d->sessions = calloc(cfg->max_sessions, sizeof(*d->sessions));
        d->ans.buf = aligned_alloc(8, shm_align_up(NIC_DGRAM_BYTES_MAX, 8));
        d->dlv.buf = aligned_alloc(8, shm_align_up(NIC_DGRAM_BYTES_MAX, 8));
        d->cmd = aligned_alloc(SHM_CACHE_LINE, DP_CMD_BYTES_MAX);
        d->cache = malloc(DP_DGRAM_CACHE_BYTES);
        if (d->sessions == NULL || d->ans.buf == NULL || d->dlv.buf == NULL || d->cmd == NULL ||
            d->cache == NULL) {
                dp_dgram_free(d);
                return -ENOMEM;
        }
        for (uint32_t i = cfg->max_sessions; i > 0; i--) {
                d->sessions[i - 1].next_free = d->free_head;
                d->free_head = i;
        }
        if (getrandom(&d->id_key, sizeof(d->id_key), 0) != (ssize_t)sizeof(d->id_key) ||
            getrandom(&d->id_state, sizeof(d->id_state), 0) != (ssize_t)sizeof(d->id_state)) {
                dp_dgram_free(d);
                return -EIO;
        }
        d->sweep_ns = d->now_ns = shm_clock_ns();
        /* Completions of our column from other workers wake our sleep. */
        w->net_wake = w->client_wake[client];
        dp_worker_extra_words(w);
        *out = d;
        return 0;
}

void dp_dgram_fini(struct dp_dgram *d)
{
        if (d == NULL)
                return;
        for (uint32_t i = 0; i < d->cfg.max_sessions; i++)
                if (d->sessions[i].id != 0)
                        dp_dgram_session_end(d, &d->sessions[i]);
        d->w->net_wake = NULL;
        dp_worker_extra_words(d->w);
        dp_dgram_free(d);
}
