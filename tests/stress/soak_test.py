#!/usr/bin/env python3
"""soak_test.py - every mode of atomq at once, through every front-end,
for SOAK_SECONDS (default 30), against the real atomqd (two workers, NATS,
atomq datagrams, a shared-memory agent), with entities churned all along.

    soak_test.py ATOMQD SOAK_AGENT
    SOAK_SECONDS=600 meson test -C build --suite stress soak --print-errorlogs

The load, each a thread of its own with its own connection or session,
paced (SOAK_RATE, default 1.0, scales every pace):
- NATS: broadcast publisher; plain, wildcard and queue-group subscribers;
  request/reply (a NATS responder and the agent as responder); $AQ mailbox
  producers and consumers (memory and disk), latest put/get with a watcher,
  log cycles (create, append, read by group, commit, destroy); churn of
  mailboxes (named, anonymous, with a TTL), channels and connections.
- atomq datagrams (tests/integration/dgram.py): broadcast publisher and
  subscriber, requests to the NATS responder, mailbox producer and
  consumer, churn of sessions and of mailboxes created and destroyed.
- shared memory: tests/stress/soak_agent.c, one libatomq agent publishing,
  subscribing, answering requests, producing and consuming mailboxes and
  churning mailboxes and dataplane channels.
Mailboxes cross the front-ends: soak.mb.XY is produced by X and consumed
by Y (n NATS, u datagrams, a agent, d NATS on disk).

What is asserted, per mode, is what the mode promises:
- mailboxes (at least once, exactly once while every fetch is acked well
  within --ack-wait-ms): every acknowledged send is fetched exactly once,
  sequence numbers 0..N-1 with no copy and no gap;
- NATS and agent broadcasts (no loss on loopback: TCP, and a delivery
  ring sized so it cannot fill at this rate): every subscriber gets every
  message of every NATS and agent publisher, once, in order per publisher;
  a queue group gives each one to exactly one member;
- datagram broadcasts (at most once: a PUB or MSG may be lost): no copy,
  order per publisher, every NATS subscriber and the agent see the same set
  of datagram publishes; the datagram subscriber's delivery counter has no
  gap that is not a lost message, and it counted exactly the deliveries
  routed to it (checked with a fence message at the end);
- requests: every request answered once with its own answer; latest: a get
  returns the value just put, the watcher sees every put in order; logs:
  offsets 0..N-1, read back by a group in order, nothing removed by reads;
- the server: no error counter of /workers moves except the ones the test
  provokes (a garbage NATS connection and a bad-CRC datagram every few
  seconds, counted exactly; ERROR_COUNTERS lists the rest), the dataplane
  is never restarted, the long-lived mailboxes are empty after the drain
  (nothing fetched and left unacked), the entity count returns to its
  value before the churn, every session and connection is closed, no
  client is cut off as stale (the server PINGs every 3 s here), VmRSS of
  atomqd and atomq-dataplane stays flat after warm-up (RSS_GROWTH_MAX).

Not covered: disk entities beyond one mailbox (no crash here: see
disk_test.py), UDP loss beyond what loopback does (see agents_udp_test),
direct agent channels (atomq_channel_*), log and latest through agents
or datagrams, dataplane restarts under load (restart_test.py).
"""
import base64
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from dgram import Frame, Session, OP, OP_NAME, MODE_MAILBOX  # noqa: E402
from natsenv import Atomqd, free_port  # noqa: E402

SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "30"))
RATE = float(os.environ.get("SOAK_RATE", "1.0"))
# Fetched messages come again after this long without an ack. Every fetch
# here is acked within milliseconds, so a redelivery is a failure; a
# datagram FETCH answer lost on the way comes back after it, which bounds
# the drain.
ACK_WAIT_MS = 10000
# Warm-up: RSS is compared with its value at the end of this, when every
# pool, ring and table the load touches has been touched once.
WARMUP_S = max(10.0, SOAK_SECONDS * 0.25)
# RSS may grow by this fraction plus this many KiB after warm-up: a leak
# of even 100 bytes per operation grows by megabytes in the default run
# (~10^5 operations) and by far more in a long one, while allocator and
# page-cache noise stays within a few hundred KiB (measured: see the
# summary line of a run).
RSS_GROWTH_MAX = 0.10
RSS_SLACK_KIB = 1024
# On an ASan build (tools/run-tests.sh SANITIZE=1 sets ASAN_OPTIONS) freed
# memory waits in the allocator's quarantine (up to 256 MiB): RSS says
# nothing about leaks there (LeakSanitizer does), so it is only printed.
RSS_CHECKED = "ASAN_OPTIONS" not in os.environ
PROVOKE_EVERY_S = 5.0
# The server PINGs every NATS client this often and cuts one that leaves
# two unanswered: every client here answers, which a short run checks
# only when the interval is short (the default is 2 minutes).
PING_INTERVAL_MS = 3000

# Counters of /workers that must not move. Backpressure and bookkeeping
# counters (mesh_full, cpl_full, udp_busy, udp_retransmits,
# nats_aq_parked, drops.no_party: a publish nobody on a worker wanted) are
# reported, not asserted.
ERROR_COUNTERS = [
    "bad_records", "ring_errors", "cpl_lost", "fetch_overflow", "pin_errors",
    "nats_protocol_errors", "nats_slow_consumers", "nats_stale_conns", "nats_auth_failures",
    "nats_no_responders", "nats_publish_dropped", "nats_aq_lost",
    "disk_io_errors", "disk_refused", "disk_journal_errors", "disk_parked_full",
    "disk_compact_errors",
    "udp_sessions_expired", "udp_sessions_refused", "udp_bad_frames", "udp_bad_crc",
    "udp_spoofed", "udp_stale", "udp_tx_dropped", "udp_request_timeouts",
    "shard.pool_exhausted", "shard.no_responders", "shard.request_timeouts",
    "shard.drops.full", "shard.drops.expired", "shard.drops.max_deliver",
]
REPORTED_COUNTERS = ["mesh_full", "cpl_full", "udp_busy", "udp_retransmits", "nats_aq_parked",
                     "shard.drops.no_party", "shard.expired_entities"]

stop_load = threading.Event()        # producers, publishers, churn: stop
publishers_done = threading.Event()  # every broadcast is published and flushed
problems = []
problems_lock = threading.Lock()


def problem(text):
    with problems_lock:
        problems.append(text)
    print(f"PROBLEM: {text}", flush=True)


def check(cond, text):
    if not cond:
        problem(text)
    return cond


class Pacer:
    """Sleeps so that tick() is called about `per_s` times a second."""

    def __init__(self, per_s):
        self.period = 1.0 / (per_s * RATE)
        self.next = time.monotonic()

    def tick(self):
        self.next += self.period
        delay = self.next - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        elif delay < -1.0:
            self.next = time.monotonic()  # behind by a second: do not catch up in a burst


