/* dp_cmd.c - encoding, parsing and walking command and completion records
 * (the format is described in dp_cmd.h).
 *
 * Parsing never trusts a length: every section is checked against the
 * record's real length before it is looked at, and the frame goes through
 * atomq_frame_check, which bounds each of its lengths.
 */
#include "dataplane/dp_cmd.h"

#include <errno.h>
#include <string.h>

#include "shm/shm_base.h"

/* Where the frame starts: after the header and the name, padded to 8. */
static uint32_t dp_cmd_frame_off(uint32_t name_len)
{
        return (uint32_t)(sizeof(struct dp_cmd) + shm_align_up(name_len, 8));
}

uint64_t dp_frame_bytes(const struct dp_msg_in *m)
{
        uint64_t subject_len = (uint64_t)m->subject_len + m->reply_subject_len;
        if (subject_len > ATOMQ_FRAME_SUBJECT_MAX || m->headers_len > ATOMQ_FRAME_HEADERS_MAX ||
            m->payload_len > ATOMQ_FRAME_PAYLOAD_MAX)
                return 0;
        return atomq_frame_bytes((uint32_t)subject_len, m->headers_len, m->payload_len);
}

void dp_frame_write(void *out, enum atomq_frame_op op, const struct dp_msg_in *m)
{
        uint32_t subject_len = m->subject_len + m->reply_subject_len;
        DP_ASSERT(dp_frame_bytes(m) != 0);
        struct atomq_frame f;
        atomq_frame_init(&f, op, (uint16_t)subject_len, m->headers_len, m->payload_len);
        f.reply = m->reply;
        if (m->reply_subject_len != 0) {
                /* The section holds both; reply becomes the reply's length. */
                f.flags |= ATOMQ_FRAME_F_REPLY_SUBJECT;
                f.reply = m->reply_subject_len;
        }
        f.ttl_ms = m->ttl_ms;
        uint8_t *p = out;
        memcpy(p, &f, sizeof(f));
        p += sizeof(f);
        if (m->subject_len != 0)
                memcpy(p, m->subject, m->subject_len);
        if (m->reply_subject_len != 0)
                memcpy(p + m->subject_len, m->reply_subject, m->reply_subject_len);
        p += subject_len;
        if (m->headers_len != 0)
                memcpy(p, m->headers, m->headers_len);
        if (m->payload_len != 0)
                memcpy(p + m->headers_len, m->payload, m->payload_len);
}

void dp_frame_read(const struct atomq_frame *f, const uint8_t *frame, struct dp_msg_in *m)
{
        const uint8_t *sec = frame + sizeof(*f);
        uint32_t reply_len = atomq_frame_reply_len(f);
        *m = (struct dp_msg_in){
                .subject = (const char *)sec,
                .subject_len = f->subject_len - reply_len,
                .headers = f->headers_len != 0 ? sec + f->subject_len : NULL,
                .headers_len = f->headers_len,
                .payload = sec + f->subject_len + f->headers_len,
                .payload_len = f->payload_len,
                .ttl_ms = f->ttl_ms,
                .storage = -1,
                .reply = reply_len != 0 ? 0 : f->reply,
        };
        if (reply_len != 0) {
                m->reply_subject = (const char *)sec + m->subject_len;
                m->reply_subject_len = reply_len;
        }
}

uint32_t dp_cmd_bytes(uint32_t name_len, const struct dp_msg_in *m)
{
        if (name_len > DP_CMD_NAME_MAX)
                return 0;
        uint64_t total = dp_cmd_frame_off(name_len);
        if (m != NULL) {
                uint64_t frame = dp_frame_bytes(m);
                if (frame == 0)
                        return 0;
                total += frame;
        }
        return total <= DP_CMD_BYTES_MAX ? (uint32_t)total : 0;
}

