/* test_frame.c - the frame header layout and atomq_frame_check's refusals. */
#include <criterion/criterion.h>
#include <string.h>

#include "atomq/frame.h"

static size_t frame_build(uint8_t *buf, const char *subject, const char *payload)
{
        struct atomq_frame f;
        uint16_t sl = (uint16_t)strlen(subject);
        uint32_t pl = (uint32_t)strlen(payload);
        atomq_frame_init(&f, ATOMQ_OP_PUB, sl, 0, pl);
        memcpy(buf, &f, sizeof(f));
        memcpy(buf + sizeof(f), subject, sl);
        memcpy(buf + sizeof(f) + sl, payload, pl);
        return sizeof(f) + sl + pl;
}

Test(frame, accepts_a_well_formed_frame)
{
        uint8_t buf[256];
        struct atomq_frame out;
        size_t len = frame_build(buf, "orders.eu", "hello");
        cr_assert_eq(len, 48 + 9 + 5);
        cr_assert_eq(atomq_frame_check(buf, len, &out), ATOMQ_FRAME_OK);
        cr_assert_eq(out.op, ATOMQ_OP_PUB);
        cr_assert_eq(out.subject_len, 9);
        cr_assert_eq(out.payload_len, 5);
        cr_assert_eq(memcmp(buf + 48, "orders.eu", 9), 0);
}

Test(frame, header_is_little_endian_on_the_wire)
{
        uint8_t buf[256];
        frame_build(buf, "a", "xyz");
        cr_assert_eq(buf[0], 0x41);     /* 'A' of magic 0x5141 */
        cr_assert_eq(buf[1], 0x51);     /* 'Q' */
        cr_assert_eq(buf[2], ATOMQ_FRAME_VERSION);
        cr_assert_eq(buf[12], 3);       /* payload_len low byte */
}

Test(frame, refuses_truncated_header_and_body)
{
        uint8_t buf[256];
        size_t len = frame_build(buf, "a.b", "payload");
        cr_assert_eq(atomq_frame_check(buf, 47, NULL), ATOMQ_FRAME_ETRUNC);
        cr_assert_eq(atomq_frame_check(buf, len - 1, NULL), ATOMQ_FRAME_ETRUNC);
        cr_assert_eq(atomq_frame_check(buf, len + 1, NULL), ATOMQ_FRAME_ETRAIL);
}

Test(frame, refuses_bad_magic_version_and_op)
{
        uint8_t buf[256];
        size_t len = frame_build(buf, "a", "b");
        buf[0] ^= 0xff;
        cr_assert_eq(atomq_frame_check(buf, len, NULL), ATOMQ_FRAME_EMAGIC);
        buf[0] ^= 0xff;
        buf[2] = 9;
        cr_assert_eq(atomq_frame_check(buf, len, NULL), ATOMQ_FRAME_EVERSION);
        buf[2] = ATOMQ_FRAME_VERSION;
        buf[3] = ATOMQ_OP_MAX_;
        cr_assert_eq(atomq_frame_check(buf, len, NULL), ATOMQ_FRAME_EOP);
        buf[3] = ATOMQ_OP_NOP;
        cr_assert_eq(atomq_frame_check(buf, len, NULL), ATOMQ_FRAME_EOP);
}

Test(frame, refuses_lengths_past_their_bounds_without_overflow)
{
        uint8_t buf[256];
        struct atomq_frame f;
        size_t len = frame_build(buf, "a", "b");
        memcpy(&f, buf, sizeof(f));
        f.payload_len = UINT32_MAX;   /* would wrap a 32-bit sum */
        memcpy(buf, &f, sizeof(f));
        cr_assert_eq(atomq_frame_check(buf, len, NULL), ATOMQ_FRAME_ELEN);
        f.payload_len = 1;
        f.subject_len = ATOMQ_FRAME_SUBJECT_MAX + 1;
        memcpy(buf, &f, sizeof(f));
        cr_assert_eq(atomq_frame_check(buf, len, NULL), ATOMQ_FRAME_ELEN);
        f.subject_len = 1;
        f.headers_len = ATOMQ_FRAME_HEADERS_MAX + 1;
        memcpy(buf, &f, sizeof(f));
        cr_assert_eq(atomq_frame_check(buf, len, NULL), ATOMQ_FRAME_ELEN);
}

Test(frame, reply_subject_must_leave_a_subject)
{
        uint8_t buf[256];
        struct atomq_frame f, out;
        /* "orders.eu" then the reply subject "_INBOX.1" in one section. */
        size_t len = frame_build(buf, "orders.eu_INBOX.1", "x");
        memcpy(&f, buf, sizeof(f));
        f.flags |= ATOMQ_FRAME_F_REPLY_SUBJECT;
        f.reply = 8;
        memcpy(buf, &f, sizeof(f));
        cr_assert_eq(atomq_frame_check(buf, len, &out), ATOMQ_FRAME_OK);
        cr_expect_eq(atomq_frame_reply_len(&out), 8);
        f.reply = 17; /* the whole section: no subject left */
        memcpy(buf, &f, sizeof(f));
        cr_expect_eq(atomq_frame_check(buf, len, NULL), ATOMQ_FRAME_ELEN);
        f.reply = UINT64_MAX;
        memcpy(buf, &f, sizeof(f));
        cr_expect_eq(atomq_frame_check(buf, len, NULL), ATOMQ_FRAME_ELEN);
        f.flags = 0; /* without the flag reply is a handle, any value */
        memcpy(buf, &f, sizeof(f));
        cr_expect_eq(atomq_frame_check(buf, len, &out), ATOMQ_FRAME_OK);
        cr_expect_eq(atomq_frame_reply_len(&out), 0);
}
