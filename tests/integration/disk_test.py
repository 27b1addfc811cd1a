#!/usr/bin/env python3
"""disk_test.py - the disk tier through a real NATS connection, against the
real binaries: what was acknowledged survives SIGKILL of atomqd and its
dataplane at random moments, exactly once and in order; a log cut at any
byte keeps every complete record and drops the torn one; disk limits give a
clear error.

    disk_test.py ATOMQD [crash|state|compaction|torn|limits|all] [--rounds N] [--seed S]
                 [--workers N]

Prints "ok <check>" per check; exits 1 with the reason on the first failure.
"""
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import natsenv  # noqa: E402


# --workers for every atomqd started here (--workers on the command line).
WORKERS = 1


fail = natsenv.fail


class Server:
    """atomqd with the disk tier, restartable on the same directories."""

    def __init__(self, atomqd, tmp, extra=()):
        self.atomqd = atomqd
        self.tmp = tmp
        self.extra = list(extra)
        self.port = natsenv.free_port()
        self.log_path = os.path.join(tmp, "atomqd.log")
        self.proc = None

    def start(self):
        args = [self.atomqd, "--workers", str(WORKERS), "--max-entities", "20000", "--hugepages", "off",
                "--metrics", "off", "--control", os.path.join(self.tmp, "ctl.sock"),
                "--data-dir", os.path.join(self.tmp, "data"),
                "--nats", f"127.0.0.1:{self.port}", "--max-agents", "0", *self.extra]
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                         env=dict(os.environ, XDG_RUNTIME_DIR=self.tmp))
        if not natsenv.wait_port(self.port, self.proc):
            fail("atomqd did not listen", self)

    def dataplane_pid(self):
        try:
            kids = open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read().split()
            return int(kids[0]) if kids else None
        except OSError:
            return None

    def kill9(self):
        """SIGKILL to the dataplane and atomqd at once: nothing gets to flush."""
        dp = self.dataplane_pid()
        for pid in (dp, self.proc.pid):
            if pid is not None:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.proc.wait()
        # The dataplane is atomqd's child: wait until it is gone too.
        deadline = time.monotonic() + 5
        while dp is not None and os.path.exists(f"/proc/{dp}") and time.monotonic() < deadline:
            try:
                if open(f"/proc/{dp}/stat").read().split()[2] == "Z":
                    break
            except OSError:
                break
            time.sleep(0.01)
        self.port_released()

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.port_released()

    def port_released(self):
        """A dead dataplane's io_uring goes away asynchronously, and its
        listener with it: until then the port still accepts (and then
        resets). The next atomqd starts once nothing listens."""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            except OSError:
                return
            time.sleep(0.01)

    def log(self, tail=6000):
        return open(self.log_path).read()[-tail:] if os.path.exists(self.log_path) else ""


