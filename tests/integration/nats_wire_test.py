#!/usr/bin/env python3
"""nats_wire_test.py - the NATS protocol on the wire, byte for byte.

Starts atomqd (real binaries: atomqd and atomq-dataplane) with --nats on a
free loopback port in a temporary directory and, when Debian's nats-server
is installed, nats-server on another: the reference peer. Each check below
runs a raw-socket conversation against atomqd; the deterministic ones run
against nats-server too and the two transcripts must be identical (INFO
aside), so "what would nats-server answer" is asked, not guessed.

Checks: PING/PONG, lower-case ops and tabs, an operation split at every
byte, verbose +OK, reply subjects, headers (HPUB/HMSG), no-responders 503,
UNSUB with max, echo off, queue groups, every protocol error (unknown op,
payload above max_payload, endless control line, bad sizes, garbage) with
the connection closed after the -ERR, invalid subjects with the connection
kept, 10,000 connections opened and dropped (200 left half-open), a client that never reads (cut
off as a slow consumer while others are served).

    python3 tests/integration/nats_wire_test.py build/control/atomqd
"""
import json
import random
import socket
import sys
import time

import natsenv


fail = natsenv.fail


class Conn:
    """A raw client: send bytes, read what comes back within a short time."""

    def __init__(self, port, connect=None, read_info=True):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = b""
        self.info = None
        if read_info:
            line = self.line()
            assert line.startswith(b"INFO "), line
            self.info = json.loads(line[5:])
        if connect is not None:
            self.send(b"CONNECT " + json.dumps(connect).encode() + b"\r\n")

    def send(self, data):
        self.s.sendall(data)

    def line(self, timeout=5):
        deadline = time.monotonic() + timeout
        while b"\r\n" not in self.buf:
            self.s.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError(f"closed; had {self.buf!r}")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def drain(self, quiet=0.3):
        """Everything that arrives until the line is quiet; closed: b'<EOF>'."""
        out = self.buf
        self.buf = b""
        self.s.settimeout(quiet)
        while True:
            try:
                chunk = self.s.recv(65536)
            except socket.timeout:
                return out
            except ConnectionResetError:
                return out + b"<EOF>"
            if not chunk:
                return out + b"<EOF>"
            out += chunk

    def sync(self):
        """PING and read up to the PONG: everything before it was handled."""
        self.send(b"PING\r\n")
        got = []
        while True:
            line = self.line()
            if line == b"PONG":
                return got
            got.append(line)

    def close(self):
        self.s.close()


# --- conversations: each returns a transcript (bytes) -----------------------

def conv(data, connect=None, quiet=0.3):
    """A conversation: CONNECT (verbose off unless said), data, what comes back."""
    opts = {"verbose": False, **(connect or {})}

    def run(port):
        c = Conn(port, opts)
        c.send(data)
        return c.drain(quiet=quiet)
    return run


def bare(data, quiet=0.5):
    """A conversation without CONNECT: data as the first bytes."""
    def run(port):
        c = Conn(port)
        c.send(data)
        return c.drain(quiet=quiet)
    return run


def connect_with(creds, then=b"PING\r\n"):
    return bare(b"CONNECT " + json.dumps({"verbose": False, **creds}).encode() + b"\r\n" + then)


AUTH_TOKEN = [
    ("token-ping-first", bare(b"PING\r\n")),
    ("token-sub-first", bare(b"SUB a 1\r\n")),
    ("token-missing", connect_with({})),
    ("token-wrong", connect_with({"auth_token": "s3crex"})),
    ("token-longer", connect_with({"auth_token": "s3cret!"})),
    ("token-right", connect_with({"auth_token": "s3cret"},
                                 b"SUB t 1\r\nPUB t 2\r\nok\r\nPING\r\n")),
    ("token-as-user", connect_with({"user": "s3cret", "pass": "s3cret"})),
]

AUTH_USER = [
    ("user-ping-first", bare(b"PING\r\n")),
    ("user-wrong-pass", connect_with({"user": "bob", "pass": "no"})),
    ("user-wrong-user", connect_with({"user": "bobby", "pass": "pw"})),
    ("user-as-token", connect_with({"auth_token": "pw"})),
    ("user-right", connect_with({"user": "bob", "pass": "pw"})),
]


