#!/usr/bin/env python3
"""udp_test.py - atomq datagrams over the io_uring UDP backend, against the
real atomqd and dataplane on 127.0.0.1 with a kernel-socket client
(tests/integration/dgram.py) and a real NATS client side by side:

- a session opens with PING/PONG and carries the lease;
- publish/subscribe across protocols: a datagram subscriber gets a NATS
  client's publish, a NATS subscriber gets a datagram publish;
- request/reply: a datagram request answered by a NATS responder; with no
  responder it fails at once (one worker) and with a silent one it times out;
- a mailbox: create, send (a retransmitted send is stored once), fetch, ack;
- the negative space: bad CRC, truncated frames, lengths past the datagram,
  an unknown session, another peer's session id, a request older than the
  window, a sequence-less request: each dropped and counted, nothing else
  changes (the mailbox still holds exactly what was acknowledged);
- limits: --udp-sessions refuses one more with EUSERS, and a session whose
  lease runs out is ended with its subscriptions.

    udp_test.py ATOMQD [--workers N]

With more than one worker, entities live on other shards than the session
(sends and fetches cross the mesh and come back as completions), a request
with no responder times out instead of failing at once, and the session
limit (per worker) is not checked.
"""
import errno
import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dgram import Frame, Session, OP, MODE_MAILBOX  # noqa: E402
from natsenv import Atomqd, fail, free_port, stop, worker_counter  # noqa: E402


