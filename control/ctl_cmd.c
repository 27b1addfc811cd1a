/* ctl_cmd.c - the control socket's command table, its parser, replies, and
 * the commands that complete in one call. The protocol is described in
 * ctl_cmd.h; the commands that run in slices are in ctl_cmd_long.c.
 *
 *      $ atomqctl create mailbox inbox.alice ttl=30s
 *      ok: created mailbox inbox.alice
 *      handle: 0x10000000000
 *      shard: 0
 */
#include "control/ctl_agent.h"
#include "control/ctl_cmd_pvt.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "control/ctl_parse.h"
#include "dataplane/dp_subject.h"

/* --- tokens, durations, options --- */

int ctl_args_split(struct ctl_args *a, const char *line, uint32_t len)
{
        a->count = 0;
        a->more = false;
        if (len >= CTL_LINE_MAX)
                return -EMSGSIZE;
        uint32_t i = 0, used = 0;
        while (i < len) {
                while (i < len && (line[i] == ' ' || line[i] == '\t'))
                        i++;
                if (i == len)
                        break;
                if (a->count == CTL_ARGS_MAX) {
                        a->more = true;
                        break;
                }
                uint32_t start = i;
                while (i < len && line[i] != ' ' && line[i] != '\t')
                        i++;
                /* At most len + CTL_ARGS_MAX bytes in all: the buffer's size. */
                memcpy(a->buf + used, line + start, i - start);
                a->buf[used + i - start] = 0;
                a->v[a->count] = a->buf + used;
                a->len[a->count] = i - start;
                a->off[a->count] = start;
                a->count++;
                used += i - start + 1;
        }
        return 0;
}

int ctl_parse_duration(const char *s, uint32_t *ms)
{
        static const struct { const char *unit; uint64_t ms; } units[] = {
                { "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 }, { "d", 86400000 },
        };
        uint64_t v = 0;
        bool over = false;   /* above UINT32_MAX: -ERANGE, if the rest is a duration */
        const char *p = s;
        if (*p < '0' || *p > '9')
                return -EINVAL;
        for (; *p >= '0' && *p <= '9'; p++) {
                if (!over) {
                        v = v * 10 + (uint64_t)(*p - '0');
                        over = v > UINT32_MAX;
                }
        }
        if (*p == 0) {
                if (v != 0 || over)
                        return -EINVAL;
                *ms = 0;
                return 0;
        }
        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
                if (strcmp(p, units[i].unit) != 0)
                        continue;
                if (over || v > UINT32_MAX / units[i].ms)
                        return -ERANGE;
                *ms = (uint32_t)(v * units[i].ms);
                return 0;
        }
        return -EINVAL;
}

static int ctl_parse_yesno(const char *s, bool *out)
{
        if (strcmp(s, "yes") == 0 || strcmp(s, "true") == 0 || strcmp(s, "1") == 0)
                *out = true;
        else if (strcmp(s, "no") == 0 || strcmp(s, "false") == 0 || strcmp(s, "0") == 0)
                *out = false;
        else
                return -EINVAL;
        return 0;
}

static int ctl_opt_u32(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
        long long v;
        int rc = ctl_parse_int(s, (long long)min, (long long)max, &v);
        if (rc == 0)
                *out = (uint64_t)v;
        return rc;
}

/* Parses value v of option k into o. 0 or -EINVAL/-ERANGE. */
static int ctl_opt_parse(enum ctl_opt k, const char *v, struct ctl_opts *o)
{
        uint64_t x = 0;
        int rc;
        switch (k) {
        case CTL_OPT_TTL:
                return ctl_parse_duration(v, &o->ttl_ms);
        case CTL_OPT_STORAGE:
                return dp_storage_parse(v, &o->storage);
        case CTL_OPT_MAX_MSGS:
                rc = ctl_opt_u32(v, 0, UINT32_MAX, &x);
                o->max_msgs = (uint32_t)x;
                return rc;
        case CTL_OPT_MAX_BYTES:
                rc = ctl_parse_bytes(v, &x);
                if (rc == 0 && x > UINT32_MAX)
                        rc = -ERANGE;
                o->max_bytes = (uint32_t)x;
                return rc;
        case CTL_OPT_LIMIT:
                return ctl_opt_u32(v, 1, UINT32_MAX, &o->limit);
        case CTL_OPT_MAX:
                rc = ctl_opt_u32(v, 1, DP_FETCH_MAX, &x);
                o->max = (uint32_t)x;
                return rc;
        case CTL_OPT_ACK:
                return ctl_parse_yesno(v, &o->ack);
        case CTL_OPT_SYNC:
                return dp_sync_parse(v, &o->sync);
        default:
                return -EINVAL;
        }
}

static const struct {
        const char *key;
        const char *want;
} ctl_opt_defs[CTL_OPT_COUNT_] = {
        [CTL_OPT_TTL] = { "ttl", "a duration like 500ms, 30s, 2m, 1h (0: none)" },
        [CTL_OPT_STORAGE] = { "storage", "one of none, mem, disk" },
        [CTL_OPT_MAX_MSGS] = { "max_msgs", "a count from 0 (no limit) to 4294967295" },
        [CTL_OPT_MAX_BYTES] = { "max_bytes", "a size like 4096, 64K, 1M (0: no limit, at most 4G-1)" },
        [CTL_OPT_LIMIT] = { "limit", "a count from 1 to 4294967295" },
        [CTL_OPT_MAX] = { "max", "a count from 1 to 64" },
        [CTL_OPT_ACK] = { "ack", "yes or no" },
        [CTL_OPT_SYNC] = { "sync", "one of always, batch, none (storage=disk)" },
};

/* --- the table --- */

