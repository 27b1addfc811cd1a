"""dgram.py - a small atomq datagram client (docs/protocol.md, "atomq
datagrams") written from the protocol text, for the integration tests: a
kernel UDP socket, frames built and checked here, sessions, requests with
retransmission."""
import socket
import struct
import time

OP = dict(PUB=1, MSG=2, SUB=3, UNSUB=4, SEND=5, FETCH=6, ACK=7, REQUEST=8, REPLY=9,
          CREATE=10, DESTROY=11, STATUS=12, PING=13, PONG=14)
OP_NAME = {v: k for k, v in OP.items()}
F_CRC, F_ACK_REQ, F_REPLY_SUBJECT = 1, 2, 16
HDR = struct.Struct("<HBBHHIIQQQII")  # the 48-byte frame header
MAGIC, VERSION = 0x5141, 1
MODE_MAILBOX = 1

_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _TABLE.append(_c)


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


class Frame:
    def __init__(self, op, seq=0, handle=0, reply=0, ttl_ms=0, subject=b"", reply_subject=b"",
                 headers=b"", payload=b"", flags=0):
        self.op, self.seq, self.handle, self.reply, self.ttl_ms = op, seq, handle, reply, ttl_ms
        self.subject, self.reply_subject = subject, reply_subject
        self.headers, self.payload, self.flags = headers, payload, flags

    def encode(self, session, crc=True, corrupt=False):
        subj = self.subject + self.reply_subject
        flags = self.flags | (F_REPLY_SUBJECT if self.reply_subject else 0)
        reply = len(self.reply_subject) if self.reply_subject else self.reply
        if crc:
            flags |= F_CRC
        body = subj + self.headers + self.payload
        hdr = HDR.pack(MAGIC, VERSION, self.op, flags, len(subj), len(self.headers),
                       len(self.payload), self.handle, self.seq, reply, self.ttl_ms, 0)
        c = crc32c(struct.pack("<Q", session) + hdr + body) if crc else 0
        if corrupt:
            c ^= 1
        return hdr[:44] + struct.pack("<I", c) + body

    def status(self):
        """A STATUS frame's body: (status, count, handle, seq)."""
        return struct.unpack("<iIQQ", self.payload[:24])

    def __repr__(self):
        return f"<{OP_NAME.get(self.op, self.op)} seq={self.seq} handle={self.handle}>"


def decode(data):
    """A datagram: (session, [frames]); raises ValueError when it does not check."""
    if len(data) < 8:
        raise ValueError("short datagram")
    session = struct.unpack_from("<Q", data)[0]
    frames, off = [], 8
    while off < len(data):
        (magic, ver, op, flags, slen, hlen, plen, handle, seq, reply, ttl,
         crc) = HDR.unpack_from(data, off)
        end = off + 48 + slen + hlen + plen
        if magic != MAGIC or ver != VERSION or end > len(data):
            raise ValueError("bad frame")
        raw = bytearray(data[off:end])
        raw[44:48] = b"\0\0\0\0"
        if not flags & F_CRC or crc32c(struct.pack("<Q", session) + raw) != crc:
            raise ValueError("bad crc")
        subj = bytes(data[off + 48:off + 48 + slen])
        rsub = b""
        if flags & F_REPLY_SUBJECT:
            subj, rsub = subj[:slen - reply], subj[slen - reply:]
        f = Frame(op, seq, handle, reply, ttl, subj, rsub,
                  bytes(data[off + 48 + slen:off + 48 + slen + hlen]),
                  bytes(data[off + 48 + slen + hlen:end]), flags)
        frames.append(f)
        off = end
    return session, frames


class Session:
    """One session with atomqd's datagram port. Requests are retransmitted
    every `rto` seconds until answered or `tries` are spent."""

    def __init__(self, port, host="127.0.0.1", rto=0.2, tries=10, sock=None):
        self.addr = (host, port)
        self.sock = sock or socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(0.05)
        self.rto, self.tries = rto, tries
        self.session, self.seq, self.lease_ms = 0, 0, 0
        self.inbox = []   # MSG/REPLY frames that arrived while waiting for answers
        self.sent = 0     # datagrams sent, copies included

    def raw(self, data):
        self.sock.sendto(data, self.addr)
        self.sent += 1

    def send_frames(self, frames, session=None):
        s = self.session if session is None else session
        self.raw(struct.pack("<Q", s) + b"".join(f.encode(s) for f in frames))

    def recv(self, timeout):
        """Frames of the next datagram within timeout (None: nothing)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(70000)
            except socket.timeout:
                continue
            session, frames = decode(data)
            return session, frames
        return None

    def open(self):
        for _ in range(self.tries):
            self.send_frames([Frame(OP["PING"], seq=7)], session=0)
            got = self.recv(self.rto)
            if got is None:
                continue
            session, frames = got
            if frames[0].op == OP["PONG"]:
                self.session, self.lease_ms = session, frames[0].ttl_ms
                return self
            if frames[0].op == OP["STATUS"]:
                raise OSError(-frames[0].status()[0], "session refused")
        raise TimeoutError("no PONG")

    def next_seq(self):
        self.seq += 1
        return self.seq

    def call(self, frame, want=("STATUS",), copies=1):
        """Sends frame (with a new seq unless it has one) until an answer
        with its seq comes; returns (answer, [frames after it in the same
        datagram])."""
        if frame.seq == 0:
            frame.seq = self.next_seq()
        for _ in range(self.tries):
            for _ in range(copies):
                self.send_frames([frame])
            deadline = time.monotonic() + self.rto
            while time.monotonic() < deadline:
                got = self.recv(deadline - time.monotonic())
                if got is None:
                    break
                _, frames = got
                for i, f in enumerate(frames):
                    if f.seq == frame.seq and OP_NAME.get(f.op) in want:
                        return f, frames[i + 1:]
                self.inbox.extend(frames)
        raise TimeoutError(f"no answer to {frame}")

    def wait_msg(self, timeout=2.0, op="MSG"):
        for i, f in enumerate(self.inbox):
            if f.op == OP[op]:
                return self.inbox.pop(i)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.recv(deadline - time.monotonic())
            if got is None:
                continue
            for f in got[1]:
                if f.op == OP[op]:
                    return f
                self.inbox.append(f)
        return None
