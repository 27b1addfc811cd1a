/* ctl_config.c - atomqd's keys: the table, the command line, the config
 * file, the defaults and --help (see ctl_config.h). */
#include "control/ctl_config.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "control/ctl_parse.h"
#include "control/ctl_server.h"
#include "dataplane/dp_dgram.h"
#include "dataplane/dp_idle.h"
#include "dataplane/dp_worker.h"

#define CTL_STR_(x) #x
#define CTL_STR(x) CTL_STR_(x)
#define CTL_DATAPLANE_NAME "atomq-dataplane"

#define CTL_FIELD(f) .off = offsetof(struct ctl_config, f), \
                     .size = sizeof(((struct ctl_config *)0)->f)

static const struct ctl_config_key ctl_keys[] = {
        { .name = "config", .arg = "FILE", .kind = CTL_KEY_STRING, .flags = CTL_KEY_F_CMDLINE,
          CTL_FIELD(config_path),
          .help = "read keys from FILE, one 'key = value' a line;\n"
                  "flags on the command line win over the file" },
        { .name = "control", .arg = "PATH", .kind = CTL_KEY_STRING, CTL_FIELD(control_path),
          .help = "control socket; default /run/atomq/control.sock\n"
                  "as root, else in $XDG_RUNTIME_DIR/atomq" },
        { .name = "control-group", .arg = "GROUP", .kind = CTL_KEY_STRING,
          CTL_FIELD(control_group), .check = ctl_server_group_check,
          .help = "give the control socket this group and mode\n"
                  "0660 (default: none, mode 0600): members may\n"
                  "run commands; agents also need --agent-uids" },
        { .name = "agent-uids", .arg = "LIST", .kind = CTL_KEY_STRING, CTL_FIELD(agent_uids),
          .check = ctl_agents_uids_check,
          .help = "users (names or uids, comma-separated) whose\n"
                  "agents may attach; the list replaces the\n"
                  "default: root and atomqd's own user" },
        { .name = "nats", .arg = "ADDR:PORT|off", .def = "127.0.0.1:4222",
          .kind = CTL_KEY_ADDR_OFF, CTL_FIELD(nats_addr),
          .help = "NATS protocol listener, one per worker\n"
                  "(SO_REUSEPORT; docs/protocol.md)" },
        { .name = "max-conns", .arg = "N", .def = "16384", .kind = CTL_KEY_U32,
          CTL_FIELD(max_conns), .min = 1, .max = NIC_CONNS_MAX,
          .help = "NATS connections each worker serves at once" },
        { .name = "max-payload", .arg = "SIZE", .def = "1M", .kind = CTL_KEY_BYTES,
          CTL_FIELD(max_payload), .min = 1, .max = 1u << 20,
          .help = "largest NATS message (headers + payload);\n"
                  "at most 1M: the shards' largest buffers" },
        { .name = "max-pending", .arg = "SIZE", .def = "64M", .kind = CTL_KEY_BYTES,
          CTL_FIELD(max_pending), .min = 64 * 1024, .max = 1ull << 32,
          .help = "unsent output a NATS connection may have;\n"
                  "beyond it the client is a slow consumer and\n"
                  "is cut off" },
        { .name = "max-subs-per-conn", .arg = "N", .def = "1048576", .kind = CTL_KEY_U32,
          CTL_FIELD(max_subs_per_conn), .min = 1, .max = UINT32_MAX,
          .help = "subscriptions one NATS connection may hold" },
        { .name = "nats-token", .arg = "TOKEN", .kind = CTL_KEY_STRING, CTL_FIELD(nats_token),
          .flags = CTL_KEY_F_SECRET,
          .help = "NATS clients must send this auth_token\n"
                  "(prefer the config file: a command line\n"
                  "is visible to every user of the host)" },
        { .name = "nats-user", .arg = "USER", .kind = CTL_KEY_STRING, CTL_FIELD(nats_user),
          .help = "NATS clients must send this user and\n"
                  "--nats-pass (not with --nats-token)" },
        { .name = "nats-pass", .arg = "PASS", .kind = CTL_KEY_STRING, CTL_FIELD(nats_pass),
          .flags = CTL_KEY_F_SECRET,
          .help = "the password that goes with --nats-user" },
        { .name = "nats-no-auth", .kind = CTL_KEY_BOOL, CTL_FIELD(nats_no_auth),
          .help = "serve NATS on a non-loopback address without\n"
                  "credentials (refused by default: any host that\n"
                  "reaches it could publish and subscribe)" },
        { .name = "ping-interval-ms", .arg = "MS", .def = "120000", .kind = CTL_KEY_U32,
          CTL_FIELD(ping_interval_ms), .min = 100, .max = 86400000,
          .help = "the server PINGs each NATS client this often;\n"
                  "two unanswered: 'Stale Connection'" },
        { .name = "udp", .arg = "ADDR:PORT|off", .def = "off",
          .kind = CTL_KEY_ADDR_OFF, CTL_FIELD(udp_addr),
          .help = "atomq datagrams over UDP, a socket per worker\n"
                  "(SO_REUSEPORT; IPv4; docs/protocol.md);\n"
                  "the usual port is 4223" },
        { .name = "udp-sessions", .arg = "N", .def = "1024", .kind = CTL_KEY_U32,
          CTL_FIELD(udp_sessions), .min = 1, .max = DP_DGRAM_SESSIONS_MAX,
          .help = "datagram sessions each worker holds at once" },
        { .name = "udp-lease-ms", .arg = "MS", .def = "30000", .kind = CTL_KEY_U32,
          CTL_FIELD(udp_lease_ms), .min = 100, .max = 3600000,
          .help = "a datagram session ends this long after its\n"
                  "peer was last heard from (its subscriptions too)" },
        { .name = "dpdk-args", .arg = "'EAL ARGS'", .kind = CTL_KEY_STRING,
          CTL_FIELD(dpdk_args),
          .help = "also serve atomq datagrams on a DPDK port:\n"
                  "the EAL's arguments, e.g. '-l 0 -a 0000:3b:00.0'\n"
                  "or '--no-huge -m 256 --no-pci --vdev=net_ring0'\n"
                  "(docs/operations.md); needs --dpdk-addr" },
        { .name = "dpdk-addr", .arg = "IPv4:PORT", .kind = CTL_KEY_STRING,
          CTL_FIELD(dpdk_addr),
          .help = "our address and UDP port on the DPDK port" },
        { .name = "metrics", .arg = "ADDR:PORT|off", .def = "127.0.0.1:8222",
          .kind = CTL_KEY_ADDR_OFF, CTL_FIELD(metrics_addr),
          .help = "HTTP: /metrics (Prometheus), /info, /workers,\n"
                  "/entities and a status page at /" },
        { .name = "data-dir", .arg = "DIR", .kind = CTL_KEY_STRING, CTL_FIELD(data_dir),
          .help = "durable data; default /var/lib/atomq as root,\n"
                  "else $XDG_DATA_HOME/atomq" },
        { .name = "disk", .arg = "on|off", .def = "on", .kind = CTL_KEY_BOOL, CTL_FIELD(disk),
          .help = "the disk tier: each worker keeps a log in\n"
                  "DATA-DIR/wN (off: storage disk is refused)" },
        { .name = "disk-max", .arg = "SIZE", .def = "0", .kind = CTL_KEY_BYTES,
          CTL_FIELD(disk_max), .min = 0, .max = UINT64_MAX / 2,
          .help = "disk one worker's log may take (0: no limit\n"
                  "but the filesystem's); full: DISK_FULL" },
        { .name = "disk-sync-us", .arg = "N", .def = "1000", .kind = CTL_KEY_U32,
          CTL_FIELD(disk_sync_us), .min = 1, .max = 10000000,
          .help = "sync=batch: group commit every N microseconds" },
        { .name = "disk-segment", .arg = "SIZE", .def = "64M", .kind = CTL_KEY_BYTES,
          CTL_FIELD(disk_segment), .min = 2u << 20, .max = 1ull << 40,
          .help = "a log segment; a log of 4 segments is compacted\n"
                  "to what is live" },
        { .name = "disk-direct", .def = "false", .kind = CTL_KEY_BOOL, CTL_FIELD(disk_direct),
          .help = "O_DIRECT log writes (default: buffered writes\n"
                  "and fdatasync; docs/architecture.md says why)" },
        { .name = "dataplane", .arg = "PATH", .kind = CTL_KEY_STRING, CTL_FIELD(dataplane_path),
          .help = "the " CTL_DATAPLANE_NAME " binary; default: the one\n"
                  "next to atomqd's own executable" },
        { .name = "workers", .arg = "N", .def = "auto", .kind = CTL_KEY_U32,
          .flags = CTL_KEY_F_AUTO, CTL_FIELD(workers), .min = 1, .max = DP_WORKERS_MAX,
          .help = "dataplane workers, one thread and shard each\n"
                  "(auto: CPUs - 1, at least 1)" },
        { .name = "max-entities", .arg = "N", .def = CTL_STR(CTL_MAX_ENTITIES_DEFAULT),
          .kind = CTL_KEY_U32, CTL_FIELD(max_entities), .min = 1, .max = CTL_MAX_ENTITIES_MAX,
          .help = "entities each shard holds" },
        { .name = "ack-wait-ms", .arg = "MS", .def = "30000", .kind = CTL_KEY_U32,
          CTL_FIELD(ack_wait_ms), .min = 1, .max = 86400000,
          .help = "mailboxes hand an unacked message out again\n"
                  "after this long" },
        { .name = "arena-size", .arg = "SIZE", .def = "auto", .kind = CTL_KEY_BYTES,
          .flags = CTL_KEY_F_AUTO, CTL_FIELD(arena_bytes), .min = SHM_ARENA_BYTES_MIN,
          .max = SHM_ARENA_BYTES_MAX,
          .help = "shared-memory arena, e.g. 512M or 2G\n"
                  "(auto: what the limits need)" },
        { .name = "hugepages", .arg = "auto|on|off", .def = "auto", .kind = CTL_KEY_HUGEPAGES,
          CTL_FIELD(hugepages),
          .help = "back the arena with hugepages (auto: when\n"
                  "reserved, else plain memfd; on: or fail)" },
        { .name = "busy-poll", .arg = "adaptive|always", .def = "adaptive",
          .kind = CTL_KEY_BUSY_POLL, CTL_FIELD(busy_poll),
          .help = "idle workers back off (adaptive) or spin pinned\n"
                  "to a CPU each (always: dedicated cores only)" },
        { .name = "control-clients", .arg = "N", .def = CTL_STR(CTL_CONTROL_CLIENTS_DEFAULT),
          .kind = CTL_KEY_U32, CTL_FIELD(control_clients_max), .min = 1,
          .max = CTL_CONTROL_CLIENTS_MAX, .help = "most control-socket clients at once" },
        { .name = "max-agents", .arg = "N", .def = CTL_STR(CTL_MAX_AGENTS_DEFAULT),
          .kind = CTL_KEY_U32, CTL_FIELD(max_agents), .min = 0, .max = DP_AGENTS_MAX,
          .help = "agents attached at once through libatomq\n"
                  "(0: none; each has its own rings)" },
        { .name = "agent-max-subs", .arg = "N", .def = CTL_STR(CTL_AGENT_MAX_SUBS_DEFAULT),
          .kind = CTL_KEY_U32, CTL_FIELD(agent_max_subs), .min = 1, .max = UINT32_MAX,
          .help = "subscriptions and watches one agent may hold" },
        { .name = "agent-max-entities", .arg = "N", .def = "1000000", .kind = CTL_KEY_U32,
          CTL_FIELD(agent_max_entities), .min = 1, .max = UINT32_MAX,
          .help = "entities one agent may have created and alive" },
        { .name = "max-channels", .arg = "N", .def = "1024", .kind = CTL_KEY_U32,
          CTL_FIELD(max_channels), .min = 0, .max = 1000000,
          .help = "direct channels between agents open at once" },
        { .name = "agent-ring-size", .arg = "SIZE", .def = "256K", .kind = CTL_KEY_BYTES,
          CTL_FIELD(agent_ring_bytes), .min = 64 * 1024, .max = 64u << 20,
          .help = "an agent's delivery ring per worker, a power\n"
                  "of two: what it may have unread" },
        { .name = "inprocess", .def = "false", .kind = CTL_KEY_BOOL, CTL_FIELD(inprocess),
          .help = "run the workers as threads of atomqd, not in a\n"
                  "child process (for debugging)" },
        { .name = "once", .def = "false", .kind = CTL_KEY_BOOL, .flags = CTL_KEY_F_CMDLINE,
          CTL_FIELD(once), .help = "build everything, report it and exit" },
        { .name = "help", .kind = CTL_KEY_ACTION, .flags = CTL_KEY_F_CMDLINE,
          .help = "this text (also -h)" },
        { .name = "version", .kind = CTL_KEY_ACTION, .flags = CTL_KEY_F_CMDLINE,
          .help = "print the version (also -V)" },
};
#define CTL_KEYS_COUNT (sizeof(ctl_keys) / sizeof(ctl_keys[0]))