def check_auth(atomqd):
    """Credentials as nats-server asks for them, transcript for transcript,
    and the INFO flag that tells clients to send them."""
    for flags, ref_flags, convs in ((["--nats-token", "s3cret"], ["--auth", "s3cret"], AUTH_TOKEN),
                                    (["--nats-user", "bob", "--nats-pass", "pw"],
                                     ["--user", "bob", "--pass", "pw"], AUTH_USER)):
        server = natsenv.Atomqd(atomqd, flags)
        ref = None
        try:
            if not server.ok:
                fail(f"atomqd {flags} does not listen", server)
            info = Conn(server.port).info
            if info.get("auth_required") is not True:
                raise AssertionError(f"INFO lacks auth_required: {info}")
            ref, ref_port = natsenv.nats_server(ref_flags)
            for name, run in convs:
                got = run(server.port)
                ok = got.startswith(b"PONG") or got.startswith(b"MSG")
                if name.endswith("-right") != ok:
                    raise AssertionError(f"{name}: atomqd said {got!r}")
                if not ok and got != b"-ERR 'Authorization Violation'\r\n<EOF>":
                    raise AssertionError(f"{name}: atomqd said {got!r}")
                if ref is not None and run(ref_port) != got:
                    raise AssertionError(f"{name}: atomqd said {got!r}, nats-server said "
                                         f"{run(ref_port)!r}")
                print(f"ok {name}")
        finally:
            server.stop()
            if ref is not None:
                natsenv.stop(ref)


def check_stale(atomqd):
    """Server PINGs: a client that answers stays; one that does not gets
    two PINGs, then 'Stale Connection', then the close."""
    server = natsenv.Atomqd(atomqd, ["--ping-interval-ms", "100"])
    try:
        if not server.ok:
            fail("atomqd --ping-interval-ms 100 does not listen", server)
        quiet = Conn(server.port, {"verbose": False})
        alive = Conn(server.port, {"verbose": False})
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            try:
                if alive.line(timeout=0.05) == b"PING":
                    alive.send(b"PONG\r\n")
            except socket.timeout:
                pass
        got = quiet.drain(quiet=0.5)
        if got != b"PING\r\nPING\r\n-ERR 'Stale Connection'\r\n<EOF>":
            raise AssertionError(f"a client that never answers PING: {got!r}")
        # Still served after 1.5 s (15 intervals): its own message comes back.
        alive.send(b"SUB st 1\r\nPUB st 2\r\nok\r\n")
        lines = []
        while len(lines) < 2:
            line = alive.line(timeout=2)
            if line == b"PING":
                alive.send(b"PONG\r\n")
            else:
                lines.append(line)
        if lines != [b"MSG st 1 2", b"ok"]:
            raise AssertionError(f"a client that answers PING: {lines!r}")
        print("ok stale-connection")
    finally:
        server.stop()


def conv_split_every_byte(port):
    c = Conn(port, {"verbose": False})
    msg = b"SUB split.x 7\r\nPUB split.x 5\r\nhello\r\nPUB split.x 0\r\n\r\nPING\r\n"
    for i in range(len(msg)):
        c.send(msg[i:i + 1])
        time.sleep(0.001)
    return c.drain()


HDR = b"NATS/1.0\r\nA: B\r\n\r\n"


def conv_echo_off(port):
    a = Conn(port, {"verbose": False, "echo": False})
    b = Conn(port, {"verbose": False})
    a.send(b"SUB echo.t 1\r\n")
    b.send(b"SUB echo.t 2\r\n")
    a.sync()
    b.sync()
    a.send(b"PUB echo.t 2\r\nme\r\nPING\r\n")
    got_a = a.drain()
    b.send(b"PING\r\n")
    return got_a + b"|" + b.drain()


