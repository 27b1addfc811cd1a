/* test_ctl_cmd.c - the control socket: tokenizer and duration limits, the
 * reply writer's escaping (every JSON reply is parsed with jansson), every
 * command of the table against a real in-process engine, the negative
 * space (unknown words, missing and extra arguments, unknown options, bad
 * values, bad names, a stopping atomqd, no engine), and the server over a
 * real unix socket with a real ctl_loop: greeting, mode 0600, over-long
 * lines, pipelining, JSON lines, the client limit, a stale socket removed
 * and a live one refused.
 *
 *      meson test -C build ctl_cmd
 *      build/tests/test_ctl_cmd --verbose
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "control/ctl_cmd.h"
#include "control/ctl_server.h"

/* --- an engine and a session, no socket ------------------------------ */

static struct dp_engine eng;
static struct ctl_config cfg;
static struct ctl_ctx ctx;
static struct ctl_dp dp;
static struct ctl_env env;
static struct ctl_session ses;
static char outbuf[CTL_OUT_BYTES + 1];

static void engine_up(void)
{
        struct dp_engine_config ec;
        dp_engine_config_default(&ec, 4096);
        ec.workers = 2;
        ec.hugepages = SHM_HUGEPAGES_OFF;
        cr_assert_eq(dp_engine_init(&eng, &ec), 0);
        cr_assert_eq(dp_engine_start(&eng), 0);
        ctx = (struct ctl_ctx){ .cfg = &cfg, .engine = &eng, .started_realtime_ns = 1 };
}

static void cmd_setup(void)
{
        engine_up();
        cr_assert_eq(ctl_dp_init(&dp, &eng, 0), 0);
        env = (struct ctl_env){ .ctx = &ctx, .dp = &dp, .control_path = "/test",
                                .clients = 1, .clients_max = 8 };
        ctl_session_init(&ses, &env);
}

static void cmd_teardown(void)
{
        ctl_cmd_abort(&ses);
        dp_engine_fini(&eng);
}

/* Runs a line to the end of its reply (resuming long commands) and
 * returns the reply, NUL-terminated. */
static const char *run(const char *line)
{
        struct ctl_out o;
        ctl_out_init(&o, outbuf, CTL_OUT_BYTES, 0, false);
        enum ctl_run r = ctl_cmd_exec(&ses, line, (uint32_t)strlen(line), &o);
        for (int i = 0; r == CTL_RUN_MORE; i++) {
                cr_assert_lt(i, 100000, "a long command never ends: %s", line);
                if (ctl_out_room(&o) < CTL_ITEM_MAX)
                        o.len = 0;   /* a client that read everything */
                r = ctl_cmd_resume(&ses, &o, CTL_SLICE_NS);
        }
        outbuf[o.len] = 0;
        cr_assert_geq(o.len, 1, "every reply ends with an empty line: %s", line);
        cr_assert_eq(outbuf[o.len - 1], '\n');
        if (o.len >= 2)
                cr_assert_eq(outbuf[o.len - 2], '\n', "no empty line after: %s", outbuf);
        return outbuf;
}