class Nats:
    """A raw NATS connection with one inbox for $AQ answers."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""
        self.line()  # INFO
        self.s.sendall(b'CONNECT {"verbose":false,"headers":true}\r\nSUB _R.* 1\r\nPING\r\n')
        if self.line() != b"PONG":
            raise ConnectionError("no PONG")

    def line(self):
        while b"\r\n" not in self.buf:
            d = self.s.recv(1 << 16)
            if not d:
                raise EOFError("closed")
            self.buf += d
        l, self.buf = self.buf.split(b"\r\n", 1)
        return l

    def answer(self):
        """The next answer: (reply subject, JSON)."""
        l = self.line()
        if not l.startswith(b"MSG "):
            raise ValueError(f"not a MSG: {l!r}")
        parts = l.split()
        n = int(parts[-1])
        while len(self.buf) < n + 2:
            d = self.s.recv(1 << 16)
            if not d:
                raise EOFError("closed")
            self.buf += d
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return parts[1], json.loads(data)

    def pub(self, subject, body, reply=b"_R.0", headers=None):
        if headers:
            h = b"NATS/1.0\r\n" + headers + b"\r\n\r\n"
            self.s.sendall(b"HPUB %s %s %d %d\r\n%s%s\r\n" % (subject, reply, len(h),
                                                           len(h) + len(body), h, body))
        else:
            self.s.sendall(b"PUB %s %s %d\r\n%s\r\n" % (subject, reply, len(body), body))

    def req(self, subject, body, headers=None):
        self.pub(subject, body, headers=headers)
        return self.answer()[1]

    def close(self):
        self.s.close()


def create_ok(c, srv, body):
    """$AQ.MAILBOX.CREATE with body, which must succeed."""
    a = c.req(b"$AQ.MAILBOX.CREATE", body)
    if not a.get("ok"):
        fail(f"create {body!r}: {a}", srv)
    return a


def fetch_all(c, name):
    """Every message of mailbox name, in order: (seq, payload)."""
    out = []
    while True:
        a = c.req(b"$AQ.MAILBOX.FETCH." + name, b'{"batch":64}')
        if not a.get("ok"):
            raise ValueError(f"fetch: {a}")
        if not a["messages"]:
            return out
        import base64
        out += [(m["seq"], base64.b64decode(m["data"])) for m in a["messages"]]


# ---- crash: acknowledged sends survive SIGKILL ---------------------------

def check_crash(atomqd, rounds, rng):
    """Sends alternate between a sync=always and a sync=batch mailbox: an
    answer from either means the message survives the process (batch
    answers once the record is written to the kernel)."""
    tmp = tempfile.mkdtemp(prefix="atomq-disk-")
    srv = Server(atomqd, tmp)
    boxes = (b"crash.box", b"crash.batch")
    acked = {}          # id -> (mailbox, seq)
    next_id = 0
    got = {}
    try:
        srv.start()
        c = Nats(srv.port)
        for name, sync in zip(boxes, (b"always", b"batch")):
            create_ok(c, srv, b'{"name":"%s","storage":"disk","sync":"%s","max_msgs":1000000}'
                      % (name, sync))
        c.close()
        for r in range(rounds):
            c = Nats(srv.port)
            # Pipelined sends, each with its own reply subject; answers are
            # read as they come. The crash lands at a random moment.
            deadline = time.monotonic() + rng.uniform(0.05, 0.4)
            inflight = {}
            window = 32
            # At most this many a round: the mailboxes keep them all, in a
            # shard sized by --max-entities.
            budget = next_id + 1000
            try:
                while time.monotonic() < deadline and next_id < budget:
                    while len(inflight) < window:
                        i = next_id
                        next_id += 1
                        reply = b"_R.%d" % i
                        box = boxes[i % 2]
                        c.pub(b"$AQ.MAILBOX.SEND." + box, b"m%d" % i, reply=reply)
                        inflight[reply] = i
                    subj, ans = c.answer()
                    i = inflight.pop(subj)
                    if not ans.get("ok"):
                        fail(f"send {i}: {ans}", srv)
                    acked[i] = (boxes[i % 2], ans["seq"])
                srv.kill9()
                # Answers already in the socket were sent before the kill:
                # they count as acknowledged too.
                c.s.settimeout(0.5)
                try:
                    while inflight:
                        subj, ans = c.answer()
                        i = inflight.pop(subj)
                        if ans.get("ok"):
                            acked[i] = (boxes[i % 2], ans["seq"])
                except (OSError, EOFError, ValueError):
                    pass
            finally:
                c.close()
            srv.start()
        c = Nats(srv.port)
        for name in boxes:
            got[name] = fetch_all(c, name)
        c.close()
    finally:
        srv.stop()
    present = 0
    for name in boxes:
        check_crash_box(srv, name, got[name],
                        {i: seq for i, (box, seq) in acked.items() if box == name})
        present += len(got[name])
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"ok crash: {rounds} SIGKILLs, {len(acked)} acknowledged of {next_id} sent "
          f"(always and batch), {present} present, all acknowledged ones exactly once "
          f"and in order")


def check_crash_box(srv, name, got, acked):
    """got: mailbox name's messages after the crashes; acked: id -> seq."""
    ids = []
    for seq, payload in got:
        if not payload.startswith(b"m"):
            fail(f"{name}: a stranger message {payload!r}", srv)
        ids.append(int(payload[1:]))
    if len(ids) != len(set(ids)):
        dup = sorted(i for i in set(ids) if ids.count(i) > 1)[:10]
        fail(f"{name}: messages present twice: {dup}", srv)
    if ids != sorted(ids):
        fail(f"{name}: messages out of order", srv)
    present = set(ids)
    lost = sorted(i for i in acked if i not in present)
    if lost:
        fail(f"{name}: {len(lost)} acknowledged messages lost, first {lost[:10]}", srv)
    seqs = [s for s, _ in got]
    if seqs != sorted(seqs):
        fail(f"{name}: sequence numbers out of order", srv)
    for seq, payload in got:
        i = int(payload[1:])
        if i in acked and acked[i] != seq:
            fail(f"{name}: message {i} acknowledged as seq {acked[i]}, found as {seq}", srv)