DETERMINISTIC = [
    ("pub-empty-token", conv(b"PUB foo..bar 1\r\nx\r\nPUB .a 1\r\nx\r\nPING\r\n")),
    ("pub-wildcard", conv(b"PUB a.* 1\r\nx\r\nPUB a.> 1\r\nx\r\nPING\r\n")),
    ("sub-bad-gt", conv(b"SUB foo.>.bar 1\r\nPING\r\n")),
    ("duplicate-sid", conv(b"SUB x 1\r\nSUB x 1\r\nPUB x 1\r\ny\r\nPING\r\n")),
    ("unsub-unknown", conv(b"UNSUB 99\r\nPING\r\n")),
    ("spaces-between", conv(b"SUB  sp.a \t 1\r\nPUB sp.a  1\r\nx\r\nPING\r\n")),
    ("binary-payload", conv(b"SUB bin 1\r\nPUB bin 6\r\n\x00\r\n\xff\x01\r\r\nPING\r\n")),
    ("ping", conv(b"PING\r\n")),
    ("lowercase-tabs", conv(b"sub\tlow.case\t 1\r\npub low.case  2\r\nhi\r\nping\r\n")),
    ("split-every-byte", conv_split_every_byte),
    ("verbose", conv(b"SUB v.1 1\r\nPUB v.1 3\r\nabc\r\nUNSUB 1\r\nPING\r\n",
                     {"verbose": True})),
    ("reply-subject", conv(b"SUB rq.a 1\r\nPUB rq.a _INBOX.abc.1 4\r\nping\r\nPING\r\n")),
    ("headers", conv(b"SUB h.1 1\r\nHPUB h.1 %d %d\r\n%shi\r\nPING\r\n"
                     % (len(HDR), len(HDR) + 2, HDR), {"headers": True})),
    ("no-responders", conv(b"SUB _INBOX.nr.* 9\r\nPUB nobody.here _INBOX.nr.1 2\r\nhi\r\n"
                           b"PING\r\n", {"headers": True, "no_responders": True})),
    ("unsub-max", conv(b"SUB um 5\r\nUNSUB 5 2\r\n" + b"PUB um 1\r\nx\r\n" * 4 + b"PING\r\n")),
    ("echo-off", conv_echo_off),
    ("unknown-op", conv(b"FOO bar\r\n", quiet=1.0)),
    ("max-payload", conv(b"PUB big 2000000\r\n", quiet=1.0)),
    ("bad-size", conv(b"PUB bad x1\r\n", quiet=1.0)),
    ("control-line", conv(b"PUB " + b"a" * 5000, quiet=1.0)),
    ("invalid-subject", conv(b"SUB foo..bar 1\r\nPING\r\n")),
    # Publishes in one read are parsed ahead of their handling (dp_nats.c):
    # what comes after them, an error or a SUB/UNSUB, must still act in order.
    ("pipelined-then-unknown-op", conv(b"SUB pl 1\r\n" + b"PUB pl 2\r\nab\r\n" * 40
                                       + b"FOO\r\n", quiet=1.0)),
    ("pipelined-then-max-payload", conv(b"SUB pm 1\r\n" + b"PUB pm 1\r\nx\r\n" * 17
                                        + b"PUB pm 2000000\r\n", quiet=1.0)),
    ("pipelined-sub-unsub-between", conv(b"SUB pa 1\r\nPUB pa 1\r\nx\r\nUNSUB 1\r\n"
                                         + b"PUB pa 1\r\ny\r\n" * 20 + b"SUB pa 2\r\n"
                                         + b"PUB pa 1\r\nz\r\nPING\r\n")),
]

# atomq's own answers on $AQ (no reference: nats-server has no $AQ). Bodies
# in the shapes the fast path reads and the ones it leaves to the parser.
def aq(subject, body):
    return b"PUB %s _R.1 %d\r\n%s\r\n" % (subject, len(body), body)


def ans(text):
    """An answer as it arrives on the reply subject _R.1 (sid 1)."""
    return b"MSG _R.1 1 %d\r\n%s\r\n" % (len(text), text)


# Creates and destroys of the same names pipelined in one send, more of
# them than are parsed ahead (DP_NATS_AHEAD): each acts in order.
PIPE_NAMES = [b"pipe.%d" % i for i in range(40)]