static bool starts(const char *s, const char *prefix)
{
        return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Runs a json line whose reply is one object and returns it parsed. */
static json_t *run_json(const char *line)
{
        const char *r = run(line);
        json_error_t err;
        size_t len = strlen(r);
        cr_assert_geq(len, 3);
        cr_assert(strchr(r, '\n') == r + len - 2, "one object, one line: %s", r);
        json_t *j = json_loadb(r, len - 2, 0, &err);
        cr_assert_not_null(j, "not JSON (%s): %s", err.text, r);
        return j;
}

static void assert_error(const char *line, const char *ename, bool usage)
{
        const char *r = run(line);
        cr_assert(starts(r, "error: "), "'%s' should fail: %s", line, r);
        char want[64];
        snprintf(want, sizeof(want), "(%s)\n", ename);
        cr_assert_not_null(strstr(r, want), "'%s' should be %s: %s", line, ename, r);
        cr_assert_eq(strstr(r, "\nusage: ") != NULL, usage, "usage for '%s': %s", line, r);
}

/* --- tokenizer, durations --------------------------------------------- */

Test(ctl_cmd, splits_words_on_spaces_and_tabs)
{
        struct ctl_args a;
        const char *line = " create\tmailbox  a.b  ttl=1s ";
        cr_assert_eq(ctl_args_split(&a, line, (uint32_t)strlen(line)), 0);
        cr_assert_eq(a.count, 4);
        cr_assert_str_eq(a.v[0], "create");
        cr_assert_str_eq(a.v[1], "mailbox");
        cr_assert_str_eq(a.v[3], "ttl=1s");
        cr_assert_eq(a.off[2], 17);
        cr_assert_eq(a.len[2], 3);
        cr_assert_not(a.more);
        cr_assert_eq(ctl_args_split(&a, "   ", 3), 0);
        cr_assert_eq(a.count, 0);
}

Test(ctl_cmd, tokenizer_limits_words_and_line_length)
{
        struct ctl_args a;
        static char line[CTL_LINE_MAX + 8];
        char *p = line;
        for (int i = 0; i < 20; i++)
                p += sprintf(p, "w%d ", i);
        cr_assert_eq(ctl_args_split(&a, line, (uint32_t)strlen(line)), 0);
        cr_assert_eq(a.count, CTL_ARGS_MAX);
        cr_assert(a.more);
        memset(line, 'x', sizeof(line));
        cr_assert_eq(ctl_args_split(&a, line, CTL_LINE_MAX), -EMSGSIZE);
        /* One word as long as a line can be. */
        cr_assert_eq(ctl_args_split(&a, line, CTL_LINE_MAX - 1), 0);
        cr_assert_eq(a.count, 1);
        cr_assert_eq(a.len[0], CTL_LINE_MAX - 1);
}

Test(ctl_cmd, durations_need_a_unit)
{
        uint32_t ms = 7;
        cr_assert_eq(ctl_parse_duration("500ms", &ms), 0);
        cr_assert_eq(ms, 500);
        cr_assert_eq(ctl_parse_duration("30s", &ms), 0);
        cr_assert_eq(ms, 30000);
        cr_assert_eq(ctl_parse_duration("2m", &ms), 0);
        cr_assert_eq(ms, 120000);
        cr_assert_eq(ctl_parse_duration("1h", &ms), 0);
        cr_assert_eq(ms, 3600000);
        cr_assert_eq(ctl_parse_duration("0", &ms), 0);
        cr_assert_eq(ms, 0);
        ms = 7;
        cr_assert_eq(ctl_parse_duration("30", &ms), -EINVAL);
        cr_assert_eq(ctl_parse_duration("", &ms), -EINVAL);
        cr_assert_eq(ctl_parse_duration("s", &ms), -EINVAL);
        cr_assert_eq(ctl_parse_duration("-1s", &ms), -EINVAL);
        cr_assert_eq(ctl_parse_duration("1.5s", &ms), -EINVAL);
        cr_assert_eq(ctl_parse_duration("1y", &ms), -EINVAL);
        cr_assert_eq(ctl_parse_duration("50d", &ms), -ERANGE);
        cr_assert_eq(ctl_parse_duration("99999999999ms", &ms), -ERANGE);
        /* A missing or bad unit is -EINVAL however large the number
         * (fuzz_ctl_parse: it was -ERANGE). */
        cr_assert_eq(ctl_parse_duration("33333333333333", &ms), -EINVAL);
        cr_assert_eq(ctl_parse_duration("33333333333333x", &ms), -EINVAL);
        cr_assert_eq(ctl_parse_duration("33333333333333s", &ms), -ERANGE);
        cr_assert_eq(ms, 7, "nothing written on error");
}

/* --- the reply writer -------------------------------------------------- */

static char wbuf[4096];

static json_t *json_of(const struct ctl_out *o)
{
        json_error_t err;
        json_t *j = json_loadb(o->buf, o->len, 0, &err);
        cr_assert_not_null(j, "not JSON (%s): %.*s", err.text, (int)o->len, o->buf);
        return j;
}

Test(ctl_out, json_strings_escape_what_json_forbids)
{
        static const char odd[] = "q\"b\\s/\x01\n\t\x7f" "caf\xc3\xa9" "\xf0\x9f\x98\x80";
        struct ctl_out o;
        ctl_out_init(&o, wbuf, sizeof(wbuf), 0, true);
        ctl_out_rec_begin(&o, CTL_REC_LINES);
        ctl_out_str(&o, "name", odd, sizeof(odd) - 1);
        ctl_out_rec_end(&o);
        cr_assert_eq(o.buf[o.len - 1], '\n');
        cr_assert_not_null(memmem(wbuf, o.len, "\\u0001", 6));
        json_t *j = json_of(&o);
        cr_assert_str_eq(json_string_value(json_object_get(j, "name")), odd);
        json_decref(j);
}

Test(ctl_out, invalid_utf8_becomes_replacement_characters)
{
        /* A lone continuation byte, an overlong NUL, a surrogate, a cut
         * sequence, 0xff: each byte that starts no valid sequence is
         * U+FFFD, the valid neighbours survive. */
        static const char bad[] = "a\x80" "b\xc0\x80" "c\xed\xa0\x80" "d\xe2\x82" "e\xff";
        struct ctl_out o;
        ctl_out_init(&o, wbuf, sizeof(wbuf), 0, true);
        ctl_out_rec_begin(&o, CTL_REC_LINES);
        ctl_out_str(&o, "v", bad, sizeof(bad) - 1);
        ctl_out_rec_end(&o);
        json_t *j = json_of(&o);
        const char *v = json_string_value(json_object_get(j, "v"));
        cr_assert_str_eq(v, "a\xef\xbf\xbd" "b\xef\xbf\xbd\xef\xbf\xbd" "c\xef\xbf\xbd\xef\xbf\xbd"
                            "\xef\xbf\xbd" "d\xef\xbf\xbd\xef\xbf\xbd" "e\xef\xbf\xbd");
        json_decref(j);
}

Test(ctl_out, text_escapes_control_bytes_and_backslash)
{
        struct ctl_out o;
        ctl_out_init(&o, wbuf, sizeof(wbuf), 0, false);
        ctl_out_rec_begin(&o, CTL_REC_INLINE);
        ctl_out_str(&o, "name", "a\\b\nc\x01\xc3\xa9", 8);
        ctl_out_u64(&o, "n", 3);
        ctl_out_rec_end(&o);
        wbuf[o.len] = 0;
        cr_assert_str_eq(wbuf, "name=a\\\\b\\x0ac\\x01\xc3\xa9 n=3\n");
}

Test(ctl_out, nested_records_arrays_and_commas)
{
        struct ctl_out o;
        ctl_out_init(&o, wbuf, sizeof(wbuf), 0, true);
        ctl_out_rec_begin(&o, CTL_REC_LINES);
        ctl_out_bool(&o, "ok", true);
        ctl_out_arr_begin(&o, "xs");
        for (int i = 0; i < 3; i++) {
                ctl_out_rec_begin(&o, CTL_REC_INLINE);
                ctl_out_i64(&o, "i", -i);
                ctl_out_hex(&o, "h", 0xabcdef0123456789ull);
                ctl_out_rec_end(&o);
        }
        ctl_out_arr_end(&o);
        ctl_out_obj_begin(&o, "errors");
        ctl_out_u64(&o, "EEXIST", 2);
        ctl_out_obj_end(&o);
        ctl_out_fixed(&o, "ms", 1.5, 3);
        ctl_out_rec_end(&o);
        wbuf[o.len] = 0;
        cr_assert_str_eq(wbuf, "{\"ok\":true,\"xs\":[{\"i\":0,\"h\":\"0xabcdef0123456789\"},"
                               "{\"i\":-1,\"h\":\"0xabcdef0123456789\"},{\"i\":-2,\"h\":"
                               "\"0xabcdef0123456789\"}],\"errors\":{\"EEXIST\":2},"
                               "\"ms\":1.500}\n");
}

Test(ctl_out, overflow_is_marked_and_rewind_recovers)
{
        struct ctl_out o;
        char small[16];
        ctl_out_init(&o, small, sizeof(small), 0, false);
        uint32_t mark = ctl_out_mark(&o);
        ctl_out_textf(&o, "a line that is far too long for sixteen bytes");
        cr_assert(o.overflow);
        cr_assert_leq(o.len, sizeof(small));
        ctl_out_rewind(&o, mark);
        cr_assert_not(o.overflow);
        ctl_out_textf(&o, "short");
        cr_assert_eq(o.len, 6);
        cr_assert_str_eq(ctl_errno_name(-ENOENT), "ENOENT");
        cr_assert_str_eq(ctl_errno_name(EMSGSIZE), "EMSGSIZE");
}

/* --- the command table ------------------------------------------------- */

Test(ctl_cmd, table_is_the_source_of_usage)
{
        for (uint32_t i = 0; i < ctl_cmds_count; i++) {
                const struct ctl_cmd_def *d = &ctl_cmds[i];
                char head[64];
                snprintf(head, sizeof(head), "%s%s%s", d->verb, d->noun ? " " : "",
                         d->noun ? d->noun : "");
                if (d->noun != NULL || d->args_min == 0)
                        cr_assert(starts(d->usage, head), "usage of %s: %s", head, d->usage);
                else
                        cr_assert(starts(d->usage, d->verb), "usage of %s", d->verb);
                cr_assert_not_null(d->fn);
                cr_assert_gt(strlen(d->help), 8);
                cr_assert_leq(d->args_min, d->args_max);
        }
}

Test(ctl_cmd, help_lists_every_usage, .init = cmd_setup, .fini = cmd_teardown)
{
        const char *r = run("help");
        for (uint32_t i = 0; i < ctl_cmds_count; i++)
                cr_assert_not_null(strstr(r, ctl_cmds[i].usage), "help lacks %s", ctl_cmds[i].usage);
        json_t *j = run_json("json help");
        cr_assert(json_is_true(json_object_get(j, "ok")));
        cr_assert_eq(json_array_size(json_object_get(j, "commands")), ctl_cmds_count);
        json_decref(j);
}

/* --- every command, against a running engine --------------------------- */

Test(ctl_cmd, show_commands, .init = cmd_setup, .fini = cmd_teardown)
{
        const char *r = run("show info");
        cr_assert(starts(r, "version: " ATOMQ_VERSION "\n"), "%s", r);
        cr_assert_not_null(strstr(r, "workers: 2\n"));
        json_t *j = run_json("json show info");
        cr_assert(json_is_true(json_object_get(j, "ok")));
        cr_assert_eq(json_integer_value(json_object_get(j, "pid")), getpid());
        cr_assert_eq(json_integer_value(json_object_get(j, "max_entities_per_shard")), 4096);
        json_decref(j);
        r = run("show workers");
        cr_assert_not_null(strstr(r, "worker=0 entities=0 "), "%s", r);
        cr_assert_not_null(strstr(r, "worker=1 "), "%s", r);
        j = run_json("json show workers");
        cr_assert_eq(json_array_size(json_object_get(j, "worker")), 2);
        json_decref(j);
        r = run("show stats");
        cr_assert_not_null(strstr(r, "entities: 0\n"), "%s", r);
        j = run_json("json show stats");
        cr_assert(json_is_integer(json_object_get(j, "control_commands")));
        json_decref(j);
}

Test(ctl_cmd, create_show_set_destroy, .init = cmd_setup, .fini = cmd_teardown)
{
        const char *r = run("create mailbox inbox.alice ttl=30s max_msgs=10 max_bytes=1K");
        cr_assert(starts(r, "ok: created mailbox inbox.alice\n"), "%s", r);
        assert_error("create mailbox inbox.alice", "EEXIST", false);
        json_t *j = run_json("json show entity inbox.alice");
        cr_assert_str_eq(json_string_value(json_object_get(j, "name")), "inbox.alice");
        cr_assert_str_eq(json_string_value(json_object_get(j, "kind")), "mailbox");
        cr_assert_str_eq(json_string_value(json_object_get(j, "storage")), "mem");
        cr_assert_eq(json_integer_value(json_object_get(j, "ttl_ms")), 30000);
        cr_assert_eq(json_integer_value(json_object_get(j, "max_msgs")), 10);
        cr_assert_eq(json_integer_value(json_object_get(j, "max_bytes")), 1024);
        cr_assert_eq(json_integer_value(json_object_get(j, "msgs")), 0);
        cr_assert_eq(json_integer_value(json_object_get(j, "bytes")), 0);
        json_decref(j);
        r = run("set inbox.alice storage=none ttl=1h");
        cr_assert(starts(r, "ok: set inbox.alice\n"), "%s", r);
        j = run_json("json show entity inbox.alice");
        cr_assert_str_eq(json_string_value(json_object_get(j, "storage")), "none");
        cr_assert_eq(json_integer_value(json_object_get(j, "ttl_ms")), 3600000);
        json_decref(j);
        assert_error("set inbox.alice storage=disk", "EOPNOTSUPP", false);
        assert_error("set inbox.alice", "EINVAL", true);
        assert_error("set inbox.bob ttl=1s", "ENOENT", false);
        r = run("destroy inbox.alice");
        cr_assert(starts(r, "ok: destroyed inbox.alice\n"), "%s", r);
        assert_error("destroy inbox.alice", "ENOENT", false);
        assert_error("show entity inbox.alice", "ENOENT", false);
        for (const char *const *k = (const char *const[]){ "latest", "channel", "log", NULL }; *k; k++) {
                char line[64];
                snprintf(line, sizeof(line), "json create %s kinds.%s storage=mem", *k, *k);
                j = run_json(line);
                cr_assert(json_is_true(json_object_get(j, "ok")), "%s", line);
                cr_assert_str_eq(json_string_value(json_object_get(j, "kind")), *k);
                json_decref(j);
        }
}

Test(ctl_cmd, send_and_fetch, .init = cmd_setup, .fini = cmd_teardown)
{
        run("create mailbox q");
        const char *r = run("send q hello   world");
        cr_assert(starts(r, "ok: sent 13 bytes to q\n"), "%s", r);
        run("send q second");
        r = run("fetch q max=1");
        cr_assert(starts(r, "ok: fetched 1 from q\n"), "%s", r);
        cr_assert_not_null(strstr(r, "payload=hello   world\n"), "%s", r);
        cr_assert_not_null(strstr(r, "acked: 1\n"), "%s", r);
        json_t *j = run_json("json fetch q");
        cr_assert_eq(json_integer_value(json_object_get(j, "count")), 1);
        json_t *m = json_array_get(json_object_get(j, "messages"), 0);
        cr_assert_str_eq(json_string_value(json_object_get(m, "payload")), "second");
        json_decref(j);
        j = run_json("json show entity q");
        cr_assert_eq(json_integer_value(json_object_get(j, "msgs")), 0);
        json_decref(j);
        r = run("fetch q");
        cr_assert(starts(r, "ok: fetched 0 from q\n"), "%s", r);
        /* A latest keeps one value; a log is read by offset, not fetched. */
        run("create latest cfg.x");
        run("send cfg.x v1");
        run("send cfg.x v2");
        j = run_json("json show entity cfg.x");
        cr_assert_eq(json_integer_value(json_object_get(j, "msgs")), 1);
        json_decref(j);
        run("create log events");
        assert_error("fetch events", "EOPNOTSUPP", false);
        assert_error("send nobody hi", "ENOENT", false);
        assert_error("send q", "EINVAL", true);
}

Test(ctl_cmd, bulk_create_list_and_destroy_prefix, .init = cmd_setup, .fini = cmd_teardown)
{
        json_t *j = run_json("json create mailboxes agent. 5000 ttl=60s");
        cr_assert(json_is_true(json_object_get(j, "ok")));
        cr_assert_eq(json_integer_value(json_object_get(j, "created")), 5000);
        cr_assert_eq(json_integer_value(json_object_get(j, "failed")), 0);
        cr_assert(json_is_number(json_object_get(j, "elapsed_ms")));
        json_decref(j);
        /* Again: every one exists; the counts say so. */
        const char *r = run("create mailboxes agent. 10");
        cr_assert(starts(r, "error: created 0 of 10 mailboxes agent.0 .. agent.9 (EEXIST)\n"),
                  "%s", r);
        cr_assert_not_null(strstr(r, "EEXIST: 10\n"), "%s", r);
        run("create mailbox other.1");
        r = run("show entities agent. limit=10");
        int lines = 0;
        for (const char *p = r; (p = strstr(p, "name=agent.")) != NULL; p++)
                lines++;
        cr_assert_eq(lines, 10, "%s", r);
        cr_assert_not_null(strstr(r, "truncated: yes\n"), "%s", r);
        r = run("show entities limit=6000");
        cr_assert_not_null(strstr(r, "shown: 5001\n"), "%s", r);
        cr_assert_not_null(strstr(r, "truncated: no\n"));
        j = run_json("json destroy prefix agent.");
        cr_assert(json_is_true(json_object_get(j, "ok")));
        cr_assert_eq(json_integer_value(json_object_get(j, "destroyed")), 5000);
        json_decref(j);
        r = run("show stats");
        cr_assert_not_null(strstr(r, "entities: 1\n"), "%s", r);
        r = run("destroy prefix nothing.");
        cr_assert(starts(r, "ok: destroyed 0 entities with prefix nothing.\n"), "%s", r);
}

Test(ctl_cmd, json_listing_is_one_object_per_line, .init = cmd_setup, .fini = cmd_teardown)
{
        /* Names with bytes JSON must escape, and one that is not UTF-8. */
        run("create mailbox odd.\"q\\\"");
        run("create mailbox odd.caf\xc3\xa9");
        run("create mailbox odd.\xff");
        const char *r = run("json show entities odd.");
        int objects = 0, entities = 0;
        bool utf8 = false, quote = false;
        for (const char *line = r; *line != '\n';) {
                const char *nl = strchr(line, '\n');
                json_error_t err;
                json_t *j = json_loadb(line, (size_t)(nl - line), 0, &err);
                cr_assert_not_null(j, "%s: %.*s", err.text, (int)(nl - line), line);
                objects++;
                const char *name = json_string_value(json_object_get(j, "name"));
                if (name != NULL) {
                        entities++;
                        utf8 |= strcmp(name, "odd.caf\xc3\xa9") == 0;
                        quote |= strcmp(name, "odd.\"q\\\"") == 0;
                } else {
                        cr_assert(json_is_true(json_object_get(j, "ok")));
                        cr_assert_eq(json_integer_value(json_object_get(j, "shown")), 3);
                }
                json_decref(j);
                line = nl + 1;
        }
        cr_assert_eq(objects, 4);
        cr_assert_eq(entities, 3);
        cr_assert(utf8 && quote);
}

/* --- the negative space ------------------------------------------------ */

Test(ctl_cmd, bad_commands_get_errors_with_usage, .init = cmd_setup, .fini = cmd_teardown)
{
        assert_error("frobnicate", "EINVAL", true);
        assert_error("show", "EINVAL", true);
        assert_error("show everything", "EINVAL", true);
        assert_error("show info now", "EINVAL", true);
        assert_error("show entity", "EINVAL", true);
        assert_error("create", "EINVAL", true);
        assert_error("create mailbox", "EINVAL", true);
        assert_error("create queue q.1", "EINVAL", true);
        assert_error("create broadcast b.1", "EINVAL", true);
        assert_error("create mailbox a.b extra", "EINVAL", true);
        assert_error("create mailbox a.b colour=red", "EINVAL", true);
        assert_error("create mailbox a.b ttl=30", "EINVAL", true);
        assert_error("create mailbox a.b ttl=soon", "EINVAL", true);
        assert_error("create mailbox a.b ttl=60d", "ERANGE", true);
        assert_error("create mailbox a.b storage=tape", "EINVAL", true);
        assert_error("create mailbox a.b max_msgs=-1", "ERANGE", true);
        assert_error("create mailbox a.b max_bytes=8G", "ERANGE", true);
        assert_error("create mailbox a.b ttl=1s ttl=2s", "EINVAL", true);
        assert_error("create mailbox a.* ", "EINVAL", true);
        assert_error("create mailbox a..b", "EINVAL", true);
        assert_error("create mailbox .a", "EINVAL", true);
        assert_error("create mailboxes p. 0", "EINVAL", true);
        assert_error("create mailboxes p. many", "EINVAL", true);
        assert_error("create mailboxes p.> 10", "EINVAL", true);
        assert_error("destroy", "EINVAL", true);
        assert_error("destroy prefix", "EINVAL", true);
        assert_error("destroy a b", "EINVAL", true);
        assert_error("fetch q max=0", "ERANGE", true);
        assert_error("fetch q max=65", "ERANGE", true);
        assert_error("fetch q ack=maybe", "EINVAL", true);
        assert_error("show entities a. limit=0", "ERANGE", true);
        assert_error("show entities a. b.", "EINVAL", true);
        assert_error("quit now", "EINVAL", true);
        char name[300];
        memset(name, 'n', sizeof(name));
        char line[400];
        snprintf(line, sizeof(line), "create mailbox %.*s", 256, name);
        assert_error(line, "ENAMETOOLONG", true);
        assert_error("w1 w2 w3 w4 w5 w6 w7 w8 w9 w10 w11 w12 w13 w14 w15 w16 w17", "EINVAL", true);
        assert_error("create mailbox a b c d e f g h i j k l m n o p q", "E2BIG", true);
        /* A NUL inside a line, and the session still works. */
        struct ctl_out o;
        ctl_out_init(&o, outbuf, CTL_OUT_BYTES, 0, false);
        ctl_cmd_exec(&ses, "help\0x", 6, &o);
        cr_assert(starts(outbuf, "error: "));
        cr_assert(starts(run("show info"), "version: "));
        /* Errors counted, the usage text the table's. */
        cr_assert_gt(env.errors, 30);
        const char *r = run("create mailbox a.b colour=red");
        cr_assert_not_null(strstr(r, "usage: create mailbox|latest|channel|log NAME [ttl=DUR]"));
}

Test(ctl_cmd, json_errors_are_objects, .init = cmd_setup, .fini = cmd_teardown)
{
        json_t *j = run_json("json create mailbox a.b ttl=x");
        cr_assert(json_is_false(json_object_get(j, "ok")));
        cr_assert_str_eq(json_string_value(json_object_get(j, "error")), "EINVAL");
        cr_assert_not_null(strstr(json_string_value(json_object_get(j, "message")), "ttl"));
        cr_assert_not_null(json_string_value(json_object_get(j, "usage")));
        json_decref(j);
        j = run_json("json destroy nobody");
        cr_assert_str_eq(json_string_value(json_object_get(j, "error")), "ENOENT");
        cr_assert_null(json_object_get(j, "usage"));
        json_decref(j);
        j = run_json("json");
        cr_assert_str_eq(json_string_value(json_object_get(j, "error")), "EINVAL");
        cr_assert_str_eq(json_string_value(json_object_get(j, "usage")), "json COMMAND");
        json_decref(j);
        j = run_json("json show \"bad\x01");
        cr_assert(json_is_false(json_object_get(j, "ok")));
        json_decref(j);
}

Test(ctl_cmd, empty_and_crlf_lines, .init = cmd_setup, .fini = cmd_teardown)
{
        cr_assert_str_eq(run(""), "\n");
        cr_assert_str_eq(run("   \t "), "\n");
        cr_assert(starts(run("show info\r"), "version: "));
}

Test(ctl_cmd, stopping_refuses_changes, .init = cmd_setup, .fini = cmd_teardown)
{
        ctx.stopping = 1;
        assert_error("create mailbox a.b", "ESHUTDOWN", false);
        assert_error("destroy prefix a.", "ESHUTDOWN", false);
        cr_assert(starts(run("show info"), "version: "));
}

Test(ctl_cmd, no_engine_is_said, .init = cmd_setup, .fini = cmd_teardown)
{
        env.dp = NULL;
        assert_error("show stats", "ENODEV", false);
        assert_error("create mailbox a.b", "ENODEV", false);
        cr_assert(starts(run("show info"), "version: "));
        cr_assert(starts(run("help"), "commands"));
        cr_assert(starts(run("quit"), "ok: bye\n"));
}

Test(ctl_cmd, over_long_line_reply, .init = cmd_setup, .fini = cmd_teardown)
{
        struct ctl_out o;
        ctl_out_init(&o, outbuf, CTL_OUT_BYTES, 0, false);
        ctl_cmd_line_too_long(&ses, "json show info", 14, &o);
        outbuf[o.len] = 0;
        json_error_t err;
        json_t *j = json_loadb(outbuf, o.len - 2, 0, &err);
        cr_assert_not_null(j, "%s", outbuf);
        cr_assert_str_eq(json_string_value(json_object_get(j, "error")), "EMSGSIZE");
        json_decref(j);
        cr_assert_eq(env.lines_too_long, 1);
}

/* --- ctl_dp: calls, batches, the dataplane's by-name ops ---------------- */

static struct dp_cpl got_cpl;
static uint8_t got_rec[DP_CPL_BYTES_MAX];
static int got_n;

static void on_got(void *arg, const struct dp_cpl *c, uint32_t len)
{
        (void)arg;
        got_cpl = *c;
        memcpy(got_rec, c, len < sizeof(got_rec) ? len : sizeof(got_rec));
        got_n++;
}

/* Submits c to worker w (not necessarily the owner) and waits for it. */
static struct dp_cpl call_on(uint32_t w, struct dp_cmd *c, const char *name)
{
        got_n = 0;
        c->req_id = 77;
        cr_assert_eq(dp_engine_submit_to(&eng, w, c, name, NULL), 0);
        for (int i = 0; i < 500 && got_n == 0; i++)
                dp_engine_wait(&eng, 0, on_got, NULL, 8, 10 * 1000 * 1000);
        cr_assert_eq(got_n, 1);
        return got_cpl;
}

Test(ctl_dp, by_name_ops_reach_the_owner_through_any_worker, .init = cmd_setup,
     .fini = cmd_teardown)
{
        uint64_t h;
        struct dp_cmd_create a = { .mode = DP_MODE_MAILBOX, .overflow = -1, .ttl_ms = 5000 };
        cr_assert_eq(ctl_dp_create(&dp, "fwd.one", 7, &a, &h), 0);
        uint32_t owner = dp_engine_shard_of_name(&eng, "fwd.one", 7), other = 1 - owner;
        /* Stat through the other worker: forwarded by the mesh, answered
         * by the owner with the record after the completion. */
        struct dp_cmd c = { .op = DP_OP_STAT, .name_len = 7 };
        struct dp_cpl r = call_on(other, &c, "fwd.one");
        cr_assert_eq(r.status, 0);
        cr_assert_eq(r.handle, h);
        cr_assert_eq(r.worker, owner);
        cr_assert_eq(r.msgs_bytes, sizeof(struct dp_cpl_stat));
        struct dp_cpl_stat st;
        memcpy(&st, got_rec + sizeof(struct dp_cpl), sizeof(st));
        cr_assert_eq(st.mode, DP_MODE_MAILBOX);
        cr_assert_eq(st.ttl_ms, 5000);
        c = (struct dp_cmd){ .op = DP_OP_SET, .name_len = 7,
                             .args.set = { .flags = DP_CMD_SET_F_TTL, .ttl_ms = 0 } };
        cr_assert_eq(call_on(other, &c, "fwd.one").status, 0);
        c = (struct dp_cmd){ .op = DP_OP_SET, .name_len = 7, .args.set = { .flags = 0x80 } };
        cr_assert_eq(call_on(owner, &c, "fwd.one").status, -EINVAL, "unknown set flags");
        c = (struct dp_cmd){ .op = DP_OP_SET, .name_len = 7, .args.set = { .flags = 0 } };
        cr_assert_eq(call_on(owner, &c, "fwd.one").status, -EINVAL, "nothing to set");
        c = (struct dp_cmd){ .op = DP_OP_SET, .name_len = 7,
                             .args.set = { .flags = DP_CMD_SET_F_STORAGE, .storage = 9 } };
        cr_assert_eq(call_on(owner, &c, "fwd.one").status, -EINVAL, "bad storage");
        cr_assert_eq(ctl_dp_stat(&dp, "fwd.one", 7, &st, NULL), 0);
        cr_assert_eq(st.ttl_ms, 0);
        c = (struct dp_cmd){ .op = ATOMQ_OP_DESTROY, .name_len = 7 };
        r = call_on(other, &c, "fwd.one");
        cr_assert_eq(r.status, 0);
        cr_assert_eq(r.handle, h);
        c = (struct dp_cmd){ .op = DP_OP_STAT, .name_len = 7 };
        cr_assert_eq(call_on(other, &c, "fwd.one").status, -ENOENT);
        c = (struct dp_cmd){ .op = ATOMQ_OP_FETCH, .name_len = 7, .args.fetch.max = 1 };
        cr_assert_eq(call_on(owner, &c, "fwd.one").status, -ENOENT);
        /* Neither handle nor name: refused before it reaches a ring. */
        c = (struct dp_cmd){ .op = ATOMQ_OP_DESTROY };
        cr_assert_eq(dp_engine_submit(&eng, &c, NULL, NULL), -EINVAL);
}

Test(ctl_dp, batches_count_errors_and_respect_the_cap, .init = cmd_setup,
     .fini = cmd_teardown)
{
        struct ctl_dp_batch b;
        cr_assert_eq(ctl_dp_batch_begin(&dp, &b), 0);
        cr_assert_neq(b.id, 0);
        char name[32];
        uint32_t sent = 0, again = 0;
        /* Stop the workers: nothing completes, so the cap is reached. */
        dp_engine_stop(&eng);
        for (uint32_t i = 0; i < 4 * dp.inflight_max && again == 0; i++) {
                int n = snprintf(name, sizeof(name), "cap.%u", i);
                struct dp_cmd c = { .op = ATOMQ_OP_CREATE, .name_len = (uint16_t)n,
                                    .args.create.mode = DP_MODE_MAILBOX };
                int rc = ctl_dp_batch_submit(&dp, &b, &c, name);
                cr_assert(rc == 0 || rc == -EAGAIN);
                sent += rc == 0;
                again += rc == -EAGAIN;
        }
        cr_assert_eq(again, 1);
        cr_assert_leq(ctl_dp_inflight(&dp), 2 * dp.inflight_max);
        cr_assert_eq(ctl_dp_inflight(&dp), sent);
        /* A call meanwhile times out; submitted (its worker had room), it
         * leaves an orphan behind. */
        uint64_t h;
        struct dp_cmd_create a = { .mode = DP_MODE_MAILBOX, .overflow = -1 };
        uint32_t owner = dp_engine_shard_of_name(&eng, "late.one", 8);
        uint64_t orphans = dp.inflight[owner] < dp.inflight_max ? 1 : 0;
        cr_assert_eq(ctl_dp_create(&dp, "late.one", 8, &a, &h), -ETIMEDOUT);
        cr_assert_eq(dp.stats.timeouts, 1);
        cr_assert_eq(dp_engine_start(&eng), 0);
        while (b.completed < b.submitted)
                ctl_dp_drain(&dp, 1000000);
        cr_assert_eq(b.completed, sent);
        cr_assert_eq(b.failed, 0);
        for (int i = 0; i < 100 && dp.stats.orphans < orphans; i++)
                ctl_dp_drain(&dp, 1000000);
        cr_assert_eq(dp.stats.orphans, orphans, "the late completion of the call");
        cr_assert_eq(ctl_dp_inflight(&dp), 0);
        /* Failures are counted by errno. */
        struct dp_cmd c = { .op = ATOMQ_OP_CREATE, .name_len = 5,
                            .args.create.mode = DP_MODE_MAILBOX };
        cr_assert_eq(ctl_dp_batch_submit(&dp, &b, &c, "cap.0"), 0);
        ctl_dp_batch_fail(&b, -EINVAL);
        while (b.completed < b.submitted)
                ctl_dp_drain(&dp, 1000000);
        cr_assert_eq(b.failed, 2);
        /* In the order they were counted: the local failure first. */
        cr_assert_eq(b.errs[0].err, -EINVAL);
        cr_assert_eq(b.errs[1].err, -EEXIST);
        cr_assert_eq(b.errs[1].count, 1);
        ctl_dp_batch_end(&dp, &b);
        ctl_dp_batch_end(&dp, &b);
        /* The batch table is bounded. */
        static struct ctl_dp_batch many[CTL_DP_BATCHES_MAX + 1];
        for (uint32_t i = 0; i < CTL_DP_BATCHES_MAX; i++)
                cr_assert_eq(ctl_dp_batch_begin(&dp, &many[i]), 0);
        cr_assert_eq(ctl_dp_batch_begin(&dp, &many[CTL_DP_BATCHES_MAX]), -EBUSY);
        for (uint32_t i = 0; i < CTL_DP_BATCHES_MAX; i++)
                ctl_dp_batch_end(&dp, &many[i]);
}

/* --- the server over a real socket ------------------------------------- */

static struct ctl_loop loop;
static struct ctl_server srv;
static pthread_t loop_thread;
static volatile int loop_stop;
static char dir[64];

static void *loop_run(void *arg)
{
        (void)arg;
        while (!loop_stop)
                ctl_loop_run_once(&loop, 10);
        return NULL;
}

static void server_up(uint32_t clients_max)
{
        engine_up();
        cr_assert_eq(ctl_loop_init(&loop), 0);
        snprintf(dir, sizeof(dir), "/tmp/atomq-ctl-XXXXXX");
        cr_assert_not_null(mkdtemp(dir));
        snprintf(cfg.control_path, sizeof(cfg.control_path), "%s/sub/control.sock", dir);
        cfg.control_clients_max = clients_max;
        ctx.loop = &loop;
        cr_assert_eq(ctl_server_open(&srv, &ctx), 0);
        loop_stop = 0;
        cr_assert_eq(pthread_create(&loop_thread, NULL, loop_run, NULL), 0);
}

static void srv_setup(void)
{
        server_up(8);
}

static void srv_teardown(void)
{
        loop_stop = 1;
        pthread_join(loop_thread, NULL);
        ctl_server_close(&srv);
        ctl_loop_fini(&loop);
        dp_engine_fini(&eng);
        char sub[96];
        snprintf(sub, sizeof(sub), "%s/sub", dir);
        rmdir(sub);
        rmdir(dir);
}

static int dial(void)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", cfg.control_path);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        cr_assert_geq(fd, 0);
        cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "%s", strerror(errno));
        struct timeval tv = { .tv_sec = 10 };
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        return fd;
}

