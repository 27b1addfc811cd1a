#!/usr/bin/env python3
"""security_test.py - who may use atomqd's control socket and attach agents.

Starts the real atomqd (workers as threads: --inprocess) in a temporary
directory and checks, from processes running as other users (forked
children that drop to uid 65534 'nobody' and a few unnamed uids with
os.setgroups/os.setgid/os.setuid):

  - by default the socket is mode 0600 in a 0700 directory;
  - an unknown --control-group or --agent-uids user, on the command line
    or in a --config file, makes atomqd exit 2 with a message naming the
    key and the value, before it builds anything;
  - with --control-group the socket has that group and mode 0660 (its
    directory, made by atomqd, 0750 with the group); a member of the group,
    by its primary or only a supplementary group, may run commands
    (atomqctl show info);
  - an agent (examples/latest_watch, the real libatomq) whose uid is on
    --agent-uids attaches and runs; one whose uid is not is refused with
    an error line before it gets any memory, and agents_refused_uid moves
    in `show stats`, `show agents` and /metrics;
  - a peer that is neither root, atomqd's user, on --agent-uids nor in the
    group, and reaches the socket only because its mode was widened by
    hand, gets an error line and control_refused_uid moves;
  - /info does not show the NATS token, only that one is set.

Needs root (to change uids); exits 77 (skip) without it.

    python3 tests/integration/security_test.py build/control/atomqd \
        build/tools/atomqctl build/examples/latest_watch
"""
import grp
import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.request

SKIP = 77
NOBODY = 65534
# uids and gids without a name on most hosts: a group member that is not
# on the agent list, one that is a member only through a supplementary
# group, and a stranger.
MEMBER_UID = 65533
SUPP_UID = 65531
STRANGER_UID = 65532
TOKEN = "s3cret-test-token-6f1c"


def skip(why):
    print(f"SKIP: {why}")
    sys.exit(SKIP)


class Failure(Exception):
    pass


def check(cond, why):
    if not cond:
        raise Failure(why)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def drop_to(uid, gid, groups=()):
    os.setgroups(list(groups))
    os.setgid(gid)
    os.setuid(uid)


