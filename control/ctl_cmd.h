/* ctl_cmd.h - the control socket's commands: the table, the parser and the
 * handlers, independent of sockets (ctl_server.c moves the bytes; tests
 * call ctl_cmd_exec directly).
 *
 * Protocol (one command a line, HAProxy runtime API style):
 *
 *   greeting   "atomqd VERSION pid PID protocol 1" and an empty line
 *   command    words separated by spaces or tabs, ending in \n (\r\n too);
 *              at most CTL_LINE_MAX - 1 bytes and CTL_ARGS_MAX words;
 *              `json` as the first word asks for the JSON form
 *   reply      text: lines, then an empty line
 *              json: one JSON object per line, then an empty line
 *
 * Every reply, text or JSON, ends with an empty line, so a client reads
 * up to "\n\n" whatever it asked. A JSON reply is one object, except
 * `show entities`: one object per entity (no "ok" key), then a summary
 * object {"ok":true,"shown":N,"truncated":bool,...} last.
 *
 * Errors: text "error: WHAT (ENAME)", then "usage: ..." when the command
 * itself was wrong (unknown word, missing or extra argument, unknown
 * option, bad value, over-long line); JSON {"ok":false,"error":"ENAME",
 * "message":"WHAT"[,"usage":"..."]}. Success in JSON carries "ok":true;
 * in text a command that changes something starts with "ok: WHAT". The
 * connection stays usable after any error.
 *
 * Long commands (show entities, create mailboxes, destroy prefix) run in
 * slices: ctl_cmd_exec returns CTL_RUN_MORE and the server calls
 * ctl_cmd_resume until CTL_RUN_DONE, so the event loop is never held for
 * more than a slice and a listing is never larger than the output buffer.
 */
#ifndef ATOMQ_CTL_CMD_H
#define ATOMQ_CTL_CMD_H

#include <stdbool.h>
#include <stdint.h>

#include "control/ctl.h"
#include "control/ctl_dp.h"
#include "control/ctl_out.h"

#define CTL_PROTOCOL_VERSION 1
/* A command line, its newline included. */
#define CTL_LINE_MAX 4096u
/* Words in a command line (send's TEXT is the rest of the line, any
 * number of words). */
#define CTL_ARGS_MAX 16u
/* Output room a command needs before it runs: the largest reply that is
 * not streamed, a fetch of DP_CPL_BYTES_MAX bytes of messages escaped for
 * JSON (6 bytes per byte at worst) with its framing. */
#define CTL_REPLY_MAX (6u * DP_CPL_BYTES_MAX + 8192u)
/* Room a streamed reply needs to write one more item. */
#define CTL_ITEM_MAX 4096u
/* How long one slice of a long command may run. */
#define CTL_SLICE_NS (2ull * 1000 * 1000)
#define CTL_LIST_LIMIT_DEFAULT 1000u
#define CTL_FETCH_DEFAULT 10u

/* What the server lets the commands see of it (show info, show stats). */
struct ctl_agents;

struct ctl_env {
        struct ctl_ctx *ctx;
        struct ctl_dp *dp;            /* NULL: no engine (commands say so) */
        struct ctl_agents *agents;    /* attached agents (ctl_agent.h); NULL: none */
        const char *control_path;
        uint32_t clients;             /* connected now */
        uint32_t clients_max;
        uint64_t clients_accepted;
        uint64_t clients_refused;     /* over the limit */
        uint64_t commands;
        uint64_t errors;              /* error replies */
        uint64_t lines_too_long;
};

/* A tokenized line: at most CTL_ARGS_MAX words, each a NUL-terminated
 * copy in buf, and where it started in the line. */
struct ctl_args {
        uint32_t count;
        bool more;                     /* words beyond CTL_ARGS_MAX */
        const char *v[CTL_ARGS_MAX];
        uint32_t len[CTL_ARGS_MAX];
        uint32_t off[CTL_ARGS_MAX];
        char buf[CTL_LINE_MAX + CTL_ARGS_MAX];
};

enum ctl_run {
        CTL_RUN_DONE = 0,  /* the reply is complete (its empty line written) */
        CTL_RUN_MORE = 1,  /* call ctl_cmd_resume again */
        CTL_RUN_QUIT = 2,  /* complete; close the connection once it is sent */
};