/* Reads one reply (up to and with its empty line) into buf. */
static char *reply(int fd, char *buf, size_t len)
{
        size_t got = 0;
        for (;;) {
                cr_assert_lt(got, len - 1, "reply too long");
                ssize_t n = recv(fd, buf + got, 1, 0);
                cr_assert_eq(n, 1, "connection ended after: %.*s", (int)got, buf);
                got++;
                if (buf[got - 1] == '\n' && (got == 1 || buf[got - 2] == '\n'))
                        break;
        }
        buf[got] = 0;
        return buf;
}

static char *ask(int fd, const char *line, char *buf, size_t len)
{
        size_t n = strlen(line);
        cr_assert_eq(send(fd, line, n, MSG_NOSIGNAL), (ssize_t)n);
        return reply(fd, buf, len);
}

Test(ctl_server, greets_and_serves_with_mode_0600, .init = srv_setup, .fini = srv_teardown)
{
        static char buf[65536];
        struct stat st;
        cr_assert_eq(stat(cfg.control_path, &st), 0);
        cr_assert(S_ISSOCK(st.st_mode));
        cr_assert_eq(st.st_mode & 0777, 0600);
        char sub[96];
        snprintf(sub, sizeof(sub), "%s/sub", dir);
        cr_assert_eq(stat(sub, &st), 0);
        cr_assert_eq(st.st_mode & 0777, 0700, "the directory is made 0700");
        int fd = dial();
        char want[64];
        snprintf(want, sizeof(want), "atomqd %s pid %d protocol 1\n\n", ATOMQ_VERSION, getpid());
        cr_assert_str_eq(reply(fd, buf, sizeof(buf)), want);
        cr_assert(starts(ask(fd, "create mailbox s.1\n", buf, sizeof(buf)), "ok: created"));
        cr_assert(starts(ask(fd, "json show entity s.1\n", buf, sizeof(buf)), "{\"ok\":true,"));
        cr_assert_str_eq(ask(fd, "quit\n", buf, sizeof(buf)), "ok: bye\n\n");
        cr_assert_eq(recv(fd, buf, 1, 0), 0, "closed after quit");
        close(fd);
}