static ctl_cmd_fn ctl_do_help, ctl_do_show_info, ctl_do_show_workers, ctl_do_show_agents,
        ctl_do_show_stats,
        ctl_do_show_entity, ctl_do_create, ctl_do_destroy, ctl_do_set, ctl_do_send, ctl_do_fetch,
        ctl_do_quit;

#define CTL_OPTS_CREATE (CTL_OPT_BIT(CTL_OPT_TTL) | CTL_OPT_BIT(CTL_OPT_STORAGE) | \
                         CTL_OPT_BIT(CTL_OPT_MAX_MSGS) | CTL_OPT_BIT(CTL_OPT_MAX_BYTES) | \
                         CTL_OPT_BIT(CTL_OPT_SYNC))
#define CTL_CREATE_OPTS_USAGE "[ttl=DUR] [storage=none|mem|disk] [sync=always|batch|none] " \
                              "[max_msgs=N] [max_bytes=SIZE]"

/* Rows with a noun come before the row of the same verb without one. */
const struct ctl_cmd_def ctl_cmds[] = {
        { "help", NULL, 0, 0, 0, 0, ctl_do_help, "help", "list the commands" },
        { "show", "info", 0, 0, 0, 0, ctl_do_show_info, "show info",
          "version, pid, uptime, workers, limits, the dataplane process" },
        { "show", "workers", 0, 0, 0, CTL_CMD_F_ENGINE, ctl_do_show_workers, "show workers",
          "each worker's entities and loop counters" },
        { "show", "agents", 0, 0, 0, CTL_CMD_F_ENGINE, ctl_do_show_agents, "show agents",
          "agents attached through libatomq: slot, pid, quota use, drops" },
        { "show", "stats", 0, 0, 0, CTL_CMD_F_ENGINE, ctl_do_show_stats, "show stats",
          "totals over all shards, and the control socket's counters" },
        { "show", "entities", 0, 1, CTL_OPT_BIT(CTL_OPT_LIMIT), CTL_CMD_F_ENGINE,
          ctl_do_show_entities, "show entities [PREFIX] [limit=N]",
          "list entities (default limit 1000), shard by shard, read live from shared memory" },
        { "show", "entity", 1, 1, 0, CTL_CMD_F_ENGINE, ctl_do_show_entity, "show entity NAME",
          "one entity's atoms, limits and counts, read by its worker" },
        { "create", "mailboxes", 2, 2, CTL_OPTS_CREATE, CTL_CMD_F_ENGINE | CTL_CMD_F_MUTATES,
          ctl_do_create_mailboxes, "create mailboxes PREFIX COUNT " CTL_CREATE_OPTS_USAGE,
          "create COUNT mailboxes named PREFIX0 .. PREFIX<COUNT-1>, many in flight" },
        { "create", NULL, 2, 2, CTL_OPTS_CREATE, CTL_CMD_F_ENGINE | CTL_CMD_F_MUTATES,
          ctl_do_create, "create mailbox|latest|channel|log NAME " CTL_CREATE_OPTS_USAGE,
          "create one entity of that kind" },
        { "destroy", "prefix", 1, 1, 0, CTL_CMD_F_ENGINE | CTL_CMD_F_MUTATES,
          ctl_do_destroy_prefix, "destroy prefix PREFIX",
          "destroy every entity whose name starts with PREFIX" },
        { "destroy", NULL, 1, 1, 0, CTL_CMD_F_ENGINE | CTL_CMD_F_MUTATES, ctl_do_destroy,
          "destroy NAME", "destroy one entity and its messages" },
        { "set", NULL, 1, 1, CTL_OPT_BIT(CTL_OPT_TTL) | CTL_OPT_BIT(CTL_OPT_STORAGE),
          CTL_CMD_F_ENGINE | CTL_CMD_F_MUTATES, ctl_do_set,
          "set NAME [storage=none|mem|disk] [ttl=DUR]",
          "switch storage live, or set the TTL counted from now (ttl=0: none)" },
        { "send", NULL, 2, 2, 0, CTL_CMD_F_ENGINE | CTL_CMD_F_MUTATES | CTL_CMD_F_REST,
          ctl_do_send, "send NAME TEXT", "send TEXT, the rest of the line, to NAME" },
        { "fetch", NULL, 1, 1, CTL_OPT_BIT(CTL_OPT_MAX) | CTL_OPT_BIT(CTL_OPT_ACK),
          CTL_CMD_F_ENGINE | CTL_CMD_F_MUTATES, ctl_do_fetch, "fetch NAME [max=N] [ack=yes|no]",
          "take up to N messages (1-64, default 10), acknowledged unless ack=no" },
        { "quit", NULL, 0, 0, 0, 0, ctl_do_quit, "quit", "close this connection" },
};
const uint32_t ctl_cmds_count = sizeof(ctl_cmds) / sizeof(ctl_cmds[0]);

/* --- replies --- */

static void ctl_reply_vbegin(struct ctl_out *o, int err, const char *fmt, va_list ap)
{
        char msg[512];
        int n = vsnprintf(msg, sizeof(msg), fmt, ap);
        uint32_t len = n < 0 ? 0 : (uint32_t)n >= sizeof(msg) ? sizeof(msg) - 1 : (uint32_t)n;
        ctl_out_rec_begin(o, CTL_REC_LINES);
        if (o->json) {
                ctl_out_bool(o, "ok", err == 0);
                if (err != 0)
                        ctl_out_cstr(o, "error", ctl_errno_name(err));
                ctl_out_str(o, "message", msg, len);
                return;
        }
        ctl_out_raw(o, err == 0 ? "ok: " : "error: ", err == 0 ? 4 : 7);
        ctl_out_text_escaped(o, msg, len);
        if (err != 0)
                ctl_out_printf(o, " (%s)", ctl_errno_name(err));
        ctl_out_raw(o, "\n", 1);
}

