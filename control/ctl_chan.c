/* ctl_chan.c - direct channels set up and ended by atomqd (ctl_chan.h). */
#include "control/ctl_chan.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control/ctl_agent.h"
#include "control/ctl_out.h"
#include "control/ctl_parse.h"
#include "shm/atomq_channel_pvt.h"
#include "shm/shm_clock.h"
#include "shm/shm_log.h"

#define CTL_CHAN_TTL_MS_MAX (7u * 24 * 3600 * 1000)

int ctl_chans_init(struct ctl_chans *t, uint32_t max)
{
        memset(t, 0, sizeof(*t));
        if (max == 0)
                return 0;
        t->c = calloc(max, sizeof(*t->c));
        if (t->c == NULL)
                return -ENOMEM;
        t->max = max;
        return 0;
}

static void ctl_chan_free(struct ctl_chans *t, struct ctl_chan *c)
{
        atomq_channel_unmap(&c->mgr);
        memset(c, 0, sizeof(*c));
        t->used--;
}

void ctl_chans_fini(struct ctl_chans *t)
{
        for (uint32_t i = 0; i < t->max; i++) {
                if (t->c[i].mgr.map == NULL)
                        continue;
                /* atomqd is going: the ends learn it as the peer leaving. */
                atomq_channel_end_kill(&t->c[i].mgr, 0);
                atomq_channel_end_kill(&t->c[i].mgr, 1);
                ctl_chan_free(t, &t->c[i]);
        }
        free(t->c);
        memset(t, 0, sizeof(*t));
}

static struct ctl_chan *ctl_chan_find(struct ctl_chans *t, const char *name, size_t len)
{
        for (uint32_t i = 0; i < t->max; i++)
                if (t->c[i].mgr.map != NULL && strlen(t->c[i].name) == len &&
                    memcmp(t->c[i].name, name, len) == 0)
                        return &t->c[i];
        return NULL;
}

static int ctl_chan_error(int fd, int err, const char *why)
{
        char text[256];
        int len = snprintf(text, sizeof(text), "error: channel: %s (%s)\n\n", why,
                           ctl_errno_name(err));
        (void)ctl_send_fds(fd, text, (size_t)len, NULL, 0);
        return err;
}

/* Hands end `end` of c to the agent on fd. */
static int ctl_chan_give(int fd, struct ctl_chan *c, unsigned end)
{
        char text[160];
        int len = snprintf(text, sizeof(text), "channel %s end=%u ring=%u\n\n", c->name, end,
                           atomq_channel_ring_bytes(&c->mgr));
        return ctl_send_fds(fd, text, (size_t)len, &c->mgr.fd, 1);
}

/* The words of a `channel` line: verb, name, and options. */
struct ctl_chan_args {
        char verb[8];
        char name[CTL_CHAN_NAME_MAX];
        uint32_t ring_bytes;
        uint32_t ttl_ms;
};

static int ctl_chan_parse(const char *args, uint32_t len, struct ctl_chan_args *a)
{
        char line[256], *save = NULL;
        if (len >= sizeof(line))
                return -EINVAL;
        memcpy(line, args, len);
        line[len] = 0;
        memset(a, 0, sizeof(*a));
        char *verb = strtok_r(line, " \r", &save);
        char *name = strtok_r(NULL, " \r", &save);
        if (verb == NULL || name == NULL || strlen(verb) >= sizeof(a->verb) ||
            strlen(name) >= sizeof(a->name))
                return -EINVAL;
        snprintf(a->verb, sizeof(a->verb), "%s", verb);
        snprintf(a->name, sizeof(a->name), "%s", name);
        for (char *w = strtok_r(NULL, " \r", &save); w != NULL; w = strtok_r(NULL, " \r", &save)) {
                long long v;
                if (strncmp(w, "ring=", 5) == 0 &&
                    ctl_parse_int(w + 5, 64, 1ll << 30, &v) == 0)
                        a->ring_bytes = (uint32_t)v;
                else if (strncmp(w, "ttl=", 4) == 0 &&
                         ctl_parse_int(w + 4, 0, CTL_CHAN_TTL_MS_MAX, &v) == 0)
                        a->ttl_ms = (uint32_t)v;
                else
                        return -EINVAL;
        }
        return 0;
}