# ---- state: every kind of disk entity comes back --------------------------

def check_state(atomqd):
    """Mailboxes (with their TTLs and acks), logs with consumer-group
    cursors, latest values and a mailbox moved to disk live: all back after
    SIGKILL; what was destroyed or moved off disk is not."""
    import base64
    tmp = tempfile.mkdtemp(prefix="atomq-dstate-")
    srv = Server(atomqd, tmp)
    try:
        srv.start()
        c = Nats(srv.port)
        steps = [
            (b"$AQ.MAILBOX.CREATE", b'{"name":"st.box","storage":"disk","ttl_ms":600000}', None),
            (b"$AQ.MAILBOX.SEND.st.box", b"one", None),
            (b"$AQ.MAILBOX.SEND.st.box", b"two", b"AQ-TTL-MS: 600000"),
            (b"$AQ.MAILBOX.SEND.st.box", b"three", b"AQ-Sync: none"),
            (b"$AQ.MAILBOX.ACK.st.box", b'{"seq":0}', None),
            (b"$AQ.MAILBOX.CREATE", b'{"name":"st.short","storage":"disk","ttl_ms":300}', None),
            (b"$AQ.MAILBOX.CREATE", b'{"name":"st.gone","storage":"disk"}', None),
            (b"$AQ.MAILBOX.DESTROY.st.gone", b"", None),
            (b"$AQ.LOG.CREATE", b'{"name":"st.log","storage":"disk","sync":"batch"}', None),
            (b"$AQ.LOG.APPEND.st.log", b"r0", None),
            (b"$AQ.LOG.APPEND.st.log", b"r1", None),
            (b"$AQ.LOG.APPEND.st.log", b"r2", None),
            (b"$AQ.LOG.COMMIT.st.log", b'{"group":"g1","offset":2}', None),
            (b"$AQ.LATEST.PUT.st.temp", b"20C", b"AQ-Storage: disk"),
            (b"$AQ.LATEST.PUT.st.temp", b"21C", None),
            (b"$AQ.LATEST.PUT.st.memonly", b"x", None),
            (b"$AQ.MAILBOX.CREATE", b'{"name":"st.moved"}', None),
            (b"$AQ.MAILBOX.SEND.st.moved", b"was in memory", None),
        ]
        for subj, body, hdr in steps:
            a = c.req(subj, body, headers=hdr)
            if not a.get("ok"):
                fail(f"{subj} {body}: {a}", srv)
        c.close()
        ctl = os.path.join(srv.tmp, "ctl.sock")
        out = natsenv.control(ctl, "set st.moved storage=disk")
        if not any("storage: disk" in l for l in out):
            fail(f"set storage=disk: {out}", srv)
        # A TTL set later is kept too: st.box loses its TTL, st.later gets one
        # that runs out while atomq is down.
        c = Nats(srv.port)
        create_ok(c, srv, b'{"name":"st.later","storage":"disk"}')
        c.close()
        for line in ("set st.box ttl=0", "set st.later ttl=300ms"):
            out = natsenv.control(ctl, line)
            if not any(l.startswith("ok") for l in out):
                fail(f"{line}: {out}", srv)
        time.sleep(0.5)     # st.short's TTL runs out meanwhile
        srv.kill9()
        srv.start()
        c = Nats(srv.port)
        box = [base64.b64decode(m["data"]) for m in
               c.req(b"$AQ.MAILBOX.FETCH.st.box", b'{"batch":10}')["messages"]]
        if box != [b"two", b"three"]:
            fail(f"st.box after restart: {box}", srv)
        for gone in (b"st.short", b"st.gone", b"st.later"):
            a = c.req(b"$AQ.MAILBOX.FETCH." + gone, b"")
            if a.get("error") != "NOT_FOUND":
                fail(f"{gone} should be gone: {a}", srv)
        log = c.req(b"$AQ.LOG.READ.st.log", b'{"offset":0,"batch":10}')["messages"]
        if [(m["offset"], base64.b64decode(m["data"])) for m in log] != \
                [(0, b"r0"), (1, b"r1"), (2, b"r2")]:
            fail(f"st.log after restart: {log}", srv)
        grp = c.req(b"$AQ.LOG.READ.st.log", b'{"group":"g1","batch":10}')["messages"]
        if [m["offset"] for m in grp] != [2]:
            fail(f"st.log group g1 after restart: {grp}", srv)
        a = c.req(b"$AQ.LATEST.GET.st.temp", b"")
        if not a.get("ok") or base64.b64decode(a.get("data", "")) != b"21C":
            fail(f"st.temp after restart: {a}", srv)
        a = c.req(b"$AQ.LATEST.GET.st.memonly", b"")
        if a.get("error") != "NOT_FOUND":
            fail(f"a memory-only latest value survived a restart: {a}", srv)
        moved = [base64.b64decode(m["data"]) for m in
                 c.req(b"$AQ.MAILBOX.FETCH.st.moved", b'{"batch":10}')["messages"]]
        if moved != [b"was in memory"]:
            fail(f"st.moved after restart: {moved}", srv)
        c.close()
    finally:
        srv.stop()
    shutil.rmtree(tmp, ignore_errors=True)
    print("ok state: mailbox with acks and TTLs, log with a group cursor, latest value, a "
          "mailbox moved to disk live: all back after SIGKILL; destroyed and expired ones not")


