/* dp_nats_aq_pvt.h - what the $AQ request layer's files share: the request,
 * the answers (dp_nats_aq.c) and the verbs (dp_nats_aq_verbs.c). */
#ifndef ATOMQ_DP_NATS_AQ_PVT_H
#define ATOMQ_DP_NATS_AQ_PVT_H

#include <jansson.h>
#include <stddef.h>

#include "dataplane/dp_nats_aq.h"
#include "dataplane/dp_worker_pvt.h"

/* One request, as the owner executes it. */
struct dp_aq_req {
        struct dp_worker *w;
        const struct dp_msg_in *m;
        const char *name;   /* the entity: the subject after the verb */
        uint32_t name_len;
        json_t *body;       /* the JSON body of verbs that take one; else NULL */
};

typedef json_t *dp_aq_fn(struct dp_aq_req *r);

struct dp_aq_verb {
        const char *verb;   /* after "$AQ.": a whole token run, "." at the end: a name follows */
        bool json_body;     /* false: the payload is a message */
        dp_aq_fn *fn;
};

/* ---- answers (dp_nats_aq.c) ---- */

/* {"ok":false,"error":code,"message":fmt with arg (%.*s)}. */
json_t *dp_aq_fail(const char *code, const char *fmt, const char *arg, size_t arg_len);
json_t *dp_aq_msg(const char *code, const char *msg);
/* The error of an -errno about the request's entity. */
json_t *dp_aq_err(const struct dp_aq_req *r, int err);
/* The common answers, written as text into the worker's answer buffer;
 * what they return is a marker for dp_aq_answer, not a JSON tree. */
json_t *dp_aq_ok(void);
json_t *dp_aq_ok_num(const char *key, uint64_t v);
/* NULL when the name does not fit the text buffer (build a tree then). */
json_t *dp_aq_ok_named(const char *name, size_t len, const char *mode);
/* Is a the marker of a text answer (every text answer is an ok)? */
bool dp_aq_is_text(const json_t *a);
/* Publishes a (the marker or a tree, which it frees) to m's reply subject. */
void dp_aq_answer(struct dp_worker *w, const struct dp_msg_in *m, json_t *a);

/* ---- verbs (dp_nats_aq_verbs.c) ---- */

extern const struct dp_aq_verb dp_aq_verbs[];
extern const size_t dp_aq_verbs_count;
json_t *dp_aq_info(struct dp_aq_req *r);
json_t *dp_aq_log_create(struct dp_aq_req *r);
json_t *dp_aq_channel_open(struct dp_aq_req *r);
json_t *dp_aq_channel_send(struct dp_aq_req *r);
json_t *dp_aq_channel_fetch(struct dp_aq_req *r);
/* A string field of a body (absent: NULL). -EINVAL when not a string. */
int dp_aq_str(const json_t *body, const char *key, const char **out);
/* Fetch by name (mailbox, or a channel end: end is 1 + the end). */
int dp_aq_fetch_now(struct dp_worker *w, const char *name, uint32_t name_len, uint8_t end,
                    uint32_t batch, struct dp_fetched *got);
/* {"ok":true,"messages":[...]}; puts each message's buffer reference. */
json_t *dp_aq_msgs_json(struct dp_worker *w, const struct dp_fetched *got, int n, bool offset);

#endif /* ATOMQ_DP_NATS_AQ_PVT_H */
