/* fuzz_agent_ring.c - libFuzzer target for what a worker reads from an
 * agent: the agent's command ring (shm_vring, consumer side) and the
 * command records in it (dp_cmd_parse); and, as a second ring mode, the
 * worker producing into a ring whose indexes the agent controls. All of it
 * lives in shared memory the agent writes, so every byte is the fuzzer's.
 *
 * Input, mode by the low bit of the first byte:
 *
 *   ring (bit 0 clear)
 *      byte 0      bits 1-2: capacity 4096, 65536 (an agent's real command
 *                  ring: records above DP_CMD_BYTES_MAX fit), 64, 256;
 *                  bit 3: the 12 bytes after the indexes are XORed into
 *                  magic, version, reserved and capacity;
 *                  bit 4: produce instead of consume (below)
 *      [bit 4]     a count n (low 5 bits), then n steps of 4 bytes
 *      next 8      tail, as the peer left it in the ring header (LE)
 *      next 4      head - tail (LE)
 *      the rest    the data area, laid from tail's offset on (wrapping),
 *                  so the first record header sits at the front; what the
 *                  input does not cover stays zero (unpublished)
 *   The ring is formatted with shm_vring_init, the header and data area
 *   are overwritten, a consumer view attaches, and records are peeked and
 *   released as dp_worker_agent_drain_one does (at most FZ_RECS_MAX):
 *   a record that is not DP_REC_CMD or shorter than struct dp_cmd is
 *   skipped, the others are copied (at most DP_CMD_BYTES_MAX bytes) into a
 *   buffer of exactly that size, stamped with the agent's client column and
 *   endpoint, and parsed with the record's full length. -EPROTO from the
 *   ring stops the reading, as the worker marks the agent bad.
 *   With bit 4 the worker is the producer instead, as on an agent's
 *   completion and delivery rings, whose tail the agent owns: each step
 *   moves the shared tail (signed, in 8-byte units), then reserves a record
 *   of the step's length, fills and commits it; -EPROTO stops.
 *
 *   raw (bit 0 set)
 *      byte 0      bits 1-6: the engine's client count - 1
 *      the rest    one record for dp_cmd_parse, as an exact-size buffer
 *
 * Invariants: attach accepts exactly the indexes shm_vring.h allows; reserve
 * fails only as documented and otherwise hands out room inside the data
 * area, and commit publishes it and zeroes the header after it; peek
 * returns 1, 0 or -EPROTO, and a record whose header and payload lie in the
 * data area, never padding, and the same record when peeked again; release
 * moves tail to just after that record; dp_cmd_parse returns one of its
 * documented errors with v->hdr set accordingly, and 0 only with a view whose
 * name and message sections lie inside the record, add up to its length,
 * and encode back (dp_cmd_encode) to the same bytes.
 *
 *      sh tests/fuzz/run.sh build-fuzz/tests/fuzz/fuzz_agent_ring \
 *              tests/fuzz/corpus/agent_ring build-fuzz/tests/fuzz/agent_ring
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/dp_cmd.h"
#include "shm/shm_base.h"
#include "shm/shm_vring.h"

#define FZ_NAME "fuzz_agent_ring"
#include "tests/fuzz/fuzz_check.h"

/* Records read from one ring per input: over two laps of the smallest
 * records in a 4096-byte ring, and a bound on work per input (the worker
 * bounds a pass with DP_AGENT_BURST for the same reason). */
#define FZ_RECS_MAX 1024u
/* An engine with two clients of its own; agent slot 3's column follows. */
#define FZ_CLIENTS 2u
#define FZ_AGENTS 16u
#define FZ_SLOT 3u
#define FZ_ENDPOINT 0x80000003u
#define FZ_CAPACITY_MAX (64u * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Buffers that live for the whole run: allocated once, sized exactly. */
static uint8_t *fz_ring;      /* shm_vring_bytes(FZ_CAPACITY_MAX), line-aligned */
static uint8_t *fz_copy;      /* DP_CMD_BYTES_MAX: the worker's cmd_copy */
static uint8_t *fz_encoded;   /* DP_CMD_BYTES_MAX: the record encoded back */

/* --- reading the input ----------------------------------------------- */

struct fz_in {
        const uint8_t *p;
        size_t left;
};

