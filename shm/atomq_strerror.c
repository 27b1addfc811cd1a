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
        { EAGAIN, "channel full: try again once the peer has received" },
        { EMSGSIZE, "message larger than the channel allows (ring_bytes / 2 - 8)" },
        { EPIPE, "the peer closed its end of the channel" },
        { ETIMEDOUT, "timed out" },
        { EINTR, "interrupted by a signal" },
        { EPROTO, "shared memory is not a channel of this version, or the peer "
                  "corrupted it" },
        { EBADF, "not an open descriptor, or the channel is closed" },
        { ENODEV, "descriptor is not a memfd" },
        { EPERM, "memfd is not sealed against shrinking and growing" },
        { EBUSY, "the channel's end is already attached" },
        { ENOENT, "nothing borrowed or reserved" },
        { EINVAL, "invalid argument (ring_bytes must be a power of two, 64 B to 1 GiB)" },
        { ENOMEM, "out of memory" },
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