class Ops:
    """Operations per mode, for the summary."""

    def __init__(self):
        self.lock = threading.Lock()
        self.n = {}

    def add(self, mode, k=1):
        with self.lock:
            self.n[mode] = self.n.get(mode, 0) + k


ops = Ops()


# ---- NATS ----------------------------------------------------------------

class Nats:
    """A NATS text-protocol client on a raw socket with its own buffer, so
    that a read timeout never loses half a message."""

    def __init__(self, port, name="soak", no_responders=False):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = bytearray()
        self.inbox = f"_INBOX.{name}.{id(self):x}"
        self.n = 0
        ev = self.event(10)
        if ev is None or ev[0] != "INFO":
            raise OSError(f"no INFO: {ev}")
        opts = {"verbose": False, "pedantic": False, "name": name}
        if no_responders:
            opts.update(headers=True, no_responders=True)
        self.s.sendall(b"CONNECT " + json.dumps(opts).encode() + b"\r\n")
        self.flush()

    def send(self, data):
        self.s.sendall(data)

    def pub(self, subject, payload, reply=None):
        r = b" " + reply.encode() if reply else b""
        return b"PUB %s%s %d\r\n%s\r\n" % (subject.encode(), r, len(payload), payload)

    def _parse(self):
        """One complete operation from the buffer, or None."""
        i = self.buf.find(b"\r\n")
        if i < 0:
            return None
        line = bytes(self.buf[:i])
        if line.startswith((b"MSG ", b"HMSG ")):
            parts = line.split()
            n = int(parts[-1])
            if len(self.buf) < i + 2 + n + 2:
                return None
            data = bytes(self.buf[i + 2:i + 2 + n])
            del self.buf[:i + 2 + n + 2]
            if parts[0] == b"HMSG":
                hlen = int(parts[-2])
                reply = parts[3].decode() if len(parts) == 6 else None
                return ("HMSG", parts[1].decode(), parts[2].decode(), reply, data[hlen:],
                        data[:hlen])
            reply = parts[3].decode() if len(parts) == 5 else None
            return ("MSG", parts[1].decode(), parts[2].decode(), reply, data)
        del self.buf[:i + 2]
        if line == b"PING":
            self.s.sendall(b"PONG\r\n")
            return ("PING",)
        if line == b"PONG":
            return ("PONG",)
        if line.startswith(b"INFO"):
            return ("INFO",)
        if line.startswith(b"-ERR"):
            return ("ERR", line.decode(errors="replace"))
        if line == b"+OK":
            return ("OK",)
        return ("?", line)

    def event(self, timeout):
        """The next operation from the server; None when timeout passes."""
        deadline = time.monotonic() + timeout
        while True:
            ev = self._parse()
            if ev is not None:
                return ev
            left = deadline - time.monotonic()
            if left <= 0 and timeout > 0:
                return None
            self.s.settimeout(max(left, 0))  # 0: a recv that does not wait
            try:
                data = self.s.recv(1 << 16)
            except (socket.timeout, BlockingIOError):
                return None
            finally:
                self.s.settimeout(10)  # sends (PONG included) may wait
            if not data:
                raise EOFError("the server closed the connection")
            self.buf += data

    def poll(self):
        """Takes what the server sent without waiting: a client that only
        publishes must still answer the server's PINGs (_parse does) or be
        cut off as stale. Anything but PING and PONG is a problem."""
        while True:
            ev = self.event(0)
            if ev is None:
                return
            if ev[0] not in ("PING", "PONG"):
                problem(f"unexpected {ev} on a publishing connection")

    def flush(self, on_msg=None, timeout=10):
        """PING, and every message until the PONG (to on_msg)."""
        self.s.sendall(b"PING\r\n")
        deadline = time.monotonic() + timeout
        while True:
            ev = self.event(deadline - time.monotonic())
            if ev is None:
                raise TimeoutError("no PONG")
            if ev[0] == "PONG":
                return
            if ev[0] in ("MSG", "HMSG") and on_msg is not None:
                on_msg(ev)
            elif ev[0] in ("MSG", "HMSG", "ERR", "?"):
                problem(f"unexpected {ev} while flushing")

    def request(self, subject, payload=b"", timeout=10):
        """A request: the answer's payload (an HMSG: its status line)."""
        if self.n == 0:
            self.s.sendall(b"SUB %s.* 1\r\n" % self.inbox.encode())
        self.n += 1
        reply = f"{self.inbox}.{self.n}"
        self.s.sendall(self.pub(subject, payload, reply))
        deadline = time.monotonic() + timeout
        while True:
            ev = self.event(deadline - time.monotonic())
            if ev is None:
                raise TimeoutError(f"no answer to {subject}")
            if ev[0] == "MSG" and ev[1] == reply:
                return ev[4]
            if ev[0] == "HMSG" and ev[1] == reply:
                return ev[5].split(b"\r\n")[0]
            if ev[0] in ("MSG", "HMSG", "ERR", "?"):
                problem(f"{subject}: unexpected {ev[:2]} while waiting for {reply}")

    def aq(self, subject, body=b""):
        if isinstance(body, dict):
            body = json.dumps(body).encode()
        return json.loads(self.request(subject, body))

    def close(self):
        self.s.close()


# ---- atomq datagrams -----------------------------------------------------

class Udp(Session):
    """A datagram session that keeps fetched messages that arrive late
    (an answer slower than the RTO: its copy runs again, and both answers
    come) and drops stale answers instead of queueing them."""

    def __init__(self, port):
        super().__init__(port, rto=0.5, tries=20)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.open()

    def call(self, frame, want=("STATUS",), copies=1):
        if frame.seq == 0:
            frame.seq = self.next_seq()
        for _ in range(self.tries):
            self.send_frames([frame])
            deadline = time.monotonic() + self.rto
            while time.monotonic() < deadline:
                got = self.recv(deadline - time.monotonic())
                if got is None:
                    break
                frames = got[1]
                for i, f in enumerate(frames):
                    if f.seq == frame.seq and OP_NAME.get(f.op) in want:
                        self.inbox.extend(x for x in frames[i + 1:] if x.op == OP["MSG"])
                        return f, frames[i + 1:]
                self.inbox.extend(f for f in frames if f.op == OP["MSG"])
        raise TimeoutError(f"no answer to {frame}")

    def create(self, name):
        a, _ = self.call(Frame(OP["CREATE"], subject=name.encode(),
                               payload=struct.pack("<BbxxIII", MODE_MAILBOX, -1, 0, 0, 0)))
        return a.status()

    def send_to(self, name, payload):
        a, _ = self.call(Frame(OP["SEND"], subject=name.encode(), payload=payload))
        return a.status()

    def fetch(self, handle, max_msgs):
        """[(seq, payload)] of a fetch, with strays of earlier fetches."""
        a, _ = self.call(Frame(OP["FETCH"], handle=handle, reply=max_msgs))
        st, count = a.status()[:2]
        if st != 0:
            raise OSError(-st, f"FETCH {handle:#x}")
        out, deadline = [], time.monotonic() + 0.5
        while True:
            mine = [f for f in self.inbox if f.handle == handle]
            self.inbox = [f for f in self.inbox if f.handle != handle]
            out += [(f.seq, f.payload) for f in mine]
            if len(out) >= count or time.monotonic() > deadline:
                return out
            got = self.recv(0.05)
            if got is not None:
                self.inbox.extend(f for f in got[1] if f.op == OP["MSG"])

    def ack(self, handle, seq):
        a, _ = self.call(Frame(OP["ACK"], handle=handle, reply=seq))
        return a.status()[0]

    def bye(self):
        a, _ = self.call(Frame(OP["DESTROY"]))
        self.sock.close()
        return a.status()[0]