/* n bytes little-endian; what the input lacks reads as zero. */
static uint64_t fz_take(struct fz_in *in, unsigned n)
{
        uint64_t v = 0;
        for (unsigned i = 0; i < n; i++) {
                uint64_t b = 0;
                if (in->left > 0) {
                        b = *in->p++;
                        in->left--;
                }
                v |= b << (8 * i);
        }
        return v;
}

/* --- dp_cmd_parse --------------------------------------------------- */

/* p[0..n) inside rec[0..len)? NULL is fine for n == 0. */
static bool fz_inside(const void *p, uint64_t n, const uint8_t *rec, uint32_t len)
{
        if (p == NULL)
                return n == 0;
        const uint8_t *b = p;
        return b >= rec && b <= rec + len && n <= (uint64_t)(rec + len - b);
}

/* Reads every byte of a section, so ASan checks the pointer and length. */
static uint32_t fz_touch(const void *p, uint32_t n)
{
        const volatile uint8_t *b = p;
        uint32_t sum = 0;
        for (uint32_t i = 0; i < n; i++)
                sum += b[i];
        return sum;
}

/* What the header says when dp_cmd_parse calls it unusable. */
static bool fz_hdr_usable(const struct dp_cmd *h, uint32_t len, uint32_t clients)
{
        return len >= sizeof(*h) && h->magic == DP_CMD_MAGIC && h->version == DP_CMD_VERSION &&
               h->client < clients && dp_cmd_op_valid(h->op);
}

static void fz_check_msg(const struct dp_cmd_view *v, const uint8_t *rec, uint32_t len)
{
        const struct dp_cmd *h = v->hdr;
        const struct dp_msg_in *m = &v->msg;
        uint32_t frame_off = (uint32_t)(sizeof(*h) + shm_align_up(h->name_len, 8));
        FZ_CHECK(v->has_msg == dp_cmd_op_has_msg(h->op));
        if (!v->has_msg)
                return;
        /* The frame's sections: after its header, up to the record's end. */
        FZ_CHECK(h->frame_len >= ATOMQ_FRAME_HDR_BYTES);
        const uint8_t *sec = rec + frame_off + ATOMQ_FRAME_HDR_BYTES;
        uint32_t sec_len = h->frame_len - ATOMQ_FRAME_HDR_BYTES;
        FZ_CHECK(sec + sec_len == rec + len);
        FZ_CHECK(fz_inside(m->subject, m->subject_len, sec, sec_len));
        FZ_CHECK(fz_inside(m->reply_subject, m->reply_subject_len, sec, sec_len));
        FZ_CHECK(fz_inside(m->headers, m->headers_len, sec, sec_len));
        FZ_CHECK((m->headers == NULL) == (m->headers_len == 0));
        FZ_CHECK(fz_inside(m->payload, m->payload_len, sec, sec_len));
        FZ_CHECK((uint64_t)ATOMQ_FRAME_HDR_BYTES + m->subject_len + m->reply_subject_len +
                         m->headers_len + m->payload_len == h->frame_len);
        fz_touch(m->subject, m->subject_len);
        fz_touch(m->payload, m->payload_len);
        bool storage = h->op == ATOMQ_OP_SEND && (h->args.send.flags & DP_CMD_SEND_F_STORAGE);
        FZ_CHECK(m->storage == (storage ? h->args.send.storage : -1));
        FZ_CHECK(m->end == (h->op == ATOMQ_OP_SEND ? h->args.send.end : 0));
}

/* A record that parsed encodes back to itself, but for what the encoder
 * does not carry: padding after the name, and the frame header's handle,
 * seq, crc and flags other than the reply subject's. */
static void fz_check_roundtrip(const struct dp_cmd_view *v, const uint8_t *rec, uint32_t len)
{
        const struct dp_cmd *h = v->hdr;
        const struct dp_msg_in *m = v->has_msg ? &v->msg : NULL;
        FZ_CHECK(dp_cmd_bytes(h->name_len, m) == len);
        dp_cmd_encode(fz_encoded, len, h, v->name, m);
        FZ_CHECK(memcmp(fz_encoded, rec, sizeof(*h) + h->name_len) == 0);
        if (m == NULL)
                return;
        uint32_t frame_off = (uint32_t)(sizeof(*h) + shm_align_up(h->name_len, 8));
        struct atomq_frame a, b;
        memcpy(&a, rec + frame_off, sizeof(a));
        memcpy(&b, fz_encoded + frame_off, sizeof(b));
        FZ_CHECK(a.op == b.op && a.subject_len == b.subject_len);
        FZ_CHECK(a.headers_len == b.headers_len && a.payload_len == b.payload_len);
        FZ_CHECK(a.reply == b.reply && a.ttl_ms == b.ttl_ms);
        uint32_t body = frame_off + ATOMQ_FRAME_HDR_BYTES;
        FZ_CHECK(memcmp(fz_encoded + body, rec + body, len - body) == 0);
}