static int ctl_chan_open(struct ctl_chans *t, int fd, int32_t slot, const struct ctl_chan_args *a)
{
        if (ctl_chan_find(t, a->name, strlen(a->name)) != NULL)
                return ctl_chan_error(fd, -EEXIST, "a channel of that name is open");
        struct ctl_chan *c = NULL;
        for (uint32_t i = 0; i < t->max && c == NULL; i++)
                if (t->c[i].mgr.map == NULL)
                        c = &t->c[i];
        if (c == NULL)
                return ctl_chan_error(fd, -ENOSPC, "every channel slot is taken");
        int rc = atomq_channel_make(&c->mgr, a->ring_bytes, false);
        if (rc != 0)
                return ctl_chan_error(fd, rc, rc == -EINVAL ? "ring must be a power of two"
                                                            : "cannot make the channel");
        snprintf(c->name, sizeof(c->name), "%s", a->name);
        c->holder[0] = slot;
        c->holder[1] = CTL_CHAN_NOBODY;
        c->deadline_ns = a->ttl_ms != 0 ? shm_clock_ns() + (uint64_t)a->ttl_ms * 1000000 : 0;
        t->used++;
        rc = ctl_chan_give(fd, c, 0);
        if (rc != 0) {
                ctl_chan_free(t, c);
                return rc;
        }
        t->opened++;
        return 0;
}

static int ctl_chan_join(struct ctl_chans *t, int fd, int32_t slot, const struct ctl_chan_args *a)
{
        struct ctl_chan *c = ctl_chan_find(t, a->name, strlen(a->name));
        if (c == NULL)
                return ctl_chan_error(fd, -ENOENT, "no channel of that name");
        if (c->holder[1] != CTL_CHAN_NOBODY)
                return ctl_chan_error(fd, -EBUSY, "both ends are taken");
        if (a->ring_bytes != 0 || a->ttl_ms != 0)
                return ctl_chan_error(fd, -EINVAL, "join takes no options");
        c->holder[1] = slot;
        return ctl_chan_give(fd, c, 1);
}

int ctl_chans_command(struct ctl_chans *t, int fd, int32_t slot, const char *args,
                      uint32_t len)
{
        struct ctl_chan_args a;
        if (slot < 0)
                return ctl_chan_error(fd, -ENOTCONN, "attach first");
        if (ctl_chan_parse(args, len, &a) != 0)
                return ctl_chan_error(fd, -EINVAL, "usage: channel open NAME [ring=BYTES] "
                                                   "[ttl=MS] | channel join NAME");
        if (strcmp(a.verb, "open") == 0)
                return ctl_chan_open(t, fd, slot, &a);
        if (strcmp(a.verb, "join") == 0)
                return ctl_chan_join(t, fd, slot, &a);
        return ctl_chan_error(fd, -EINVAL, "usage: channel open NAME [ring=BYTES] [ttl=MS] | "
                                           "channel join NAME");
}

void ctl_chans_agent_gone(struct ctl_chans *t, int32_t slot)
{
        for (uint32_t i = 0; i < t->max; i++) {
                struct ctl_chan *c = &t->c[i];
                if (c->mgr.map == NULL)
                        continue;
                for (unsigned e = 0; e < 2; e++) {
                        if (c->holder[e] != slot)
                                continue;
                        atomq_channel_end_kill(&c->mgr, e);
                        c->holder[e] = CTL_CHAN_GONE;
                        t->ended_death++;
                }
        }
}

void ctl_chans_tick(struct ctl_chans *t, uint64_t now_ns)
{
        for (uint32_t i = 0; i < t->max && t->used > 0; i++) {
                struct ctl_chan *c = &t->c[i];
                if (c->mgr.map == NULL)
                        continue;
                if (c->deadline_ns != 0 && now_ns >= c->deadline_ns) {
                        shm_log(SHM_LOG_INFO, "channel %s: TTL passed, closed", c->name);
                        atomq_channel_end_kill(&c->mgr, 0);
                        atomq_channel_end_kill(&c->mgr, 1);
                        t->ended_ttl++;
                }
                /* An end nobody joined is closed once its opener has
                 * closed or gone: nobody could read what it would send. */
                if (c->holder[1] == CTL_CHAN_NOBODY && atomq_channel_end_closed(&c->mgr, 0))
                        atomq_channel_end_kill(&c->mgr, 1);
                if (atomq_channel_ends_closed(&c->mgr))
                        ctl_chan_free(t, c);
        }
}
