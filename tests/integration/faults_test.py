#!/usr/bin/env python3
"""faults_test.py - faults injected into the real atomqd and dataplane
(issue 9, "Faults"); each must end in a clear error or a counter, bounded
memory, and no loss of what was acknowledged. What other tests already
inject is not repeated here: the dataplane killed under load (disk_test.py,
restart_test.py), a killed and a scribbling agent (agents_test.c), a NATS
client that never reads (nats_wire_test.py, cut off and counted), truncated
and corrupt datagrams (udp_test.py), --disk-max (disk_test.py).

- tables: --max-entities 64 filled through NATS $AQ; one more create is
  refused through $AQ (FULL), the control socket (ENOSPC, naming
  --max-entities) and datagrams (STATUS -ENOSPC); after destroys, creates
  work again on each path; the name heap and the message buffer pools run
  out the same way (FULL, pool_exhausted); messages stored before are
  untouched throughout;
- disk full: --data-dir on a 4 MiB tmpfs (mounted here; skipped without
  root), a storage=disk mailbox sent to until the filesystem is full:
  every send is answered (ok, or DISK_FULL/DISK_ERROR), disk_io_errors
  moves and the log says why, memory mailboxes go on, and after SIGKILL
  and a restart exactly the acknowledged messages are there;
- a stopped agent: an agent holding a borrowed delivery and a fetched batch
  is stopped with SIGSTOP; a flood to its subscription is dropped at its
  delivery ring (dlv_drops, atomq_dropped) while another agent gets every
  message, its fetched jobs come to others after the ack wait, atomqd's
  and the dataplane's memory stay flat; SIGCONT: it reads its ring and
  works; SIGKILL: its slot is taken by a newcomer;
- a datagram subscriber that never reads: the kernel drops what does not
  fit its socket, the session's delivery numbers show the gap, another
  session gets every message, the server goes on;
- cut off mid-frame: NATS clients that close inside a PUB's payload, an
  HPUB's headers, a CONNECT or an $AQ body (half of them with a reset)
  deliver nothing partial and create nothing, and the connection counts
  return; control-socket clients that close inside a line or before
  reading a long reply run nothing partial and their slots come back.

    faults_test.py ATOMQD FAULTS_AGENT

Prints "ok <check>" per check; exits 1 with the reason at the first
failure. io_uring submissions that fail are injected in a test build of
the backend instead (unit test nic_uring_faults: nic_uring_fault_set).
"""
import base64
import errno
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

# How much a daemon's RSS may grow over a fault case: 4 MiB, or 16 MiB on
# an ASan build (tools/run-tests.sh SANITIZE=1 sets ASAN_OPTIONS), whose
# allocator keeps freed memory in quarantine.
RSS_SLACK_KIB = 16384 if "ASAN_OPTIONS" in os.environ else 4096

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import natsenv  # noqa: E402
from natsenv import Atomqd, free_port  # noqa: E402
from dgram import Frame, Session, OP, MODE_MAILBOX  # noqa: E402
from disk_test import Nats as AqNats, Server, fetch_all  # noqa: E402
from udp_test import Nats  # noqa: E402

SKIP = 77


def fail(why, srv=None):
    natsenv.fail(why, srv)


def check(cond, why, srv=None):
    if not cond:
        fail(why, srv)


def workers(mport):
    with urllib.request.urlopen(f"http://127.0.0.1:{mport}/workers", timeout=5) as r:
        doc = json.load(r)
    return doc["workers"] if isinstance(doc, dict) else doc


counter = natsenv.worker_counter
rss_kib = natsenv.rss_kib


def stats(srv):
    return dict(l.split(": ", 1) for l in srv.control("show stats") if ": " in l)