const struct ctl_config_key *ctl_config_keys(size_t *count)
{
        *count = CTL_KEYS_COUNT;
        return ctl_keys;
}

const struct ctl_config_key *ctl_config_key_find(const char *name, size_t len)
{
        for (size_t i = 0; i < CTL_KEYS_COUNT; i++)
                if (strlen(ctl_keys[i].name) == len && memcmp(ctl_keys[i].name, name, len) == 0)
                        return &ctl_keys[i];
        return NULL;
}

__attribute__((format(printf, 3, 4)))
static void ctl_errf(char *err, size_t errlen, const char *fmt, ...)
{
        if (err == NULL || errlen == 0)
                return;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
}

/* Values quoted in errors are cut at this many bytes. */
#define CTL_ERR_VALUE_MAX 80

/* A byte count as the largest binary unit that divides it ("3G", "4095"):
 * what ctl_parse_bytes reads back as the same number. */
static void ctl_bytes_text(uint64_t v, char *buf, size_t len)
{
        static const char units[] = "KMGT";
        for (int u = 3; v != 0 && u >= 0; u--) {
                unsigned shift = 10u * (unsigned)(u + 1);
                if ((v & ((1ull << shift) - 1)) == 0) {
                        snprintf(buf, len, "%" PRIu64 "%c", v >> shift, units[u]);
                        return;
                }
        }
        snprintf(buf, len, "%" PRIu64, v);
}

