/* ctl_config.h - atomqd's configuration: one table of keys.
 *
 * Each key of struct ctl_config is one row of ctl_config_keys(): its name
 * (the command-line flag without "--" and the config-file key are the same
 * word), its default, its bounds and its --help text. The command line, the
 * config file, the defaults, --help and /info all read that table, so a
 * key cannot exist in one and be missing from another.
 *
 *      struct ctl_config cfg;
 *      char err[256];
 *      ctl_config_defaults(&cfg);
 *      int rc = ctl_config_parse_args(&cfg, argc, argv, err, sizeof(err));
 *      if (rc < 0) { fprintf(stderr, "atomqd: %s\n", err); exit(2); }
 *      if (rc > 0) exit(0);           // --help or --version was printed
 *
 * The config file (--config FILE) holds the same keys, one `key = value` a
 * line; blank lines and `#` comments (at the start of a line, or after a
 * blank) are skipped. Flags given on the command line override the file
 * whatever their order. Unknown keys and bad values are errors that name
 * the key (and the file and line).
 *
 * Why not inih: the format is flat (no sections), and inih as Debian builds
 * it would quietly accept more than we mean to: `key: value`, `[section]`
 * headers, indented lines taken as continuations of the previous value,
 * `;` comments, and it splits lines over 200 bytes (INI_MAX_LINE) into two,
 * so a long --data-dir would turn into a confusing second "key". The parser
 * here is 60 lines and refuses all of that with a clear error.
 */
#ifndef ATOMQ_CTL_CONFIG_H
#define ATOMQ_CTL_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "control/ctl.h"

/* Limits that are not already another module's. */
#define CTL_MAX_ENTITIES_DEFAULT 1000000  /* no suffix: --help prints it */
#define CTL_MAX_ENTITIES_MAX 100000000    /* per shard; a bound on typos */
#define CTL_CONTROL_CLIENTS_DEFAULT 128
#define CTL_MAX_AGENTS_DEFAULT 16
#define CTL_AGENT_MAX_SUBS_DEFAULT 65536
/* Control clients share the loop's CTL_LOOP_FDS_MAX fds with the metrics
 * server, the dataplane and the signal fds: half is theirs at most. */
#define CTL_CONTROL_CLIENTS_MAX 512u
#define CTL_CONFIG_LINE_MAX 1024u         /* longest config-file line */
#define CTL_CONFIG_LINES_MAX 10000u       /* a config file is not a database */

enum ctl_key_kind {
        CTL_KEY_STRING,     /* a path or a name, into char[size] */
        CTL_KEY_ADDR,       /* ADDR:PORT (ctl_parse_addr) */
        CTL_KEY_ADDR_OFF,   /* ADDR:PORT or "off" */
        CTL_KEY_U32,        /* decimal in [min, max]; "auto" is 0 when min_auto */
        CTL_KEY_BYTES,      /* a size (ctl_parse_bytes) in [min, max]; "auto" is 0 */
        CTL_KEY_HUGEPAGES,  /* auto | on | off */
        CTL_KEY_BUSY_POLL,  /* adaptive | always (enum dp_idle_kind) */
        CTL_KEY_BOOL,       /* a flag without value on the command line */
        CTL_KEY_ACTION,     /* --help, --version: command line only, no field */
};

enum ctl_key_flags {
        CTL_KEY_F_CMDLINE = 1u << 0, /* refused in a config file */
        CTL_KEY_F_AUTO = 1u << 1,    /* "auto" is accepted and stored as 0 */
        CTL_KEY_F_SECRET = 1u << 2,  /* a credential: /info says only whether it is set */
};

struct ctl_config_key {
        const char *name;     /* "workers": --workers and `workers = ` */
        const char *arg;      /* metavariable for --help ("N"); NULL: no value */
        const char *def;      /* the default, as operator text; NULL: computed */
        const char *help;     /* --help text; '\n' continues on an indented line */
        uint8_t kind;         /* enum ctl_key_kind */
        uint8_t flags;        /* enum ctl_key_flags */
        uint16_t off;         /* offsetof(struct ctl_config, field) */
        uint32_t size;        /* sizeof the field */
        uint64_t min, max;    /* CTL_KEY_U32, CTL_KEY_BYTES */
        /* CTL_KEY_STRING: a check of the value against the host (a group
         * or user that must exist), run when the key is set; 0, or -EINVAL
         * with "'value' is not ..." in why. NULL: any string that fits. */
        int (*check)(const char *value, char *why, size_t whylen);
};

/* The table, in --help order; *count gets its length. */
const struct ctl_config_key *ctl_config_keys(size_t *count);

/* The key called name[0..len), or NULL. */
const struct ctl_config_key *ctl_config_key_find(const char *name, size_t len);

/* Every key to its default. The computed ones:
 *  - control: /run/atomq/control.sock as root, else
 *    $XDG_RUNTIME_DIR/atomq/control.sock, else /tmp/atomq-UID/control.sock;
 *  - data-dir: /var/lib/atomq as root, else $XDG_DATA_HOME/atomq, else
 *    $HOME/.local/share/atomq, else /tmp/atomq-UID/data;
 *  - dataplane: atomq-dataplane in the directory of /proc/self/exe (the
 *    bare name, found on $PATH, when that cannot be read). */
void ctl_config_defaults(struct ctl_config *c);

/* Sets one key from operator text (the config file and the command line
 * both come here). -ENOENT: no such key; -EINVAL: a bad value or an action
 * key. err (may be NULL) gets a message that names the key. */
int ctl_config_set(struct ctl_config *c, const char *key, const char *value, char *err,
                   size_t errlen);

/* Reads a config file over c. Returns 0; -EINVAL with err as
 * "FILE:LINE: key: why" for an unknown key, a bad value, a key that is
 * only for the command line, a line without '=' or one longer than
 * CTL_CONFIG_LINE_MAX, more than CTL_CONFIG_LINES_MAX lines; -errno when
 * the file cannot be opened or read (err says which). */
int ctl_config_load_file(struct ctl_config *c, const char *path, char *err, size_t errlen);

/* Parses argv (argv[0] is the program) over c, which holds the defaults:
 * first the file of --config, if any, then every other flag, so the
 * command line wins whatever the order. Flags are `--key VALUE`,
 * `--key=VALUE`, a bool as `--key` or `--key=false`; -h and -V are short
 * for --help and --version. Returns 0; 1 when --help or --version was
 * printed on stdout (the caller exits 0); -EINVAL with err naming the key
 * (unknown flag, missing or bad value, stray argument); the errors of
 * ctl_config_load_file. */
int ctl_config_parse_args(struct ctl_config *c, int argc, char **argv, char *err,
                          size_t errlen);

/* Writes the --help text (every key of the table) to out. */
void ctl_config_usage(FILE *out);

/* The value of key k in c as operator text ("auto" for a 0 that means
 * auto, "true"/"false" for bools) into buf. Returns the length, -ENOSPC
 * when buf is too small, -EINVAL for an action key. */
int ctl_config_format(const struct ctl_config *c, const struct ctl_config_key *k, char *buf,
                      size_t len);

#endif /* ATOMQ_CTL_CONFIG_H */
