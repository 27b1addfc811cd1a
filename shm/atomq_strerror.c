/* atomq_strerror.c - text for the negative errno values the agent API
 * returns (include/atomq/atomq.h), with atomq's meaning where it is more
 * precise than the system's.
 *
 *      int rc = atomq_channel_send(&ch, buf, len);
 *      if (rc < 0)
 *              fprintf(stderr, "send: %s\n", atomq_strerror(rc));
 */
#include "atomq/atomq.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

struct atomq_err_text {
        int err;
        const char *text;
};

/* Meanings the agent API gives these codes; any other code gets the
 * system's text. */
static const struct atomq_err_text atomq_err_texts[] = {
        { EAGAIN, "try again: a channel is full, or nothing waits (a call that does not wait)" },
        { EMSGSIZE, "message too large (a channel: ring_bytes / 2 - 8; through the dataplane: "
                    "about 15.7 KiB)" },
        { EPIPE, "the peer closed its end of the channel" },
        { ETIMEDOUT, "timed out" },
        { EINTR, "interrupted by a signal" },
        { EPROTO, "shared memory or an answer that does not check: corrupt rings, or not an "
                  "atomq peer of this version" },
        { EBADF, "not an open descriptor, or the channel is closed" },
        { ENODEV, "not a memfd (channel attach), or atomqd has no agent slots (connect)" },
        { EPERM, "not permitted: an unsealed memfd, a user atomqd refuses, or another agent's "
                 "subscription" },
        { EBUSY, "already taken (a channel end), or earlier replies still unsent" },
        { ENOENT, "no such entity, message, subscription, channel or socket (or nothing "
                  "borrowed)" },
        { EINVAL, "invalid argument" },
        { ENOMEM, "out of memory" },
        { EUSERS, "every agent slot of atomqd is taken (--max-agents)" },
        { EDQUOT, "the agent's quota is reached (--agent-max-subs, --agent-max-entities)" },
        { ECONNRESET, "atomqd took the connection back: connect again" },
        { ECONNREFUSED, "no atomqd answers on that socket" },
        { EXDEV, "a command sent to a worker that does not own it" },
        { ENOBUFS, "the entity is full and refuses more (its max_msgs or max_bytes)" },
        { ESTALE, "the entity of this handle is gone" },
        { EEXIST, "the name is taken" },
        /* ENOTSUP is EOPNOTSUPP on Linux: one code for both of its uses. */
        { EOPNOTSUPP, "not supported: not an operation of this entity's mode, or of this "
                      "transport (UDP)" },
        { ERANGE, "offset beyond the end of the log" },
};

const char *atomq_strerror(int err)
{
        if (err == 0)
                return "success";
        if (err < -INT_MAX) /* INT_MIN has no positive counterpart */
                return "unknown error";
        int e = err < 0 ? -err : err;
        for (size_t i = 0; i < sizeof(atomq_err_texts) / sizeof(atomq_err_texts[0]); i++)
                if (atomq_err_texts[i].err == e)
                        return atomq_err_texts[i].text;
        /* glibc 2.32+: static, thread-safe, NULL for an unknown value. */
        const char *s = strerrordesc_np(e);
        return s != NULL ? s : "unknown error";
}