class Nats:
    """A minimal NATS text-protocol client on a socket (the wire tests use
    the same; the stock clients are exercised in nats_clients_test.py)."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.f = self.s.makefile("rb")
        self.f.readline()  # INFO
        self.s.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\nPING\r\n')
        assert self.f.readline() == b"PONG\r\n"

    def send(self, line):
        self.s.sendall(line)

    def sync(self):
        self.s.sendall(b"PING\r\n")
        while True:
            line = self.f.readline()
            if line == b"PONG\r\n":
                return
            if not line:
                raise EOFError

    def msg(self):
        """(subject, sid, reply, payload) of the next MSG."""
        while True:
            line = self.f.readline()
            if not line:
                raise EOFError
            if line.startswith(b"MSG "):
                parts = line.split()
                reply = parts[3] if len(parts) == 5 else None
                n = int(parts[-1])
                data = self.f.read(n + 2)[:n]
                return parts[1], parts[2], reply, data

    def close(self):
        self.s.close()


counter = worker_counter


def wait_serving(srv):
    """Until every worker's datagram socket is bound: the kernel spreads
    peers over the sockets there are, and a peer hashed while a later
    worker was still starting may move to it (its session stays behind)."""
    deadline = time.monotonic() + 10
    while "datagrams on udp" not in srv.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    check("datagrams on udp" in srv.log(), "the dataplane did not report its UDP sockets", srv)


def check(cond, why, server):
    if not cond:
        fail(why, server)


def test_open_and_pubsub(srv, uport, mport):
    s = Session(uport).open()
    check(s.session != 0 and s.lease_ms == 2000, f"session {s.session:x} lease {s.lease_ms}", srv)
    # A copy of the open's PING (its PONG lost) gets the same session,
    # not a second one.
    opened = counter(mport, "udp_sessions_opened")
    s.send_frames([Frame(OP["PING"], seq=7)], session=0)
    again = s.recv(1.0)
    check(again is not None and again[0] == s.session and again[1][0].op == OP["PONG"],
          f"a copy of the open: {again}", srv)
    check(counter(mport, "udp_sessions_opened") == opened, "a copy of the open opened another", srv)
    sub, _ = s.call(Frame(OP["SUB"], handle=42, subject=b"cross.>"))
    st, _, sub_id, _ = sub.status()
    check(st == 0 and sub_id != 0, f"SUB answered {sub.status()}", srv)
    nats = Nats(srv.port)
    nats.send(b"PUB cross.a 5\r\nhello\r\n")
    nats.sync()
    m = s.wait_msg()
    check(m is not None and m.handle == 42 and m.subject == b"cross.a" and m.payload == b"hello",
          f"datagram subscriber got {m!r}", srv)
    # The other way: a NATS subscriber sees a datagram publish (at most
    # once: no answer), and one with ACK_REQ is answered.
    nats.send(b"SUB dg.* 1\r\n")
    nats.sync()
    s.send_frames([Frame(OP["PUB"], subject=b"dg.x", payload=b"from-udp")])
    subj, sid, _, data = nats.msg()
    check((subj, sid, data) == (b"dg.x", b"1", b"from-udp"), f"NATS got {subj} {data}", srv)
    ack, _ = s.call(Frame(OP["PUB"], subject=b"dg.y", payload=b"acked", flags=2))
    check(ack.status()[0] == 0, f"acked PUB: {ack.status()}", srv)
    check(nats.msg()[3] == b"acked", "NATS missed the acked publish", srv)
    # Unsubscribe: no more messages; a stale id is refused.
    un, _ = s.call(Frame(OP["UNSUB"], handle=sub_id))
    check(un.status()[0] == 0, f"UNSUB {un.status()}", srv)
    un2, _ = s.call(Frame(OP["UNSUB"], handle=sub_id))
    check(un2.status()[0] == -errno.ENOENT, f"second UNSUB {un2.status()}", srv)
    nats.send(b"PUB cross.b 2\r\nno\r\n")
    nats.sync()
    check(s.wait_msg(timeout=0.3) is None, "a message after UNSUB", srv)
    return s, nats


def test_request_reply(srv, s, nats, workers):
    nats.send(b"SUB svc.echo 7\r\n")
    nats.sync()
    req = Frame(OP["REQUEST"], subject=b"svc.echo", payload=b"ping?", ttl_ms=2000)
    req.seq = s.next_seq()
    s.send_frames([req])
    subj, sid, reply, data = nats.msg()
    check(subj == b"svc.echo" and data == b"ping?" and reply is not None,
          f"responder got {subj} {reply} {data}", srv)
    nats.send(b"PUB " + reply + b" 5\r\npong!\r\n")
    nats.sync()
    rep = s.wait_msg(op="REPLY")
    check(rep is not None and rep.seq == req.seq and rep.payload == b"pong!",
          f"REPLY {rep!r} {rep.payload if rep else None}", srv)
    # Nobody listens: one worker knows at once, more wait for the time.
    nr, _ = s.call(Frame(OP["REQUEST"], subject=b"svc.nobody", payload=b"x", ttl_ms=300))
    want = -errno.EHOSTUNREACH if workers == 1 else -errno.ETIMEDOUT
    check(nr.status()[0] == want, f"no responders: {nr.status()}", srv)
    # A responder that never answers: the request times out.
    nats.send(b"SUB svc.silent 8\r\n")
    nats.sync()
    t0 = time.monotonic()
    to, _ = s.call(Frame(OP["REQUEST"], subject=b"svc.silent", payload=b"x", ttl_ms=300),
                   want=("STATUS", "REPLY"))
    check(to.op == OP["STATUS"] and to.status()[0] == -errno.ETIMEDOUT and
          time.monotonic() - t0 < 2.0, f"silent responder: {to!r} {to.status()}", srv)


def test_mailbox(srv, s, mport):
    cr, _ = s.call(Frame(OP["CREATE"], subject=b"box.udp",
                         payload=struct.pack("<BbxxIII", MODE_MAILBOX, -1, 0, 0, 0)))
    st, _, box, _ = cr.status()
    check(st == 0 and box != 0, f"CREATE {cr.status()}", srv)
    dup, _ = s.call(Frame(OP["CREATE"], subject=b"box.udp",
                          payload=struct.pack("<BbxxIII", MODE_MAILBOX, -1, 0, 0, 0)))
    check(dup.status()[0] == -errno.EEXIST, f"second CREATE {dup.status()}", srv)
    before = counter(mport, "udp_retransmits")
    # Each send goes out three times (a client retransmitting): stored once.
    for i in range(5):
        a, _ = s.call(Frame(OP["SEND"], handle=box, payload=b"m%d" % i), copies=3)
        check(a.status()[0] == 0, f"SEND {i}: {a.status()}", srv)
    # By name too.
    a, _ = s.call(Frame(OP["SEND"], subject=b"box.udp", payload=b"m5"))
    check(a.status()[0] == 0 and a.status()[2] == box, f"SEND by name {a.status()}", srv)
    check(counter(mport, "udp_retransmits") - before >= 10, "copies were not counted", srv)
    fetch = Frame(OP["FETCH"], handle=box, reply=64)
    got, msgs = s.call(fetch)
    # The answer is lost on its way (the client says so by sending the
    # same fetch again): the copy gets the same messages, not a new fetch
    # (which would find them in flight, hand out nothing, and count one
    # more delivery of each toward max_deliver).
    again, msgs2 = s.call(fetch)
    check(again.status() == got.status() and [(m.seq, m.payload) for m in msgs2] ==
          [(m.seq, m.payload) for m in msgs], f"a fetch's copy: {again.status()} {msgs2}", srv)
    st, count, _, _ = got.status()
    bodies = [m.payload for m in msgs]
    check(st == 0 and count == 6 and bodies == [b"m%d" % i for i in range(6)],
          f"FETCH {got.status()} {bodies}", srv)
    for m in msgs:
        check(m.op == OP["MSG"] and m.handle == box, f"fetched frame {m!r}", srv)
        a, _ = s.call(Frame(OP["ACK"], handle=box, reply=m.seq))
        check(a.status()[0] == 0, f"ACK {m.seq}: {a.status()}", srv)
    bad, _ = s.call(Frame(OP["ACK"], handle=box, reply=999999))
    check(bad.status()[0] != 0, "ACK of no message succeeded", srv)
    empty, msgs = s.call(Frame(OP["FETCH"], subject=b"box.udp", reply=8))
    check(empty.status()[1] == 0 and msgs == [], f"empty FETCH {empty.status()} {msgs}", srv)
    return box


def test_bad_input(srv, uport, mport, s, box):
    # Sequence numbers may jump: the window follows the highest taken.
    s.seq = 199
    s.call(Frame(OP["FETCH"], handle=box, reply=1))
    names = ["udp_bad_crc", "udp_bad_frames", "udp_spoofed", "udp_stale"]
    base = {n: counter(mport, n) for n in names}
    ping = Frame(OP["SEND"], handle=box, payload=b"evil")
    # A wrong CRC; no CRC at all.
    s.raw(struct.pack("<Q", s.session) + ping.encode(s.session, corrupt=True))
    s.raw(struct.pack("<Q", s.session) + ping.encode(s.session, crc=False))
    # A frame moved into another session's datagram fails its CRC too.
    s.raw(struct.pack("<Q", s.session) + ping.encode(s.session ^ 1 << 40))
    # Truncated: a header cut short; lengths that run past the datagram.
    good = ping.encode(s.session)
    s.raw(struct.pack("<Q", s.session) + good[:30])
    s.raw(struct.pack("<Q", s.session) + good[:-1])
    s.raw(struct.pack("<Q", s.session) + good[:12] + struct.pack("<I", 60000) + good[16:])
    s.raw(b"\x01\x02\x03")
    # A session nobody opened; the right id from another port (spoofed).
    s.raw(struct.pack("<Q", 0x1234567800000001) + ping.encode(0x1234567800000001))
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other.sendto(struct.pack("<Q", s.session) + ping.encode(s.session), ("127.0.0.1", uport))
    other.close()
    # A datagram of session 0 that is not a PING.
    s.raw(struct.pack("<Q", 0) + ping.encode(0))
    # A sequence number far behind the window; a request without one.
    old = Frame(OP["SEND"], handle=box, payload=b"old", seq=1)
    s.send_frames([old])
    s.send_frames([Frame(OP["SEND"], handle=box, payload=b"noseq")])
    time.sleep(0.3)
    d = {n: counter(mport, n) - base[n] for n in names}
    check(d["udp_bad_crc"] == 3, f"bad CRC counted {d}", srv)
    check(d["udp_bad_frames"] == 5, f"bad frames counted {d}", srv)
    check(d["udp_spoofed"] == 3, f"spoofed counted {d}", srv)
    check(d["udp_stale"] == 1, f"stale counted {d}", srv)
    # Nothing of it reached the mailbox; the session still works.
    got, msgs = s.call(Frame(OP["FETCH"], handle=box, reply=8))
    check(got.status()[:2] == (0, 0) and msgs == [], f"mailbox after bad input {got.status()} "
          f"{[m.payload for m in msgs]}", srv)


def test_limits(srv, uport, mport):
    sessions = [Session(uport).open() for _ in range(4)]
    try:
        Session(uport).open()
        fail("a fifth session was opened with --udp-sessions 4", srv)
    except OSError as e:
        check(e.errno == errno.EUSERS, f"refused with {e}", srv)
    check(counter(mport, "udp_sessions_refused") == 1, "refusal not counted", srv)
    # A lease runs out: the session and its subscription go.
    s = sessions[0]
    s.call(Frame(OP["SUB"], handle=1, subject=b"lease.x"))
    expired = counter(mport, "udp_sessions_expired")
    deadline = time.monotonic() + 6
    while counter(mport, "udp_sessions_expired") < expired + 4 and time.monotonic() < deadline:
        time.sleep(0.2)
    check(counter(mport, "udp_sessions_expired") == expired + 4, "leases did not run out", srv)
    s.send_frames([Frame(OP["PING"], seq=1)])
    check(s.recv(0.3) is None, "an expired session still answered", srv)
    # Its slot is free again: a new session opens.
    Session(uport).open()


def main():
    if len(sys.argv) not in (2, 4) or (len(sys.argv) == 4 and sys.argv[2] != "--workers"):
        print(__doc__)
        return 2
    workers = int(sys.argv[3]) if len(sys.argv) == 4 else 1
    uport, mport = free_port(), free_port()
    srv = Atomqd(sys.argv[1], workers=workers, extra=["--udp", f"127.0.0.1:{uport}", "--udp-sessions", "4",
                                      "--udp-lease-ms", "2000", "--metrics",
                                      f"127.0.0.1:{mport}"])
    try:
        wait_serving(srv)
        s, nats = test_open_and_pubsub(srv, uport, mport)
        test_request_reply(srv, s, nats, workers)
        box = test_mailbox(srv, s, mport)
        test_bad_input(srv, uport, mport, s, box)
        nats.close()
        bye, _ = s.call(Frame(OP["DESTROY"]))
        check(bye.status()[0] == 0, f"session close {bye.status()}", srv)
        check(counter(mport, "udp_sessions_closed") == 1, "close not counted", srv)
        # No session in use may have been ended by its lease (one renewed in
        # the same loop pass as the sweep once looked 2^64 ns old).
        check(counter(mport, "udp_sessions_expired") == 0, "a live session expired", srv)
        if workers == 1:
            test_limits(srv, uport, mport)
    except (TimeoutError, OSError, AssertionError, ValueError) as e:
        fail(f"{type(e).__name__}: {e}", srv)
    finally:
        srv.stop()
    print(f"PASS: udp_test ({workers} workers)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