def as_user(uid, gid, groups, fn):
    """Runs fn() in a forked child as uid/gid/groups; returns what fn
    returned (JSON-able), or raises with the child's exception text."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            drop_to(uid, gid, groups)
            out = {"ok": fn()}
        except BaseException as e:  # noqa: BLE001 - reported to the parent
            out = {"error": f"{type(e).__name__}: {e}"}
        os.write(w, json.dumps(out).encode())
        os._exit(0)
    os.close(w)
    data = b""
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    out = json.loads(data or b'{"error": "the child wrote nothing"}')
    if "error" in out:
        raise Failure(f"as uid {uid}: {out['error']}")
    return out["ok"]


# A sanitized run (tools/run-tests.sh) points ASAN_OPTIONS/UBSAN_OPTIONS'
# log_path into the build tree, where another uid cannot write: a report
# from a client run as nobody would be lost (or end the client). Such
# clients write into a world-writable directory of the test instead, and
# main() copies what they wrote to where the runner looks.
SAN_VARS = ("ASAN_OPTIONS", "UBSAN_OPTIONS")
san = {"dir": None, "dests": set()}


def child_env():
    env = dict(os.environ)
    if san["dir"] is None:
        return env
    for var in SAN_VARS:
        opts = env.get(var)
        if not opts:
            continue
        parts = []
        for opt in opts.split(":"):
            if opt.startswith("log_path="):
                path = opt[len("log_path="):]
                san["dests"].add(os.path.dirname(path) or ".")
                opt = "log_path=" + os.path.join(san["dir"], os.path.basename(path))
            parts.append(opt)
        env[var] = ":".join(parts)
    return env


def san_collect():
    if san["dir"] is None:
        return
    for name in os.listdir(san["dir"]):
        for dest in san["dests"]:
            shutil.copy(os.path.join(san["dir"], name), os.path.join(dest, "other-uid-" + name))


def run_as(uid, gid, groups, args, timeout=20):
    """A program as another user (subprocess's own setuid in the child)."""
    return subprocess.run(args, user=uid, group=gid, extra_groups=list(groups),
                          capture_output=True, text=True, timeout=timeout, env=child_env())


def raw_exchange(path, line=None):
    """Connects, reads the first reply (the greeting or a refusal) and, when
    line is given and the greeting came, sends it and reads its reply.
    Returns the replies as lists of lines."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(path)
    f = s.makefile("rb")

    def reply():
        lines = []
        while True:
            ln = f.readline()
            if not ln:
                return lines + ["<closed>"]
            if ln == b"\n":
                return lines
            lines.append(ln[:-1].decode("utf-8", "replace"))

    out = [reply()]
    if line is not None and out[0] and out[0][0].startswith("atomqd "):
        s.sendall(line.encode() + b"\n")
        out.append(reply())
    f.close()
    s.close()
    return out


class Atomqd:
    def __init__(self, exe, tmp, name, args):
        self.dir = os.path.join(tmp, name)
        os.mkdir(self.dir)
        os.chmod(self.dir, 0o755)
        self.sock = os.path.join(self.dir, "run", "control.sock")
        self.log_path = os.path.join(self.dir, "log")
        self.metrics = free_port()
        argv = [exe, "--workers", "1", "--max-entities", "10000", "--hugepages", "off",
                "--control", self.sock, "--data-dir", os.path.join(self.dir, "data"),
                "--nats", f"127.0.0.1:{free_port()}", "--metrics",
                f"127.0.0.1:{self.metrics}", "--inprocess", *args]
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Failure(f"atomqd exited with {self.proc.returncode}:\n{self.log()}")
            if "running: control" in self.log() and os.path.exists(self.sock):
                return
            time.sleep(0.05)
        raise Failure(f"atomqd did not come up in 10 s:\n{self.log()}")

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def ctl(self, ctl_exe, *words):
        r = subprocess.run([ctl_exe, "--control", self.sock, *words], capture_output=True,
                           text=True, timeout=20)
        check(r.returncode == 0, f"atomqctl {' '.join(words)}: {r.returncode} {r.stderr}")
        return r.stdout

    def stats(self, ctl_exe):
        return json.loads(self.ctl(ctl_exe, "-j", "show", "stats").splitlines()[0])

    def agents(self, ctl_exe):
        return json.loads(self.ctl(ctl_exe, "-j", "show", "agents").splitlines()[0])

    def http(self, path):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics}{path}", timeout=5) as r:
            return r.read().decode()

    def metric(self, name):
        for ln in self.http("/metrics").splitlines():
            if ln.startswith(name + " "):
                return int(float(ln.split()[1]))
        raise Failure(f"/metrics has no {name}")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise Failure(f"atomqd did not stop on SIGTERM:\n{self.log()}")
        check(self.proc.returncode == 0,
              f"atomqd exited with {self.proc.returncode}:\n{self.log()}")


def test_default(exe, ctl_exe, tmp):
    d = Atomqd(exe, tmp, "default", [])
    try:
        st = os.stat(d.sock)
        check(stat.S_ISSOCK(st.st_mode), "the control path is not a socket")
        check(stat.S_IMODE(st.st_mode) == 0o600, f"socket mode {oct(st.st_mode)}, want 0600")
        dst = os.stat(os.path.dirname(d.sock))
        check(stat.S_IMODE(dst.st_mode) == 0o700, f"directory mode {oct(dst.st_mode)}, want 0700")
        check("mode 0600" in d.log(), "the log does not say the socket's mode")
        # nobody cannot even connect: the kernel says so before atomqd.
        r = run_as(NOBODY, NOBODY, [], [ctl_exe, "--control", d.sock, "show", "info"])
        check(r.returncode != 0 and "Permission denied" in r.stderr,
              f"nobody reached a 0600 socket: {r.returncode} {r.stdout} {r.stderr}")
        s = d.stats(ctl_exe)
        check(s["agents_refused_uid"] == 0 and s["control_refused_uid"] == 0,
              f"counters moved with nobody refused by the kernel: {s}")
    except BaseException:
        d.kill()
        raise
    d.stop()
    print("ok: default socket 0600 in a 0700 directory; other users cannot connect")


def expect_exit2(exe, tmp, args, want):
    r = subprocess.run([exe, "--hugepages", "off", "--control", os.path.join(tmp, "never.sock"),
                        "--metrics", "off", "--nats", "off", *args],
                       capture_output=True, text=True, timeout=10)
    check(r.returncode == 2, f"{args}: exit {r.returncode}, want 2: {r.stderr}")
    check(want in r.stderr, f"{args}: stderr {r.stderr!r} lacks {want!r}")
    check(not os.path.exists(os.path.join(tmp, "never.sock")), f"{args}: a socket was made")


def test_bad_names(exe, tmp):
    expect_exit2(exe, tmp, ["--control-group", "atomq-no-such-group"],
                 "--control-group: 'atomq-no-such-group' is not a group on this host")
    expect_exit2(exe, tmp, ["--agent-uids", "root,atomq-no-such-user"],
                 "--agent-uids: 'atomq-no-such-user' is not a user on this host")
    expect_exit2(exe, tmp, ["--agent-uids", "root,,0"], "--agent-uids: 'root,,0' has an empty entry")
    conf = os.path.join(tmp, "bad.conf")
    with open(conf, "w") as f:
        f.write("# a config file\ncontrol-group = atomq-no-such-group\n")
    expect_exit2(exe, tmp, ["--config", conf],
                 f"{conf}:2: control-group: 'atomq-no-such-group' is not a group on this host")
    print("ok: unknown group or user: exit 2 naming the key and the value")


def test_nats_auth_default(exe, tmp):
    """NATS beyond loopback without credentials is refused unless asked for."""
    def once(*args):
        d = os.path.join(tmp, "once")
        shutil.rmtree(d, ignore_errors=True)
        os.mkdir(d)
        return subprocess.run([exe, "--hugepages", "off", "--control", os.path.join(d, "c.sock"),
                               "--metrics", "off", "--data-dir", os.path.join(d, "data"),
                               "--max-agents", "0", "--once", *args],
                              capture_output=True, text=True, timeout=30)
    addr = f"0.0.0.0:{free_port()}"
    r = once("--nats", addr)
    check(r.returncode == 1 and "a listener beyond loopback needs credentials" in r.stderr,
          f"--nats {addr} without credentials: exit {r.returncode}: {r.stderr[-300:]}")
    r = once("--nats", addr, "--nats-no-auth")
    check(r.returncode == 0 and "without authentication (--nats-no-auth)" in r.stderr,
          f"--nats-no-auth: exit {r.returncode}: {r.stderr[-300:]}")
    r = once("--nats", addr, "--nats-token", "s3cret")
    check(r.returncode == 0, f"with a token: exit {r.returncode}: {r.stderr[-300:]}")
    r = once("--nats", f"127.0.0.1:{free_port()}")
    check(r.returncode == 0, f"loopback without credentials: exit {r.returncode}: {r.stderr[-300:]}")
    print("ok: NATS without credentials only on loopback, or with --nats-no-auth")


def test_group(exe, ctl_exe, latest, tmp, group):
    gid = grp.getgrnam(group).gr_gid
    conf = os.path.join(tmp, "group.conf")
    with open(conf, "w") as f:
        f.write(f"control-group = {group}\nagent-uids = root, nobody\nnats-token = {TOKEN}\n")
    d = Atomqd(exe, tmp, "group", ["--config", conf])
    try:
        st = os.stat(d.sock)
        check(stat.S_IMODE(st.st_mode) == 0o660, f"socket mode {oct(st.st_mode)}, want 0660")
        check(st.st_gid == gid, f"socket group {st.st_gid}, want {gid} ({group})")
        dst = os.stat(os.path.dirname(d.sock))
        check(stat.S_IMODE(dst.st_mode) == 0o750 and dst.st_gid == gid,
              f"directory mode {oct(dst.st_mode)} group {dst.st_gid}, want 0750 {gid}")

        # Members of the group may run commands, by primary group or by a
        # supplementary one only (SO_PEERGROUPS).
        for uid, g, groups in ((NOBODY, gid, []), (MEMBER_UID, gid, []),
                               (SUPP_UID, SUPP_UID, [gid])):
            r = run_as(uid, g, groups, [ctl_exe, "--control", d.sock, "show", "info"])
            check(r.returncode == 0 and "version: " in r.stdout,
                  f"group member uid {uid} gid {g} groups {groups}: {r.returncode} {r.stderr}")

        # An agent on the list attaches and does its work.
        r = run_as(NOBODY, gid, [], [latest, d.sock])
        check(r.returncode == 0 and "watcher: config.state = done" in r.stdout,
              f"latest_watch as nobody (on --agent-uids): {r.returncode}\n{r.stdout}\n{r.stderr}")
        a = d.agents(ctl_exe)
        check(a["attaches"] >= 2 and a["refused_uid"] == 0, f"show agents after it: {a}")

        # One off the list is refused: the real agent, then the raw attach
        # to see the line it is told.
        before = d.stats(ctl_exe)["agents_refused_uid"]
        r = run_as(MEMBER_UID, gid, [], [latest, d.sock])
        check(r.returncode != 0 and "not permitted" in r.stderr,
              f"latest_watch as uid {MEMBER_UID} (not on the list): {r.returncode} {r.stderr}")
        replies = as_user(MEMBER_UID, gid, [], lambda: raw_exchange(d.sock, "attach"))
        want = (f"error: attach: uid {MEMBER_UID} may not attach agents (not on --agent-uids) "
                "(EPERM)")
        check(replies[0][0].startswith("atomqd ") and replies[1] == [want],
              f"raw attach as uid {MEMBER_UID}: {replies}")
        s = d.stats(ctl_exe)
        check(s["agents_refused_uid"] == before + 2,
              f"agents_refused_uid {s['agents_refused_uid']}, want {before + 2}")
        check(d.agents(ctl_exe)["refused_uid"] == before + 2, "show agents: refused_uid")
        check(d.metric("atomq_agents_refused_uid_total") == before + 2,
              "/metrics: atomq_agents_refused_uid_total")
        check(f"uid {MEMBER_UID} is not on --agent-uids" in d.log(),
              "the refusal is not in the log")

        # A stranger reaches the socket only if its mode is widened by hand;
        # atomqd still refuses it, with a line, and counts it.
        os.chmod(os.path.dirname(d.sock), 0o755)
        os.chmod(d.sock, 0o666)
        replies = as_user(STRANGER_UID, STRANGER_UID, [], lambda: raw_exchange(d.sock, "show info"))
        check(len(replies) == 1 and replies[0][0].startswith(f"error: uid {STRANGER_UID} may not "
                                                             "use this control socket")
              and replies[0][0].endswith("(EACCES)"), f"stranger: {replies}")
        r = run_as(STRANGER_UID, STRANGER_UID, [], [ctl_exe, "--control", d.sock, "show", "info"])
        check(r.returncode != 0, f"atomqctl as a stranger succeeded: {r.stdout}")
        s = d.stats(ctl_exe)
        check(s["control_refused_uid"] == 2, f"control_refused_uid {s['control_refused_uid']}, want 2")
        check(d.metric("atomq_control_refused_uid_total") == 2, "/metrics: control_refused_uid")

        # The NATS token is not shown by /info, only that one is set.
        info = d.http("/info")
        check(TOKEN not in info, "/info shows the NATS token")
        check(json.loads(info)["config"]["nats-token"] == "(set)", "/info: nats-token")
        check(json.loads(info)["config"]["control-group"] == group, "/info: control-group")
    except BaseException:
        d.kill()
        raise
    d.stop()
    print(f"ok: --control-group {group}: 0660, members run commands; agents on --agent-uids "
          "attach, others refused and counted; strangers refused and counted; /info hides the token")


def main():
    if len(sys.argv) != 4:
        print(__doc__)
        sys.exit(2)
    exe, ctl_exe, latest = (os.path.abspath(p) for p in sys.argv[1:])
    if os.geteuid() != 0:
        skip("needs root to run clients as other users")
    try:
        group = grp.getgrgid(NOBODY).gr_name
        pwd.getpwuid(NOBODY)
    except KeyError:
        skip(f"this host has no user or group {NOBODY} (nobody/nogroup)")
    tmp = tempfile.mkdtemp(prefix="atomq-sec-")
    os.chmod(tmp, 0o755)
    if any("log_path=" in os.environ.get(v, "") for v in SAN_VARS):
        san["dir"] = os.path.join(tmp, "sanitizer")
        os.mkdir(san["dir"])
        os.chmod(san["dir"], 0o1777)
    # The binaries must be reachable for nobody (a build tree under a 0700
    # home is not).
    r = run_as(NOBODY, NOBODY, [], [ctl_exe, "--help"])
    if r.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        skip(f"uid {NOBODY} cannot run {ctl_exe}: {r.stderr.strip()[:200]}")
    started = time.monotonic()
    try:
        test_default(exe, ctl_exe, tmp)
        test_bad_names(exe, tmp)
        test_nats_auth_default(exe, tmp)
        test_group(exe, ctl_exe, latest, tmp, group)
    except Failure as e:
        print(f"FAIL: {e}")
        for name in ("default", "group"):
            p = os.path.join(tmp, name, "log")
            if os.path.exists(p):
                print(f"--- atomqd log ({name}) ---")
                print(open(p).read()[-4000:])
        sys.exit(1)
    finally:
        san_collect()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"ok: all in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()
