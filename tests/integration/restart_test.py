#!/usr/bin/env python3
"""restart_test.py - the dataplane dies, atomqd restarts it, nothing queued is lost.

Starts the real atomqd (with its real atomq-dataplane child) in a temporary
directory, queues messages in mailboxes on every worker through the control
socket, kills the dataplane with SIGKILL, waits for atomqd to restart it, and
fetches the very same messages. Then SIGTERM: atomqd exits 0.

    python3 tests/integration/restart_test.py build/control/atomqd \
        build/dataplane/atomq-dataplane
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

TIMEOUT_S = 20


class Control:
    """A control-socket client: one command, one reply up to the empty line."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(TIMEOUT_S)
        self.sock.connect(path)
        self.buf = b""
        self._reply()  # the greeting

    def _reply(self):
        while b"\n\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RuntimeError("atomqd closed the control socket")
            self.buf += chunk
        reply, self.buf = self.buf.split(b"\n\n", 1)
        return reply.decode()

    def json(self, command):
        self.sock.sendall(b"json " + command.encode() + b"\n")
        lines = [ln for ln in self._reply().splitlines() if ln]
        return [json.loads(ln) for ln in lines]


def fail(msg, log):
    print("FAIL:", msg)
    with open(log) as f:
        print(f.read())
    sys.exit(1)


def wait_for(pred, what, log):
    deadline = time.time() + TIMEOUT_S
    while time.time() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.05)
    fail("timed out waiting for " + what, log)


def main():
    atomqd, dataplane = sys.argv[1], sys.argv[2]
    tmp = tempfile.mkdtemp(prefix="atomq-restart-")
    sock, log = os.path.join(tmp, "control.sock"), os.path.join(tmp, "atomqd.log")
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [atomqd, "--workers", "2", "--max-entities", "10000", "--control", sock,
             "--metrics", "off", "--nats", "off", "--hugepages", "off", "--data-dir", tmp,
             "--dataplane", dataplane], stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: os.path.exists(sock), "the control socket", log)
        ctl = Control(sock)
        info = wait_for(lambda: ctl.json("show info")[0].get("dataplane_pid"),
                        "the dataplane", log)
        first_pid = info

        # Mailboxes on both workers (names hash to shards), three messages each.
        boxes = ["inbox.restart.%d" % i for i in range(8)]
        for box in boxes:
            r = ctl.json("create mailbox %s" % box)[0]
            if not r["ok"]:
                fail("create %s: %s" % (box, r), log)
            for k in range(3):
                r = ctl.json("send %s %s-msg-%d" % (box, box, k))[0]
                if not r["ok"]:
                    fail("send: %s" % r, log)
        shards = {ctl.json("show entity %s" % b)[0]["shard"] for b in boxes}
        if shards != {0, 1}:
            fail("expected mailboxes on both shards, got %s" % shards, log)

        os.kill(first_pid, signal.SIGKILL)
        new_pid = wait_for(
            lambda: (lambda i: i["dataplane_restarts"] >= 1 and i.get("dataplane_pid")
                     and i["dataplane_pid"] != first_pid and i["dataplane_pid"])(
                ctl.json("show info")[0]),
            "the restarted dataplane", log)

        for box in boxes:
            r = ctl.json("fetch %s max=10" % box)
            head = r[0]
            if not head["ok"]:
                fail("fetch %s after the restart: %s" % (box, head), log)
            got = [m["payload"] for m in head.get("messages", [])]
            want = ["%s-msg-%d" % (box, k) for k in range(3)]
            if got != want:
                fail("%s after the restart: got %s, want %s" % (box, got, want), log)
        with open(log) as f:
            text = f.read()
        if "killed by signal 9" not in text:
            fail("atomqd did not log how the dataplane died", log)

        proc.send_signal(signal.SIGTERM)
        status = proc.wait(timeout=TIMEOUT_S)
        if status != 0:
            fail("SIGTERM: exit status %d" % status, log)
        if os.path.exists(sock):
            fail("the control socket was left behind", log)
        print("restart: ok (dataplane %d killed, %d took over, %d messages kept)"
              % (first_pid, new_pid, 3 * len(boxes)))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        # The log was printed by fail(); the data directory holds a
        # preallocated 64 MiB segment that must not pile up in /tmp.
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