/* dp_cmd_parse on rec[0..len), of which only rec[0..avail) is real (the
 * worker copies at most DP_CMD_BYTES_MAX bytes and passes the full length). */
static int fz_parse(const uint8_t *rec, uint32_t len, uint32_t avail, uint32_t clients)
{
        struct dp_cmd_view v;
        memset(&v, 0x5a, sizeof(v));
        int rc = dp_cmd_parse(rec, len, clients, &v);
        FZ_CHECK(rc == 0 || rc == -EPROTO || rc == -EINVAL || rc == -EMSGSIZE);
        const struct dp_cmd *h = (const struct dp_cmd *)rec;
        bool usable = fz_hdr_usable(h, len, clients);
        FZ_CHECK((rc == -EPROTO) == !usable);
        FZ_CHECK(rc == -EPROTO ? v.hdr == NULL : v.hdr == h);
        FZ_CHECK(rc != -EMSGSIZE || len > DP_CMD_BYTES_MAX);
        if (rc != 0)
                return rc;
        FZ_CHECK(len <= avail && len <= DP_CMD_BYTES_MAX);
        FZ_CHECK(h->name_len <= DP_CMD_NAME_MAX);
        FZ_CHECK((v.name == NULL) == (h->name_len == 0));
        FZ_CHECK(v.name == NULL || v.name == (const char *)rec + sizeof(*h));
        FZ_CHECK(fz_inside(v.name, h->name_len, rec, len));
        FZ_CHECK(sizeof(*h) + shm_align_up(h->name_len, 8) + h->frame_len == len);
        fz_touch(v.name, h->name_len);
        fz_check_msg(&v, rec, len);
        fz_check_roundtrip(&v, rec, len);
        return 0;
}

/* --- the ring ------------------------------------------------------- */

static uint32_t fz_capacity(uint8_t flags)
{
        static const uint32_t caps[4] = { 4096, FZ_CAPACITY_MAX, SHM_VRING_CAPACITY_MIN, 256 };
        return caps[(flags >> 1) & 3];
}

/* What the peer leaves in the shared memory: the header's indexes (and
 * geometry, with flag bit 3) and the data area. */
static void fz_ring_lay(struct fz_in *in, uint8_t flags, uint32_t capacity)
{
        struct shm_vring prod;
        size_t bytes = shm_vring_bytes(capacity);
        FZ_CHECK(shm_vring_init(&prod, fz_ring, bytes, capacity) == 0);
        struct shm_vring_hdr *h = (struct shm_vring_hdr *)fz_ring;
        uint64_t tail = fz_take(in, 8);
        uint64_t head = tail + fz_take(in, 4);
        atomic_store_explicit(&h->tail, tail, memory_order_relaxed);
        atomic_store_explicit(&h->head, head, memory_order_relaxed);
        if (flags & 8) {
                h->magic ^= (uint32_t)fz_take(in, 4);
                h->version ^= (uint16_t)fz_take(in, 2);
                h->reserved ^= (uint16_t)fz_take(in, 2);
                h->capacity ^= (uint32_t)fz_take(in, 4);
        }
        uint8_t *area = fz_ring + sizeof(*h);
        memset(area, 0, capacity);
        uint32_t off = (uint32_t)(tail & (capacity - 1));
        for (uint32_t i = 0; i < capacity && in->left > 0; i++) {
                area[(off + i) & (capacity - 1)] = *in->p++;
                in->left--;
        }
}