void ctl_reply_begin(struct ctl_out *o, int err, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        ctl_reply_vbegin(o, err, fmt, ap);
        va_end(ap);
}

void ctl_reply_end(struct ctl_out *o)
{
        ctl_out_rec_end(o);
}

enum ctl_run ctl_fail(struct ctl_session *s, struct ctl_out *o, int err, const char *usage,
                      const char *fmt, ...)
{
        va_list ap;
        s->env->errors++;
        va_start(ap, fmt);
        ctl_reply_vbegin(o, err, fmt, ap);
        va_end(ap);
        if (usage != NULL)
                ctl_out_cstr(o, "usage", usage);
        ctl_reply_end(o);
        return CTL_RUN_DONE;
}

void ctl_show_begin(struct ctl_out *o)
{
        ctl_out_rec_begin(o, CTL_REC_LINES);
        if (o->json)
                ctl_out_bool(o, "ok", true);
}

const char *ctl_dp_err_text(int err)
{
        switch (err) {
        case -ETIMEDOUT:
                return "the dataplane did not answer in time (is it running?)";
        case -ENOENT:
                return "no such entity";
        case -EEXIST:
                return "the name is taken";
        case -ENOSPC:
                return "the shard is full (--max-entities)";
        case -EOPNOTSUPP:
                return "not supported for this entity or storage (storage=disk needs the "
                       "disk tier: atomqd --disk on and a writable --data-dir)";
        case -EDQUOT:
                return "the disk tier is full (--disk-max)";
        case -ENOBUFS:
                return "the entity is full (max_msgs or max_bytes)";
        case -ESTALE:
                return "the entity was destroyed meanwhile";
        default:
                return strerror(-err);
        }
}

int ctl_check_name(struct ctl_session *s, struct ctl_out *o, const struct ctl_call *c,
                   const char *name, uint32_t len)
{
        int rc = dp_subject_check(name, len, false);
        if (rc == 0)
                return 0;
        ctl_fail(s, o, rc, c->def->usage,
                 "bad name '%.*s': a name is a subject (tokens of visible bytes separated by "
                 "'.', no wildcards, at most 255 bytes)", (int)(len > 64 ? 64 : len), name);
        return rc;
}

/* --- parsing a line into a call --- */

/* The row for args (verb first), or NULL with *verb_known telling whether
 * the verb exists at all. */
static const struct ctl_cmd_def *ctl_cmd_find(const struct ctl_args *a, uint32_t first,
                                              bool *verb_known)
{
        const char *verb = a->v[first];
        const char *noun = first + 1 < a->count ? a->v[first + 1] : NULL;
        *verb_known = false;
        for (uint32_t i = 0; i < ctl_cmds_count; i++) {
                const struct ctl_cmd_def *d = &ctl_cmds[i];
                if (strcmp(d->verb, verb) != 0)
                        continue;
                *verb_known = true;
                if (d->noun == NULL || (noun != NULL && strcmp(d->noun, noun) == 0))
                        return d;
        }
        return NULL;
}

/* Every usage of a verb, joined with " | ", into buf. */
static const char *ctl_verb_usage(const char *verb, char *buf, size_t len)
{
        size_t used = 0;
        buf[0] = 0;
        for (uint32_t i = 0; i < ctl_cmds_count; i++) {
                if (strcmp(ctl_cmds[i].verb, verb) != 0)
                        continue;
                int n = snprintf(buf + used, len - used, "%s%s", used ? " | " : "",
                                 ctl_cmds[i].usage);
                if (n < 0 || (size_t)n >= len - used)
                        break;
                used += (size_t)n;
        }
        return buf;
}

/* key=value into c->opts. 0, or the error reply was written. */
static int ctl_call_opt(struct ctl_session *s, struct ctl_out *o, struct ctl_call *c,
                        const char *word)
{
        const char *eq = strchr(word, '=');
        size_t klen = (size_t)(eq - word);
        const struct ctl_cmd_def *d = c->def;
        for (int k = 0; k < CTL_OPT_COUNT_; k++) {
                if (!(d->opts & CTL_OPT_BIT(k)) || strlen(ctl_opt_defs[k].key) != klen ||
                    memcmp(ctl_opt_defs[k].key, word, klen) != 0)
                        continue;
                if (c->opts.set & CTL_OPT_BIT(k)) {
                        ctl_fail(s, o, -EINVAL, d->usage, "%s= given twice", ctl_opt_defs[k].key);
                        return -EINVAL;
                }
                int rc = ctl_opt_parse((enum ctl_opt)k, eq + 1, &c->opts);
                if (rc != 0) {
                        ctl_fail(s, o, rc, d->usage, "bad %s '%.64s': want %s",
                                 ctl_opt_defs[k].key, eq + 1, ctl_opt_defs[k].want);
                        return rc;
                }
                c->opts.set |= CTL_OPT_BIT(k);
                return 0;
        }
        ctl_fail(s, o, -EINVAL, d->usage, "unknown option '%.*s' for %s%s%s",
                 (int)(klen > 64 ? 64 : klen), word, d->verb, d->noun ? " " : "",
                 d->noun ? d->noun : "");
        return -EINVAL;
}

/* Sorts the words after verb [noun] into arguments and options. 0, or
 * the error reply was written. */