# ---- broadcast accounting --------------------------------------------------

class Stream:
    """One publisher's messages as one subscriber saw them: count, copies
    or reorderings (an index not above the last), and the sum and sum of
    squares of the indexes, which identify the set for a lossy stream."""

    def __init__(self):
        self.got = self.next = self.reorder = self.sum = self.sumsq = 0

    def see(self, idx):
        if idx < self.next:
            self.reorder += 1
        else:
            self.next = idx + 1
        self.got += 1
        self.sum += idx
        self.sumsq += idx * idx

    def complete(self, n):
        """True when exactly 0..n-1 were seen, once each, in order."""
        return (self.got, self.next, self.reorder, self.sum) == (n, n, 0, n * (n - 1) // 2)


def stream_sums(n):
    return n * (n - 1) // 2, (n - 1) * n * (2 * n - 1) // 6


class Subscriber:
    """Per source (N, U, A) streams of what a subscription received."""

    def __init__(self, name):
        self.name = name
        self.streams = {"N": Stream(), "U": Stream(), "A": Stream()}
        self.fences = []
        self.other = 0

    def see(self, subject, payload):
        src, _, idx = payload.partition(b" ")
        src = src.decode(errors="replace")
        if src == "F":
            self.fences.append(int(idx))
            return
        want = {"N": "soak.bc.nats", "U": "soak.bc.udp", "A": "soak.bc.agent"}.get(src)
        if want is None or subject != want:
            self.other += 1
            problem(f"{self.name}: {payload[:40]!r} on {subject}")
            return
        self.streams[src].see(int(idx))


class Published:
    counts = {"N": 0, "U": 0, "A": 0}
    fences = 0


def nats_subscriber(port, sub, pattern, queue, ready):
    n = Nats(port, sub.name)
    q = f" {queue}" if queue else ""
    n.send(f"SUB {pattern}{q} 1\r\n".encode())
    n.flush()
    ready.set()
    on_msg = lambda ev: sub.see(ev[1], ev[4])  # noqa: E731
    while not publishers_done.is_set():
        ev = n.event(0.2)
        if ev is not None and ev[0] == "MSG":
            on_msg(ev)
        elif ev is not None and ev[0] not in ("PING", "PONG"):
            problem(f"{sub.name}: {ev}")
    # Every publisher has flushed: our PONG comes after everything handed
    # over to our worker was delivered (docs/protocol.md); then the fences.
    n.flush(on_msg)
    quiet_until = time.monotonic() + 1.5
    while time.monotonic() < quiet_until:
        ev = n.event(0.1)
        if ev is not None and ev[0] == "MSG":
            on_msg(ev)
            quiet_until = time.monotonic() + 1.5
    n.close()


def nats_publisher(port):
    n, p = Nats(port, "pub"), Pacer(50)
    while not stop_load.is_set():
        burst = b"".join(n.pub("soak.bc.nats", b"N %d" % (Published.counts["N"] + i))
                         for i in range(20))
        n.send(burst)
        Published.counts["N"] += 20
        ops.add("nats broadcast", 20)
        n.poll()
        p.tick()
    n.flush()
    n.close()


def udp_publisher(uport):
    s, p = Udp(uport), Pacer(100)
    while not stop_load.is_set():
        i = Published.counts["U"]
        s.send_frames([Frame(OP["PUB"], subject=b"soak.bc.udp", payload=b"U %d" % (i + k))
                       for k in range(3)])
        Published.counts["U"] += 3
        ops.add("udp broadcast", 3)
        p.tick()
    time.sleep(0.3)  # what is still in the server's socket buffer is taken by now
    check(s.bye() == 0, "udp publisher: session close")


class UdpSub:
    """The datagram subscriber: streams per source and the session's
    delivery counter (MSG seq), whose gaps are the losses."""

    def __init__(self):
        self.sub = Subscriber("udp-sub")
        self.seqs = 0
        self.last_seq = 0
        self.gaps = 0
        self.fence_seq = None


def udp_subscriber(uport, nport, us, ready):
    s = Udp(uport)
    a, _ = s.call(Frame(OP["SUB"], handle=9, subject=b"soak.bc.>"))
    check(a.status()[0] == 0, f"udp SUB: {a.status()}")
    ready.set()
    last_ping = time.monotonic()

    def take(frames):
        for f in frames:
            if f.op != OP["MSG"]:
                continue
            check(f.handle == 9, f"udp-sub: MSG for sid {f.handle}")
            check(f.seq > us.last_seq, f"udp-sub: delivery seq {f.seq} after {us.last_seq}")
            us.gaps += max(0, f.seq - us.last_seq - 1)
            us.last_seq = max(us.last_seq, f.seq)
            us.seqs += 1
            us.sub.see(f.subject.decode(), f.payload)
            if f.payload.startswith(b"F "):
                us.fence_seq = f.seq

    quiet_until = None
    while quiet_until is None or time.monotonic() < quiet_until:
        got = s.recv(0.1)
        if got is not None:
            take(got[1])
        if time.monotonic() - last_ping > 2.0:  # keep the lease
            s.send_frames([Frame(OP["PING"])])
            last_ping = time.monotonic()
        if publishers_done.is_set() and (quiet_until is None or got is not None):
            quiet_until = time.monotonic() + 1.5
    # Fences: one NATS publish at a time until one arrives, so that the
    # delivery counter of the last one says how many were routed to us.
    n = Nats(nport, "fence")
    deadline = time.monotonic() + 20
    while us.fence_seq is None and time.monotonic() < deadline:
        n.send(n.pub("soak.bc.fence", b"F %d" % Published.fences))
        Published.fences += 1
        n.flush()
        until = time.monotonic() + 0.5
        while us.fence_seq is None and time.monotonic() < until:
            got = s.recv(0.1)
            if got is not None:
                take(got[1])
    n.close()
    check(us.fence_seq is not None, "udp-sub: no fence arrived in 20 s")
    check(s.bye() == 0, "udp-sub: session close")


# ---- request / reply -----------------------------------------------------

class Requests:
    """Requests answered, per service and requester: a NATS request is
    answered once, so the agent's replies must match its requester's."""
    sent = {"nats": 0, "agent": 0, "udp": 0}
    responder = 0


def nats_responder(port, ready):
    n = Nats(port, "responder")
    n.send(b"SUB soak.rr.nats 1\r\n")
    n.flush()
    ready.set()
    while not publishers_done.is_set():
        ev = n.event(0.2)
        if ev is None or ev[0] in ("PING", "PONG"):
            continue
        if ev[0] != "MSG" or ev[3] is None:
            problem(f"responder: {ev}")
            continue
        n.send(n.pub(ev[3], b"re:" + ev[4]))
        Requests.responder += 1
        ops.add("nats responder")
    n.close()


def nats_requester(port, service):
    n, p, i = Nats(port, "req-" + service, no_responders=True), Pacer(100), 0
    while not stop_load.is_set():
        q = b"q%d" % i
        a = n.request("soak.rr." + service, q)
        check(a == b"re:" + q, f"request {q!r} to {service}: answer {a!r}")
        Requests.sent[service] += 1
        i += 1
        ops.add("nats request")
        p.tick()
    n.close()


def udp_requester(uport):
    s, p, i = Udp(uport), Pacer(50), 0
    while not stop_load.is_set():
        q = b"u%d" % i
        a, _ = s.call(Frame(OP["REQUEST"], subject=b"soak.rr.nats", payload=q, ttl_ms=5000),
                      want=("STATUS", "REPLY"))
        check(a.op == OP["REPLY"] and a.payload == b"re:" + q,
              f"udp request {q!r}: {a!r} {a.payload[:40]!r}")
        Requests.sent["udp"] += 1
        i += 1
        ops.add("udp request")
        p.tick()
    check(s.bye() == 0, "udp requester: session close")


# ---- mailboxes -------------------------------------------------------------

class Mailbox:
    """One mailbox's accounting: the producer's acknowledged sends are
    0..sent-1; the consumer marks what it fetched."""

    def __init__(self, name):
        self.name = name
        self.sent = 0
        self.final = None         # set by the producer when it stops
        self.seen = bytearray()   # 1 per sequence number fetched
        self.got = self.dups = self.redelivered = 0

    def mark(self, seq, deliveries=1):
        if seq >= len(self.seen):
            self.seen.extend(bytes(seq + 1 - len(self.seen) + 4096))
        if self.seen[seq]:
            self.dups += 1
            problem(f"{self.name}: message {seq} fetched again")
        self.seen[seq] = 1
        self.got += 1
        self.redelivered += deliveries > 1

    def drained(self):
        return self.final is not None and self.got >= self.final


def nats_mbox_producer(port, box):
    n, p = Nats(port, "prod-" + box.name), Pacer(150)
    while not stop_load.is_set():
        a = n.aq("$AQ.MAILBOX.SEND." + box.name, b"%d" % box.sent)
        if check(a.get("ok"), f"send to {box.name}: {a}"):
            box.sent += 1
        ops.add("nats mailbox")
        p.tick()
    box.final = box.sent
    n.close()


def until_drained(box):
    """Yields once a consumer's round while box is not drained, for at most
    the ack wait and 15 s more once its producer has finished."""
    deadline = None
    while not box.drained():
        if box.final is not None and deadline is None:
            deadline = time.monotonic() + ACK_WAIT_MS / 1000 + 15
        if deadline is not None and time.monotonic() > deadline:
            return
        yield


def nats_mbox_consumer(port, box):
    n = Nats(port, "cons-" + box.name)
    for _ in until_drained(box):
        a = n.aq("$AQ.MAILBOX.FETCH." + box.name, {"batch": 16, "wait_ms": 200})
        if not check(a.get("ok"), f"fetch {box.name}: {a}"):
            continue
        for m in a["messages"]:
            box.mark(int(base64.b64decode(m["data"])), m["deliveries"])
            r = n.aq("$AQ.MAILBOX.ACK." + box.name, {"seq": m["seq"]})
            check(r.get("ok"), f"ack {box.name} {m['seq']}: {r}")
            ops.add("nats mailbox")
    n.close()


def udp_mbox_producer(uport, box):
    s, p = Udp(uport), Pacer(100)
    while not stop_load.is_set():
        st = s.send_to(box.name, b"%d" % box.sent)
        if check(st[0] == 0, f"udp send to {box.name}: {st}"):
            box.sent += 1
        ops.add("udp mailbox")
        p.tick()
    box.final = box.sent
    check(s.bye() == 0, "udp producer: session close")


def udp_mbox_consumer(uport, box, handle):
    s = Udp(uport)
    for _ in until_drained(box):
        msgs = s.fetch(handle, 16)
        for seq, payload in msgs:
            box.mark(int(payload))
            st = s.ack(handle, seq)
            check(st == 0, f"udp ack {box.name} {seq}: {st}")
            ops.add("udp mailbox")
        if not msgs:
            time.sleep(0.02)
    check(s.bye() == 0, "udp consumer: session close")


# ---- latest, log -------------------------------------------------------------

LATEST_KEYS = 8


class Latest:
    puts = [0] * LATEST_KEYS
    seen = [0] * LATEST_KEYS   # the watcher: values in order, per key
    watch_bad = 0


def latest_writer(port):
    n, p, i = Nats(port, "latest"), Pacer(100), 0
    while not stop_load.is_set():
        k = i % LATEST_KEYS
        v = b"%d:%d" % (k, Latest.puts[k])
        a = n.aq(f"$AQ.LATEST.PUT.soak.lt.k{k}", v)
        if check(a.get("ok"), f"latest put k{k}: {a}"):
            Latest.puts[k] += 1
        g = n.aq(f"$AQ.LATEST.GET.soak.lt.k{k}")
        check(g.get("ok") and base64.b64decode(g["data"]) == v, f"latest get k{k}: {g}, put {v}")
        i += 1
        ops.add("nats latest", 2)
        p.tick()
    n.close()


def latest_watcher(port, ready):
    n = Nats(port, "watch")
    n.send(b"SUB $AQ.LATEST.WATCH.soak.lt.> 1\r\n")
    n.flush()
    ready.set()

    def on_msg(ev):
        k, _, v = ev[4].partition(b":")
        k, v = int(k), int(v)
        if ev[1] != f"$AQ.LATEST.WATCH.soak.lt.k{k}" or v != Latest.seen[k]:
            Latest.watch_bad += 1
            problem(f"latest watch: {ev[1]} {ev[4]!r}, want value {Latest.seen[k]} of k{k}")
        Latest.seen[k] = max(Latest.seen[k], v + 1)

    while not publishers_done.is_set():
        ev = n.event(0.2)
        if ev is not None and ev[0] == "MSG":
            on_msg(ev)
    n.flush(on_msg)
    n.close()


class Logs:
    cycles = 0
    appended = 0


def log_cycler(port):
    """Logs made, filled, read back by a group and destroyed, one after
    another (a log keeps what it holds: one forever would grow)."""
    n, p = Nats(port, "log"), Pacer(200)
    while not stop_load.is_set():
        name = f"soak.log.{Logs.cycles}"
        a = n.aq("$AQ.LOG.CREATE", {"name": name})
        check(a.get("ok"), f"log create {name}: {a}")
        for i in range(48):
            a = n.aq("$AQ.LOG.APPEND." + name, b"e%d" % i)
            check(a.get("ok") and a.get("offset") == i, f"append {name} #{i}: {a}")
            p.tick()
        nxt = 0
        while nxt < 48:
            a = n.aq("$AQ.LOG.READ." + name, {"group": "g", "max": 16})
            msgs = a.get("messages") or []
            if not check(a.get("ok") and msgs, f"read {name} at {nxt}: {a}"):
                break
            for m in msgs:
                check(m["offset"] == nxt and base64.b64decode(m["data"]) == b"e%d" % nxt,
                      f"read {name}: {m}, want offset {nxt}")
                nxt += 1
            a = n.aq("$AQ.LOG.COMMIT." + name, {"group": "g", "offset": nxt})
            check(a.get("ok"), f"commit {name} {nxt}: {a}")
        a = n.aq("$AQ.LOG.READ." + name, {"group": "g", "max": 16})
        check(a.get("ok") and a["messages"] == [], f"read {name} past the end: {a}")
        a = n.aq("$AQ.LOG.READ." + name, {"offset": 0, "max": 64})
        check(a.get("ok") and len(a["messages"]) == 48, f"reads removed entries of {name}")
        a = n.aq("$AQ.LOG.DESTROY." + name)
        check(a.get("ok"), f"log destroy {name}: {a}")
        Logs.cycles += 1
        Logs.appended += 48
        ops.add("nats log", 48 + 3 + 3 + 3)
    n.close()


# ---- churn -------------------------------------------------------------------

class Churn:
    nats_mbox = nats_chan = nats_ttl = nats_conns = 0
    udp_sessions = udp_mbox = 0
    provoked_nats = provoked_crc = 0


def nats_churn(port):
    n, p, i = Nats(port, "churn"), Pacer(40), 0
    while not stop_load.is_set():
        if i % 50 == 49:  # a new connection now and then
            n.close()
            n = Nats(port, "churn")
            Churn.nats_conns += 1
        body = {"name": f"soak.nch.{i}"} if i % 2 == 0 else {}
        a = n.aq("$AQ.MAILBOX.CREATE", body)
        if check(a.get("ok"), f"churn create {body}: {a}"):
            name = a["name"]
            for m in (b"one", b"two"):
                check(n.aq("$AQ.MAILBOX.SEND." + name, m).get("ok"), f"churn send {name}")
            f = n.aq("$AQ.MAILBOX.FETCH." + name, {"batch": 1})
            msgs = f.get("messages") or [{}]
            check(base64.b64decode(msgs[0].get("data", "")) == b"one", f"churn fetch {name}: {f}")
            check(n.aq("$AQ.MAILBOX.ACK." + name, {"seq": msgs[0].get("seq")}).get("ok"),
                  f"churn ack {name}")
            check(n.aq("$AQ.MAILBOX.DESTROY." + name).get("ok"), f"churn destroy {name}")
            a = n.aq("$AQ.MAILBOX.SEND." + name, b"late")
            check(a.get("error") == "NOT_FOUND", f"send to destroyed {name}: {a}")
            Churn.nats_mbox += 1
        if i % 4 == 0:
            nats_channel(n)
        if i % 8 == 0:  # left to its TTL
            a = n.aq("$AQ.MAILBOX.CREATE", {"name": f"soak.ttl.{i}", "ttl_ms": 300})
            check(a.get("ok"), f"ttl create: {a}")
            check(n.aq(f"$AQ.MAILBOX.SEND.soak.ttl.{i}", b"x").get("ok"), "ttl send")
            Churn.nats_ttl += 1
        i += 1
        ops.add("nats churn", 7)
        p.tick()
    n.close()


def nats_channel(n):
    a = n.aq("$AQ.CHANNEL.OPEN", {})
    if not check(a.get("ok"), f"channel open: {a}"):
        return
    ch = a["name"]
    for end, data in ((0, b"a2b"), (1, b"b2a")):
        check(n.aq(f"$AQ.CHANNEL.SEND.{ch}.{end}", data).get("ok"), f"channel send {ch}")
        f = n.aq(f"$AQ.CHANNEL.FETCH.{ch}.{1 - end}", {"batch": 4})
        got = [base64.b64decode(m["data"]) for m in f.get("messages", [])]
        check(got == [data], f"channel {ch} end {1 - end} fetched {got}")
    check(n.aq(f"$AQ.CHANNEL.CLOSE.{ch}").get("ok"), f"channel close {ch}")
    a = n.aq(f"$AQ.CHANNEL.CLOSE.{ch}")
    check(a.get("error") == "NOT_FOUND", f"second close of {ch}: {a}")
    Churn.nats_chan += 1


def udp_churn(uport):
    """A session per pass: a mailbox made, used and destroyed in it; every
    few passes also a subscription left for the close to end, and a frame
    with a bad CRC (provoked: udp_bad_crc)."""
    p, i, last_crc = Pacer(20), 0, time.monotonic()
    while not stop_load.is_set():
        s = Udp(uport)
        name = f"soak.uch.{i}" if i % 2 == 0 else ""
        st, _, h, _ = s.create(name)
        if check(st == 0 and h != 0, f"udp churn create {name!r}: {st}"):
            for m in (b"one", b"two"):
                a, _ = s.call(Frame(OP["SEND"], handle=h, payload=m))
                check(a.status()[0] == 0, f"udp churn send: {a.status()}")
            msgs = s.fetch(h, 1)
            check([m[1] for m in msgs] == [b"one"], f"udp churn fetch: {msgs}")
            for seq, _ in msgs:
                check(s.ack(h, seq) == 0, "udp churn ack")
            a, _ = s.call(Frame(OP["DESTROY"], handle=h))
            check(a.status()[0] == 0, f"udp churn destroy: {a.status()}")
            Churn.udp_mbox += 1
        if i % 3 == 0:
            a, _ = s.call(Frame(OP["SUB"], handle=1, subject=b"soak.uch.sub.>"))
            check(a.status()[0] == 0, f"udp churn SUB: {a.status()}")
        if time.monotonic() - last_crc > PROVOKE_EVERY_S:
            f = Frame(OP["SEND"], handle=h, payload=b"evil", seq=s.next_seq())
            s.raw(struct.pack("<Q", s.session) + f.encode(s.session, corrupt=True))
            Churn.provoked_crc += 1
            last_crc = time.monotonic()
        check(s.bye() == 0, "udp churn: session close")
        Churn.udp_sessions += 1
        i += 1
        ops.add("udp churn", 8)
        p.tick()


def nats_provoker(port):
    """A connection that sends garbage now and then: -ERR, closed, and
    nats_protocol_errors moves by one each time."""
    while not stop_load.wait(PROVOKE_EVERY_S):
        n = Nats(port, "garbage")
        n.send(b"GARBAGE\r\n")
        ev = n.event(5)
        check(ev is not None and ev[0] == "ERR" and "Unknown Protocol Operation" in ev[1],
              f"garbage answered {ev}")
        n.close()
        Churn.provoked_nats += 1


# ---- the server's side -----------------------------------------------------------

def http_json(mport, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{mport}{path}", timeout=10) as r:
        return json.load(r)


def counters(mport):
    """Sums over the workers of /workers, nested keys joined by dots."""
    out = {}

    def walk(prefix, d):
        for k, v in d.items():
            if isinstance(v, dict):
                walk(prefix + k + ".", v)
            elif isinstance(v, int) and not isinstance(v, bool):
                out[prefix + k] = out.get(prefix + k, 0) + v

    for w in http_json(mport, "/workers"):
        walk("", w)
    return out


def rss_kib(pid):
    """VmRSS of pid and its parts, {"rss", "anon", "shmem"} in KiB: anon
    is the heap and stacks, shmem the pages of the arena it has touched."""
    keys = {"VmRSS:": "rss", "RssAnon:": "anon", "RssShmem:": "shmem"}
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k = keys.get(line.split(":")[0] + ":")
                if k:
                    out[k] = int(line.split()[1])
    except OSError:
        return None
    return out if "rss" in out else None


class Rss:
    """VmRSS of atomqd and atomq-dataplane, sampled every second."""

    def __init__(self, pids):
        self.pids = pids
        self.samples = []   # (t, {name: kib})

    def run(self, t0):
        while not stop_load.is_set():
            self.samples.append((time.monotonic() - t0,
                                 {k: rss_kib(p) for k, p in self.pids.items()}))
            stop_load.wait(1.0)

    def verdict(self):
        """Per process: (first, at the end of warm-up, peak after it, last)
        samples, each a dict of rss_kib(); None when there are too few."""
        out = {}
        for name in self.pids:
            series = [(t, s[name]) for t, s in self.samples if s[name] is not None]
            warm = [v for t, v in series if t <= WARMUP_S]
            after = [v for t, v in series if t > WARMUP_S]
            if not warm or not after:
                out[name] = None
                continue
            out[name] = (series[0][1], warm[-1], max(after, key=lambda v: v["rss"]), after[-1])
        return out


def entities(mport):
    return http_json(mport, "/info")["entities"]


def wait_for(cond, seconds):
    deadline = time.monotonic() + seconds
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.1)
    return cond()


def thread(target, *args, name=None):
    def run():
        try:
            target(*args)
        except Exception as e:  # every failure of a load thread is a finding
            problem(f"{name or target.__name__}: {type(e).__name__}: {e}\n"
                    f"{traceback.format_exc()}")
            stop_load.set()
    t = threading.Thread(target=run, name=name or target.__name__, daemon=True)
    t.start()
    return t


def dataplane_pid(srv):
    kids = open(f"/proc/{srv.proc.pid}/task/{srv.proc.pid}/children").read().split()
    return int(kids[0]) if kids else None


def agent_line(agent, want, timeout):
    """The agent's next line starting with want, as a dict of its fields."""
    deadline = time.monotonic() + timeout
    agent.stdout_lines = getattr(agent, "stdout_lines", [])
    while time.monotonic() < deadline:
        line = agent.stdout.readline()
        if not line:
            raise EOFError(f"the agent ended (status {agent.poll()}) before '{want}'")
        if line.startswith(want):
            return dict(kv.split("=", 1) for kv in line.split()[1:])
    raise TimeoutError(f"no '{want}' from the agent")


# ---- the run ----------------------------------------------------------------------

def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    atomqd, agent_exe = sys.argv[1], sys.argv[2]
    uport, mport = free_port(), free_port()
    srv = Atomqd(atomqd, workers=2, extra=[
        "--udp", f"127.0.0.1:{uport}", "--metrics", f"127.0.0.1:{mport}",
        "--max-agents", "4", "--agent-ring-size", "1M", "--ack-wait-ms", str(ACK_WAIT_MS),
        "--ping-interval-ms", str(PING_INTERVAL_MS)])
    agent = None
    try:
        deadline = time.monotonic() + 10
        while "datagrams on udp" not in srv.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        if not srv.ok or "datagrams on udp" not in srv.log():
            problem("atomqd did not start serving")
            return finish(srv, agent)
        agent = run_soak(srv, uport, mport, agent_exe)
    except Exception as e:
        problem(f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
    return finish(srv, agent)


def finish(srv, agent):
    if agent is not None and agent.poll() is None:
        agent.kill()
        agent.wait()
    if problems:
        print("--- atomqd log ---")
        print(srv.log())
    srv.stop()
    if problems:
        print(f"FAIL: {len(problems)} problem(s); the first: {problems[0]}")
        return 1
    print("PASS: soak_test")
    return 0


def run_soak(srv, uport, mport, agent_exe):
    port = srv.port
    dp_pid = dataplane_pid(srv)
    base_entities = entities(mport)
    admin = Nats(port, "admin")
    boxes = {k: Mailbox("soak.mb." + k) for k in ("nn", "dd", "nu", "un", "aa", "an", "na", "ua")}
    for k, box in boxes.items():
        body = {"name": box.name, "storage": "disk"} if k == "dd" else {"name": box.name}
        a = admin.aq("$AQ.MAILBOX.CREATE", body)
        check(a.get("ok"), f"create {box.name}: {a}")
    # The datagram consumer fetches by handle: a send by name answers
    # with it; the probe is taken back out before the producer starts.
    setup = Udp(uport)
    st, _, h_nu, _ = setup.send_to(boxes["nu"].name, b"probe")
    check(st == 0 and h_nu != 0, f"probe of soak.mb.nu: {st}")
    msgs = setup.fetch(h_nu, 1)
    for seq, _ in msgs:
        check(setup.ack(h_nu, seq) == 0, "probe ack")
    check([m[1] for m in msgs] == [b"probe"], f"probe of soak.mb.nu: {msgs}")
    check(setup.bye() == 0, "setup session close")
    admin.close()  # it would sit unread for the run: a new one at the end
    base_counters = counters(mport)

    # Receivers first: everything published from now on must reach them.
    subs = {n: Subscriber(n) for n in ("nats-all", "nats-star", "queue-1", "queue-2")}
    us = UdpSub()
    readies, receivers = [], []
    for name, pattern, queue in (("nats-all", "soak.bc.>", None), ("nats-star", "soak.bc.*", None),
                                 ("queue-1", "soak.bc.nats", "qg"),
                                 ("queue-2", "soak.bc.nats", "qg")):
        ev = threading.Event()
        receivers.append(thread(nats_subscriber, port, subs[name], pattern, queue, ev, name=name))
        readies.append(ev)
    for target, args in ((udp_subscriber, (uport, port, us)), (nats_responder, (port,)),
                         (latest_watcher, (port,))):
        ev = threading.Event()
        receivers.append(thread(target, *args, ev))
        readies.append(ev)
    for ev in readies:
        if not ev.wait(10):
            raise TimeoutError("a receiver did not get ready")
    agent = subprocess.Popen([agent_exe, os.path.join(srv.tmp, "ctl.sock")],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
    agent_line(agent, "ready", 10)

    t0 = time.monotonic()
    rss = Rss({"atomqd": srv.proc.pid, "dataplane": dp_pid})
    rss_thread = threading.Thread(target=rss.run, args=(t0,), daemon=True)
    rss_thread.start()
    load = [
        thread(nats_publisher, port), thread(udp_publisher, uport),
        thread(nats_requester, port, "nats", name="req-nats"),
        thread(nats_requester, port, "agent", name="req-agent"),
        thread(udp_requester, uport),
        thread(nats_mbox_producer, port, boxes["nn"], name="prod-nn"),
        thread(nats_mbox_producer, port, boxes["dd"], name="prod-dd"),
        thread(nats_mbox_producer, port, boxes["nu"], name="prod-nu"),
        thread(nats_mbox_producer, port, boxes["na"], name="prod-na"),
        thread(udp_mbox_producer, uport, boxes["un"], name="prod-un"),
        thread(udp_mbox_producer, uport, boxes["ua"], name="prod-ua"),
        thread(latest_writer, port), thread(log_cycler, port),
        thread(nats_churn, port), thread(udp_churn, uport), thread(nats_provoker, port),
    ]
    consumers = [
        thread(nats_mbox_consumer, port, boxes["nn"], name="cons-nn"),
        thread(nats_mbox_consumer, port, boxes["dd"], name="cons-dd"),
        thread(nats_mbox_consumer, port, boxes["un"], name="cons-un"),
        thread(nats_mbox_consumer, port, boxes["an"], name="cons-an"),
        thread(udp_mbox_consumer, uport, boxes["nu"], h_nu, name="cons-nu"),
    ]
    print(f"soak: {SOAK_SECONDS:.0f} s of load (SOAK_RATE {RATE}), warm-up {WARMUP_S:.0f} s",
          flush=True)
    end = t0 + SOAK_SECONDS
    while time.monotonic() < end and not stop_load.is_set():
        time.sleep(min(1.0, max(0.0, end - time.monotonic())))
        if not srv.alive() or agent.poll() is not None:
            problem(f"atomqd alive {srv.alive()}, agent status {agent.poll()}")
            break
    load_s = time.monotonic() - t0
    stop_load.set()
    for t in load:
        t.join(60)
        check(not t.is_alive(), f"{t.name} did not stop")
    agent.stdin.write("stop\n")
    stopped = agent_line(agent, "stopped", 30)
    Published.counts["A"] = int(stopped["pub"])
    boxes["aa"].final = int(stopped["aa"])
    boxes["an"].final = int(stopped["an"])
    publishers_done.set()
    agent.stdin.write("drain\n")
    for t in receivers + consumers:
        t.join(ACK_WAIT_MS / 1000 + 30)
        check(not t.is_alive(), f"{t.name} did not finish")
    report = agent_line(agent, "report", 60)
    check(agent.wait(10) == 0, f"the agent exited {agent.returncode}")
    rss_thread.join(5)

    guard(check_mailboxes, boxes, report)
    guard(check_broadcast, subs, us, report)
    guard(check_rest, report)
    after = counters(mport)
    guard(check_counters, base_counters, after)
    guard(check_server, srv, mport, dp_pid, boxes, base_entities)
    guard(summary, load_s, rss, base_counters, after, boxes, report)
    return agent


def guard(check_fn, *args):
    """Runs a group of checks; an exception in one is a problem, and the
    other groups (the summary above all) still run."""
    try:
        check_fn(*args)
    except Exception as e:
        problem(f"{check_fn.__name__}: {type(e).__name__}: {e}\n{traceback.format_exc()}")


def check_mailboxes(boxes, report):
    for k in ("aa", "na", "ua"):  # consumed by the agent
        box = boxes[k]
        box.got = int(report[f"{k}_got"])
        box.dups = int(report[f"{k}_dups"])
        box.redelivered = int(report[f"{k}_redelivered"])
        contiguous = int(report[f"{k}_contiguous"])
        check(box.got == box.final == contiguous and box.dups == 0,
              f"{box.name}: sent {box.final}, agent fetched {box.got} ({contiguous} in a row, "
              f"{box.dups} copies)")
    for box in boxes.values():
        if box.name[-2:] in ("aa", "na", "ua"):
            continue
        missing = [i for i in range(box.final or 0) if i >= len(box.seen) or not box.seen[i]]
        extra = sum(box.seen[box.final:]) if box.final is not None else 0
        check(not missing and extra == 0 and box.dups == 0,
              f"{box.name}: sent {box.final}, fetched {box.got}, missing {missing[:10]} "
              f"({len(missing)}), beyond the sends {extra}, copies {box.dups}")
    for box in boxes.values():
        check(box.redelivered == 0, f"{box.name}: {box.redelivered} redeliveries")


def check_broadcast(subs, us, report):
    pub = Published.counts
    agent = Subscriber("agent")
    for src in "NUA":
        st = agent.streams[src]
        st.got, st.next = int(report[f"bc_{src}_got"]), int(report[f"bc_{src}_next"])
        st.reorder, st.sum = int(report[f"bc_{src}_reorder"]), int(report[f"bc_{src}_sum"])
    check(int(report["dropped"]) == 0, f"agent delivery ring dropped {report['dropped']}")
    # Lossless streams: every NATS and agent publish, to every plain
    # subscriber (nats-star: soak.bc.* matches the three subjects too).
    for sub in (subs["nats-all"], subs["nats-star"], agent):
        for src in "NA":
            st = sub.streams[src]
            check(st.complete(pub[src]), f"{sub.name} from {src}: got {st.got} (next {st.next}, "
                  f"{st.reorder} out of order) of {pub[src]} published")
    # Datagram publishes: at most once into the server, then no loss to
    # TCP and agent subscribers: they all saw the same set, in order.
    ref = subs["nats-all"].streams["U"]
    check(ref.got <= pub["U"] and ref.next <= pub["U"] and ref.reorder == 0,
          f"nats-all from U: {ref.got} of {pub['U']}, next {ref.next}, {ref.reorder} reordered")
    for sub in (subs["nats-star"], agent):
        st = sub.streams["U"]
        check((st.got, st.sum, st.reorder) == (ref.got, ref.sum, 0),
              f"{sub.name} from U: {st.got} (sum {st.sum}, {st.reorder} reordered), nats-all "
              f"{ref.got} (sum {ref.sum})")
    # The queue group: each NATS publish to exactly one member.
    q1, q2 = subs["queue-1"].streams["N"], subs["queue-2"].streams["N"]
    s, sq = stream_sums(pub["N"])
    check(q1.got + q2.got == pub["N"] and q1.sum + q2.sum == s and q1.sumsq + q2.sumsq == sq
          and q1.reorder == q2.reorder == 0,
          f"queue group: {q1.got} + {q2.got} of {pub['N']}")
    check(q1.got > 0 and q2.got > 0, f"queue group: one member got none ({q1.got}, {q2.got})")
    # The datagram subscriber: at most once, in order; its delivery
    # counter counted every message routed to it (the fence's seq).
    routed = pub["N"] + pub["A"] + ref.got + Published.fences
    for src in "NUA":
        st = us.sub.streams[src]
        check(st.reorder == 0, f"udp-sub from {src}: {st.reorder} copies or out of order")
    check(us.fence_seq == routed, f"udp-sub: the last fence was delivery {us.fence_seq}, "
          f"{routed} were routed to the session")
    us.lost = routed - us.seqs
    check(us.gaps + (routed - (us.fence_seq or 0)) == us.lost,
          f"udp-sub: {us.lost} lost, {us.gaps} gaps in the delivery counter")


def check_rest(report):
    for k in range(LATEST_KEYS):
        check(Latest.seen[k] == Latest.puts[k],
              f"latest watcher: k{k} saw up to {Latest.seen[k]} of {Latest.puts[k]} puts")
    check(Latest.watch_bad == 0, f"latest watcher: {Latest.watch_bad} wrong values")
    # A datagram request copy that arrives after its answer runs again
    # (docs/protocol.md): the NATS responder may see more, never fewer.
    check(int(report["replies"]) == Requests.sent["agent"] > 0,
          f"the agent answered {report['replies']} of {Requests.sent['agent']} requests")
    check(Requests.responder >= Requests.sent["nats"] + Requests.sent["udp"] > 0,
          f"the NATS responder answered {Requests.responder} of {Requests.sent}")


def check_counters(before, after):
    for name in ERROR_COUNTERS:
        d = after.get(name, 0) - before.get(name, 0)
        if name == "nats_protocol_errors":
            check(d == Churn.provoked_nats, f"{name} moved by {d}, {Churn.provoked_nats} provoked")
        elif name == "udp_bad_crc":
            check(d == Churn.provoked_crc, f"{name} moved by {d}, {Churn.provoked_crc} provoked")
        else:
            check(d == 0, f"error counter {name} moved by {d}")
    check(Churn.provoked_nats > 0 and Churn.provoked_crc > 0, "nothing was provoked")


def check_server(srv, mport, dp_pid, boxes, base_entities):
    info = http_json(mport, "/info")
    check(info["dataplane_restarts"] == 0 and info["dataplane_pid"] == dp_pid,
          f"the dataplane was restarted: {info['dataplane_restarts']}, pid {info['dataplane_pid']}")
    # Churned entities are gone (TTL mailboxes within their 300 ms); the
    # long-lived mailboxes and latest keys remain, then go too.
    kept = len(boxes) + LATEST_KEYS
    # Drained and every fetch acked: nothing queued or in flight is left
    # (a message fetched once and never acked would hide here until its
    # redelivery, after the drain).
    doc = http_json(mport, "/entities?prefix=soak.mb.&limit=100")
    rows = doc["entities"] if isinstance(doc, dict) else doc
    check(len(rows) == len(boxes), f"/entities has {len(rows)} of the {len(boxes)} mailboxes")
    for row in rows:
        check(row["msgs"] == 0 and row["bytes"] == 0,
              f"{row['name']} still holds {row['msgs']} messages ({row['bytes']} bytes)")
    check(wait_for(lambda: entities(mport) == base_entities + kept, 5),
          f"entities after the churn: {entities(mport)}, want {base_entities} + {kept}")
    admin = Nats(srv.port, "admin")
    for name in [b.name for b in boxes.values()] + [f"soak.lt.k{k}" for k in range(LATEST_KEYS)]:
        check(admin.aq("$AQ.MAILBOX.DESTROY." + name).get("ok"), f"destroy {name}")
    check(wait_for(lambda: entities(mport) == base_entities, 5),
          f"entities at the end: {entities(mport)}, before the soak {base_entities}")
    c = counters(mport)
    check(c["udp_sessions_opened"] == c["udp_sessions_closed"],
          f"udp sessions: {c['udp_sessions_opened']} opened, {c['udp_sessions_closed']} closed")
    admin.close()
    check(wait_for(lambda: (lambda c: c["nats_conns_opened"] - c["nats_conns_closed"])(
        counters(mport)) == 0, 5), "NATS connections left open")
    left = srv.control("show entities soak. limit=20")
    check(not any("soak." in line for line in left), f"entities left: {left}")


def summary(load_s, rss, before, after, boxes, report):
    print(f"\nsoak summary: {load_s:.1f} s of load, 2 workers")
    for mode, n in sorted(ops.n.items()):
        print(f"  {mode:18s} {n:9d} ops  {n / load_s:8.0f}/s")
    agent_ops = (Published.counts["A"] + boxes["aa"].final + boxes["an"].final
                 + boxes["aa"].got + boxes["na"].got + boxes["ua"].got)
    print(f"  {'agent':18s} {agent_ops:9d} ops  {agent_ops / load_s:8.0f}/s "
          f"(publishes, sends, fetches; +{report['churn_mbox']} mailboxes, "
          f"{report['churn_chan']} channels churned, {report['replies']} replies)")
    print(f"  published: {Published.counts}; mailboxes: "
          + ", ".join(f"{b.name[8:]} {b.final}" for b in boxes.values()))
    print(f"  churn: nats {Churn.nats_mbox} mailboxes, {Churn.nats_chan} channels, "
          f"{Churn.nats_ttl} TTL mailboxes, {Churn.nats_conns} reconnects; udp "
          f"{Churn.udp_sessions} sessions, {Churn.udp_mbox} mailboxes; logs {Logs.cycles}")
    print(f"  provoked: {Churn.provoked_nats} NATS protocol errors, {Churn.provoked_crc} bad CRCs")
    print("  reported: " + ", ".join(f"{k} {after.get(k, 0) - before.get(k, 0)}"
                                     for k in REPORTED_COUNTERS))
    for name, v in rss.verdict().items():
        if v is None:
            check(False, f"{name}: too few RSS samples")
            continue
        first, base, peak, last = v
        growth = (peak["rss"] - base["rss"]) / base["rss"] * 100

        def part(d):
            return f"{d['rss']} KiB (anon {d.get('anon')}, shmem {d.get('shmem')})"
        print(f"  rss {name}: start {part(first)}; after warm-up {part(base)}; peak after "
              f"{part(peak)}, {growth:+.2f}%; end {part(last)}")
        check(not RSS_CHECKED or peak["rss"] <= base["rss"] * (1 + RSS_GROWTH_MAX) + RSS_SLACK_KIB,
              f"{name} RSS grew from {base['rss']} to {peak['rss']} KiB after warm-up")


if __name__ == "__main__":
    sys.exit(main())
