"""natsenv.py - what the NATS integration tests share: a free port, atomqd
started with its NATS listener in a temporary directory, and the reference
nats-server when Debian's is installed."""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def fail(why, server=None):
    """Ends a test: the reason, and the log of the server (anything with a
    log() method) when there is one."""
    print(f"FAIL: {why}")
    if server is not None:
        print("--- atomqd log ---")
        print(server.log())
    sys.exit(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, seconds=10):
    """True once port accepts connections; False if proc died or time ran out."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=1)
            # A connect to a port nobody listens on can pick that same port
            # as its own (ephemeral) source and connect to itself (TCP
            # simultaneous open): not a listener.
            self_connect = s.getsockname() == s.getpeername()
            s.close()
            if not self_connect:
                return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def control(sock_path, line):
    """One command on the control socket at sock_path: the reply's lines."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(sock_path)
        f = s.makefile("rb")
        while f.readline() not in (b"\n", b""):  # the greeting
            pass
        s.sendall(line.encode() + b"\n")
        out = []
        for raw in f:
            if raw == b"\n":
                break
            out.append(raw.decode().rstrip("\n"))
        return out


class Atomqd:
    """atomqd (and its dataplane) with --nats on a free loopback port."""

    def __init__(self, atomqd, extra=(), workers=1):
        self.tmp = tempfile.mkdtemp(prefix="atomq-nats-")
        self.log_path = os.path.join(self.tmp, "atomqd.log")
        self.port = free_port()
        args = [atomqd, "--workers", str(workers), "--max-entities", "20000", "--hugepages", "off",
                "--metrics", "off", "--control", os.path.join(self.tmp, "ctl.sock"),
                "--data-dir", os.path.join(self.tmp, "data"),
                "--nats", f"127.0.0.1:{self.port}", "--max-agents", "0", *extra]
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                         env=dict(os.environ, XDG_RUNTIME_DIR=self.tmp))
        self.ok = wait_port(self.port, self.proc)

    def log(self, tail=4000):
        return open(self.log_path).read()[-tail:] if os.path.exists(self.log_path) else ""

    def control(self, line):
        """One command on atomqd's control socket: the reply's lines."""
        return control(os.path.join(self.tmp, "ctl.sock"), line)

    def dataplane_pid(self):
        """The pid of atomq-dataplane (atomqd's child), or None."""
        try:
            kids = open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read().split()
        except OSError:
            return None
        return int(kids[0]) if kids else None

    def dataplane_rss_kib(self):
        """VmRSS of atomq-dataplane, or None."""
        pid = self.dataplane_pid()
        return rss_kib(pid) if pid is not None else None

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        stop(self.proc)
        shutil.rmtree(self.tmp, ignore_errors=True)


def rss_kib(pid):
    """VmRSS of process pid in KiB, or None when it is gone."""
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def worker_counter(mport, name):
    """A counter of /workers on the metrics port mport, summed over the workers."""
    with urllib.request.urlopen(f"http://127.0.0.1:{mport}/workers", timeout=5) as r:
        doc = json.load(r)
    rows = doc["workers"] if isinstance(doc, dict) else doc
    return sum(w[name] for w in rows)


def nats_server(extra=()):
    """The reference nats-server on a free port, or None when not installed."""
    path = shutil.which("nats-server") or (
        "/usr/sbin/nats-server" if os.path.exists("/usr/sbin/nats-server") else None)
    if path is None:
        return None, None
    port = free_port()
    proc = subprocess.Popen([path, "-a", "127.0.0.1", "-p", str(port), *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not wait_port(port, proc):
        stop(proc)
        raise OSError("nats-server did not start")
    return proc, port


def stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
