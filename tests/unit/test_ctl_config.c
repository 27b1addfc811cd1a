/* test_ctl_config.c - atomqd's keys: defaults, every flag, the config file
 * and its precedence, errors that name the key, --help from the table.
 *
 *      meson test -C build ctl_config
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "control/ctl_config.h"

static char err[512];

/* Parses a NULL-terminated list of arguments over the defaults. */
static int parse(struct ctl_config *c, const char *const *args)
{
        char *argv[64] = { "atomqd" };
        int argc = 1;
        while (*args != NULL && argc < 63)
                argv[argc++] = (char *)*args++;
        argv[argc] = NULL;
        err[0] = '\0';
        return ctl_config_parse_args(c, argc, argv, err, sizeof(err));
}

#define ARGS(...) ((const char *const[]){ __VA_ARGS__, NULL })

/* A temporary config file holding text; the caller unlinks path. */
static void write_file(char *path, const char *text)
{
        strcpy(path, "/tmp/atomq-test-config-XXXXXX");
        int fd = mkstemp(path);
        cr_assert_geq(fd, 0);
        cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
        close(fd);
}

Test(ctl_config, defaults)
{
        struct ctl_config c;
        ctl_config_defaults(&c);
        cr_assert_str_eq(c.nats_addr, "127.0.0.1:4222");
        cr_assert_str_eq(c.metrics_addr, "127.0.0.1:8222");
        cr_assert_eq(c.workers, 0, "0: CPUs - 1, the engine's default");
        cr_assert_eq(c.max_entities, CTL_MAX_ENTITIES_DEFAULT);
        cr_assert_eq(c.arena_bytes, 0, "0: as the limits need");
        cr_assert_eq(c.hugepages, SHM_HUGEPAGES_AUTO);
        cr_assert_eq(c.busy_poll, DP_IDLE_ADAPTIVE);
        cr_assert_eq(c.control_clients_max, CTL_CONTROL_CLIENTS_DEFAULT);
        cr_assert_not(c.inprocess);
        cr_assert_not(c.once);
        cr_assert_str_eq(c.config_path, "");
        size_t n = strlen(c.control_path);
        cr_assert(n > 13 && strcmp(c.control_path + n - 13, "/control.sock") == 0,
                  "control path %s", c.control_path);
        n = strlen(c.dataplane_path);
        cr_assert(n >= 15 && strcmp(c.dataplane_path + n - 15, "atomq-dataplane") == 0,
                  "dataplane path %s", c.dataplane_path);
        cr_assert_neq(c.data_dir[0], '\0');
}

Test(ctl_config, default_paths_follow_the_environment)
{
        struct ctl_config c;
        char want[128];
        if (geteuid() == 0) {
                ctl_config_defaults(&c);
                cr_assert_str_eq(c.control_path, "/run/atomq/control.sock");
                cr_assert_str_eq(c.data_dir, "/var/lib/atomq");
                return;
        }
        setenv("XDG_RUNTIME_DIR", "/run/user/4242", 1);
        setenv("XDG_DATA_HOME", "/home/x/.data", 1);
        ctl_config_defaults(&c);
        cr_assert_str_eq(c.control_path, "/run/user/4242/atomq/control.sock");
        cr_assert_str_eq(c.data_dir, "/home/x/.data/atomq");

        /* Relative values are ignored, as the XDG spec says; then /tmp. */
        setenv("XDG_RUNTIME_DIR", "relative/dir", 1);
        unsetenv("XDG_DATA_HOME");
        setenv("HOME", "/home/x", 1);
        ctl_config_defaults(&c);
        snprintf(want, sizeof(want), "/tmp/atomq-%u/control.sock", (unsigned)geteuid());
        cr_assert_str_eq(c.control_path, want);
        cr_assert_str_eq(c.data_dir, "/home/x/.local/share/atomq");

        /* A runtime dir too long for sun_path falls back too. */
        char longdir[200];
        memset(longdir, 'd', sizeof(longdir) - 1);
        longdir[0] = '/';
        longdir[sizeof(longdir) - 1] = '\0';
        setenv("XDG_RUNTIME_DIR", longdir, 1);
        ctl_config_defaults(&c);
        cr_assert_str_eq(c.control_path, want);
}