/* CTL_KEY_U32 and CTL_KEY_BYTES: a number within [k->min, k->max], or
 * "auto" (0) when the key allows it. */
static int ctl_key_number(void *field, const struct ctl_config_key *k, const char *value,
                          char *why, size_t whylen)
{
        const char *or_auto = (k->flags & CTL_KEY_F_AUTO) ? " or auto" : "";
        bool is_auto = (k->flags & CTL_KEY_F_AUTO) && strcmp(value, "auto") == 0;
        long long v = 0;
        uint64_t bytes = 0;

        if (k->kind == CTL_KEY_U32) {
                if (!is_auto && ctl_parse_int(value, (long long)k->min, (long long)k->max, &v) != 0) {
                        ctl_errf(why, whylen, "'%.*s' is not a number from %" PRIu64 " to %" PRIu64 "%s",
                                 CTL_ERR_VALUE_MAX, value, k->min, k->max, or_auto);
                        return -EINVAL;
                }
                *(uint32_t *)field = (uint32_t)v;
                return 0;
        }
        if (!is_auto && (ctl_parse_bytes(value, &bytes) != 0 || bytes < k->min || bytes > k->max)) {
                char lo[24], hi[24];
                ctl_bytes_text(k->min, lo, sizeof(lo));
                ctl_bytes_text(k->max, hi, sizeof(hi));
                ctl_errf(why, whylen, "'%.*s' is not a size from %s to %s (suffixes K, M, G, T)%s",
                         CTL_ERR_VALUE_MAX, value, lo, hi, or_auto);
                return -EINVAL;
        }
        *(uint64_t *)field = bytes;
        return 0;
}