static int ctl_call_parse(struct ctl_session *s, struct ctl_out *o, const struct ctl_args *a,
                          uint32_t first, const char *line, uint32_t len, struct ctl_call *c)
{
        const struct ctl_cmd_def *d = c->def;
        bool rest = d->flags & CTL_CMD_F_REST;
        if (a->more && !rest) {
                ctl_fail(s, o, -E2BIG, d->usage, "more than %u words", CTL_ARGS_MAX);
                return -E2BIG;
        }
        for (uint32_t i = first + (d->noun ? 2 : 1); i < a->count; i++) {
                const char *w = a->v[i];
                if (rest && c->nargs + 1 == d->args_max) {
                        /* The rest of the line, as typed. */
                        c->arg[c->nargs] = line + a->off[i];
                        c->arg_len[c->nargs++] = len - a->off[i];
                        break;
                }
                if (c->nargs >= d->args_min && d->opts != 0 && strchr(w, '=') != NULL) {
                        if (ctl_call_opt(s, o, c, w) != 0)
                                return -EINVAL;
                        continue;
                }
                if (c->nargs == d->args_max) {
                        ctl_fail(s, o, -EINVAL, d->usage, "unexpected argument '%.64s'", w);
                        return -EINVAL;
                }
                c->arg[c->nargs] = w;
                c->arg_len[c->nargs++] = a->len[i];
        }
        if (c->nargs < d->args_min) {
                ctl_fail(s, o, -EINVAL, d->usage, "missing argument");
                return -EINVAL;
        }
        return 0;
}

/* Finds and checks the command of a line; NULL after an error reply. */
static const struct ctl_cmd_def *ctl_cmd_resolve(struct ctl_session *s, struct ctl_out *o,
                                                 const struct ctl_args *a, uint32_t first)
{
        bool verb_known;
        char usage[1024];
        const struct ctl_cmd_def *d = ctl_cmd_find(a, first, &verb_known);
        if (d == NULL && !verb_known) {
                ctl_fail(s, o, -EINVAL, "help lists the commands", "unknown command '%.64s'",
                         a->v[first]);
                return NULL;
        }
        if (d == NULL) {
                const char *noun = first + 1 < a->count ? a->v[first + 1] : "";
                ctl_fail(s, o, -EINVAL, ctl_verb_usage(a->v[first], usage, sizeof(usage)),
                         "unknown command '%s %.64s'", a->v[first], noun);
                return NULL;
        }
        const struct ctl_ctx *ctx = s->env->ctx;
        if ((d->flags & CTL_CMD_F_MUTATES) && ctx != NULL && ctx->stopping) {
                ctl_fail(s, o, -ESHUTDOWN, NULL, "atomqd is stopping");
                return NULL;
        }
        if ((d->flags & CTL_CMD_F_ENGINE) && s->env->dp == NULL) {
                ctl_fail(s, o, -ENODEV, NULL, "no dataplane engine");
                return NULL;
        }
        return d;
}

static enum ctl_run ctl_cmd_dispatch(struct ctl_session *s, const char *line, uint32_t len,
                                     struct ctl_out *o, bool *json)
{
        struct ctl_args a;
        uint32_t first = 0;
        if (memchr(line, 0, len) != NULL)
                return ctl_fail(s, o, -EINVAL, "one command a line, text", "a NUL byte in the line");
        ctl_args_split(&a, line, len);
        if (a.count == 0)
                return CTL_RUN_DONE;    /* an empty line: an empty reply */
        if (strcmp(a.v[0], "json") == 0) {
                *json = o->json = true;
                first = 1;
                if (a.count == 1)
                        return ctl_fail(s, o, -EINVAL, "json COMMAND", "json needs a command");
        }
        struct ctl_call c = { .json = *json };
        c.def = ctl_cmd_resolve(s, o, &a, first);
        if (c.def == NULL || ctl_call_parse(s, o, &a, first, line, len, &c) != 0)
                return CTL_RUN_DONE;
        return c.def->fn(s, &c, o);
}

enum ctl_run ctl_cmd_exec(struct ctl_session *s, const char *line, uint32_t len,
                          struct ctl_out *o)
{
        bool json = false;
        o->json = false;
        if (len > 0 && line[len - 1] == '\r')
                len--;
        s->env->commands++;
        uint32_t mark = ctl_out_mark(o);
        enum ctl_run r;
        if (len >= CTL_LINE_MAX) {
                ctl_cmd_line_too_long(s, line, len, o);
                return CTL_RUN_DONE;
        }
        r = ctl_cmd_dispatch(s, line, len, o, &json);
        if (o->overflow) {
                /* Only a reply larger than CTL_REPLY_MAX gets here. */
                ctl_cmd_abort(s);
                ctl_out_rewind(o, mark);
                o->json = json;
                ctl_fail(s, o, -EMSGSIZE, NULL, "the reply does not fit the output buffer");
                r = CTL_RUN_DONE;
        }
        if (r != CTL_RUN_MORE)
                ctl_out_raw(o, "\n", 1);
        return r;
}

enum ctl_run ctl_cmd_resume(struct ctl_session *s, struct ctl_out *o, uint64_t budget_ns)
{
        if (s->cont.kind == CTL_CONT_NONE)
                return CTL_RUN_DONE;
        o->json = s->cont.json;
        enum ctl_run r = ctl_cont_step(s, o, ctl_dp_now_ns() + budget_ns);
        if (r != CTL_RUN_MORE)
                ctl_out_raw(o, "\n", 1);
        return r;
}

void ctl_cmd_line_too_long(struct ctl_session *s, const char *head, uint32_t head_len,
                           struct ctl_out *o)
{
        o->json = head_len > 5 && memcmp(head, "json", 4) == 0 &&
                  (head[4] == ' ' || head[4] == '\t');
        s->env->lines_too_long++;
        ctl_fail(s, o, -EMSGSIZE, "one command a line, at most 4095 bytes",
                 "line too long (over %u bytes); it was skipped", CTL_LINE_MAX - 1);
        ctl_out_raw(o, "\n", 1);
}

void ctl_session_init(struct ctl_session *s, struct ctl_env *env)
{
        memset(s, 0, sizeof(*s));
        s->env = env;
}

void ctl_cmd_greeting(struct ctl_session *s, struct ctl_out *o)
{
        (void)s;
        ctl_out_printf(o, "atomqd %s pid %ld protocol %d\n\n", ATOMQ_VERSION, (long)getpid(),
                       CTL_PROTOCOL_VERSION);
}