AQ_CONVS = [
    ("aq-pipelined-create-destroy",
     conv(b"SUB _R.* 1\r\n"
          + b"".join(aq(b"$AQ.MAILBOX.CREATE", b'{"name":"%s"}' % n) for n in PIPE_NAMES)
          + b"".join(aq(b"$AQ.MAILBOX.DESTROY." + n, b"") for n in PIPE_NAMES)
          + aq(b"$AQ.MAILBOX.DESTROY.pipe.0", b"")
          + b"PING\r\n"),
     b"".join(ans(b'{"ok":true,"name":"%s","mode":"mailbox"}' % n) for n in PIPE_NAMES)
     + b"".join(ans(b'{"ok":true}') for n in PIPE_NAMES)
     + ans(b'{"ok":false,"error":"NOT_FOUND","message":"pipe.0: No such file or directory"}')
     + b"PONG\r\n"),
    ("aq-create-shapes", conv(b"SUB _R.* 1\r\n"
                              + aq(b"$AQ.MAILBOX.CREATE", b'{"name":"w.a"}')
                              + aq(b"$AQ.MAILBOX.CREATE", b' { "name" : "w.b" } ')
                              + aq(b"$AQ.MAILBOX.CREATE", b'{"name":"w.\\"c"}')
                              + aq(b"$AQ.MAILBOX.CREATE", b'{"name":"w.d","ttl_ms":5000}')
                              + aq(b"$AQ.MAILBOX.CREATE", b'{"name":"w.a"}')
                              + aq(b"$AQ.MAILBOX.CREATE", b'{"name":""}')
                              + aq(b"$AQ.MAILBOX.CREATE", b'{"name":"w.e"')
                              + b"PING\r\n"),
     ans(b'{"ok":true,"name":"w.a","mode":"mailbox"}')
     + ans(b'{"ok":true,"name":"w.b","mode":"mailbox"}')
     + ans(b'{"ok":true,"name":"w.\\"c","mode":"mailbox"}')
     + ans(b'{"ok":true,"name":"w.d","mode":"mailbox"}')
     + ans(b'{"ok":false,"error":"EXISTS","message":"w.a: File exists"}')
     + ans(b'{"ok":false,"error":"BAD_REQUEST","message":"name: 1 to 255 bytes"}')
     + ans(b'{"ok":false,"error":"BAD_REQUEST","message":"the body is not a JSON object"}')
     + b"PONG\r\n"),
    # Subjects and names may hold any byte; answers are JSON, so UTF-8:
    # a byte that starts no valid sequence is shown as '?' (found by
    # fuzz_aq_json: these answers were lost, or said FULL). A name in a
    # body is the JSON parser's to check, whichever path reads it.
    ("aq-not-utf8", conv(b"SUB _R.* 1\r\n"
                         + aq(b"$AQ.MAILBOX.SEND.\xbd", b"x")
                         + aq(b"$AQ.\xbd", b"")
                         + aq(b"$AQ.MAILBOX.SEND." + b"a" * 199 + b"\xc3\xa9", b"x")
                         + aq(b"$AQ.MAILBOX.CREATE", b'{"name":"caf\xe9"}')
                         + aq(b"$AQ.MAILBOX.CREATE", b'{"name":"caf\xc3\xa9"}')
                         + b"PING\r\n"),
     ans(b'{"ok":false,"error":"NOT_FOUND","message":"?: No such file or directory"}')
     + ans(b'{"ok":false,"error":"UNKNOWN_SUBJECT","message":"no $AQ request is called $AQ.?"}')
     + ans(b'{"ok":false,"error":"NOT_FOUND","message":"' + b"a" * 199
           + b'?: No such file or directory"}')
     + ans(b'{"ok":false,"error":"BAD_REQUEST","message":"the body is not a JSON object"}')
     + ans(b'{"ok":true,"name":"caf\xc3\xa9","mode":"mailbox"}')
     + b"PONG\r\n"),
    ("aq-send-fetch", conv(b"SUB _R.* 1\r\n"
                           + aq(b"$AQ.MAILBOX.CREATE", b'{"name":"sf"}')
                           + aq(b"$AQ.MAILBOX.SEND.sf", b"\x00hi\r\n")
                           + aq(b"$AQ.MAILBOX.FETCH.sf", b"")
                           + aq(b"$AQ.MAILBOX.ACK.sf", b'{"seq":0}')
                           + b"PING\r\n"),
     ans(b'{"ok":true,"name":"sf","mode":"mailbox"}')
     + ans(b'{"ok":true,"seq":0}')
     + ans(b'{"ok":true,"messages":[{"seq":0,"data":"AGhpDQo=","deliveries":1}]}')
     + ans(b'{"ok":true}')
     + b"PONG\r\n"),
]