/* Stores value into c's field for k. On -EINVAL, why gets "'value' is
 * not ...", which the callers prefix with the key. */
static int ctl_key_apply(struct ctl_config *c, const struct ctl_config_key *k,
                         const char *value, char *why, size_t whylen)
{
        void *field = (uint8_t *)c + k->off;
        const char *reason;
        struct sockaddr_in sa;
        int rc;

        if (k->kind == CTL_KEY_ACTION) {
                ctl_errf(why, whylen, "takes no value");
                return -EINVAL;
        }
        if (*value == '\0') {
                ctl_errf(why, whylen, "needs a value (%s)", k->arg != NULL ? k->arg : "true|false");
                return -EINVAL;
        }
        switch (k->kind) {
        case CTL_KEY_ADDR:
        case CTL_KEY_ADDR_OFF:
                if ((k->kind == CTL_KEY_ADDR || strcmp(value, "off") != 0) &&
                    ctl_parse_addr(value, &sa, &reason) != 0) {
                        ctl_errf(why, whylen, "'%.*s': %s", CTL_ERR_VALUE_MAX, value, reason);
                        return -EINVAL;
                }
                /* Valid: stored as the text given, like a string. */
                /* fall through */
        case CTL_KEY_STRING:
                if (strlen(value) >= k->size) {
                        ctl_errf(why, whylen, "'%.*s...' is longer than %" PRIu32 " bytes",
                                 CTL_ERR_VALUE_MAX, value, k->size - 1);
                        return -EINVAL;
                }
                if (k->check != NULL && k->check(value, why, whylen) != 0)
                        return -EINVAL;
                memcpy(field, value, strlen(value) + 1);
                return 0;
        case CTL_KEY_U32:
        case CTL_KEY_BYTES:
                return ctl_key_number(field, k, value, why, whylen);
        case CTL_KEY_HUGEPAGES:
                if (ctl_parse_hugepages(value, field) == 0)
                        return 0;
                ctl_errf(why, whylen, "'%.*s' is not one of auto, on, off", CTL_ERR_VALUE_MAX, value);
                return -EINVAL;
        case CTL_KEY_BUSY_POLL:
                /* dp_idle_kind_parse also takes "auto"; the flag's documented
                 * spellings are the two below, and only those are accepted. */
                rc = strcmp(value, "auto") == 0 ? -EINVAL : dp_idle_kind_parse(value);
                if (rc >= 0) {
                        *(uint32_t *)field = (uint32_t)rc;
                        return 0;
                }
                ctl_errf(why, whylen, "'%.*s' is not one of adaptive, always", CTL_ERR_VALUE_MAX, value);
                return -EINVAL;
        case CTL_KEY_BOOL:
                if (ctl_parse_bool(value, field) == 0)
                        return 0;
                ctl_errf(why, whylen, "'%.*s' is not one of true, false, yes, no, on, off, 1, 0",
                         CTL_ERR_VALUE_MAX, value);
                return -EINVAL;
        default:
                ctl_errf(why, whylen, "has an unknown kind");
                return -EINVAL;
        }
}