void ctl_cmd_abort(struct ctl_session *s)
{
        if (s->cont.batch.id != 0 && s->env->dp != NULL)
                ctl_dp_batch_end(s->env->dp, &s->cont.batch);
        memset(&s->cont, 0, sizeof(s->cont));
}

/* --- commands that complete at once --- */

static enum ctl_run ctl_do_help(struct ctl_session *s, const struct ctl_call *c,
                                struct ctl_out *o)
{
        (void)s;
        (void)c;
        ctl_out_textf(o, "commands, one a line; 'json' first gives a JSON reply:");
        ctl_show_begin(o);
        ctl_out_arr_begin(o, "commands");
        for (uint32_t i = 0; i < ctl_cmds_count; i++) {
                ctl_out_textf(o, "  %s", ctl_cmds[i].usage);
                ctl_out_textf(o, "      %s", ctl_cmds[i].help);
                if (!o->json)
                        continue;
                ctl_out_rec_begin(o, CTL_REC_INLINE);
                ctl_out_cstr(o, "usage", ctl_cmds[i].usage);
                ctl_out_cstr(o, "help", ctl_cmds[i].help);
                ctl_out_rec_end(o);
        }
        ctl_out_arr_end(o);
        ctl_out_rec_end(o);
        return CTL_RUN_DONE;
}

static uint64_t ctl_realtime_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static enum ctl_run ctl_do_show_info(struct ctl_session *s, const struct ctl_call *c,
                                     struct ctl_out *o)
{
        const struct ctl_env *env = s->env;
        const struct ctl_ctx *ctx = env->ctx;
        const struct dp_engine *e = env->dp != NULL ? env->dp->e : NULL;
        uint64_t now = ctl_realtime_ns();
        (void)c;
        ctl_show_begin(o);
        ctl_out_cstr(o, "version", ATOMQ_VERSION);
        ctl_out_u64(o, "pid", (uint64_t)getpid());
        if (ctx != NULL && ctx->started_realtime_ns != 0 && now > ctx->started_realtime_ns)
                ctl_out_u64(o, "uptime_s", (now - ctx->started_realtime_ns) / 1000000000ull);
        ctl_out_u64(o, "protocol", CTL_PROTOCOL_VERSION);
        ctl_out_cstr(o, "control_path", env->control_path != NULL ? env->control_path : "");
        ctl_out_u64(o, "control_clients", env->clients);
        ctl_out_u64(o, "control_clients_max", env->clients_max);
        if (e != NULL) {
                ctl_out_u64(o, "workers", e->workers);
                ctl_out_u64(o, "max_entities_per_shard", e->w[0].shard.table.capacity);
                ctl_out_u64(o, "arena_bytes", e->arena.bytes);
                ctl_out_bool(o, "hugepages", e->arena.hugepages);
        }
        if (ctx != NULL && ctx->cfg != NULL) {
                ctl_out_cstr(o, "dataplane", ctx->cfg->inprocess ? "inprocess" : "process");
                ctl_out_u64(o, "dataplane_pid", ctx->dataplane_pid > 0 ? (uint64_t)ctx->dataplane_pid : 0);
                ctl_out_u64(o, "dataplane_restarts", ctx->dataplane_restarts);
        }
        ctl_out_bool(o, "stopping", ctx != NULL && ctx->stopping);
        ctl_out_rec_end(o);
        return CTL_RUN_DONE;
}

