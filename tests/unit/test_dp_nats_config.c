/* test_dp_nats_config.c - the NATS listener's configuration word (what
 * atomqd hands atomq-dataplane as --nats SPEC) and the message frames that
 * carry a NATS reply subject through rings and buffers (dp_frame_*). */
#include <criterion/criterion.h>
#include <string.h>

#include "dataplane/dp_cmd.h"
#include "dataplane/dp_nats.h"

Test(dp_nats_config, spec_round_trips)
{
        struct dp_nats_config a, b;
        dp_nats_config_default(&a);
        cr_assert_eq(dp_nats_config_addr(&a, "127.0.0.2:14222"), 0);
        a.max_conns = 77;
        a.max_payload = 4096;
        a.max_pending = 5ull << 30;
        a.max_subs = 9;
        a.ping_interval_ms = 1500;
        char spec[160];
        cr_assert_gt(dp_nats_spec_format(&a, spec, sizeof(spec)), 0);
        dp_nats_config_default(&b);
        cr_assert_eq(dp_nats_spec_parse(&b, spec), 0, "%s", spec);
        cr_expect_str_eq(b.host, "127.0.0.2");
        cr_expect_eq(b.port, 14222);
        cr_expect_eq(b.max_conns, 77);
        cr_expect_eq(b.max_payload, 4096);
        cr_expect_eq(b.max_pending, 5ull << 30);
        cr_expect_eq(b.max_subs, 9);
        cr_expect_eq(b.ping_interval_ms, 1500);
        cr_expect(b.enabled);
}

Test(dp_nats_config, ipv6_and_defaults)
{
        struct dp_nats_config c;
        dp_nats_config_default(&c);
        cr_assert_eq(dp_nats_spec_parse(&c, "[::1]:4333"), 0);
        cr_expect_str_eq(c.host, "::1");
        cr_expect_eq(c.port, 4333);
        cr_expect_eq(c.max_payload, 1024u * 1024, "keys left out keep their defaults");
        char spec[160];
        cr_assert_gt(dp_nats_spec_format(&c, spec, sizeof(spec)), 0);
        cr_expect_eq(strncmp(spec, "[::1]:4333,", 11), 0, "%s", spec);
}

Test(dp_nats_config, refuses_bad_words)
{
        const char *bad[] = { "", "4222", ":4222", "host:", "h:65536", "h:42x", "[::1:4222",
                              "127.0.0.1:4222,conns", "127.0.0.1:4222,conns=",
                              "127.0.0.1:4222,conns=-1", "127.0.0.1:4222,conns=4294967296",
                              "127.0.0.1:4222,nope=1", "127.0.0.1:4222,conns=1x" };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                struct dp_nats_config c;
                dp_nats_config_default(&c);
                cr_expect_eq(dp_nats_spec_parse(&c, bad[i]), -EINVAL, "%s", bad[i]);
                cr_expect(!c.enabled, "%s", bad[i]);
        }
        struct dp_nats_config c;
        dp_nats_config_default(&c);
        char small[8];
        cr_expect_eq(dp_nats_spec_format(&c, small, sizeof(small)), -ENOSPC);
}

Test(dp_frame, carries_a_reply_subject)
{
        struct dp_msg_in m = { .subject = "orders.eu", .subject_len = 9,
                               .reply_subject = "_INBOX.x.1", .reply_subject_len = 10,
                               .headers = "NATS/1.0\r\n\r\n", .headers_len = 12,
                               .payload = "hello", .payload_len = 5, .ttl_ms = 7 };
        uint64_t len = dp_frame_bytes(&m);
        cr_assert_eq(len, 48 + 19 + 12 + 5);
        _Alignas(8) uint8_t buf[256];
        dp_frame_write(buf, ATOMQ_OP_PUB, &m);
        struct atomq_frame f;
        cr_assert_eq(atomq_frame_check(buf, len, &f), ATOMQ_FRAME_OK);
        struct dp_msg_in r;
        dp_frame_read(&f, buf, &r);
        cr_expect_eq(r.subject_len, 9);
        cr_expect_eq(memcmp(r.subject, "orders.eu", 9), 0);
        cr_expect_eq(r.reply_subject_len, 10);
        cr_expect_eq(memcmp(r.reply_subject, "_INBOX.x.1", 10), 0);
        cr_expect_eq(r.reply, 0, "a reply subject is not a handle");
        cr_expect_eq(r.headers_len, 12);
        cr_expect_eq(r.payload_len, 5);
        cr_expect_eq(memcmp(r.payload, "hello", 5), 0);
        cr_expect_eq(r.ttl_ms, 7);
}

Test(dp_frame, refuses_a_subject_and_reply_above_the_bound)
{
        char big[200];
        memset(big, 'a', sizeof(big));
        struct dp_msg_in m = { .subject = big, .subject_len = 200, .reply_subject = big,
                               .reply_subject_len = 56 };
        cr_expect_eq(dp_frame_bytes(&m), 0, "256 bytes of subject section");
        m.reply_subject_len = 55;
        cr_expect_eq(dp_frame_bytes(&m), 48 + 255);
        struct dp_msg_in h = { .subject = "s", .subject_len = 1, .reply = 42 };
        _Alignas(8) uint8_t buf[64];
        dp_frame_write(buf, ATOMQ_OP_PUB, &h);
        struct atomq_frame f;
        cr_assert_eq(atomq_frame_check(buf, dp_frame_bytes(&h), &f), ATOMQ_FRAME_OK);
        struct dp_msg_in r;
        dp_frame_read(&f, buf, &r);
        cr_expect_eq(r.reply, 42, "a handle stays a handle");
        cr_expect_null(r.reply_subject);
}
