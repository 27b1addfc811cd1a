/* ctl_cmd_pvt.h - what ctl_cmd.c (table, parser, short commands) and
 * ctl_cmd_long.c (commands that run in slices) share. */
#ifndef ATOMQ_CTL_CMD_PVT_H
#define ATOMQ_CTL_CMD_PVT_H

#include "control/ctl_cmd.h"

/* Option keys (key=value words); a command row accepts a set of them. */
enum ctl_opt {
        CTL_OPT_TTL = 0,
        CTL_OPT_STORAGE,
        CTL_OPT_MAX_MSGS,
        CTL_OPT_MAX_BYTES,
        CTL_OPT_LIMIT,
        CTL_OPT_MAX,
        CTL_OPT_ACK,
        CTL_OPT_SYNC,
        CTL_OPT_COUNT_,
};
#define CTL_OPT_BIT(o) (1u << (o))

struct ctl_opts {
        uint32_t set;          /* CTL_OPT_BIT of each key given */
        uint32_t ttl_ms;
        uint8_t storage;       /* enum dp_storage */
        uint8_t sync;          /* enum dp_sync */
        uint32_t max_msgs;
        uint32_t max_bytes;
        uint64_t limit;
        uint32_t max;
        bool ack;
};

/* Positional words after verb [noun]. */
#define CTL_CALL_ARGS_MAX 4u

/* A parsed command, as its handler receives it. Arguments point into the
 * tokenized copy (NUL-terminated) except a CTL_CMD_F_REST argument, which
 * points into the line itself: use the lengths. */
struct ctl_call {
        const struct ctl_cmd_def *def;
        bool json;
        uint32_t nargs;
        const char *arg[CTL_CALL_ARGS_MAX];
        uint32_t arg_len[CTL_CALL_ARGS_MAX];
        struct ctl_opts opts;
};

/* Replies. ctl_reply_begin opens the reply record: text "ok: MSG" or
 * "error: MSG (ENAME)", JSON {"ok":..,"error":..,"message":..; err is 0
 * or -errno. Fields may follow; ctl_reply_end closes it. */
void ctl_reply_begin(struct ctl_out *o, int err, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
void ctl_reply_end(struct ctl_out *o);
/* A whole error reply, counted; usage (may be NULL) for a wrong command. */
enum ctl_run ctl_fail(struct ctl_session *s, struct ctl_out *o, int err, const char *usage,
                      const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* Opens the record of a `show` reply: JSON "ok":true, text nothing. */
void ctl_show_begin(struct ctl_out *o);
/* The phrase for an engine error, for "error: ..." lines. */
const char *ctl_dp_err_text(int err);

/* Entity names and prefixes follow the subject rules (dp_subject.h). */
int ctl_check_name(struct ctl_session *s, struct ctl_out *o, const struct ctl_call *c,
                   const char *name, uint32_t len);

/* The create arguments of a command's options (mode and options). */
void ctl_create_args(const struct ctl_opts *opts, uint8_t mode, struct dp_cmd_create *a);

/* One entity as seen in a shard's table: copied without stopping the
 * worker (racy, bounds-checked, re-validated by generation). */
struct ctl_peek {
        struct dp_entity e;
        uint64_t handle;
        uint32_t shard;
        uint32_t name_len;
        char name[DP_CMD_NAME_MAX + 1];
};
bool ctl_peek_slot(const struct dp_table *t, uint32_t slot, struct ctl_peek *p);

/* ctl_cmd_long.c */
enum ctl_run ctl_do_show_entities(struct ctl_session *s, const struct ctl_call *c,
                                  struct ctl_out *o);
enum ctl_run ctl_do_create_mailboxes(struct ctl_session *s, const struct ctl_call *c,
                                     struct ctl_out *o);
enum ctl_run ctl_do_destroy_prefix(struct ctl_session *s, const struct ctl_call *c,
                                   struct ctl_out *o);
/* One slice of the long command running in s. */
enum ctl_run ctl_cont_step(struct ctl_session *s, struct ctl_out *o, uint64_t deadline_ns);

#endif /* ATOMQ_CTL_CMD_PVT_H */
