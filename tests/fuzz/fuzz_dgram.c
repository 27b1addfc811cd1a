/* fuzz_dgram.c - libFuzzer target for the atomq datagram decoder and its
 * sessions (dataplane/dp_dgram*.c): datagrams from two peers, run on real
 * workers, the answers checked.
 *
 *      sh tests/fuzz/run.sh build-fuzz/tests/fuzz/fuzz_dgram \
 *              tests/fuzz/corpus/dgram build-fuzz/tests/fuzz/dgram
 *
 * Input: records, each
 *
 *      flags (1 byte)  bit 0: fill in every frame's CRC before sending
 *                      bit 1: the datagram's session id is the one the
 *                             peer was last given (its first 8 bytes
 *                             are replaced)
 *                      bit 2: from peer B (else A)
 *                      bit 3: the clock moves on 1 s first (leases, waits)
 *      length (2 bytes, little-endian), then that many bytes: a datagram
 *
 * Without bits 0 and 1 a mutated datagram almost never gets past the CRC
 * and session checks; with them the fuzzer reaches every op. CRCs are
 * filled walking the frames by their own length fields, bounded by the
 * datagram: a frame that does not fit is left as it is.
 *
 * The engine is made for each input (two workers, no threads, small
 * shards, 8 sessions on worker 0), so inputs do not depend on each other.
 * Both loops are driven here after every datagram until idle.
 *
 * Checked:
 *   - every datagram the server sends decodes whole: its frames fit it
 *     exactly, each checks (atomq_frame_check) and carries the CRC of the
 *     datagram's session;
 *   - an answer goes to the peer the session belongs to (or, for a
 *     refused open, to the peer that asked);
 *   - the workers never count a bad record, a ring error or a lost
 *     completion, and go idle within a bounded number of passes.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "atomq/dgram.h"
#include "dataplane/dp_crc32c.h"
#include "dataplane/dp_dgram.h"
#include "dataplane/dp_engine.h"
#include "dataplane/dp_worker.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_NAME "fuzz_dgram"
#include "tests/fuzz/fuzz_check.h"

#define FZ_WORKERS 2u
#define FZ_PASSES_MAX 1000
#define FZ_DGRAMS_MAX 64u

static const struct nic_dgram_addr fz_peer[2] = {
        { .ip = 0x0100007f, .port = 0x3930 },   /* 127.0.0.1:12345 */
        { .ip = 0x0200007f, .port = 0x3a30 },   /* 127.0.0.2:12346 */
};

static struct {
        struct dp_engine e;
        struct dp_dgram *d;
        struct dp_dgram_port *port;
        uint64_t session[2];     /* the last session id each peer was given */
        int from;                /* the peer whose datagram is being handled */
} fz;

/* Every datagram the server sends: checked whole, the peers' sessions
 * noted from PONGs. */
static int fz_tx(void *ctx, const struct nic_dgram_addr *to, const void *data, size_t len)
{
        (void)ctx;
        const uint8_t *p = data;
        uint64_t session;
        FZ_CHECK(len >= ATOMQ_DGRAM_SESSION_BYTES + ATOMQ_FRAME_HDR_BYTES);
        FZ_CHECK(len <= NIC_DGRAM_BYTES_MAX);
        int peer = nic_dgram_addr_eq(to, &fz_peer[1]) ? 1 : 0;
        FZ_CHECK(nic_dgram_addr_eq(to, &fz_peer[peer]));
        memcpy(&session, p, sizeof(session));
        for (size_t off = ATOMQ_DGRAM_SESSION_BYTES; off < len;) {
                struct atomq_frame f;
                FZ_CHECK(len - off >= ATOMQ_FRAME_HDR_BYTES);
                memcpy(&f, p + off, sizeof(f));
                uint64_t bytes = atomq_frame_bytes(f.subject_len, f.headers_len, f.payload_len);
                FZ_CHECK(bytes <= len - off);
                FZ_CHECK(atomq_frame_check(p + off, (size_t)bytes, &f) == ATOMQ_FRAME_OK);
                FZ_CHECK(f.flags & ATOMQ_FRAME_F_CRC);
                FZ_CHECK(dp_crc32c_dgram(session, p + off, (uint32_t)bytes) == f.crc32c);
                if (f.op == ATOMQ_OP_PONG && session != 0)
                        fz.session[peer] = session;
                off += (size_t)bytes;
        }
        return 0;
}

