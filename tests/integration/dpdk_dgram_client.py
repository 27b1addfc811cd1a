#!/usr/bin/env python3
"""dpdk_dgram_client.py HOST PORT - the datagram side of dpdk_dgram_test.sh:
run inside the test's network namespace, against atomq-dataplane's DPDK
port, with kernel UDP sockets (tests/integration/dgram.py). Two sessions:
publish/subscribe between them, a request one answers for the other, a
mailbox with retransmitted sends stored once, and a frame with a bad CRC
(counted by the server: the shell script reads the counter)."""
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dgram import Frame, Session, OP, MODE_MAILBOX  # noqa: E402


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    a = Session(port, host=host).open()
    b = Session(port, host=host).open()
    st = a.call(Frame(OP["SUB"], handle=5, subject=b"dpdk.>"))[0].status()
    assert st[0] == 0, f"SUB {st}"
    b.send_frames([Frame(OP["PUB"], subject=b"dpdk.x", payload=b"over-dpdk")])
    m = a.wait_msg()
    assert m is not None and m.payload == b"over-dpdk" and m.handle == 5, f"MSG {m!r}"
    # b asks, a answers on the reply subject the request carries.
    st = a.call(Frame(OP["SUB"], handle=6, subject=b"svc.time"))[0].status()
    req = Frame(OP["REQUEST"], subject=b"svc.time", payload=b"now?", ttl_ms=2000)
    req.seq = b.next_seq()
    b.send_frames([req])
    q = a.wait_msg()
    assert q is not None and q.reply_subject.startswith(b"_AQD."), f"request {q!r}"
    a.send_frames([Frame(OP["PUB"], subject=q.reply_subject, payload=b"12:00")])
    r = b.wait_msg(op="REPLY")
    assert r is not None and r.seq == req.seq and r.payload == b"12:00", f"REPLY {r!r}"
    # A mailbox: every send goes out three times and is stored once.
    create = struct.pack("<BbxxIII", MODE_MAILBOX, -1, 0, 0, 0)
    st = a.call(Frame(OP["CREATE"], subject=b"dpdk.box", payload=create))[0].status()
    assert st[0] == 0, f"CREATE {st}"
    box = st[2]
    for i in range(20):
        st = a.call(Frame(OP["SEND"], handle=box, payload=b"%d" % i), copies=3)[0].status()
        assert st[0] == 0, f"SEND {i} {st}"
    got, msgs = b.call(Frame(OP["FETCH"], subject=b"dpdk.box", reply=64))
    bodies = [m.payload for m in msgs]
    assert got.status()[1] == 20 and bodies == [b"%d" % i for i in range(20)], \
        f"FETCH {got.status()} {bodies}"
    for m in msgs:
        assert b.call(Frame(OP["ACK"], handle=box, reply=m.seq))[0].status()[0] == 0
    # A frame with a bad CRC: dropped and counted, never answered.
    a.raw(struct.pack("<Q", a.session) +
          Frame(OP["SEND"], handle=box, payload=b"evil", seq=900).encode(a.session, corrupt=True))
    got, msgs = b.call(Frame(OP["FETCH"], handle=box, reply=8))
    assert got.status()[1] == 0 and msgs == [], f"after bad CRC: {got.status()}"
    print("datagrams over DPDK: pub/sub, request/reply, mailbox (60 sends, 20 stored): ok")


if __name__ == "__main__":
    main()