enum ctl_cont_kind {
        CTL_CONT_NONE = 0,
        CTL_CONT_LIST,     /* show entities */
        CTL_CONT_BULK,     /* create mailboxes */
        CTL_CONT_PURGE,    /* destroy prefix */
};

/* The state of a long command between slices. */
struct ctl_cont {
        enum ctl_cont_kind kind;
        bool json;
        bool scan_done;
        char prefix[DP_CMD_NAME_MAX + 1];
        uint32_t prefix_len;
        uint32_t shard;               /* scan position: shard, slot */
        uint32_t slot;
        uint64_t scanned;
        uint64_t limit;               /* list */
        uint64_t shown;
        bool truncated;
        uint64_t next;                /* bulk: the next index to create */
        uint64_t count;
        uint64_t started_ns;
        struct dp_cmd_create create;
        struct ctl_dp_batch batch;
};

/* One client's command state. Must not move while a long command runs
 * (its batch is registered with the ctl_dp by address). */
struct ctl_session {
        struct ctl_env *env;
        struct ctl_cont cont;
};

struct ctl_call;
typedef enum ctl_run ctl_cmd_fn(struct ctl_session *s, const struct ctl_call *c,
                                struct ctl_out *o);

enum ctl_cmd_flags {
        CTL_CMD_F_ENGINE = 1u << 0,  /* needs the engine */
        CTL_CMD_F_MUTATES = 1u << 1, /* refused once atomqd is stopping */
        CTL_CMD_F_REST = 1u << 2,    /* the last argument is the rest of the line */
};

/* One row of the command table: the single source of usage text for
 * `help` and for errors. */
struct ctl_cmd_def {
        const char *verb;
        const char *noun;        /* NULL: none (the next word is an argument) */
        uint8_t args_min;        /* words after verb [noun] that are not key=value */
        uint8_t args_max;
        uint16_t opts;           /* bit (1 << enum ctl_opt) per key accepted */
        uint8_t flags;           /* enum ctl_cmd_flags */
        ctl_cmd_fn *fn;
        const char *usage;
        const char *help;
};

extern const struct ctl_cmd_def ctl_cmds[];
extern const uint32_t ctl_cmds_count;

/* Splits line[0..len) into words. -EMSGSIZE: len >= CTL_LINE_MAX. */
int ctl_args_split(struct ctl_args *a, const char *line, uint32_t len);

/* "500ms", "30s", "2m", "1h", "1d", or "0" into *ms. -EINVAL: anything
 * else (a unit is required: "30" could mean seconds or milliseconds);
 * -ERANGE: above UINT32_MAX milliseconds (about 49 days). */
int ctl_parse_duration(const char *s, uint32_t *ms);

void ctl_session_init(struct ctl_session *s, struct ctl_env *env);

/* The greeting, with its empty line. */
void ctl_cmd_greeting(struct ctl_session *s, struct ctl_out *o);

/* Runs one command line (without its \n; a trailing \r is dropped) and
 * writes its reply to o, which needs CTL_REPLY_MAX bytes of room. */
enum ctl_run ctl_cmd_exec(struct ctl_session *s, const char *line, uint32_t len,
                          struct ctl_out *o);

/* Carries on a long command for up to budget_ns; o needs CTL_ITEM_MAX of
 * room (CTL_REPLY_MAX for the last slice's summary is never needed: a
 * summary is under CTL_ITEM_MAX). */
enum ctl_run ctl_cmd_resume(struct ctl_session *s, struct ctl_out *o, uint64_t budget_ns);

/* The reply to a line over CTL_LINE_MAX - 1 bytes; head is its start (to
 * see whether it asked for JSON). */
void ctl_cmd_line_too_long(struct ctl_session *s, const char *head, uint32_t head_len,
                           struct ctl_out *o);

/* The client went away: a long command stops (what it did stays done). */
void ctl_cmd_abort(struct ctl_session *s);

static inline bool ctl_session_busy(const struct ctl_session *s)
{
        return s->cont.kind != CTL_CONT_NONE;
}

#endif /* ATOMQ_CTL_CMD_H */