def wait_until(pred, seconds=5.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


def dg_create(s, name):
    """A datagram CREATE of a mailbox: its STATUS (status, count, handle, seq)."""
    cr, _ = s.call(Frame(OP["CREATE"], subject=name,
                         payload=struct.pack("<BbxxIII", MODE_MAILBOX, -1, 0, 0, 0)))
    return cr.status()


# ---- tables: entity slots, names, message buffers -------------------------

def check_tables(atomqd):
    uport, mport = free_port(), free_port()
    srv = Atomqd(atomqd, extra=["--max-entities", "64", "--udp", f"127.0.0.1:{uport}",
                                "--metrics", f"127.0.0.1:{mport}"])
    try:
        check(srv.ok, "atomqd did not start", srv)
        c = AqNats(srv.port)
        # Messages stored before the table fills, checked after each fault.
        check(c.req(b"$AQ.MAILBOX.CREATE", b'{"name":"keep"}').get("ok"), "create keep", srv)
        kept = [b"kept-%d" % i for i in range(3)]
        for m in kept:
            check(c.req(b"$AQ.MAILBOX.SEND.keep", m).get("ok"), "send to keep", srv)

        keep0 = [l for l in srv.control("show entity keep") if l.split(":")[0] in
                 ("msgs", "bytes", "seq")]

        def keep_intact(when):
            # Counted here; read (which takes them in flight) at the end.
            now = [l for l in srv.control("show entity keep") if l.split(":")[0] in
                   ("msgs", "bytes", "seq")]
            check(now == keep0, f"{when}: keep is {now}, was {keep0}", srv)

        made, refused = 0, None
        for i in range(200):
            a = c.req(b"$AQ.MAILBOX.CREATE", b'{"name":"e.%d"}' % i)
            if not a.get("ok"):
                refused = a
                break
            made += 1
        cap = workers(mport)[0]["shard"]["capacity"]
        check(cap == 64 and made == cap - 1, f"{made} creates before the refusal, capacity {cap}",
              srv)
        check(refused.get("error") == "FULL", f"$AQ create past --max-entities: {refused}", srv)
        # The same refusal through the control socket and datagrams.
        r = srv.control("create mailbox ctl.x")
        check(r and r[0].startswith("error:") and "--max-entities" in r[0] and
              r[0].endswith("(ENOSPC)"), f"control create when full: {r}", srv)
        j = json.loads(srv.control("json create mailbox ctl.x")[0])
        check(j["ok"] is False and j["error"] == "ENOSPC", f"json create when full: {j}", srv)
        s = Session(uport).open()
        st = dg_create(s, b"dg.x")
        check(st[0] == -errno.ENOSPC, f"datagram CREATE when full: {st}", srv)
        check(workers(mport)[0]["shard"]["entities"] == 64, "the table moved while full", srv)
        keep_intact("table full")
        # Room again: one destroy per path, one create per path.
        for i in range(3):
            check(c.req(b"$AQ.MAILBOX.DESTROY.e.%d" % i, b"").get("ok"), "destroy", srv)
        check(c.req(b"$AQ.MAILBOX.CREATE", b'{"name":"nats.y"}').get("ok"), "$AQ create", srv)
        r = srv.control("create mailbox ctl.y")
        check(r[0].startswith("ok:"), f"control create after destroys: {r}", srv)
        st = dg_create(s, b"dg.y")
        check(st[0] == 0 and st[2] != 0, f"datagram CREATE after destroys: {st}", srv)
        check(c.req(b"$AQ.MAILBOX.CREATE", b'{"name":"one.more"}').get("error") == "FULL",
              "full again", srv)
        print(f"ok table: FULL/ENOSPC on $AQ, control and datagrams after {cap} entities; "
              f"creates work after destroys")

        # The name heap: long names run it out before the slots do.
        for i in range(3, 63):
            c.req(b"$AQ.MAILBOX.DESTROY.e.%d" % i, b"")
        long_names, refused = [], None
        for i in range(60):
            name = b"long.%02d." % i + b"n" * 200
            a = c.req(b"$AQ.MAILBOX.CREATE", b'{"name":"%s"}' % name)
            if not a.get("ok"):
                refused = a
                break
            long_names.append(name)
        live = workers(mport)[0]["shard"]["entities"]
        check(refused is not None and refused.get("error") == "FULL" and live < 64,
              f"long names: {len(long_names)} made, {live} live, then {refused}", srv)
        r = srv.control("create mailbox " + "c" * 200)
        check(r[0].startswith("error:"), f"control create of a long name: {r}", srv)
        # Their room comes back: as many again, of the same length. (A
        # freed block is split for shorter names, never merged: test_dp_table
        # has those cases.)
        for name in long_names:
            check(c.req(b"$AQ.MAILBOX.DESTROY." + name, b"").get("ok"), "destroy long", srv)
        for name in long_names:
            check(c.req(b"$AQ.MAILBOX.CREATE", b'{"name":"%s"}' % name.replace(b"long", b"LONG"))
                  .get("ok"), "name heap space was not given back", srv)
        for name in long_names:
            c.req(b"$AQ.MAILBOX.DESTROY." + name.replace(b"long", b"LONG"), b"")
        keep_intact("name heap full")
        print(f"ok names: {len(long_names)} names of 209 bytes filled the name heap at {live} "
              f"entities (FULL); destroying them gave the room back")

        # Message buffers: 60 KB messages until the pools run out.
        check(c.req(b"$AQ.MAILBOX.CREATE", b'{"name":"big"}').get("ok"), "create big", srv)
        before = workers(mport)[0]["shard"]["pool_exhausted"]
        sent, refused = 0, None
        for i in range(5000):
            a = c.req(b"$AQ.MAILBOX.SEND.big", b"%08d" % i + b"b" * 60000)
            if not a.get("ok"):
                refused = a
                break
            sent += 1
        after = workers(mport)[0]["shard"]["pool_exhausted"]
        check(refused is not None and refused.get("error") == "FULL" and after > before,
              f"buffers: {sent} sent, then {refused}; pool_exhausted {before} -> {after}", srv)
        # Small messages still have their own pools; the big ones are all
        # there, in order; taking some out makes room again.
        check(c.req(b"$AQ.MAILBOX.CREATE", b'{"name":"small"}').get("ok") and
              c.req(b"$AQ.MAILBOX.SEND.small", b"s").get("ok"), "small message while full", srv)
        a = c.req(b"$AQ.MAILBOX.FETCH.big", b'{"batch":8}')
        seqs = [m["seq"] for m in a["messages"]]
        firsts = [base64.b64decode(m["data"])[:8] for m in a["messages"]]
        check(seqs == list(range(8)) and firsts == [b"%08d" % i for i in range(8)],
              f"big after the refusal: {seqs} {firsts}", srv)
        for q in seqs:
            check(c.req(b"$AQ.MAILBOX.ACK.big", b'{"seq":%d}' % q).get("ok"), "ack", srv)
        check(c.req(b"$AQ.MAILBOX.SEND.big", b"x" * 60000).get("ok"),
              "no room after acking 8", srv)
        info = srv.control("show entity big")
        check(f"msgs: {sent - 8 + 1}" in info, f"big holds {info}", srv)
        keep_intact("buffers full")
        got = [d for _, d in fetch_all(c, b"keep")]
        check(got == kept, f"keep holds {got}, want {kept}", srv)
        check(srv.alive(), "atomqd died", srv)
        print(f"ok buffers: FULL after {sent} messages of 60 KB (pool_exhausted "
              f"{before} -> {after}), every stored message intact, room again after acks")
        c.close()
    finally:
        srv.stop()


# ---- disk full ----------------------------------------------------------------

def check_disk_full(atomqd):
    tmp = tempfile.mkdtemp(prefix="atomq-fdisk-")
    data = os.path.join(tmp, "data")
    os.mkdir(data)
    mnt = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", data],
                         capture_output=True, text=True)
    if mnt.returncode != 0:
        print(f"skip disk-full: cannot mount a tmpfs ({mnt.stderr.strip() or mnt.returncode}); "
              "needs root")
        return False
    mport = free_port()
    # 2 MiB segments (the least): the first fits the 4 MiB filesystem, the
    # second one's preallocation does not.
    srv = Server(atomqd, tmp, extra=["--disk-segment", "2M", "--metrics", f"127.0.0.1:{mport}"])
    try:
        srv.start()
        c = AqNats(srv.port)
        a = c.req(b"$AQ.MAILBOX.CREATE", b'{"name":"dk","storage":"disk","sync":"batch"}')
        check(a.get("ok"), f"create dk: {a}", srv)
        acked, refused = [], []
        for i in range(4000):
            body = b"%06d" % i + b"d" * 1024
            try:
                a = c.req(b"$AQ.MAILBOX.SEND.dk", body)
            except (TimeoutError, socket.timeout):
                fail(f"send {i} was never answered ({len(acked)} acknowledged before)", srv)
            if a.get("ok"):
                check(not refused, f"send {i} acknowledged after a refusal: {a}", srv)
                acked.append(body)
            else:
                refused.append(a)
                if len(refused) == 5:
                    break
        check(len(refused) == 5, f"4000 sends of 1 KiB into a 4 MiB filesystem: no refusal", srv)
        bad = [r for r in refused if r.get("error") not in ("DISK_FULL", "DISK_ERROR")]
        check(not bad, f"refusals that do not say the disk: {bad}", srv)
        # The control socket's send is refused too; memory mailboxes go on.
        r = natsenv.control(os.path.join(tmp, "ctl.sock"), "send dk by-control")
        check(r and r[0].startswith("error:"), f"control send to a full disk: {r}", srv)
        check(c.req(b"$AQ.MAILBOX.CREATE", b'{"name":"mem"}').get("ok") and
              c.req(b"$AQ.MAILBOX.SEND.mem", b"m").get("ok"), "memory mailbox after ENOSPC",
              srv)
        w = workers(mport)[0]
        check(w["disk_io_errors"] >= 1, f"disk_io_errors {w['disk_io_errors']}", srv)
        check(wait_until(lambda: "disk log failed" in srv.log(20000), 2),
              "no log line for the failed log", srv)
        c.close()
        srv.kill9()
        srv.start()
        c = AqNats(srv.port)
        got = [d for _, d in fetch_all(c, b"dk")]
        check(got == acked, f"after the restart: {len(got)} messages, {len(acked)} acknowledged"
              + ("" if len(got) != len(acked) else " (contents differ)"), srv)
        c.close()
        print(f"ok disk-full: {len(acked)} acknowledged, then {refused[0]['error']} "
              f"({refused[0].get('message', '')[:60]}...), disk_io_errors "
              f"{w['disk_io_errors']}; exactly the acknowledged ones after SIGKILL and restart")
    finally:
        srv.stop()
        subprocess.run(["umount", data], capture_output=True)
        subprocess.run(["rm", "-rf", tmp])
    return True