int ctl_config_set(struct ctl_config *c, const char *key, const char *value, char *err,
                   size_t errlen)
{
        char why[256];
        const struct ctl_config_key *k = ctl_config_key_find(key, strlen(key));
        if (k == NULL) {
                ctl_errf(err, errlen, "unknown key '%.*s'", CTL_ERR_VALUE_MAX, key);
                return -ENOENT;
        }
        int rc = ctl_key_apply(c, k, value, why, sizeof(why));
        if (rc != 0)
                ctl_errf(err, errlen, "%s: %s", k->name, why);
        return rc;
}

/* --- defaults --- */

/* snprintf into a field, leaving it empty when the text does not fit. */
__attribute__((format(printf, 3, 4)))
static bool ctl_path_setf(char *dst, size_t size, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(dst, size, fmt, ap);
        va_end(ap);
        if (n < 0 || (size_t)n >= size) {
                dst[0] = '\0';
                return false;
        }
        return true;
}

static bool ctl_env_dir(const char *name)
{
        const char *v = getenv(name);
        return v != NULL && v[0] == '/';   /* the XDG spec ignores relative values */
}

static void ctl_default_paths(struct ctl_config *c)
{
        unsigned uid = (unsigned)geteuid();

        bool ok;
        if (uid == 0)
                ok = ctl_path_setf(c->control_path, sizeof(c->control_path),
                                   "/run/atomq/control.sock");
        else
                ok = ctl_env_dir("XDG_RUNTIME_DIR") &&
                     ctl_path_setf(c->control_path, sizeof(c->control_path),
                                   "%s/atomq/control.sock", getenv("XDG_RUNTIME_DIR"));
        if (!ok)
                ctl_path_setf(c->control_path, sizeof(c->control_path),
                              "/tmp/atomq-%u/control.sock", uid);

        ok = false;
        if (uid == 0)
                ok = ctl_path_setf(c->data_dir, sizeof(c->data_dir), "/var/lib/atomq");
        else if (ctl_env_dir("XDG_DATA_HOME"))
                ok = ctl_path_setf(c->data_dir, sizeof(c->data_dir), "%s/atomq",
                                   getenv("XDG_DATA_HOME"));
        else if (ctl_env_dir("HOME"))
                ok = ctl_path_setf(c->data_dir, sizeof(c->data_dir), "%s/.local/share/atomq",
                                   getenv("HOME"));
        if (!ok)
                ctl_path_setf(c->data_dir, sizeof(c->data_dir), "/tmp/atomq-%u/data", uid);

        char exe[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
        char *slash = NULL;
        if (n > 0) {
                exe[n] = '\0';
                slash = strrchr(exe, '/');
        }
        if (slash == NULL ||
            !ctl_path_setf(c->dataplane_path, sizeof(c->dataplane_path), "%.*s/%s",
                           (int)(slash - exe), exe, CTL_DATAPLANE_NAME))
                ctl_path_setf(c->dataplane_path, sizeof(c->dataplane_path), "%s",
                              CTL_DATAPLANE_NAME);
}

void ctl_config_defaults(struct ctl_config *c)
{
        char why[256];
        memset(c, 0, sizeof(*c));
        for (size_t i = 0; i < CTL_KEYS_COUNT; i++) {
                if (ctl_keys[i].def == NULL)
                        continue;
                int rc = ctl_key_apply(c, &ctl_keys[i], ctl_keys[i].def, why, sizeof(why));
                DP_VERIFY(rc == 0); /* a default the table's own parser refuses is our bug */
        }
        ctl_default_paths(c);
}

/* --- the config file --- */

static char *ctl_trim(char *s)
{
        while (*s == ' ' || *s == '\t')
                s++;
        size_t n = strlen(s);
        while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' ||
                         s[n - 1] == '\n'))
                s[--n] = '\0';
        return s;
}