static void fz_engine_make(void)
{
        struct dp_engine_config cfg;
        static struct dp_dgram_config dc;
        dp_engine_config_default(&cfg, 32);
        cfg.workers = FZ_WORKERS;
        cfg.net_clients = true;
        cfg.cmd_ring_bytes = DP_CMD_RING_BYTES_MIN;
        cfg.cpl_ring_bytes = DP_CPL_RING_BYTES_MIN;
        cfg.mesh_ring_bytes = DP_CMD_RING_BYTES_MIN;
        cfg.hugepages = SHM_HUGEPAGES_OFF;
        cfg.shard.max_msgs = 256;
        cfg.shard.max_subs = 64;
        cfg.shard.max_trie_nodes = 256;
        cfg.shard.trie_token_bytes = 4096;
        cfg.shard.ack_wait_ns = 1000ull * 1000000;
        cfg.shard.max_deliver = 3;
        cfg.shard.bufs[0].block_count = 1024;
        cfg.shard.bufs[1].block_count = 128;
        cfg.shard.bufs[2].block_count = 16;
        cfg.shard.bufs[3].block_count = 2;
        dp_dgram_config_default(&dc);
        dc.enabled = true;
        dc.kernel = false;
        dc.max_sessions = 8;
        dc.lease_ms = 3000;
        cfg.dgram = &dc;
        FZ_CHECK(dp_engine_init(&fz.e, &cfg) == 0);
        struct dp_worker *w = &fz.e.w[0];
        FZ_CHECK(dp_dgram_init(&fz.d, w, &dc, (uint32_t)dp_engine_net_client(&fz.e, 0)) == 0);
        struct dp_dgram_tx tx = { .send = fz_tx, .bytes_max = NIC_DGRAM_BYTES_MAX };
        fz.port = dp_dgram_port_add(fz.d, &tx);
        FZ_CHECK(fz.port != NULL);
        w->dgram = fz.d;
        fz.session[0] = fz.session[1] = 0;
}

static void fz_engine_drop(void)
{
        fz.e.w[0].dgram = NULL;
        dp_dgram_fini(fz.d);
        fz.d = NULL;
        dp_engine_fini(&fz.e);
}

/* Both loops (with the datagram layer's own) until neither has work. */
static void fz_drain(uint64_t now_ns)
{
        for (int pass = 0;; pass++) {
                int work = dp_dgram_poll(fz.d, now_ns);
                FZ_CHECK(pass < FZ_PASSES_MAX);
                for (uint32_t i = 0; i < FZ_WORKERS; i++) {
                        int rc = dp_worker_do_work(&fz.e.w[i]);
                        FZ_CHECK(rc >= 0);
                        work += rc;
                }
                dp_dgram_flush(fz.d);
                if (work == 0)
                        break;
        }
        for (uint32_t i = 0; i < FZ_WORKERS; i++) {
                const struct dp_worker_stats *st = fz.e.w[i].stats;
                FZ_CHECK(dp_counter_get(&st->bad_records) == 0);
                FZ_CHECK(dp_counter_get(&st->ring_errors) == 0);
                FZ_CHECK(dp_counter_get(&st->cpl_lost) == 0);
        }
}

/* Fills the CRC of every whole frame of the datagram, as a client would. */
static void fz_fill_crcs(uint8_t *p, size_t len)
{
        uint64_t session;
        memcpy(&session, p, sizeof(session));
        for (size_t off = ATOMQ_DGRAM_SESSION_BYTES; len - off >= ATOMQ_FRAME_HDR_BYTES;) {
                struct atomq_frame f;
                memcpy(&f, p + off, sizeof(f));
                uint64_t bytes = (uint64_t)ATOMQ_FRAME_HDR_BYTES + f.subject_len + f.headers_len +
                                 f.payload_len;
                if (bytes > len - off)
                        return;
                dp_dgram_crc_fill(session, p + off, (uint32_t)bytes);
                off += (size_t)bytes;
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static uint8_t dgram[NIC_DGRAM_BYTES_MAX];
        uint64_t now_ns = 1000000000ull;
        fz_engine_make();
        size_t off = 0;
        for (unsigned n = 0; n < FZ_DGRAMS_MAX && size - off >= 3; n++) {
                uint8_t flags = data[off];
                size_t len = (size_t)data[off + 1] | (size_t)data[off + 2] << 8;
                off += 3;
                if (len > size - off)
                        len = size - off;
                memcpy(dgram, data + off, len);
                off += len;
                fz.from = (flags & 4) ? 1 : 0;
                if ((flags & 2) && len >= ATOMQ_DGRAM_SESSION_BYTES)
                        memcpy(dgram, &fz.session[fz.from], ATOMQ_DGRAM_SESSION_BYTES);
                if ((flags & 1) && len >= ATOMQ_DGRAM_SESSION_BYTES)
                        fz_fill_crcs(dgram, len);
                if (flags & 8)
                        now_ns += 1000000000ull;
                (void)dp_dgram_poll(fz.d, now_ns);   /* the layer's clock */
                dp_dgram_input(fz.port, &fz_peer[fz.from], dgram, len);
                fz_drain(now_ns);
        }
        fz_engine_drop();
        return 0;
}
