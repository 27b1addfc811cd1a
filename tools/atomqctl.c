/* atomqctl.c - the thin client of atomqd's control socket.
 *
 *      atomqctl show stats
 *      atomqctl -j show entities agent.
 *      atomqctl create mailboxes agent. 1000000 ttl=60s
 *      atomqctl --control /tmp/aq/control.sock       # a prompt, with history
 *      printf 'show info\nshow workers\n' | atomqctl # one command a line
 *
 * The socket is --control PATH, else $ATOMQ_CONTROL, else the default
 * (/run/atomq/control.sock for root, $XDG_RUNTIME_DIR/atomq/control.sock
 * otherwise). Everything after the options is one command; -j asks for
 * the JSON form (`json` in front of the command). Without a command,
 * commands come from the terminal (a prompt with line editing and history
 * in ~/.atomqctl_history) or, when stdin is not a terminal, one a line.
 *
 * The protocol (control/ctl_cmd.h): a greeting, then per command a reply
 * that ends with an empty line. The reply is printed without that line.
 *
 * Exit status: 0 when every reply was a success, 1 when one was an error,
 * 2 for a usage error or when atomqd cannot be reached.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <editline/readline.h>

#include "control/ctl_cmd.h"    /* CTL_LINE_MAX */
#include "control/ctl_server.h" /* ctl_server_default_path */

#define AQCTL_EXIT_ERROR 1
#define AQCTL_EXIT_USAGE 2
#define AQCTL_HISTORY_MAX 1000

struct aqctl {
        int fd;
        bool json;
        const char *path;
        /* Buffered reading of the socket, line by line. */
        char buf[65536];
        size_t off, len;
};

static void aqctl_usage(FILE *out)
{
        fprintf(out,
                "usage: atomqctl [options] [COMMAND ...]\n"
                "\n"
                "The client of atomqd's control socket. Without a command: a prompt on a\n"
                "terminal, else one command per line of stdin.\n"
                "\n"
                "options:\n"
                "  -c, --control PATH   the socket (default: $ATOMQ_CONTROL, else\n"
                "                       /run/atomq/control.sock as root,\n"
                "                       $XDG_RUNTIME_DIR/atomq/control.sock otherwise)\n"
                "  -j, --json           JSON replies, one object per line\n"
                "  -t, --timeout SECS   give up on a reply after SECS (default: wait)\n"
                "  -h, --help           this text ('atomqctl help' lists the commands)\n"
                "\n"
                "examples:\n"
                "  atomqctl show stats\n"
                "  atomqctl -j show entities agent.\n"
                "  atomqctl create mailboxes agent. 1000000 ttl=60s\n");
}

/* Reads one line (without its \n) into line. 1: a line; 0: the connection
 * ended; -1: an error (printed). */
static int aqctl_read_line(struct aqctl *c, char *line, size_t max)
{
        size_t n = 0;
        for (;;) {
                while (c->off < c->len) {
                        char ch = c->buf[c->off++];
                        if (ch == '\n') {
                                line[n] = 0;
                                return 1;
                        }
                        if (n + 1 < max)
                                line[n++] = ch;
                }
                ssize_t got = recv(c->fd, c->buf, sizeof(c->buf), 0);
                if (got == 0)
                        return 0;
                if (got < 0) {
                        if (errno == EINTR)
                                continue;
                        fprintf(stderr, "atomqctl: %s: %s\n", c->path,
                                errno == EAGAIN ? "no reply in time" : strerror(errno));
                        return -1;
                }
                c->off = 0;
                c->len = (size_t)got;
        }
}

/* Whether a reply line says the command failed: text "error: ...", or a
 * JSON object with "ok": false. */
static bool aqctl_line_failed(const char *line)
{
        if (strncmp(line, "error: ", 7) == 0)
                return true;
        if (line[0] != '{')
                return false;
        json_t *j = json_loads(line, 0, NULL);
        bool failed = j != NULL && json_is_false(json_object_get(j, "ok"));
        json_decref(j);
        return failed;
}