# ---- compaction: what is no longer live leaves the disk --------------------

def dir_bytes(path):
    return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path))


def check_compaction(atomqd):
    """Sends and acks far more than a segment holds: the log is compacted
    (it stays a few segments big) and what is still live survives."""
    import base64
    tmp = tempfile.mkdtemp(prefix="atomq-dcomp-")
    srv = Server(atomqd, tmp, extra=["--disk-segment", "2M"])
    try:
        srv.start()
        c = Nats(srv.port)
        create_ok(c, srv, b'{"name":"cp.box","storage":"disk","sync":"none"}')
        create_ok(c, srv, b'{"name":"cp.keep","storage":"disk"}')
        c.req(b"$AQ.MAILBOX.SEND.cp.keep", b"kept through compactions")
        a = c.req(b"$AQ.LOG.CREATE", b'{"name":"cp.log","storage":"disk","max_msgs":100}')
        c.req(b"$AQ.LOG.COMMIT.cp.log", b'{"group":"g","offset":0}')
        total, peak = 0, 0
        payload = b"p" * 900
        wdir = os.path.join(tmp, "data", "w0")
        # ~40 MiB of records through a mailbox whose messages are acked at
        # once, and a log that keeps its last 100.
        for i in range(40000):
            a = c.req(b"$AQ.MAILBOX.SEND.cp.box", payload)
            if not a.get("ok"):
                fail(f"send {i}: {a}", srv)
            c.req(b"$AQ.MAILBOX.ACK.cp.box", b'{"seq":%d}' % a["seq"])
            if i % 50 == 0:
                c.req(b"$AQ.LOG.APPEND.cp.log", b"entry %d" % i)
            total += 1000
            if i % 1000 == 0:
                peak = max(peak, dir_bytes(wdir))
        c.req(b"$AQ.LOG.COMMIT.cp.log", b'{"group":"g","offset":790}')
        time.sleep(0.3)
        size = dir_bytes(wdir)
        c.close()
        srv.kill9()
        srv.start()
        c = Nats(srv.port)
        keep = c.req(b"$AQ.MAILBOX.FETCH.cp.keep", b"")["messages"]
        box = c.req(b"$AQ.MAILBOX.FETCH.cp.box", b"")["messages"]
        grp = c.req(b"$AQ.LOG.READ.cp.log", b'{"group":"g","batch":64}')["messages"]
        c.close()
    finally:
        srv.stop()
    if peak > 6 * 2 ** 21:
        fail(f"the log grew to {peak} bytes with 2 MiB segments: not compacted", srv)
    if [base64.b64decode(m["data"]) for m in keep] != [b"kept through compactions"]:
        fail(f"cp.keep after compactions and SIGKILL: {keep}", srv)
    if box:
        fail(f"acked messages came back: {len(box)}", srv)
    if [m["offset"] for m in grp][:1] != [790] or len(grp) != 10:
        fail(f"cp.log group g after compactions: {[m['offset'] for m in grp]}", srv)
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"ok compaction: {total >> 20} MiB of records through 2 MiB segments, the log at "
          f"most {peak >> 10} KiB (now {size >> 10} KiB); live messages, a log and its group "
          f"cursor intact after SIGKILL")