static uint64_t ctl_ld(const uint64_t *p)
{
        /* Written by one worker with plain stores; a relaxed load reads a
         * whole word (x86-64, arm64), which is all a statistic needs. */
        return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static uint32_t ctl_live(const struct dp_table *t)
{
        return __atomic_load_n(&t->hdr->live, __ATOMIC_RELAXED);
}

static enum ctl_run ctl_do_show_workers(struct ctl_session *s, const struct ctl_call *c,
                                        struct ctl_out *o)
{
        const struct dp_engine *e = s->env->dp->e;
        (void)c;
        ctl_show_begin(o);
        ctl_out_u64(o, "workers", e->workers);
        ctl_out_arr_begin(o, "worker");
        for (uint32_t i = 0; i < e->workers; i++) {
                const struct dp_worker_stats *w = dp_engine_stats(e, i);
                ctl_out_rec_begin(o, CTL_REC_INLINE);
                ctl_out_u64(o, "worker", i);
                ctl_out_u64(o, "entities", ctl_live(&e->w[i].shard.table));
                ctl_out_u64(o, "loops", dp_counter_get(&w->loops));
                ctl_out_u64(o, "cmds", dp_counter_get(&w->cmds));
                ctl_out_u64(o, "executed", dp_counter_get(&w->executed));
                ctl_out_u64(o, "forwarded", dp_counter_get(&w->forwarded));
                ctl_out_u64(o, "cpls", dp_counter_get(&w->cpls));
                ctl_out_u64(o, "mesh_in", dp_counter_get(&w->mesh_in));
                ctl_out_u64(o, "mesh_out", dp_counter_get(&w->mesh_out));
                ctl_out_u64(o, "mesh_full", dp_counter_get(&w->mesh_full));
                ctl_out_u64(o, "cpl_full", dp_counter_get(&w->cpl_full));
                ctl_out_u64(o, "bad_records", dp_counter_get(&w->bad_records));
                ctl_out_u64(o, "ring_errors", dp_counter_get(&w->ring_errors));
                ctl_out_u64(o, "timers", dp_counter_get(&w->timers));
                ctl_out_u64(o, "sleeps", dp_counter_get(&w->idle.sleeps));
                ctl_out_u64(o, "nats_conns", dp_counter_get(&w->nats.conns_opened) -
                                                     dp_counter_get(&w->nats.conns_closed));
                ctl_out_u64(o, "nats_msgs_in", dp_counter_get(&w->nats.msgs_in));
                ctl_out_u64(o, "nats_msgs_out", dp_counter_get(&w->nats.msgs_out));
                ctl_out_u64(o, "nats_slow_consumers", dp_counter_get(&w->nats.slow_consumers));
                ctl_out_rec_end(o);
        }
        ctl_out_arr_end(o);
        ctl_out_rec_end(o);
        return CTL_RUN_DONE;
}

static const char *ctl_agent_state_name(uint32_t st)
{
        return st == DP_AGENT_LIVE ? "live" : st == DP_AGENT_CLOSING ? "closing" : "free";
}

static enum ctl_run ctl_do_show_agents(struct ctl_session *s, const struct ctl_call *c,
                                       struct ctl_out *o)
{
        const struct ctl_agents *a = s->env->agents;
        const struct dp_engine *e = s->env->dp->e;
        (void)c;
        ctl_show_begin(o);
        ctl_out_u64(o, "slots", e->agents);
        ctl_out_u64(o, "attached", a != NULL ? ctl_agents_count(a) : 0);
        ctl_out_u64(o, "attaches", a != NULL ? a->attached : 0);
        ctl_out_u64(o, "refused", a != NULL ? a->refused : 0);
        ctl_out_u64(o, "refused_uid", s->env->ctx != NULL ? s->env->ctx->agents_refused_uid : 0);
        ctl_out_u64(o, "detached", a != NULL ? a->detached : 0);
        ctl_out_u64(o, "corrupt", a != NULL ? a->corrupt : 0);
        ctl_out_arr_begin(o, "agent");
        for (uint32_t i = 0; i < e->agents; i++) {
                const struct dp_agent_slot *sl = dp_agent_slot_at(e, i);
                uint32_t st = atomic_load_explicit(&sl->state, memory_order_acquire);
                if (st == DP_AGENT_FREE)
                        continue;
                ctl_out_rec_begin(o, CTL_REC_INLINE);
                ctl_out_u64(o, "slot", i);
                ctl_out_cstr(o, "state", ctl_agent_state_name(st));
                ctl_out_u64(o, "pid", (uint64_t)sl->pid);
                ctl_out_u64(o, "uid", sl->uid);
                ctl_out_u64(o, "subs", atomic_load_explicit(&sl->subs, memory_order_relaxed));
                ctl_out_u64(o, "max_subs", sl->max_subs);
                ctl_out_u64(o, "entities",
                            atomic_load_explicit(&sl->entities, memory_order_relaxed));
                ctl_out_u64(o, "max_entities", sl->max_entities);
                ctl_out_u64(o, "cmds", atomic_load_explicit(&sl->cmds, memory_order_relaxed));
                ctl_out_u64(o, "dlv_drops",
                            atomic_load_explicit(&sl->dlv_drops, memory_order_relaxed));
                ctl_out_u64(o, "bad", atomic_load_explicit(&sl->bad, memory_order_relaxed) != 0);
                ctl_out_rec_end(o);
        }
        ctl_out_arr_end(o);
        ctl_out_rec_end(o);
        return CTL_RUN_DONE;
}

static enum ctl_run ctl_do_show_stats(struct ctl_session *s, const struct ctl_call *c,
                                      struct ctl_out *o)
{
        const struct ctl_env *env = s->env;
        const struct dp_engine *e = env->dp->e;
        struct dp_shard_stats t = { 0 };
        uint64_t live = 0;
        (void)c;
        for (uint32_t i = 0; i < e->workers; i++) {
                const struct dp_shard_stats *st = e->w[i].shard.stats;
                live += ctl_live(&e->w[i].shard.table);
                t.creates += ctl_ld(&st->creates);
                t.destroys += ctl_ld(&st->destroys);
                t.expired_entities += ctl_ld(&st->expired_entities);
                t.msgs_in += ctl_ld(&st->msgs_in);
                t.bytes_in += ctl_ld(&st->bytes_in);
                t.deliveries += ctl_ld(&st->deliveries);
                t.drops_full += ctl_ld(&st->drops_full);
                t.drops_expired += ctl_ld(&st->drops_expired);
                t.drops_no_party += ctl_ld(&st->drops_no_party);
                t.pool_exhausted += ctl_ld(&st->pool_exhausted);
        }
        ctl_show_begin(o);
        ctl_out_u64(o, "entities", live);
        ctl_out_u64(o, "creates", t.creates);
        ctl_out_u64(o, "destroys", t.destroys);
        ctl_out_u64(o, "expired_entities", t.expired_entities);
        ctl_out_u64(o, "msgs_in", t.msgs_in);
        ctl_out_u64(o, "bytes_in", t.bytes_in);
        ctl_out_u64(o, "deliveries", t.deliveries);
        ctl_out_u64(o, "drops_full", t.drops_full);
        ctl_out_u64(o, "drops_expired", t.drops_expired);
        ctl_out_u64(o, "drops_no_party", t.drops_no_party);
        ctl_out_u64(o, "pool_exhausted", t.pool_exhausted);
        ctl_out_u64(o, "control_clients", env->clients);
        ctl_out_u64(o, "control_clients_accepted", env->clients_accepted);
        ctl_out_u64(o, "control_clients_refused", env->clients_refused);
        ctl_out_u64(o, "control_refused_uid", env->ctx != NULL ? env->ctx->control_refused_uid : 0);
        ctl_out_u64(o, "agents_refused_uid", env->ctx != NULL ? env->ctx->agents_refused_uid : 0);
        ctl_out_u64(o, "control_commands", env->commands);
        ctl_out_u64(o, "control_errors", env->errors);
        ctl_out_u64(o, "control_lines_too_long", env->lines_too_long);
        ctl_out_u64(o, "engine_calls", env->dp->stats.calls);
        ctl_out_u64(o, "engine_timeouts", env->dp->stats.timeouts);
        ctl_out_u64(o, "engine_orphans", env->dp->stats.orphans);
        ctl_out_u64(o, "engine_inflight", ctl_dp_inflight(env->dp));
        ctl_out_rec_end(o);
        return CTL_RUN_DONE;
}

static const char *ctl_kind_name(unsigned mode)
{
        return mode < DP_MODE_COUNT_ ? dp_modes[mode].name : "?";
}

static enum ctl_run ctl_do_show_entity(struct ctl_session *s, const struct ctl_call *c,
                                       struct ctl_out *o)
{
        const char *name = c->arg[0];
        uint32_t len = c->arg_len[0];
        struct dp_cpl_stat st;
        uint64_t h = 0;
        if (ctl_check_name(s, o, c, name, len) != 0)
                return CTL_RUN_DONE;
        int rc = ctl_dp_stat(s->env->dp, name, len, &st, &h);
        if (rc != 0)
                return ctl_fail(s, o, rc, NULL, "%s: %s", name, ctl_dp_err_text(rc));
        ctl_show_begin(o);
        ctl_out_str(o, "name", name, len);
        ctl_out_cstr(o, "kind", ctl_kind_name(st.mode));
        ctl_out_cstr(o, "storage", dp_storage_name(st.storage));
        ctl_out_cstr(o, "retention", dp_retention_name(st.retention));
        ctl_out_cstr(o, "routing", dp_routing_name(st.routing));
        ctl_out_cstr(o, "delivery", dp_delivery_name(st.delivery));
        ctl_out_cstr(o, "overflow", st.overflow == DP_OVERFLOW_DROP_OLDEST ? "drop-oldest" : "reject");
        ctl_out_u64(o, "ttl_ms", st.ttl_ms);
        ctl_out_bool(o, "ttl_idle", (st.lifecycle & DP_LIFE_TTL_IDLE) != 0);
        ctl_out_u64(o, "msgs", st.msgs);
        ctl_out_u64(o, "bytes", st.bytes);
        ctl_out_u64(o, "max_msgs", st.max_msgs);
        ctl_out_u64(o, "max_bytes", st.max_bytes);
        ctl_out_u64(o, "parties", st.parties);
        ctl_out_u64(o, "seq", st.seq);
        ctl_out_u64(o, "shard", dp_handle_shard(h));
        ctl_out_hex(o, "handle", h);
        ctl_out_rec_end(o);
        return CTL_RUN_DONE;
}

void ctl_create_args(const struct ctl_opts *opts, uint8_t mode, struct dp_cmd_create *a)
{
        *a = (struct dp_cmd_create){ .mode = mode, .overflow = -1 };
        if (opts->set & CTL_OPT_BIT(CTL_OPT_STORAGE)) {
                a->flags |= DP_CMD_CREATE_F_STORAGE;
                a->storage = (int8_t)opts->storage;
        }
        if (opts->set & CTL_OPT_BIT(CTL_OPT_SYNC))
                a->flags |= (uint8_t)(opts->sync << DP_CMD_CREATE_SYNC_SHIFT);
        a->ttl_ms = opts->ttl_ms;
        a->max_msgs = opts->max_msgs;
        a->max_bytes = opts->max_bytes;
}

static enum ctl_run ctl_do_create(struct ctl_session *s, const struct ctl_call *c,
                                  struct ctl_out *o)
{
        static const char *const kinds[] = { "mailbox", "latest", "channel", "log" };
        const char *kind = c->arg[0], *name = c->arg[1];
        uint32_t len = c->arg_len[1];
        int mode = -EINVAL;
        for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
                if (strcmp(kind, kinds[i]) == 0)
                        mode = dp_mode_parse(kind);
        if (mode < 0)
                return ctl_fail(s, o, -EINVAL, c->def->usage,
                                "unknown kind '%.64s': one of mailbox, latest, channel, log", kind);
        if (ctl_check_name(s, o, c, name, len) != 0)
                return CTL_RUN_DONE;
        struct dp_cmd_create a;
        uint64_t h = 0;
        ctl_create_args(&c->opts, (uint8_t)mode, &a);
        int rc = ctl_dp_create(s->env->dp, name, len, &a, &h);
        if (rc != 0)
                return ctl_fail(s, o, rc, NULL, "cannot create %s %s: %s", kind, name,
                                ctl_dp_err_text(rc));
        ctl_reply_begin(o, 0, "created %s %s", kind, name);
        ctl_out_str(o, "name", name, len);
        ctl_out_cstr(o, "kind", kind);
        ctl_out_hex(o, "handle", h);
        ctl_out_u64(o, "shard", dp_handle_shard(h));
        ctl_reply_end(o);
        return CTL_RUN_DONE;
}

static enum ctl_run ctl_do_destroy(struct ctl_session *s, const struct ctl_call *c,
                                   struct ctl_out *o)
{
        const char *name = c->arg[0];
        uint32_t len = c->arg_len[0];
        uint64_t h = 0;
        if (ctl_check_name(s, o, c, name, len) != 0)
                return CTL_RUN_DONE;
        int rc = ctl_dp_destroy(s->env->dp, name, len, &h);
        if (rc != 0)
                return ctl_fail(s, o, rc, NULL, "cannot destroy %s: %s", name, ctl_dp_err_text(rc));
        ctl_reply_begin(o, 0, "destroyed %s", name);
        ctl_out_str(o, "name", name, len);
        ctl_out_hex(o, "handle", h);
        ctl_reply_end(o);
        return CTL_RUN_DONE;
}

static enum ctl_run ctl_do_set(struct ctl_session *s, const struct ctl_call *c,
                               struct ctl_out *o)
{
        const char *name = c->arg[0];
        uint32_t len = c->arg_len[0];
        struct dp_cmd_set a = { 0 };
        if (ctl_check_name(s, o, c, name, len) != 0)
                return CTL_RUN_DONE;
        if (c->opts.set & CTL_OPT_BIT(CTL_OPT_STORAGE)) {
                a.flags |= DP_CMD_SET_F_STORAGE;
                a.storage = c->opts.storage;
        }
        if (c->opts.set & CTL_OPT_BIT(CTL_OPT_TTL)) {
                a.flags |= DP_CMD_SET_F_TTL;
                a.ttl_ms = c->opts.ttl_ms;
        }
        if (a.flags == 0)
                return ctl_fail(s, o, -EINVAL, c->def->usage, "nothing to set: give storage= or ttl=");
        int rc = ctl_dp_set(s->env->dp, name, len, &a);
        if (rc != 0)
                return ctl_fail(s, o, rc, NULL, "cannot set %s: %s", name, ctl_dp_err_text(rc));
        ctl_reply_begin(o, 0, "set %s", name);
        ctl_out_str(o, "name", name, len);
        if (a.flags & DP_CMD_SET_F_STORAGE)
                ctl_out_cstr(o, "storage", dp_storage_name(a.storage));
        if (a.flags & DP_CMD_SET_F_TTL)
                ctl_out_u64(o, "ttl_ms", a.ttl_ms);
        ctl_reply_end(o);
        return CTL_RUN_DONE;
}

static enum ctl_run ctl_do_send(struct ctl_session *s, const struct ctl_call *c,
                                struct ctl_out *o)
{
        const char *name = c->arg[0];
        uint32_t len = c->arg_len[0];
        uint64_t seq = 0;
        if (ctl_check_name(s, o, c, name, len) != 0)
                return CTL_RUN_DONE;
        int rc = ctl_dp_send(s->env->dp, name, len, c->arg[1], c->arg_len[1], &seq);
        if (rc != 0)
                return ctl_fail(s, o, rc, NULL, "cannot send to %s: %s", name, ctl_dp_err_text(rc));
        ctl_reply_begin(o, 0, "sent %u bytes to %s", c->arg_len[1], name);
        ctl_out_str(o, "name", name, len);
        ctl_out_u64(o, "seq", seq);
        ctl_out_u64(o, "bytes", c->arg_len[1]);
        ctl_reply_end(o);
        return CTL_RUN_DONE;
}

struct ctl_fetch_out {
        struct ctl_out *o;
        const struct ctl_call *c;
        uint64_t seqs[DP_FETCH_MAX];
        uint32_t n;
};

/* Writes one fetched message; the first one opens the reply. */
static void ctl_fetch_msg(void *arg, const struct dp_cpl_msg *m, uint32_t i, uint32_t total)
{
        struct ctl_fetch_out *f = arg;
        struct ctl_out *o = f->o;
        if (i == 0) {
                ctl_reply_begin(o, 0, "fetched %u from %s", total, f->c->arg[0]);
                ctl_out_str(o, "name", f->c->arg[0], f->c->arg_len[0]);
                ctl_out_u64(o, "count", total);
                ctl_out_arr_begin(o, "messages");
        }
        ctl_out_rec_begin(o, CTL_REC_INLINE);
        ctl_out_u64(o, "seq", m->frame.seq);
        ctl_out_u64(o, "bytes", m->frame.payload_len);
        ctl_out_bool(o, "redelivered", (m->frame.flags & ATOMQ_FRAME_F_REDELIVERY) != 0);
        ctl_out_str(o, "payload", (const char *)m->payload, m->frame.payload_len);
        ctl_out_rec_end(o);
        if (f->n < DP_FETCH_MAX)
                f->seqs[f->n++] = m->frame.seq;
}

static enum ctl_run ctl_do_fetch(struct ctl_session *s, const struct ctl_call *c,
                                 struct ctl_out *o)
{
        const char *name = c->arg[0];
        uint32_t len = c->arg_len[0];
        uint32_t max = (c->opts.set & CTL_OPT_BIT(CTL_OPT_MAX)) ? c->opts.max : CTL_FETCH_DEFAULT;
        bool ack = (c->opts.set & CTL_OPT_BIT(CTL_OPT_ACK)) ? c->opts.ack : true;
        struct ctl_fetch_out f = { .o = o, .c = c };
        uint64_t h = 0;
        if (ctl_check_name(s, o, c, name, len) != 0)
                return CTL_RUN_DONE;
        uint32_t mark = ctl_out_mark(o);
        int n = ctl_dp_fetch(s->env->dp, name, len, max, ctl_fetch_msg, &f, &h);
        if (n < 0) {
                ctl_out_rewind(o, mark);
                o->json = c->json;
                return ctl_fail(s, o, n, NULL, "cannot fetch from %s: %s", name,
                                ctl_dp_err_text(n));
        }
        if (n == 0) {
                ctl_reply_begin(o, 0, "fetched 0 from %s", name);
                ctl_out_str(o, "name", name, len);
                ctl_out_u64(o, "count", 0);
                ctl_out_arr_begin(o, "messages");
        }
        ctl_out_arr_end(o);
        if (ack && f.n > 0)
                ctl_out_u64(o, "acked", (uint64_t)ctl_dp_ack_many(s->env->dp, h, f.seqs, f.n));
        ctl_reply_end(o);
        return CTL_RUN_DONE;
}

static enum ctl_run ctl_do_quit(struct ctl_session *s, const struct ctl_call *c,
                                struct ctl_out *o)
{
        (void)s;
        (void)c;
        ctl_reply_begin(o, 0, "bye");
        ctl_reply_end(o);
        return CTL_RUN_QUIT;
}