Test(ctl_server, over_long_lines_leave_the_connection_usable, .init = srv_setup,
     .fini = srv_teardown)
{
        static char buf[65536];
        static char big[3 * CTL_LINE_MAX + 1];  /* and its NUL */
        int fd = dial();
        reply(fd, buf, sizeof(buf));
        memset(big, 'x', sizeof(big) - 1);
        big[sizeof(big) - 2] = '\n';
        char *r = ask(fd, big, buf, sizeof(buf));
        cr_assert(starts(r, "error: line too long"), "%s", r);
        cr_assert_not_null(strstr(r, "(EMSGSIZE)\nusage: "));
        r = ask(fd, "show info\n", buf, sizeof(buf));
        cr_assert(starts(r, "version: "), "%s", r);
        /* Exactly the limit is fine: 4095 bytes and the newline. */
        memset(big, ' ', CTL_LINE_MAX - 1);
        memcpy(big, "show info", 9);
        big[CTL_LINE_MAX - 1] = '\n';
        cr_assert_eq(send(fd, big, CTL_LINE_MAX, 0), CTL_LINE_MAX);
        cr_assert(starts(reply(fd, buf, sizeof(buf)), "version: "));
        /* A JSON over-long line is answered in JSON. */
        memset(big, 'y', sizeof(big) - 1);
        memcpy(big, "json show ", 10);
        big[sizeof(big) - 2] = '\n';
        r = ask(fd, big, buf, sizeof(buf));
        cr_assert(starts(r, "{\"ok\":false,\"error\":\"EMSGSIZE\""), "%s", r);
        cr_assert(starts(ask(fd, "bogus\n", buf, sizeof(buf)), "error: unknown command"));
        cr_assert(starts(ask(fd, "show stats\n", buf, sizeof(buf)), "entities: 0\n"));
        close(fd);
}