void dp_cmd_encode(void *out, uint32_t len, const struct dp_cmd *hdr, const char *name,
                   const struct dp_msg_in *m)
{
        uint32_t frame_off = dp_cmd_frame_off(hdr->name_len);
        DP_ASSERT(len == dp_cmd_bytes(hdr->name_len, m));
        DP_ASSERT((uintptr_t)out % 8 == 0);
        uint8_t *p = out;
        struct dp_cmd h = *hdr;
        h.magic = DP_CMD_MAGIC;
        h.version = DP_CMD_VERSION;
        h.frame_len = len - frame_off;
        memcpy(p, &h, sizeof(h));
        if (hdr->name_len != 0)
                memcpy(p + sizeof(h), name, hdr->name_len);
        /* Padding bytes are zeroed: records in shared memory carry no stale
         * bytes of ours. */
        memset(p + sizeof(h) + hdr->name_len, 0, frame_off - sizeof(h) - hdr->name_len);
        if (m != NULL)
                dp_frame_write(p + frame_off, (enum atomq_frame_op)hdr->op, m);
}

/* The message of a send or publish: the frame's sections and the send
 * arguments that have no place in a frame. */
static int dp_cmd_parse_msg(const uint8_t *frame, uint32_t frame_len, struct dp_cmd_view *v)
{
        struct atomq_frame f;
        const struct dp_cmd *h = v->hdr;
        if (atomq_frame_check(frame, frame_len, &f) != ATOMQ_FRAME_OK || f.op != h->op)
                return -EINVAL;
        v->has_msg = true;
        dp_frame_read(&f, frame, &v->msg);
        if (h->op == ATOMQ_OP_SEND) {
                if (h->args.send.flags & DP_CMD_SEND_F_STORAGE)
                        v->msg.storage = h->args.send.storage;
                v->msg.end = h->args.send.end;
        }
        return 0;
}

int dp_cmd_parse(const void *rec, uint32_t len, uint32_t clients, struct dp_cmd_view *v)
{
        const struct dp_cmd *h = rec;
        memset(v, 0, sizeof(*v));
        if (len < sizeof(*h) || h->magic != DP_CMD_MAGIC || h->version != DP_CMD_VERSION ||
            h->client >= clients || !dp_cmd_op_valid(h->op))
                return -EPROTO;
        v->hdr = h;
        if (len > DP_CMD_BYTES_MAX)
                return -EMSGSIZE;
        if (h->name_len > DP_CMD_NAME_MAX)
                return -EINVAL;
        uint32_t frame_off = dp_cmd_frame_off(h->name_len);
        /* Both terms are bounded (16 KiB, 4 GiB), so the sum cannot wrap. */
        if ((uint64_t)frame_off + h->frame_len != len)
                return -EINVAL;
        if (h->name_len != 0)
                v->name = (const char *)rec + sizeof(*h);
        if (!dp_cmd_op_has_msg(h->op))
                return h->frame_len == 0 ? 0 : -EINVAL;
        return dp_cmd_parse_msg((const uint8_t *)rec + frame_off, h->frame_len, v);
}

int dp_cpl_msg_next(const struct dp_cpl *c, uint32_t len, uint32_t *off, struct dp_cpl_msg *m)
{
        if (len < sizeof(*c) || (uint64_t)sizeof(*c) + c->msgs_bytes != len)
                return -EPROTO;
        if (*off >= c->msgs_bytes)
                return 0;
        const uint8_t *p = (const uint8_t *)(c + 1) + *off;
        uint32_t left = c->msgs_bytes - *off;
        if (left < sizeof(m->frame))
                return -EPROTO;
        struct atomq_frame f;
        memcpy(&f, p, sizeof(f));
        uint64_t bytes = atomq_frame_bytes(f.subject_len, f.headers_len, f.payload_len);
        if (bytes > left || atomq_frame_check(p, (size_t)bytes, &m->frame) != ATOMQ_FRAME_OK)
                return -EPROTO;
        m->subject = (const char *)p + sizeof(f);
        m->headers = p + sizeof(f) + f.subject_len;
        m->payload = m->headers + f.headers_len;
        uint64_t next = *off + shm_align_up(bytes, 8);
        *off = next < c->msgs_bytes ? (uint32_t)next : c->msgs_bytes;
        return 1;
}