# ---- torn: a log cut at any byte -------------------------------------------

def segment_records(path):
    """(end offset, type) of each record of a segment file (40-byte
    little-endian headers: crc, len, type, ...; 8-byte aligned)."""
    data = open(path, "rb").read()
    out, off = [], 0
    while off + 40 <= len(data):
        crc, ln, typ = struct.unpack_from("<IIH", data, off)
        if ln == 0:
            break
        end = off + ((ln + 7) & ~7)
        if end > len(data):
            break
        out.append((off + ln, end, typ))
        off = end
    return out, len(data)


def check_torn(atomqd, cuts, rng):
    tmp = tempfile.mkdtemp(prefix="atomq-torn-")
    srv = Server(atomqd, tmp)
    name = b"torn.box"
    n = 60
    try:
        srv.start()
        c = Nats(srv.port)
        create_ok(c, srv, b'{"name":"torn.box","storage":"disk","sync":"always"}')
        for i in range(n):
            a = c.req(b"$AQ.MAILBOX.SEND." + name, b"t%d-" % i + b"x" * rng.randrange(0, 300))
            if not a.get("ok"):
                fail(f"send: {a}", srv)
        c.close()
    finally:
        srv.stop()
    wdir = os.path.join(tmp, "data", "w0")
    segs = sorted(f for f in os.listdir(wdir) if f.endswith(".seg"))
    if not segs:
        fail("no segment written")
    last = os.path.join(wdir, segs[-1])
    pristine = open(last, "rb").read()
    recs, size = segment_records(last)
    msgs = [r for r in recs if r[2] == 2]   # DP_JOURNAL_MSG
    if len(msgs) != n:
        fail(f"{len(msgs)} MSG records in the segment, want {n}")
    # Cut points: inside the last record at every kind of place, and random
    # ones over the whole file.
    points = {size - 1, msgs[-1][0] - 1, msgs[-1][0] - 20}
    points |= {rng.randrange(recs[0][1], size) for _ in range(cuts)}
    for cut in sorted(points):
        with open(last, "wb") as f:
            f.write(pristine[:cut])
        whole = sum(1 for _, end, typ in recs if typ == 2 and end <= cut)
        srv = Server(atomqd, tmp)
        try:
            srv.start()
            c = Nats(srv.port)
            got = fetch_all(c, name)
            # The log goes on after the cut: a new message is kept too.
            a = c.req(b"$AQ.MAILBOX.SEND." + name, b"after")
            c.close()
        finally:
            srv.stop()
        if not a.get("ok"):
            fail(f"cut at {cut}: send after recovery: {a}", srv)
        want = [b"t%d-" % i for i in range(whole)]
        have = [p[:len(b"t%d-" % i)] for i, (_, p) in enumerate(got)]
        if len(got) != whole or have != want:
            fail(f"cut at {cut} of {size}: {len(got)} messages back, want the {whole} "
                 f"complete ones", srv)
        with open(last, "rb") as f:
            head = f.read(cut)
        # Recovery cut the torn tail: the complete records' bytes are as
        # they were.
        keep = max((end for _, end, _ in recs if end <= cut), default=0)
        if pristine[:keep] != head[:keep]:
            fail(f"cut at {cut}: complete records were changed")
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"ok torn: {len(points)} cuts of the last segment, every complete record kept, "
          f"the torn one dropped, appends go on")