Test(ctl_server, pipelined_lines_and_a_last_line_without_newline, .init = srv_setup,
     .fini = srv_teardown)
{
        static char buf[65536];
        int fd = dial();
        reply(fd, buf, sizeof(buf));
        const char *many = "create mailbox p.1\r\njson show entity p.1\nbogus\ndestroy p.1\nshow info";
        cr_assert_eq(send(fd, many, strlen(many), 0), (ssize_t)strlen(many));
        shutdown(fd, SHUT_WR);
        cr_assert(starts(reply(fd, buf, sizeof(buf)), "ok: created mailbox p.1\n"));
        cr_assert(starts(reply(fd, buf, sizeof(buf)), "{\"ok\":true,\"name\":\"p.1\""), "%s", buf);
        cr_assert(starts(reply(fd, buf, sizeof(buf)), "error: unknown command 'bogus'"));
        cr_assert(starts(reply(fd, buf, sizeof(buf)), "ok: destroyed p.1\n"));
        cr_assert(starts(reply(fd, buf, sizeof(buf)), "version: "));
        cr_assert_eq(recv(fd, buf, 1, 0), 0, "closed once everything is answered");
        close(fd);
}

Test(ctl_server, bulk_commands_of_many_clients, .init = srv_setup, .fini = srv_teardown)
{
        static char buf[65536];
        int fds[4];
        for (int i = 0; i < 4; i++) {
                fds[i] = dial();
                reply(fds[i], buf, sizeof(buf));
                char line[64];
                snprintf(line, sizeof(line), "json create mailboxes c%d. 1500\n", i);
                cr_assert_eq(send(fds[i], line, strlen(line), 0), (ssize_t)strlen(line));
        }
        for (int i = 0; i < 4; i++) {
                char *r = reply(fds[i], buf, sizeof(buf));
                cr_assert_not_null(strstr(r, "\"created\":1500,"), "%s", r);
        }
        /* A listing far longer than the socket holds, to a client that
         * goes away without reading it. */
        const char *list = "show entities limit=100000\n";
        cr_assert_eq(send(fds[0], list, strlen(list), 0), (ssize_t)strlen(list));
        usleep(20000);
        close(fds[0]);
        int fd = dial();
        reply(fd, buf, sizeof(buf));
        cr_assert(starts(ask(fd, "show stats\n", buf, sizeof(buf)), "entities: 6000\n"), "%s", buf);
        for (int i = 1; i < 4; i++)
                close(fds[i]);
        close(fd);
}