/* Reads one reply up to its empty line and prints it. Returns 0 (success),
 * AQCTL_EXIT_ERROR (an error reply) or -1 (the connection failed). */
static int aqctl_reply(struct aqctl *c, bool print)
{
        static char line[1 << 20];
        int status = 0, rc;
        bool first = true;
        while ((rc = aqctl_read_line(c, line, sizeof(line))) == 1) {
                if (line[0] == 0)
                        return status;
                if (first && aqctl_line_failed(line))
                        status = AQCTL_EXIT_ERROR;
                first = false;
                if (print)
                        puts(line);
        }
        if (rc == 0)
                fprintf(stderr, "atomqctl: %s: atomqd closed the connection\n", c->path);
        return -1;
}

static int aqctl_connect(struct aqctl *c, long timeout_s)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        if (strlen(c->path) >= sizeof(sa.sun_path)) {
                fprintf(stderr, "atomqctl: %s: the path is too long for a socket\n", c->path);
                return -1;
        }
        memcpy(sa.sun_path, c->path, strlen(c->path) + 1);
        c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
                fprintf(stderr, "atomqctl: cannot connect to %s: %s%s\n", c->path,
                        strerror(errno), errno == ENOENT || errno == ECONNREFUSED
                                                 ? " (is atomqd running? --control PATH)" : "");
                return -1;
        }
        if (timeout_s > 0) {
                struct timeval tv = { .tv_sec = timeout_s };
                setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        }
        /* The greeting is a reply of its own; a refusal (too many clients)
         * comes in its place. */
        int rc = aqctl_reply(c, false);
        if (rc != 0) {
                if (rc > 0)
                        fprintf(stderr, "atomqctl: %s refused the connection\n", c->path);
                return -1;
        }
        return 0;
}

/* Sends one command line and prints its reply. */
static int aqctl_command(struct aqctl *c, const char *cmd)
{
        char line[CTL_LINE_MAX + 8];
        int n = snprintf(line, sizeof(line), "%s%s\n", c->json ? "json " : "", cmd);
        if (n < 0 || (size_t)n >= sizeof(line)) {
                fprintf(stderr, "atomqctl: the command is longer than %u bytes\n",
                        CTL_LINE_MAX - 1);
                return AQCTL_EXIT_ERROR;
        }
        for (int sent = 0; sent < n;) {
                ssize_t k = send(c->fd, line + sent, (size_t)(n - sent), MSG_NOSIGNAL);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0) {
                        fprintf(stderr, "atomqctl: %s: %s\n", c->path, strerror(errno));
                        return -1;
                }
                sent += (int)k;
        }
        return aqctl_reply(c, true);
}

/* The command of argv[first..argc), words joined by spaces. */
static int aqctl_join(char *out, size_t len, int argc, char **argv, int first)
{
        size_t used = 0;
        out[0] = 0;
        for (int i = first; i < argc; i++) {
                int n = snprintf(out + used, len - used, "%s%s", i > first ? " " : "", argv[i]);
                if (n < 0 || (size_t)n >= len - used)
                        return -1;
                used += (size_t)n;
        }
        return 0;
}

static bool aqctl_is_blank(const char *s)
{
        return s[strspn(s, " \t\r")] == 0;
}