/* attach refuses exactly what shm_vring.h says it refuses. */
static int fz_ring_attach(struct shm_vring *r, uint8_t flags, uint32_t capacity)
{
        const struct shm_vring_hdr *h = (const struct shm_vring_hdr *)fz_ring;
        uint64_t head = atomic_load_explicit(&h->head, memory_order_relaxed);
        uint64_t tail = atomic_load_explicit(&h->tail, memory_order_relaxed);
        int rc = shm_vring_attach(r, fz_ring, shm_vring_bytes(capacity));
        FZ_CHECK(rc == 0 || rc == -EPROTO || rc == -EINVAL || rc == -ENOSPC);
        if (!(flags & 8)) {
                bool sane = head % 8 == 0 && tail % 8 == 0 && head - tail <= capacity;
                FZ_CHECK((rc == 0) == sane);
        }
        if (rc != 0)
                return rc;
        FZ_CHECK(r->data == fz_ring + sizeof(*h));
        FZ_CHECK(r->capacity == h->capacity && r->tail == tail);
        FZ_CHECK(r->capacity <= capacity && r->rec_max == r->capacity / 2 - 8);
        /* The worker refuses a ring whose size is not the one it expects. */
        return r->capacity == capacity ? 0 : -EPROTO;
}

/* The record peek handed out lies in the data area, after its header. */
static void fz_check_rec(const struct shm_vring *r, const struct shm_vring_rec *rec)
{
        const uint8_t *d = rec->data;
        FZ_CHECK(d >= r->data + sizeof(struct shm_vring_rec_hdr));
        FZ_CHECK(d <= r->data + r->capacity);
        FZ_CHECK((uint64_t)(d - r->data) % SHM_VRING_ALIGN == 0);
        FZ_CHECK(rec->len <= (uint64_t)(r->data + r->capacity - d));
        FZ_CHECK(rec->len <= r->rec_max);
        FZ_CHECK(rec->type != SHM_VRING_TYPE_PAD);
        fz_touch(d, rec->len);
}

/* The worker's hands on one command record: copy, stamp, parse. */
static void fz_ring_cmd(const struct shm_vring_rec *rec)
{
        if (rec->type != DP_REC_CMD || rec->len < sizeof(struct dp_cmd))
                return;         /* the worker counts a bad record */
        uint32_t copy = rec->len < DP_CMD_BYTES_MAX ? rec->len : DP_CMD_BYTES_MAX;
        memcpy(fz_copy, rec->data, copy);
        /* As dp_worker_agent_stamp: the agent acts only as itself. */
        struct dp_cmd *c = (struct dp_cmd *)fz_copy;
        c->client = (uint16_t)(FZ_CLIENTS + FZ_SLOT);
        if (c->op == ATOMQ_OP_SUB)
                c->args.sub.endpoint = FZ_ENDPOINT;
        else if (c->op == DP_OP_BIND || c->op == DP_OP_UNBIND)
                c->args.bind.endpoint = FZ_ENDPOINT;
        else if (c->op == ATOMQ_OP_REQUEST)
                c->args.request.endpoint = FZ_ENDPOINT;
        int rc = fz_parse(fz_copy, rec->len, copy, FZ_CLIENTS + FZ_AGENTS);
        /* A stamped header names a real client: only its body can fail. */
        FZ_CHECK(rc != -EPROTO || c->magic != DP_CMD_MAGIC || c->version != DP_CMD_VERSION ||
                 !dp_cmd_op_valid(c->op));
}

static void fz_ring_drain(struct shm_vring *r)
{
        for (unsigned n = 0; n < FZ_RECS_MAX; n++) {
                struct shm_vring_rec rec, again;
                int rc = shm_vring_peek(r, &rec);
                FZ_CHECK(rc == 1 || rc == 0 || rc == -EPROTO);
                if (rc <= 0)
                        return;   /* empty, or the agent is marked bad */
                fz_check_rec(r, &rec);
                FZ_CHECK(shm_vring_peek(r, &again) == 1);
                FZ_CHECK(again.data == rec.data && again.len == rec.len &&
                         again.type == rec.type);
                fz_ring_cmd(&rec);
                uint64_t before = r->tail;
                uint64_t end = (uint64_t)((const uint8_t *)rec.data - r->data) +
                               shm_align_up(rec.len, SHM_VRING_ALIGN);
                shm_vring_release(r);
                FZ_CHECK(r->tail - before > 0 && r->tail - before <= r->capacity);
                FZ_CHECK((r->tail & r->mask) == (end & r->mask));
                FZ_CHECK(atomic_load_explicit(&r->hdr->tail, memory_order_relaxed) == r->tail);
        }
}