/* Cuts a comment: '#' at the start of the line or after a blank, so a '#'
 * inside a value ("dir#2") stays. */
static void ctl_cut_comment(char *s)
{
        for (char *p = s; *p != '\0'; p++) {
                if (*p == '#' && (p == s || p[-1] == ' ' || p[-1] == '\t')) {
                        *p = '\0';
                        return;
                }
        }
}

/* One line of a file: blank, comment or `key = value`. */
static int ctl_config_line(struct ctl_config *c, char *line, const char *path, unsigned lineno,
                           char *err, size_t errlen)
{
        char why[256];
        ctl_cut_comment(line);
        char *s = ctl_trim(line);
        if (*s == '\0')
                return 0;
        char *eq = strchr(s, '=');
        if (eq == NULL) {
                ctl_errf(err, errlen, "%s:%u: expected 'key = value', got '%.*s'", path, lineno,
                         CTL_ERR_VALUE_MAX, s);
                return -EINVAL;
        }
        *eq = '\0';
        char *key = ctl_trim(s);
        char *value = ctl_trim(eq + 1);
        const struct ctl_config_key *k = ctl_config_key_find(key, strlen(key));
        if (k == NULL) {
                ctl_errf(err, errlen, "%s:%u: unknown key '%.*s'", path, lineno,
                         CTL_ERR_VALUE_MAX, key);
                return -EINVAL;
        }
        if (k->flags & CTL_KEY_F_CMDLINE) {
                ctl_errf(err, errlen, "%s:%u: %s: only on the command line", path, lineno,
                         k->name);
                return -EINVAL;
        }
        if (ctl_key_apply(c, k, value, why, sizeof(why)) != 0) {
                ctl_errf(err, errlen, "%s:%u: %s: %s", path, lineno, k->name, why);
                return -EINVAL;
        }
        return 0;
}