# What atomqd must answer, whatever the reference says (also checked when
# nats-server is missing).
EXPECT = {
    "ping": b"PONG\r\n",
    "lowercase-tabs": b"MSG low.case 1 2\r\nhi\r\nPONG\r\n",
    "split-every-byte": b"MSG split.x 7 5\r\nhello\r\nMSG split.x 7 0\r\n\r\nPONG\r\n",
    "verbose": b"+OK\r\n+OK\r\n+OK\r\nMSG v.1 1 3\r\nabc\r\n+OK\r\nPONG\r\n",
    "bad-size": b"<EOF>",
    "unsub-max": b"MSG um 5 1\r\nx\r\nMSG um 5 1\r\nx\r\nPONG\r\n",
    "no-responders": b"HMSG _INBOX.nr.1 9 16 16\r\nNATS/1.0 503\r\n\r\n\r\nPONG\r\n",
    "unknown-op": b"-ERR 'Unknown Protocol Operation'\r\n<EOF>",
    "max-payload": b"-ERR 'Maximum Payload Violation'\r\n<EOF>",
    "invalid-subject": b"-ERR 'Invalid Subject'\r\nPONG\r\n",
}


def run_aq(port):
    for name, run, want in AQ_CONVS:
        got = run(port)
        if got != want:
            raise AssertionError(f"{name}: atomqd said {got!r}, want {want!r}")
        print(f"ok {name}")


def run_deterministic(port, ref_port):
    for name, conv in DETERMINISTIC:
        got = conv(port)
        if name in EXPECT and got != EXPECT[name]:
            raise AssertionError(f"{name}: atomqd said {got!r}, want {EXPECT[name]!r}")
        if ref_port is not None:
            ref = conv(ref_port)
            if got != ref:
                raise AssertionError(f"{name}: atomqd said {got!r}, nats-server said {ref!r}")
        print(f"ok {name}")


def check_info(port):
    c = Conn(port)
    info = c.info
    for key in ("server_id", "version", "max_payload", "proto", "headers"):
        if key not in info:
            raise AssertionError(f"INFO lacks {key}: {info}")
    if info["proto"] != 1 or info["headers"] is not True or info["max_payload"] != 1048576:
        raise AssertionError(f"INFO: {info}")
    print("ok info")


def check_queue_group(port):
    members = [Conn(port, {"verbose": False}) for _ in range(3)]
    for i, m in enumerate(members):
        m.send(b"SUB q.work workers %d\r\n" % (i + 1))
        m.sync()
    pub = Conn(port, {"verbose": False})
    for i in range(300):
        pub.send(b"PUB q.work 3\r\n%03d\r\n" % i)
    pub.sync()
    seen = []
    for m in members:
        data = m.drain(quiet=0.5)
        seen += [l for l in data.split(b"\r\n") if l and not l.startswith(b"MSG")]
    if sorted(seen) != sorted(b"%03d" % i for i in range(300)):
        raise AssertionError(f"queue group: {len(seen)} deliveries, want each of 300 once")
    print("ok queue-group")


def check_garbage(port):
    rnd = random.Random(7)
    for _ in range(20):
        c = Conn(port)
        c.send(bytes(rnd.randrange(256) for _ in range(512)) + b"\r\n")
        got = c.drain(quiet=1.0)
        if not got.startswith(b"-ERR") or not got.endswith(b"<EOF>"):
            raise AssertionError(f"garbage: {got[:200]!r}")
    print("ok garbage")