Test(ctl_config, dataplane_defaults_next_to_the_executable)
{
        struct ctl_config c;
        char exe[512], want[600];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
        cr_assert_gt(n, 0);
        exe[n] = '\0';
        *strrchr(exe, '/') = '\0';
        snprintf(want, sizeof(want), "%s/atomq-dataplane", exe);
        ctl_config_defaults(&c);
        cr_assert_str_eq(c.dataplane_path, want);
}

Test(ctl_config, every_flag)
{
        struct ctl_config c;
        ctl_config_defaults(&c);
        cr_assert_eq(parse(&c, ARGS("--control", "/tmp/x.sock", "--nats", "0.0.0.0:4333",
                                    "--metrics=localhost:9000", "--data-dir", "/var/tmp/aq",
                                    "--dataplane", "/opt/aq/atomq-dataplane", "--workers", "3",
                                    "--arena-size", "512M", "--max-entities=5000",
                                    "--hugepages", "off", "--busy-poll", "always",
                                    "--control-clients", "7", "--inprocess", "--once")), 0, "%s", err);
        cr_assert_str_eq(c.control_path, "/tmp/x.sock");
        cr_assert_str_eq(c.nats_addr, "0.0.0.0:4333");
        cr_assert_str_eq(c.metrics_addr, "localhost:9000");
        cr_assert_str_eq(c.data_dir, "/var/tmp/aq");
        cr_assert_str_eq(c.dataplane_path, "/opt/aq/atomq-dataplane");
        cr_assert_eq(c.workers, 3);
        cr_assert_eq(c.arena_bytes, 512ull << 20);
        cr_assert_eq(c.max_entities, 5000);
        cr_assert_eq(c.hugepages, SHM_HUGEPAGES_OFF);
        cr_assert_eq(c.busy_poll, DP_IDLE_ALWAYS);
        cr_assert_eq(c.control_clients_max, 7);
        cr_assert(c.inprocess);
        cr_assert(c.once);

        cr_assert_eq(parse(&c, ARGS("--metrics", "off", "--workers=auto", "--arena-size=auto",
                                    "--hugepages=on", "--busy-poll=adaptive",
                                    "--inprocess=false")), 0, "%s", err);
        cr_assert_str_eq(c.metrics_addr, "off");
        cr_assert_eq(c.workers, 0);
        cr_assert_eq(c.arena_bytes, 0);
        cr_assert_eq(c.hugepages, SHM_HUGEPAGES_ON);
        cr_assert_eq(c.busy_poll, DP_IDLE_ADAPTIVE);
        cr_assert_not(c.inprocess);
}

Test(ctl_config, later_flag_wins)
{
        struct ctl_config c;
        ctl_config_defaults(&c);
        cr_assert_eq(parse(&c, ARGS("--workers", "2", "--workers", "4")), 0);
        cr_assert_eq(c.workers, 4);
}

Test(ctl_config, help_and_version_return_1)
{
        struct ctl_config c;
        ctl_config_defaults(&c);
        cr_assert_eq(parse(&c, ARGS("--help")), 1);
        cr_assert_eq(parse(&c, ARGS("-h")), 1);
        cr_assert_eq(parse(&c, ARGS("--version")), 1);
        cr_assert_eq(parse(&c, ARGS("-V")), 1);
        /* --help wins over a bad flag elsewhere: asking for help is not an error. */
        cr_assert_eq(parse(&c, ARGS("--workers", "0", "--help")), 1);
        cr_assert_eq(parse(&c, ARGS("--help=yes")), -EINVAL);
        cr_assert(strstr(err, "--help") != NULL, "%s", err);
}

Test(ctl_config, help_lists_every_key_of_the_table)
{
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        ctl_config_usage(f);
        fclose(f);
        size_t count;
        const struct ctl_config_key *k = ctl_config_keys(&count);
        cr_assert_geq(count, 16);
        for (size_t i = 0; i < count; i++) {
                char flag[64];
                snprintf(flag, sizeof(flag), "  --%s%s%s", k[i].name, k[i].arg ? " " : "",
                         k[i].arg ? k[i].arg : "");
                cr_assert(strstr(text, flag) != NULL, "--help lacks '%s'", flag);
                cr_assert(k[i].help != NULL && k[i].help[0] != '\0', "%s has no help", k[i].name);
                if (k[i].def != NULL && k[i].kind != CTL_KEY_BOOL) {
                        char def[64];
                        snprintf(def, sizeof(def), "(default: %s)", k[i].def);
                        cr_assert(strstr(text, def) != NULL, "--help lacks %s's %s", k[i].name, def);
                }
        }
        free(text);
}