# ---- limits -----------------------------------------------------------------

def check_limits(atomqd):
    tmp = tempfile.mkdtemp(prefix="atomq-dlim-")
    # A 2 MiB log: a few hundred 4 KiB messages fill it.
    srv = Server(atomqd, tmp, extra=["--disk-max", "2M"])
    try:
        srv.start()
        c = Nats(srv.port)
        create_ok(c, srv, b'{"name":"lim","storage":"disk","sync":"none"}')
        # Nothing is consumed, so nothing is reclaimable: the log grows to
        # its limit (before the shard's buffers fill: 2 MiB of 1 KiB).
        full, ok, acked = None, 0, 0
        for i in range(20000):
            a = c.req(b"$AQ.MAILBOX.SEND.lim", b"y" * 1024)
            if not a.get("ok"):
                full = a
                break
            ok += 1
        if full is None or full.get("error") != "DISK_FULL":
            fail(f"no DISK_FULL after {ok} sends: {full}", srv)
        # What was accepted and not acknowledged is all there; memory
        # storage still works.
        got = fetch_all(c, b"lim")
        if len(got) != ok - acked:
            fail(f"{len(got)} messages after the disk filled, want {ok - acked}", srv)
        a = c.req(b"$AQ.MAILBOX.CREATE", b'{"name":"memok"}')
        b_ = c.req(b"$AQ.MAILBOX.SEND.memok", b"z")
        if not (a.get("ok") and b_.get("ok")):
            fail(f"memory storage after DISK_FULL: {a} {b_}", srv)
        bad = c.req(b"$AQ.MAILBOX.CREATE", b'{"name":"b","storage":"disk","sync":"sometimes"}')
        if bad.get("error") != "BAD_REQUEST":
            fail(f"a bad sync: {bad}", srv)
        bad = c.req(b"$AQ.MAILBOX.SEND.memok", b"z", headers=b"AQ-Storage: disk")
        if bad.get("error") != "NOT_SUPPORTED":
            fail(f"a disk message to a memory mailbox: {bad}", srv)
        c.close()
    finally:
        srv.stop()
    # --disk off: storage disk is refused, with the reason.
    srv = Server(atomqd, tmp, extra=["--disk", "off"])
    try:
        srv.start()
        c = Nats(srv.port)
        a = c.req(b"$AQ.MAILBOX.CREATE", b'{"name":"nodisk","storage":"disk"}')
        c.close()
    finally:
        srv.stop()
    if a.get("error") != "NOT_SUPPORTED":
        fail(f"storage disk with --disk off: {a}", srv)
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"ok limits: DISK_FULL after {ok} 1 KiB sends into --disk-max 2M, nothing lost; "
          f"bad sync, a disk message to a memory mailbox and --disk off refused")


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    atomqd = sys.argv[1]
    what = sys.argv[2] if len(sys.argv) > 2 and not sys.argv[2].startswith("--") else "all"
    rounds = 12
    seed = int(time.time())
    args = sys.argv[2:]
    if "--rounds" in args:
        rounds = int(args[args.index("--rounds") + 1])
    if "--seed" in args:
        seed = int(args[args.index("--seed") + 1])
    if "--workers" in args:
        global WORKERS
        WORKERS = int(args[args.index("--workers") + 1])
    print(f"seed {seed}")
    rng = random.Random(seed)
    if what in ("crash", "all"):
        check_crash(atomqd, rounds, rng)
    if what in ("state", "all"):
        check_state(atomqd)
    if what in ("compaction", "all"):
        check_compaction(atomqd)
    if what in ("torn", "all"):
        check_torn(atomqd, 12, rng)
    if what in ("limits", "all"):
        check_limits(atomqd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