def expect_served(port, subject, when):
    """A fresh client still gets its own message back."""
    got = conv(b"SUB %s 1\r\nPUB %s 2\r\nok\r\nPING\r\n" % (subject, subject))(port)
    if got != b"MSG %s 1 2\r\nok\r\nPONG\r\n" % subject:
        raise AssertionError(f"{when}: {got!r}")


def check_many_conns(port, server):
    """10,000 connections opened and dropped, 200 of them half-open (a
    partial operation, then silence) and left open while others are served."""
    half = []
    rss0 = server.dataplane_rss_kib()
    for i in range(10000):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        if i % 50 == 0:
            s.sendall(b"CONNECT {\"verbose\":false}\r\nPUB half.open 100\r\npart")
            half.append(s)
        else:
            s.close()
    expect_served(port, b"after.churn", "after 10,000 connections, 200 half-open")
    for s in half:
        s.close()
    expect_served(port, b"after.half", "after the half-open ones left")
    rss1 = server.dataplane_rss_kib()
    if rss0 is None or rss1 is None:
        raise AssertionError("cannot read the dataplane's RSS")
    # Per-connection state is freed on close: the churn may not leave more
    # than the receive buffers and allocator slack behind (64 MiB).
    if rss1 - rss0 > 64 * 1024:
        raise AssertionError(f"dataplane RSS grew {rss0} -> {rss1} KiB over the churn")
    print(f"ok many-conns (dataplane RSS {rss0} -> {rss1} KiB)")


def check_slow_consumer(port):
    slow = Conn(port, {"verbose": False})
    slow.send(b"SUB slow.s 1\r\n")
    slow.sync()
    slow.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    pub = Conn(port, {"verbose": False})
    payload = b"x" * 60000
    # 20 MiB to a reader that never reads: above --max-pending (1M) plus
    # what the kernel's socket buffers hold.
    for _ in range(350):
        pub.send(b"PUB slow.s %d\r\n%s\r\n" % (len(payload), payload))
    pub.sync()
    expect_served(port, b"fine", "others while a consumer is slow")
    # The slow one was cut off: reading it to the end finds the close.
    slow.s.settimeout(5)
    total = 0
    try:
        while True:
            chunk = slow.s.recv(1 << 20)
            if not chunk:
                break
            total += len(chunk)
    except (ConnectionResetError, socket.timeout) as e:
        if isinstance(e, socket.timeout):
            raise AssertionError(f"slow consumer not cut off after {total} bytes")
    if total >= 350 * 60000:
        raise AssertionError("slow consumer got everything: no limit")
    print(f"ok slow-consumer (cut off after {total} bytes)")


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    server = natsenv.Atomqd(sys.argv[1], ["--max-pending", "1M"])
    ref, ref_port = None, None
    try:
        if not server.ok:
            fail("atomqd does not listen on its --nats port", server)
        ref, ref_port = natsenv.nats_server()
        if ref is None:
            print("note: nats-server not installed: checking atomqd's answers alone")
        port = server.port
        check_info(port)
        run_deterministic(port, ref_port)
        run_aq(port)
        check_queue_group(port)
        check_garbage(port)
        check_many_conns(port, server)
        check_slow_consumer(port)
        if not server.alive():
            fail("atomqd died", server)
        w = json.loads(server.control("json show workers")[0])["worker"][0]
        if w["nats_slow_consumers"] < 1 or w["nats_msgs_in"] < 350:
            raise AssertionError(f"the counters do not show the traffic: {w}")
        print(f"ok counters (slow consumers {w['nats_slow_consumers']}, "
              f"messages in {w['nats_msgs_in']})")
        check_auth(sys.argv[1])
        check_stale(sys.argv[1])
        print("all passed")
        return 0
    except (AssertionError, EOFError, OSError) as e:
        fail(str(e), server)
    finally:
        server.stop()
        if ref is not None:
            natsenv.stop(ref)


if __name__ == "__main__":
    sys.exit(main())