/* The prompt: line editing and a history kept across runs. */
static int aqctl_interactive(struct aqctl *c)
{
        char hist[512] = "";
        const char *home = getenv("HOME");
        if (home != NULL)
                snprintf(hist, sizeof(hist), "%s/.atomqctl_history", home);
        using_history();
        stifle_history(AQCTL_HISTORY_MAX);
        if (hist[0] != 0)
                read_history(hist);
        printf("connected to %s; 'help' lists the commands, 'quit' or Ctrl-D leaves\n",
               c->path);
        int status = 0;
        char *line;
        while ((line = readline(c->json ? "atomq json> " : "atomq> ")) != NULL) {
                if (aqctl_is_blank(line)) {
                        free(line);
                        continue;
                }
                add_history(line);
                bool quit = strcmp(line, "quit") == 0 || strcmp(line, "exit") == 0;
                int rc = aqctl_command(c, quit ? "quit" : line);
                free(line);
                if (rc < 0 || quit) {
                        status = rc < 0 ? AQCTL_EXIT_USAGE : status;
                        break;
                }
                status = rc;
        }
        if (hist[0] != 0)
                write_history(hist);
        return status;
}

/* Commands from a pipe, one a line. */
static int aqctl_script(struct aqctl *c)
{
        static char line[CTL_LINE_MAX + 8];
        int status = 0;
        while (fgets(line, sizeof(line), stdin) != NULL) {
                line[strcspn(line, "\n")] = 0;
                if (aqctl_is_blank(line))
                        continue;
                int rc = aqctl_command(c, line);
                if (rc < 0)
                        return AQCTL_EXIT_USAGE;
                if (rc != 0)
                        status = rc;
                if (strcmp(line, "quit") == 0)
                        break;
        }
        return status;
}

int main(int argc, char **argv)
{
        static const struct option longopts[] = {
                { "control", required_argument, NULL, 'c' },
                { "json", no_argument, NULL, 'j' },
                { "timeout", required_argument, NULL, 't' },
                { "help", no_argument, NULL, 'h' },
                { NULL, 0, NULL, 0 },
        };
        static struct aqctl c = { .fd = -1 };
        char defpath[CTL_PATH_MAX];
        long timeout_s = 0;
        int opt;
        /* "+": options end at the first word of the command, so a command
         * word like "-1" is never taken for an option. */
        while ((opt = getopt_long(argc, argv, "+c:jt:h", longopts, NULL)) != -1) {
                char *end;
                switch (opt) {
                case 'c':
                        c.path = optarg;
                        break;
                case 'j':
                        c.json = true;
                        break;
                case 't':
                        timeout_s = strtol(optarg, &end, 10);
                        if (*optarg == 0 || *end != 0 || timeout_s < 0) {
                                fprintf(stderr, "atomqctl: --timeout: '%s' is not a number of "
                                        "seconds\n", optarg);
                                return AQCTL_EXIT_USAGE;
                        }
                        break;
                case 'h':
                        aqctl_usage(stdout);
                        return 0;
                default:
                        aqctl_usage(stderr);
                        return AQCTL_EXIT_USAGE;
                }
        }
        if (c.path == NULL)
                c.path = getenv("ATOMQ_CONTROL");
        if (c.path == NULL || c.path[0] == 0) {
                if (ctl_server_default_path(defpath, sizeof(defpath)) != 0) {
                        fprintf(stderr, "atomqctl: no XDG_RUNTIME_DIR to find the socket in; "
                                "give --control PATH or ATOMQ_CONTROL\n");
                        return AQCTL_EXIT_USAGE;
                }
                c.path = defpath;
        }
        signal(SIGPIPE, SIG_IGN);
        char cmd[CTL_LINE_MAX];
        if (optind < argc && aqctl_join(cmd, sizeof(cmd), argc, argv, optind) != 0) {
                fprintf(stderr, "atomqctl: the command is longer than %u bytes\n", CTL_LINE_MAX - 1);
                return AQCTL_EXIT_USAGE;
        }
        if (aqctl_connect(&c, timeout_s) != 0)
                return AQCTL_EXIT_USAGE;
        int rc;
        if (optind < argc)
                rc = aqctl_command(&c, cmd);
        else if (isatty(STDIN_FILENO))
                rc = aqctl_interactive(&c);
        else
                rc = aqctl_script(&c);
        close(c.fd);
        return rc < 0 ? AQCTL_EXIT_USAGE : rc;
}