/* The keys the issue names are all in the table, with these names. */
Test(ctl_config, table_has_the_issue_keys)
{
        static const char *const names[] = {
                "control", "nats", "metrics", "data-dir", "workers", "arena-size",
                "max-entities", "hugepages", "busy-poll", "config", "dataplane",
                "control-clients", "inprocess", "help", "version",
        };
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
                cr_assert_not_null(ctl_config_key_find(names[i], strlen(names[i])), "%s", names[i]);
        cr_assert_null(ctl_config_key_find("work", 4));
}

/* format() writes what set() reads back: the table is one source both ways. */
Test(ctl_config, format_round_trips_every_key)
{
        struct ctl_config a, b;
        size_t count;
        const struct ctl_config_key *k = ctl_config_keys(&count);
        ctl_config_defaults(&a);
        cr_assert_eq(parse(&a, ARGS("--workers", "5", "--arena-size", "3G", "--inprocess",
                                    "--hugepages", "off", "--metrics", "off")), 0, "%s", err);
        memset(&b, 0, sizeof(b));
        ctl_config_defaults(&b);
        for (size_t i = 0; i < count; i++) {
                char v[512];
                if (k[i].kind == CTL_KEY_ACTION) {
                        cr_assert_eq(ctl_config_format(&a, &k[i], v, sizeof(v)), -EINVAL);
                        continue;
                }
                cr_assert_geq(ctl_config_format(&a, &k[i], v, sizeof(v)), 0);
                if (k[i].kind == CTL_KEY_STRING && v[0] == '\0')
                        continue;   /* config: none given */
                cr_assert_eq(ctl_config_set(&b, k[i].name, v, err, sizeof(err)), 0, "%s", err);
        }
        cr_assert_eq(memcmp(&a, &b, sizeof(a)), 0);
        char v[8];
        cr_assert_eq(ctl_config_format(&a, ctl_config_key_find("arena-size", 10), v, sizeof(v)), 2);
        cr_assert_str_eq(v, "3G");
        cr_assert_eq(ctl_config_format(&a, ctl_config_key_find("control", 7), v, 2), -ENOSPC);
}

Test(ctl_config, unknown_flag_names_it)
{
        struct ctl_config c;
        ctl_config_defaults(&c);
        cr_assert_eq(parse(&c, ARGS("--wrokers", "2")), -EINVAL);
        cr_assert(strstr(err, "--wrokers") != NULL, "%s", err);
        cr_assert_eq(parse(&c, ARGS("--workers=2", "stray")), -EINVAL);
        cr_assert(strstr(err, "stray") != NULL, "%s", err);
        cr_assert_eq(parse(&c, ARGS("-w", "2")), -EINVAL);
        cr_assert_eq(parse(&c, ARGS("--")), -EINVAL);
        cr_assert_eq(ctl_config_set(&c, "nope", "1", err, sizeof(err)), -ENOENT);
        cr_assert(strstr(err, "nope") != NULL, "%s", err);
}

Test(ctl_config, missing_value_names_the_flag)
{
        struct ctl_config c;
        ctl_config_defaults(&c);
        cr_assert_eq(parse(&c, ARGS("--workers")), -EINVAL);
        cr_assert(strstr(err, "--workers") != NULL && strstr(err, "value") != NULL, "%s", err);
        cr_assert_eq(parse(&c, ARGS("--nats=")), -EINVAL);
        cr_assert(strstr(err, "--nats") != NULL, "%s", err);
}