/* The worker writing completions or deliveries into an agent's ring: the
 * agent owns tail, and moves it as the script says, backwards too. */
static void fz_ring_produce(struct shm_vring *r, struct fz_in *script)
{
        struct shm_vring_hdr *h = r->hdr;
        while (script->left > 0) {
                uint32_t len = (uint32_t)fz_take(script, 2);
                int64_t moved = (int16_t)fz_take(script, 2);
                uint64_t tail = atomic_load_explicit(&h->tail, memory_order_relaxed);
                atomic_store_explicit(&h->tail, tail + (uint64_t)moved * 8, memory_order_relaxed);
                uint8_t *p = shm_vring_reserve(r, len);
                if (p == NULL) {
                        int err = r->reserve_err;
                        FZ_CHECK(err == -EMSGSIZE || err == -ENOBUFS || err == -EPROTO);
                        FZ_CHECK((err == -EMSGSIZE) == (len > r->rec_max));
                        if (err == -EPROTO)
                                return;   /* the worker marks the agent bad */
                        continue;
                }
                FZ_CHECK(p >= r->data + sizeof(struct shm_vring_rec_hdr));
                FZ_CHECK((uint64_t)(p - r->data) % SHM_VRING_ALIGN == 0);
                FZ_CHECK(len <= (uint64_t)(r->data + r->capacity - p));
                memset(p, 0xa5, len);
                uint64_t head = r->head;
                shm_vring_commit(r, DP_REC_CPL);
                FZ_CHECK(r->head - head >= sizeof(struct shm_vring_rec_hdr) + len);
                FZ_CHECK(r->head - r->tail <= r->capacity);
                const struct shm_vring_rec_hdr *rh = (const void *)(p - sizeof(*rh));
                const struct shm_vring_rec_hdr *next = (const void *)(r->data + (r->head & r->mask));
                FZ_CHECK(atomic_load(&rh->len) == (SHM_VRING_COMMITTED | len));
                FZ_CHECK(atomic_load(&next->len) == 0);
                FZ_CHECK(atomic_load(&h->head) == r->head);
        }
}

static void fz_ring_mode(struct fz_in *in, uint8_t flags)
{
        uint32_t capacity = fz_capacity(flags);
        struct shm_vring r;
        struct fz_in script = { NULL, 0 };
        if (flags & 16) {
                /* Up to 31 steps of 4 bytes: payload length, tail move / 8. */
                size_t n = 4 * (fz_take(in, 1) & 31);
                script = (struct fz_in){ in->p, n < in->left ? n : in->left };
                in->p += script.left;
                in->left -= script.left;
        }
        fz_ring_lay(in, flags, capacity);
        if (fz_ring_attach(&r, flags, capacity) != 0)
                return;
        if (flags & 16)
                fz_ring_produce(&r, &script);
        else
                fz_ring_drain(&r);
}

/* --- raw records ----------------------------------------------------- */

static void fz_raw_mode(const uint8_t *p, size_t n, uint8_t flags)
{
        /* An exact-size, 8-aligned (malloc's) copy: ASan sees any read past
         * the record. */
        uint32_t len = n > DP_CMD_BYTES_MAX * 4u ? DP_CMD_BYTES_MAX * 4u : (uint32_t)n;
        uint8_t *rec = malloc(len ? len : 1);
        FZ_CHECK(rec != NULL && (uintptr_t)rec % 8 == 0);
        memcpy(rec, p, len);
        uint32_t clients = 1u + ((flags >> 1) & 63u);
        fz_parse(rec, len, len, clients);
        free(rec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (fz_ring == NULL) {
                fz_ring = aligned_alloc(SHM_CACHE_LINE, shm_vring_bytes(FZ_CAPACITY_MAX));
                fz_copy = aligned_alloc(SHM_CACHE_LINE, DP_CMD_BYTES_MAX);
                fz_encoded = aligned_alloc(SHM_CACHE_LINE, DP_CMD_BYTES_MAX);
                FZ_CHECK(fz_ring != NULL && fz_copy != NULL && fz_encoded != NULL);
        }
        if (size == 0)
                return 0;
        uint8_t flags = data[0];
        if (flags & 1) {
                fz_raw_mode(data + 1, size - 1, flags);
                return 0;
        }
        struct fz_in in = { data + 1, size - 1 };
        fz_ring_mode(&in, flags);
        return 0;
}
