/* dp_nats_aq.h - atomq's modes for NATS clients: request-reply on `$AQ.>`
 * (dp_nats_aq.c; docs/protocol.md lists the subjects, bodies and errors). */
#ifndef ATOMQ_DP_NATS_AQ_H
#define ATOMQ_DP_NATS_AQ_H

#include <stdbool.h>
#include <stdint.h>

#include "atomq/frame.h"
#include "dataplane/dp_nats.h"
#include "dataplane/dp_shard.h"

/* A fetch may wait this long for a message at most. */
#define DP_AQ_WAIT_MS_MAX 60000u
/* Fetches waiting on one worker at once; more are answered at once. */
#define DP_AQ_PARKED_MAX 1024u

/* A fetch waiting for a message (the owner keeps it, dp_nats.c). */
struct dp_aq_parked {
        uint64_t deadline_ns;
        uint32_t batch;
        uint8_t end;               /* channel: 1 + the end; 0: a mailbox */
        uint8_t name_len;
        uint8_t reply_len;
        char name[ATOMQ_FRAME_SUBJECT_MAX];
        char reply[ATOMQ_FRAME_SUBJECT_MAX];
};

struct dp_worker;

/* Is this subject an $AQ request? */
bool dp_nats_aq_is(const char *subject, uint32_t len);

/* A request published on this worker: executed here when this worker owns
 * the entity it names, else sent to the owner through the mesh. */
void dp_nats_aq_request(struct dp_worker *w, const struct dp_msg_in *m);

/* A request that will be handled soon (a pipelined one, parsed ahead):
 * starts loading the table entry it names when this worker owns it. A
 * hint only. */
void dp_nats_aq_prefetch(struct dp_worker *w, const struct dp_msg_in *m);

/* Executes a request on its owner and publishes the answer. */
void dp_nats_aq_exec(struct dp_worker *w, const struct dp_msg_in *m);

/* Tries a parked fetch again; answers it (true) when a message came or, with
 * expired, whatever it finds. */
bool dp_nats_aq_answer_parked(struct dp_worker *w, const struct dp_aq_parked *pk, bool expired);

#endif /* ATOMQ_DP_NATS_AQ_H */