/* Every typed key refuses junk, naming itself; nothing is half-applied. */
Test(ctl_config, bad_values_name_the_key)
{
        static const struct { const char *key, *value; } bad[] = {
                { "workers", "0" }, { "workers", "257" }, { "workers", "-1" }, { "workers", "two" },
                { "workers", " 2" }, { "workers", "2 " }, { "workers", "+2" },
                { "max-entities", "0" }, { "max-entities", "100000001" }, { "max-entities", "1e6" },
                { "arena-size", "1K" }, { "arena-size", "2T" }, { "arena-size", "12X" },
                { "arena-size", "-1M" }, { "arena-size", "lots" },
                { "hugepages", "yes" }, { "hugepages", "AUTO" },
                { "busy-poll", "auto" }, { "busy-poll", "sometimes" },
                { "control-clients", "0" }, { "control-clients", "513" },
                { "inprocess", "maybe" },
                { "nats", "4222" }, { "nats", "127.0.0.1" }, { "nats", "host.example:4222" },
                { "nats", "127.0.0.1:0" }, { "nats", "127.0.0.1:65536" },
                { "metrics", "of" }, { "metrics", "[::1]:8222" },
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                struct ctl_config c, before;
                char flag[64], arg[128];
                ctl_config_defaults(&c);
                before = c;
                snprintf(flag, sizeof(flag), "--%s", bad[i].key);
                snprintf(arg, sizeof(arg), "--%s=%s", bad[i].key, bad[i].value);
                cr_assert_eq(parse(&c, ARGS(arg)), -EINVAL, "%s accepted", arg);
                cr_assert(strncmp(err, flag, strlen(flag)) == 0, "'%s' does not name %s", err, flag);
                cr_assert(strstr(err, bad[i].value) != NULL, "'%s' does not quote the value", err);
                cr_assert_eq(memcmp(&c, &before, sizeof(c)), 0, "%s %s changed the config",
                             flag, bad[i].value);
        }
}

Test(ctl_config, string_longer_than_its_field)
{
        struct ctl_config c;
        char path[200];
        memset(path, 'p', sizeof(path) - 1);
        path[0] = '/';
        path[sizeof(path) - 1] = '\0';
        ctl_config_defaults(&c);
        cr_assert_eq(parse(&c, ARGS("--control", path)), -EINVAL, "sun_path holds 107 bytes");
        cr_assert(strstr(err, "--control") != NULL && strstr(err, "107") != NULL, "%s", err);
        cr_assert_eq(parse(&c, ARGS("--data-dir", path)), 0);
}

Test(ctl_config, addr_errors_say_which_part)
{
        static const struct { const char *value, *says; } bad[] = {
                { "8222", "ADDR:PORT" },
                { ":8222", "ADDR is missing" },
                { "example.com:8222", "ADDR is not" },
                { "1.2.3:8222", "ADDR is not" },
                { "256.1.1.1:8222", "ADDR is not" },
                { "127.0.0.1:", "PORT" },
                { "127.0.0.1:http", "PORT" },
                { "127.0.0.1:0", "PORT" },
                { "127.0.0.1:70000", "PORT" },
                { "127.0.0.1:80x", "PORT" },
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                struct ctl_config c;
                ctl_config_defaults(&c);
                cr_assert_eq(parse(&c, ARGS("--metrics", bad[i].value)), -EINVAL, "%s", bad[i].value);
                cr_assert(strstr(err, "--metrics") != NULL && strstr(err, bad[i].says) != NULL,
                          "%s -> '%s'", bad[i].value, err);
        }
}

Test(ctl_config, file_keys_comments_and_spacing)
{
        char path[64];
        write_file(path, "\xef\xbb\xbf# atomqd.conf\n"
                         "\n"
                         "workers = 3\n"
                         "  max-entities=2000   \n"
                         "nats\t=\t127.0.0.1:5222  # the NATS port\n"
                         "data-dir = /srv/aq#2\n"
                         "busy-poll = always\r\n"
                         "inprocess = yes\n"
                         "metrics = off\n"
                         "   # indented comment\n");
        struct ctl_config c;
        ctl_config_defaults(&c);
        int rc = ctl_config_load_file(&c, path, err, sizeof(err));
        unlink(path);
        cr_assert_eq(rc, 0, "%s", err);
        cr_assert_eq(c.workers, 3);
        cr_assert_eq(c.max_entities, 2000);
        cr_assert_str_eq(c.nats_addr, "127.0.0.1:5222");
        cr_assert_str_eq(c.data_dir, "/srv/aq#2", "'#' inside a value stays");
        cr_assert_eq(c.busy_poll, DP_IDLE_ALWAYS);
        cr_assert(c.inprocess);
        cr_assert_str_eq(c.metrics_addr, "off");
}