int ctl_config_load_file(struct ctl_config *c, const char *path, char *err, size_t errlen)
{
        /* +2: the newline and the NUL, so a line of exactly the maximum fits
         * and a longer one is seen to be longer. */
        char line[CTL_CONFIG_LINE_MAX + 2];
        FILE *f = fopen(path, "re");
        if (f == NULL) {
                int rc = -errno;
                ctl_errf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
                return rc;
        }
        int rc = 0;
        unsigned lineno = 0;
        while (rc == 0 && fgets(line, sizeof(line), f) != NULL) {
                lineno++;
                size_t n = strlen(line);
                if (lineno > CTL_CONFIG_LINES_MAX) {
                        ctl_errf(err, errlen, "%s: more than %u lines", path, CTL_CONFIG_LINES_MAX);
                        rc = -EINVAL;
                } else if (n > CTL_CONFIG_LINE_MAX && line[n - 1] != '\n') {
                        ctl_errf(err, errlen, "%s:%u: line longer than %u bytes", path, lineno,
                                 CTL_CONFIG_LINE_MAX);
                        rc = -EINVAL;
                } else {
                        char *s = line;
                        if (lineno == 1 && memcmp(s, "\xef\xbb\xbf", 3) == 0)
                                s += 3;    /* a UTF-8 byte-order mark from an editor */
                        rc = ctl_config_line(c, s, path, lineno, err, errlen);
                }
        }
        if (rc == 0 && ferror(f)) {
                rc = -EIO;
                ctl_errf(err, errlen, "%s: cannot read", path);
        }
        fclose(f);
        return rc;
}

/* --- the command line --- */

/* The flag at argv[*i]: its key in *k and its value (NULL for a bool or an
 * action without one), moving *i past a separate value. -EINVAL with err. */
static int ctl_arg_next(int argc, char **argv, int *i, const struct ctl_config_key **k,
                        const char **value, char *err, size_t errlen)
{
        const char *a = argv[*i];
        *value = NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "-V") == 0) {
                *k = ctl_config_key_find(a[1] == 'h' ? "help" : "version", a[1] == 'h' ? 4 : 7);
                return 0;
        }
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
                ctl_errf(err, errlen, "unexpected argument '%.*s' (see --help)",
                         CTL_ERR_VALUE_MAX, a);
                return -EINVAL;
        }
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq != NULL ? (size_t)(eq - name) : strlen(name);
        *k = ctl_config_key_find(name, len);
        if (*k == NULL) {
                ctl_errf(err, errlen, "unknown option '--%.*s' (see --help)", (int)len, name);
                return -EINVAL;
        }
        if (eq != NULL) {
                *value = eq + 1;
        } else if ((*k)->arg != NULL) {
                if (*i + 1 >= argc) {
                        ctl_errf(err, errlen, "--%s needs a value (%s)", (*k)->name, (*k)->arg);
                        return -EINVAL;
                }
                *value = argv[++*i];
        }
        if ((*k)->kind == CTL_KEY_ACTION && *value != NULL) {
                ctl_errf(err, errlen, "--%s takes no value", (*k)->name);
                return -EINVAL;
        }
        return 0;
}

int ctl_config_parse_args(struct ctl_config *c, int argc, char **argv, char *err,
                          size_t errlen)
{
        const struct ctl_config_key *k;
        const char *value, *config = NULL;
        char why[256];
        int rc;

        /* Pass 1: the shape of every flag, --help and --version, --config. */
        for (int i = 1; i < argc; i++) {
                if ((rc = ctl_arg_next(argc, argv, &i, &k, &value, err, errlen)) != 0)
                        return rc;
                if (strcmp(k->name, "help") == 0) {
                        ctl_config_usage(stdout);
                        return 1;
                }
                if (strcmp(k->name, "version") == 0) {
                        printf("atomqd %s\n", ATOMQ_VERSION);
                        return 1;
                }
                if (strcmp(k->name, "config") == 0)
                        config = value;
        }
        if (config != NULL) {
                if ((rc = ctl_key_apply(c, ctl_config_key_find("config", 6), config, why,
                                        sizeof(why))) != 0) {
                        ctl_errf(err, errlen, "--config: %s", why);
                        return rc;
                }
                if ((rc = ctl_config_load_file(c, config, err, errlen)) != 0)
                        return rc;
        }
        /* Pass 2: every flag over the file's values. */
        for (int i = 1; i < argc; i++) {
                if ((rc = ctl_arg_next(argc, argv, &i, &k, &value, err, errlen)) != 0)
                        return rc;
                if (value == NULL)
                        value = "true";          /* a bool flag given bare */
                if ((rc = ctl_key_apply(c, k, value, why, sizeof(why))) != 0) {
                        ctl_errf(err, errlen, "--%s: %s", k->name, why);
                        return rc;
                }
        }
        return 0;
}