static void srv_small_setup(void)
{
        server_up(2);
}

Test(ctl_server, clients_over_the_limit_are_told_and_closed, .init = srv_small_setup,
     .fini = srv_teardown)
{
        static char buf[4096];
        int a = dial(), b = dial();
        reply(a, buf, sizeof(buf));
        reply(b, buf, sizeof(buf));
        int c = dial();
        char *r = reply(c, buf, sizeof(buf));
        cr_assert(starts(r, "error: too many control clients (EUSERS)"), "%s", r);
        cr_assert_eq(recv(c, buf, 1, 0), 0);
        close(c);
        close(a);
        /* A slot frees up when a client goes. */
        for (int i = 0; i < 100; i++) {
                c = dial();
                r = reply(c, buf, sizeof(buf));
                if (starts(r, "atomqd "))
                        break;
                close(c);
                usleep(10000);
        }
        cr_assert(starts(r, "atomqd "), "%s", r);
        close(b);
        close(c);
}

Test(ctl_server, a_live_socket_is_refused_a_stale_one_replaced, .init = srv_setup,
     .fini = srv_teardown)
{
        struct ctl_server second;
        struct ctl_loop loop2;
        cr_assert_eq(ctl_loop_init(&loop2), 0);
        struct ctl_ctx ctx2 = ctx;
        ctx2.loop = &loop2;
        cr_assert_eq(ctl_server_open(&second, &ctx2), -EADDRINUSE);
        /* The refused one did not remove the live socket. */
        int fd = dial();
        close(fd);
        /* A stale socket: bound, never listened to, its owner gone. */
        char stale[108];
        snprintf(stale, sizeof(stale), "%s/stale.sock", dir);
        int s = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", stale);
        cr_assert_eq(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
        close(s);
        struct ctl_config cfg2 = cfg;
        snprintf(cfg2.control_path, sizeof(cfg2.control_path), "%s", stale);
        ctx2.cfg = &cfg2;
        ctx2.engine = NULL;
        cr_assert_eq(ctl_server_open(&second, &ctx2), 0);
        ctl_server_close(&second);
        struct stat st;
        cr_assert_eq(stat(stale, &st), -1, "close unlinks its own socket");
        /* Not a socket: left alone. */
        FILE *f = fopen(stale, "w");
        cr_assert_not_null(f);
        fclose(f);
        cr_assert_eq(ctl_server_open(&second, &ctx2), -EEXIST);
        cr_assert_eq(stat(stale, &st), 0);
        unlink(stale);
        ctl_loop_fini(&loop2);
}