Test(ctl_config, flags_win_over_the_file_in_any_order)
{
        char path[64];
        write_file(path, "workers = 3\nnats = 127.0.0.1:5222\nhugepages = on\n");
        struct ctl_config c;

        ctl_config_defaults(&c);
        cr_assert_eq(parse(&c, ARGS("--workers", "5", "--config", path)), 0, "%s", err);
        cr_assert_eq(c.workers, 5, "flag before --config wins");
        cr_assert_str_eq(c.nats_addr, "127.0.0.1:5222", "file value where no flag");
        cr_assert_eq(c.hugepages, SHM_HUGEPAGES_ON);
        cr_assert_str_eq(c.config_path, path);

        ctl_config_defaults(&c);
        cr_assert_eq(parse(&c, ARGS("--config", path, "--workers=6", "--hugepages", "off")), 0,
                     "%s", err);
        cr_assert_eq(c.workers, 6, "flag after --config wins");
        cr_assert_eq(c.hugepages, SHM_HUGEPAGES_OFF);
        unlink(path);
}

Test(ctl_config, file_unknown_key_names_key_and_line)
{
        char path[64];
        write_file(path, "workers = 2\n\nwrokers = 3\n");
        struct ctl_config c;
        ctl_config_defaults(&c);
        int rc = parse(&c, ARGS("--config", path));
        unlink(path);
        cr_assert_eq(rc, -EINVAL);
        cr_assert(strstr(err, path) != NULL && strstr(err, ":3:") != NULL &&
                  strstr(err, "wrokers") != NULL, "%s", err);
}

Test(ctl_config, file_bad_value_names_key_and_line)
{
        char path[64];
        write_file(path, "# x\nhugepages = maybe\n");
        struct ctl_config c;
        ctl_config_defaults(&c);
        int rc = ctl_config_load_file(&c, path, err, sizeof(err));
        unlink(path);
        cr_assert_eq(rc, -EINVAL);
        cr_assert(strstr(err, ":2: hugepages: 'maybe'") != NULL, "%s", err);
}

Test(ctl_config, file_refuses_what_is_not_a_key_line)
{
        static const char *const bad[] = {
                "workers 3\n",                 /* no '=' */
                "[atomqd]\nworkers = 3\n",     /* sections are not ours */
                "workers: 3\n",
                "config = /etc/other.conf\n",  /* command line only */
                "once = true\n",
                "help = true\n",
                "= 3\n",
                "workers =\n",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                char path[64];
                struct ctl_config c;
                write_file(path, bad[i]);
                ctl_config_defaults(&c);
                int rc = ctl_config_load_file(&c, path, err, sizeof(err));
                unlink(path);
                cr_assert_eq(rc, -EINVAL, "accepted: %s", bad[i]);
                cr_assert(strstr(err, ":1:") != NULL, "%s: %s", bad[i], err);
        }
}

Test(ctl_config, file_line_too_long)
{
        char path[64];
        static char text[CTL_CONFIG_LINE_MAX + 64];
        int n = snprintf(text, sizeof(text), "data-dir = /");
        memset(text + n, 'd', CTL_CONFIG_LINE_MAX);
        strcpy(text + n + CTL_CONFIG_LINE_MAX, "\n");
        write_file(path, text);
        struct ctl_config c;
        ctl_config_defaults(&c);
        int rc = ctl_config_load_file(&c, path, err, sizeof(err));
        unlink(path);
        cr_assert_eq(rc, -EINVAL);
        cr_assert(strstr(err, "longer than") != NULL, "%s", err);
}

Test(ctl_config, file_missing)
{
        struct ctl_config c;
        ctl_config_defaults(&c);
        cr_assert_eq(parse(&c, ARGS("--config", "/nonexistent/atomqd.conf")), -ENOENT);
        cr_assert(strstr(err, "/nonexistent/atomqd.conf") != NULL, "%s", err);
}