# ---- a stopped agent ------------------------------------------------------------

class Agent:
    """tests/integration/faults_agent: one command a line, one answer a line."""

    def __init__(self, exe, sock, srv):
        self.srv = srv
        self.p = subprocess.Popen([exe, sock], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True, bufsize=1)
        check(self.read() == "ok connected", "the agent did not attach", srv)

    def read(self):
        line = self.p.stdout.readline().strip()
        return line

    def ask(self, line):
        self.tell(line)
        return self.read()

    def tell(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()

    def ok(self, line):
        r = self.ask(line)
        check(r.startswith("ok"), f"agent {line!r}: {r}", self.srv)
        return r.split()[1:]

    def close(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()


def agent_rows(srv):
    return {int(l.split()[0][5:]): dict(kv.split("=", 1) for kv in l.split())
            for l in srv.control("show agents") if l.startswith("slot=")}


def check_stopped_agent(atomqd, agent_exe):
    srv = Atomqd(atomqd, extra=["--max-agents", "2", "--agent-ring-size", "64K",
                                "--ack-wait-ms", "2000"])
    agents = []
    try:
        check(srv.ok, "atomqd did not start", srv)
        sock = os.path.join(srv.tmp, "ctl.sock")
        a = Agent(agent_exe, sock, srv)
        agents.append(a)
        b = Agent(agent_exe, sock, srv)
        agents.append(b)
        a.ok("sub flood.> 1")
        b.ok("sub flood.> 2")
        check(srv.control("create mailbox jobs")[0].startswith("ok:"), "create jobs", srv)
        for i in range(10):
            srv.control(f"send jobs job{i}")
        n = Nats(srv.port)
        n.send(b"PUB flood.x 5\r\nfirst\r\n")
        n.sync()
        # a borrows a delivery and a batch of 4 jobs, and is stopped.
        check(a.ok("recv_hold 2000") == ["1", "5", "first"], "a's held delivery", srv)
        held = a.ok("fetch_hold jobs 4")
        t_held = time.monotonic()
        check(held == ["4", "0", "1", "2", "3"], f"a's held batch {held}", srv)
        check(b.ok("drain 200") == ["1"], "b's first delivery", srv)
        os.kill(a.p.pid, signal.SIGSTOP)
        # The jobs a does not hold are b's at once.
        rest = b.ok("fetch_hold jobs 10")
        check(rest == ["6", "4", "5", "6", "7", "8", "9"], f"b's first fetch {rest}", srv)
        for q in rest[1:]:
            b.ok(f"ack jobs {q}")
        dp_pid = srv.dataplane_pid()
        rss0 = (rss_kib(srv.proc.pid), rss_kib(dp_pid))
        # 400 messages of 1000 bytes (6x a's 64 KiB ring), in bursts b can
        # hold (its ring is as small), b draining after each.
        got_b, bursts, per = 0, 40, 10
        for r in range(bursts):
            for i in range(per):
                n.send(b"PUB flood.x 1000\r\n" + b"%04d" % (r * per + i) + b"z" * 996 + b"\r\n")
            n.sync()
            got_b += int(b.ok("drain 30")[0])
        got_b += int(b.ok("drain 100")[0])
        total = bursts * per
        check(got_b == total and b.ok("dropped") == ["0"],
              f"b got {got_b} of {total} while a was stopped", srv)
        rows = agent_rows(srv)
        drops = int(rows[0]["dlv_drops"])
        check(drops > 0 and int(rows[1]["dlv_drops"]) == 0, f"dlv_drops: {rows}", srv)
        # a's fetched jobs come to b after the ack wait.
        again = ["0"]
        while again == ["0"] and time.monotonic() - t_held < 10:
            time.sleep(0.1)
            again = b.ok("fetch_hold jobs 10")
        waited = time.monotonic() - t_held
        check(again == ["4", "0", "1", "2", "3"] and waited >= 1.9,
              f"a's held jobs: {again} after {waited:.1f} s", srv)
        for q in again[1:]:
            b.ok(f"ack jobs {q}")
        rss1 = (rss_kib(srv.proc.pid), rss_kib(dp_pid))
        grew = [y - x for x, y in zip(rss0, rss1)]
        check(all(g < RSS_SLACK_KIB for g in grew), f"RSS grew by {grew} KiB (atomqd, dataplane)",
              srv)
        # SIGCONT: a reads what its ring kept, counts the rest, and works.
        os.kill(a.p.pid, signal.SIGCONT)
        got_a = int(a.ok("drain 200")[0])
        dropped_a = int(a.ok("dropped")[0])
        check(got_a > 0 and got_a + dropped_a == total and dropped_a == drops,
              f"a after SIGCONT: {got_a} read + {dropped_a} dropped of {total} "
              f"(dlv_drops {drops})", srv)
        a.ok("publish flood.after resumed")
        check(b.ok("drain 200") == ["1"], "b did not get a's publish after SIGCONT", srv)
        print(f"ok stopped-agent: b got all {total} while a was stopped; a dropped {dropped_a} "
              f"(dlv_drops), read {got_a} after SIGCONT; its 4 held jobs went to b after the "
              f"ack wait; RSS grew {grew} KiB")
        # SIGKILL (stopped again first: a process killed while stopped):
        # its slot goes to a newcomer.
        os.kill(a.p.pid, signal.SIGSTOP)
        os.kill(a.p.pid, signal.SIGKILL)
        a.p.wait()
        check(wait_until(lambda: 0 not in agent_rows(srv)), f"slot 0 kept: {agent_rows(srv)}",
              srv)
        c = Agent(agent_exe, sock, srv)
        agents.append(c)
        c.ok("sub flood.> 3")
        n.send(b"PUB flood.new 3\r\nnew\r\n")
        n.sync()
        check(c.ok("recv_hold 2000") == ["3", "3", "new"], "the newcomer's delivery", srv)
        check(int(agent_rows(srv)[0]["dlv_drops"]) == 0, "the newcomer inherited dlv_drops",
              srv)
        print("ok killed-agent: SIGKILL while stopped freed its slot for a newcomer")
        n.close()
    finally:
        for ag in agents:
            ag.close()
        srv.stop()


# ---- datagram slow consumer, and clients cut off mid-frame ---------------------

def udp_drops(sock):
    """The kernel's drop count for our UDP socket (/proc/net/udp)."""
    port = sock.getsockname()[1]
    for line in open("/proc/net/udp").read().splitlines()[1:]:
        f = line.split()
        if int(f[1].split(":")[1], 16) == port:
            return int(f[-1])
    return None


def check_dgram_slow(srv, uport, mport):
    slow_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    slow_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow = Session(uport, sock=slow_sock).open()
    good = Session(uport).open()
    for s, sid in ((slow, 5), (good, 6)):
        st, _ = s.call(Frame(OP["SUB"], handle=sid, subject=b"dgslow.>"))
        check(st.status()[0] == 0, f"SUB {st.status()}", srv)
    n = Nats(srv.port)
    total, seqs = 300, []
    for r in range(30):
        for i in range(10):
            n.send(b"PUB dgslow.x 1000\r\n" + b"%04d" % (r * 10 + i) + b"u" * 996 + b"\r\n")
        n.sync()
        for _ in range(10):
            m = good.wait_msg(timeout=2)
            check(m is not None and m.handle == 6, f"good session message {len(seqs)}", srv)
            seqs.append(m.seq)
    check(seqs == list(range(seqs[0], seqs[0] + total)),
          f"the reading session saw a gap: {seqs[:5]}...", srv)
    drops = udp_drops(slow_sock)
    # The slow one reads at last: what the kernel kept, and the gap.
    got = []
    while True:
        m = slow.wait_msg(timeout=0.2)
        if m is None:
            break
        got.append(m.seq)
    check(drops is not None and drops > 0 and len(got) < total,
          f"slow session: kernel drops {drops}, read {len(got)} of {total}", srv)
    # The next message's seq counts what the kernel dropped: the gap
    # tells the session it lost messages.
    n.send(b"PUB dgslow.last 4\r\nlast\r\n")
    n.sync()
    last = slow.wait_msg(timeout=2)
    check(last is not None and last.payload == b"last" and last.seq == got[0] + total
          and got == list(range(got[0], got[0] + len(got))),
          f"the slow session's seqs: read {got[:5]}..., then {last!r}", srv)
    # Its session is still served, and so is everyone else.
    pong, _ = slow.call(Frame(OP["SUB"], handle=7, subject=b"dgslow.after"))
    check(pong.status()[0] == 0, "the slow session is no longer served", srv)
    n.close()
    print(f"ok dgram-slow: the kernel dropped {drops} datagrams for a session that did not "
          f"read (it read {len(got)} of {total}, seq gap visible); another got all {total}")


def connect_raw(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.recv(4096)  # INFO
    return s


def check_nats_cut(srv, mport):
    sub = Nats(srv.port)
    sub.send(b"SUB cut.> 1\r\n")
    sub.sync()
    base = {k: counter(mport, k) for k in ("nats_conns_opened", "nats_conns_closed",
                                           "nats_protocol_errors")}
    dp_pid = srv.dataplane_pid()
    rss0 = rss_kib(dp_pid)
    cuts = [
        b'CONNECT {"verbose":false}\r\nPUB cut.a 100\r\n' + b"a" * 50,
        b'CONNECT {"verbose":false}\r\nPUB cut.a 100\r\n' + b"a" * 100,       # no CRLF
        b'CONNECT {"verbose":false,"headers":true}\r\nHPUB cut.b 40 100\r\nNATS/1.0\r\nX-A: 1',
        b'CONNECT {"verbose":false,"head',
        b'CONNECT {"verbose":false}\r\nPUB $AQ.MAILBOX.CREATE _R.1 30\r\n{"name":"cutbox"',
        b'CONNECT {"verbose":false}\r\nPUB cut.c 5\r\nwhole\r\nPUB cut.d 5000\r\n' + b"d" * 3000,
    ]
    rounds = 60
    for r in range(rounds):
        for i, data in enumerate(cuts):
            s = connect_raw(srv.port)
            s.sendall(data)
            if (r + i) % 2:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
    opened = rounds * len(cuts)
    check(wait_until(lambda: counter(mport, "nats_conns_closed") - base["nats_conns_closed"]
                     == opened),
          f"connections closed: {counter(mport, 'nats_conns_closed') - base['nats_conns_closed']}"
          f" of {opened}", srv)
    check(counter(mport, "nats_conns_opened") - base["nats_conns_opened"] == opened,
          "connections opened", srv)
    # Only the complete publishes were delivered.
    sub.send(b"PUB cut.end 3\r\nend\r\n")
    got = []
    while True:
        subj, _, _, data = sub.msg()
        if subj == b"cut.end":
            break
        got.append((subj, data))
    check(got == [(b"cut.c", b"whole")] * rounds, f"deliveries from cut clients: {got[:4]} "
          f"({len(got)}, want {rounds} x cut.c)", srv)
    check(not [l for l in srv.control("show entities cut") if l.startswith("name")] and
          "error" in " ".join(srv.control("show entity cutbox")),
          "a cut $AQ request created its mailbox", srv)
    rss1 = rss_kib(dp_pid)
    check(rss1 - rss0 < RSS_SLACK_KIB, f"dataplane RSS grew {rss1 - rss0} KiB", srv)
    sub.close()
    print(f"ok nats-cut: {opened} clients closed (half reset) mid-payload, mid-header, "
          f"mid-CONNECT, mid-$AQ body: counts returned, only the {rounds} complete publishes "
          f"delivered, nothing created, protocol errors "
          f"{counter(mport, 'nats_protocol_errors') - base['nats_protocol_errors']}, "
          f"RSS +{rss1 - rss0} KiB")


def check_control_cut(srv):
    path = os.path.join(srv.tmp, "ctl.sock")
    check(srv.control("create mailboxes cc.m 3000")[0].startswith("ok"), "bulk create", srv)
    base = stats(srv)
    n = 0
    for i in range(40):
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        if i % 2:
            s.sendall(b"create mailbox ctlcut.x%d" % i)        # no newline
        else:
            s.sendall(b"show entities cc. limit=3000\n")        # never read
        s.close()
        n += 1

    def settled():
        st = stats(srv)
        return (int(st["control_clients"]) == 1 and
                int(st["control_clients_accepted"]) - int(base["control_clients_accepted"])
                >= n + 1)
    check(wait_until(settled), f"control clients did not come back: {stats(srv)}", srv)
    ents = srv.control("show entities ctlcut.")
    check(not [l for l in ents if "ctlcut" in l and l.startswith("name")] and
          "error" in " ".join(srv.control("show entity ctlcut.x1")),
          f"a line cut off was executed: {ents}", srv)
    check(srv.control("destroy prefix cc.")[0].startswith("ok"), "destroy prefix", srv)
    print(f"ok control-cut: {n} clients left inside a line or before a long reply: "
          f"nothing executed, every client slot came back")


def check_consumers_and_cuts(atomqd):
    uport, mport = free_port(), free_port()
    srv = Atomqd(atomqd, extra=["--udp", f"127.0.0.1:{uport}", "--metrics",
                                f"127.0.0.1:{mport}", "--udp-lease-ms", "30000"])
    try:
        check(srv.ok, "atomqd did not start", srv)
        check(wait_until(lambda: "datagrams on udp" in srv.log(), 10), "no UDP sockets", srv)
        check_dgram_slow(srv, uport, mport)
        check_nats_cut(srv, mport)
        check_control_cut(srv)
        check(srv.alive(), "atomqd died", srv)
    finally:
        srv.stop()


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    atomqd, agent_exe = sys.argv[1], sys.argv[2]
    t0 = time.monotonic()
    try:
        check_tables(atomqd)
        disk = check_disk_full(atomqd)
        check_stopped_agent(atomqd, agent_exe)
        check_consumers_and_cuts(atomqd)
    except (OSError, ValueError, EOFError, KeyError, IndexError) as e:
        fail(f"{type(e).__name__}: {e}")
    print(f"PASS: faults_test in {time.monotonic() - t0:.1f} s"
          + ("" if disk else " (disk-full skipped: no root)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