/* --- --help --- */

/* Column the help text starts at ("  --busy-poll adaptive|always" fits)
 * and the width it keeps to. */
#define CTL_USAGE_COL 31
#define CTL_USAGE_WIDTH 79

void ctl_config_usage(FILE *out)
{
        fprintf(out,
                "usage: atomqd [options]\n"
                "\n"
                "The atomq appliance: the shared-memory arena, the dataplane workers,\n"
                "the control socket and the metrics listener.\n"
                "\n"
                "options (the same keys work in a --config file, one 'key = value' a\n"
                "line, except config, once, help and version):\n");
        for (size_t i = 0; i < CTL_KEYS_COUNT; i++) {
                const struct ctl_config_key *k = &ctl_keys[i];
                int n = fprintf(out, "  --%s%s%s", k->name, k->arg != NULL ? " " : "",
                                k->arg != NULL ? k->arg : "");
                if (n >= CTL_USAGE_COL) {
                        fputc('\n', out);
                        n = 0;
                }
                fprintf(out, "%*s", CTL_USAGE_COL - n, "");
                int col = CTL_USAGE_COL;
                for (const char *h = k->help; *h != '\0'; h++) {
                        fputc(*h, out);
                        col++;
                        if (*h == '\n') {
                                fprintf(out, "%*s", CTL_USAGE_COL, "");
                                col = CTL_USAGE_COL;
                        }
                }
                if (k->def != NULL && k->kind != CTL_KEY_BOOL) {
                        int dl = (int)strlen(k->def) + 12;   /* " (default: X)" */
                        if (col + dl > CTL_USAGE_WIDTH)
                                fprintf(out, "\n%*s", CTL_USAGE_COL - 1, "");
                        fprintf(out, " (default: %s)", k->def);
                }
                fputc('\n', out);
        }
        fprintf(out,
                "\n"
                "examples:\n"
                "  atomqd --workers 2 --busy-poll always --hugepages on\n"
                "  atomqd --config /etc/atomq/atomqd.conf --metrics off\n");
}

/* --- formatting --- */

static int ctl_fmt(char *buf, size_t len, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static int ctl_fmt(char *buf, size_t len, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(buf, len, fmt, ap);
        va_end(ap);
        return n < 0 || (size_t)n >= len ? -ENOSPC : n;
}

int ctl_config_format(const struct ctl_config *c, const struct ctl_config_key *k, char *buf,
                      size_t len)
{
        const uint8_t *field = (const uint8_t *)c + k->off;

        switch (k->kind) {
        case CTL_KEY_STRING:
        case CTL_KEY_ADDR:
        case CTL_KEY_ADDR_OFF:
                return ctl_fmt(buf, len, "%.*s", (int)strnlen((const char *)field, k->size),
                               (const char *)field);
        case CTL_KEY_U32: {
                uint32_t v = *(const uint32_t *)(const void *)field;
                if (v == 0 && (k->flags & CTL_KEY_F_AUTO))
                        return ctl_fmt(buf, len, "auto");
                return ctl_fmt(buf, len, "%" PRIu32, v);
        }
        case CTL_KEY_BYTES: {
                uint64_t v = *(const uint64_t *)(const void *)field;
                char t[24];
                if (v == 0 && (k->flags & CTL_KEY_F_AUTO))
                        return ctl_fmt(buf, len, "auto");
                ctl_bytes_text(v, t, sizeof(t));
                return ctl_fmt(buf, len, "%s", t);
        }
        case CTL_KEY_HUGEPAGES: {
                enum shm_hugepages h = *(const enum shm_hugepages *)(const void *)field;
                return ctl_fmt(buf, len, "%s", h == SHM_HUGEPAGES_ON ? "on" :
                               h == SHM_HUGEPAGES_OFF ? "off" : "auto");
        }
        case CTL_KEY_BUSY_POLL:
                return ctl_fmt(buf, len, "%s", *(const uint32_t *)(const void *)field ==
                               DP_IDLE_ALWAYS ? "always" : "adaptive");
        case CTL_KEY_BOOL:
                return ctl_fmt(buf, len, "%s", *(const bool *)field ? "true" : "false");
        default:
                return -EINVAL;
        }
}
