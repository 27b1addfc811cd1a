// natscheck.mjs - a conformance check of a NATS server's core protocol,
// driven through nats.js (the npm package "nats", v2, pinned in
// package-lock.json).
//
//   npm ci                      # once, in tests/clients/js
//   node natscheck.mjs nats://127.0.0.1:4222 [-aq] [-only name,name] [-list] [-v]
//
// Prints one line per check, "ok <name>" or "FAIL <name>: <why>", then a
// "# ..." summary line, and exits 0 only when every check that ran passed
// (1 when one failed, 2 on a usage error, 77 when the nats package is not
// installed).
//
// Every check opens its own connections and uses its own subjects
// ("natscheck.<nuid>.<check>..."), so any subset can run alone (-only).
//
// With -aq it runs, instead, the checks of atomq's own modes, served through
// request-reply on "$AQ.>" (nats-server does not serve those).

import net from "node:net";
import { randomBytes } from "node:crypto";

let nats;
try {
  nats = await import("nats");
} catch (e) {
  console.log(`natscheck.mjs: the npm package "nats" is not installed (run "npm ci" in tests/clients/js): ${e.message}`);
  process.exit(77);
}
const { connect, headers, ErrorCode, Events, nuid } = nats;

const enc = new TextEncoder();
const dec = new TextDecoder();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitUntil(ms, cond) {
  const end = Date.now() + ms;
  for (;;) {
    if (cond()) return true;
    if (Date.now() > end) return false;
    await sleep(2);
  }
}

function short(b) {
  if (b.length > 40) return `${JSON.stringify(dec.decode(b.subarray(0, 40)))}...(${b.length} bytes)`;
  return JSON.stringify(dec.decode(b));
}

function bytesEqual(a, b) {
  return a.length === b.length && Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.length), Buffer.from(b.buffer, b.byteOffset, b.length)) === 0;
}

class CheckError extends Error {}
function fail(msg) {
  throw new CheckError(msg);
}
// ConnectError marks a failure to connect at all; after a few checks in a
// row fail that way the rest are not run (the server is down or hung).
class ConnectError extends CheckError {}

// T is the state of one running check: server, subject prefix, the
// connections it opened (closed when it ends), and the asynchronous errors
// the client reported on them (any one fails the check).
class T {
  constructor(url, name, verbose) {
    this.url = url;
    this.name = name;
    this.prefix = `natscheck.${nuid.next()}.${name}`;
    this.verbose = verbose;
    this.conns = [];
    this.raw = [];
    this.asyncErr = [];
    this.atEndFns = [];
    this.closed = false;
  }

  // atEnd registers fn (async) to run when the check ends, passed or not,
  // before its connections close (e.g. to destroy what the check created on
  // the server).
  atEnd(fn) {
    this.atEndFns.push(fn);
  }

  async runAtEnd() {
    const fns = this.atEndFns.reverse();
    this.atEndFns = [];
    for (const fn of fns) await fn().catch(() => {});
  }

  subj(...parts) {
    return `${this.prefix}.${parts.join(".")}`;
  }

  log(msg) {
    if (this.verbose) console.log(`# ${this.name}: ${msg}`);
  }

  // connect opens a client connection that never reconnects.
  async connect(tag, extra = {}) {
    let nc;
    try {
      nc = await connect({
        servers: this.url,
        name: `natscheck-${this.name}-${tag}`,
        timeout: 3000,
        reconnect: false,
        ...extra,
      });
    } catch (e) {
      throw new ConnectError(`connect ${tag}: ${e.message}`);
    }
    nc.tag = tag;
    if (this.closed) {
      await nc.close();
      fail("check already timed out");
    }
    this.conns.push(nc);
    (async () => {
      for await (const s of nc.status()) {
        if (s.type === Events.Error) this.asyncErr.push(`${tag}: async error: ${s.data}`);
      }
    })().catch(() => {});
    nc.closed().then((err) => {
      if (err) this.asyncErr.push(`${tag}: connection closed: ${err.message}`);
    });
    return nc;
  }

  dialRaw() {
    const u = new URL(this.url);
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: u.hostname, port: Number(u.port || 4222) });
      const timer = setTimeout(() => {
        s.destroy();
        reject(new ConnectError("tcp: connect timeout"));
      }, 3000);
      s.once("connect", () => {
        clearTimeout(timer);
        this.raw.push(s);
        resolve(new RawConn(s));
      });
      s.once("error", (e) => {
        clearTimeout(timer);
        reject(new ConnectError(`tcp: ${e.message}`));
      });
    });
  }

  async closeAll() {
    this.closed = true;
    const conns = this.conns;
    this.conns = [];
    for (const s of this.raw) s.destroy();
    this.raw = [];
    await Promise.all(conns.map((nc) => nc.close().catch(() => {})));
  }
}

// RawConn reads CRLF-terminated lines from a plain socket.
class RawConn {
  constructor(sock) {
    this.sock = sock;
    this.buf = "";
    this.eof = false;
    this.waiter = null;
    sock.setEncoding("latin1");
    sock.on("data", (d) => {
      this.buf += d;
      this.wake();
    });
    const end = () => {
      this.eof = true;
      this.wake();
    };
    sock.on("end", end);
    sock.on("close", end);
    sock.on("error", end);
  }

  wake() {
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w();
    }
  }

  write(s) {
    try {
      this.sock.write(s);
    } catch {
      // the server may have closed already
    }
  }

  // readLine resolves to a line without its CRLF, null at EOF, or
  // undefined on timeout.
  async readLine(ms) {
    const end = Date.now() + ms;
    for (;;) {
      const i = this.buf.indexOf("\n");
      if (i >= 0) {
        const line = this.buf.slice(0, i + 1);
        this.buf = this.buf.slice(i + 1);
        return line;
      }
      if (this.eof) return null;
      const left = end - Date.now();
      if (left <= 0) return undefined;
      await new Promise((r) => {
        this.waiter = r;
        setTimeout(r, left);
      });
    }
  }
}

async function rawHandshake(rc) {
  const line = await rc.readLine(5000);
  if (line == null) fail(`reading INFO: ${line === null ? "connection closed" : "timeout"}`);
  if (!line.endsWith("\r\n")) fail(`INFO line not terminated by CRLF: ${JSON.stringify(line)}`);
  if (!line.toUpperCase().startsWith("INFO ")) fail(`first line is not INFO: ${JSON.stringify(line)}`);
  let info;
  try {
    info = JSON.parse(line.slice(5));
  } catch (e) {
    fail(`INFO is not JSON: ${e.message}: ${JSON.stringify(line)}`);
  }
  rc.write(
    'CONNECT {"verbose":false,"pedantic":false,"name":"natscheck-raw","lang":"raw","version":"0","protocol":1,"headers":true,"no_responders":true}\r\nPING\r\n',
  );
  for (;;) {
    const l = await rc.readLine(5000);
    if (l == null) fail(`waiting for PONG: ${l === null ? "connection closed" : "timeout"}`);
    const u = l.trimEnd().toUpperCase();
    if (u === "PONG") return info;
    if (u.startsWith("-ERR")) fail(`server answered CONNECT with ${JSON.stringify(l.trim())}`);
    if (!u.startsWith("INFO ")) fail(`unexpected line before PONG: ${JSON.stringify(l)}`);
  }
}

// collector subscribes with a callback that stores every message.
function collect(nc, subject, opts = {}) {
  const msgs = [];
  const sub = nc.subscribe(subject, {
    ...opts,
    callback: (err, m) => {
      if (!err) msgs.push(m);
    },
  });
  return { sub, msgs };
}

// next waits for the (i+1)th message of a collector.
async function nth(c, i, ms, what) {
  if (!(await waitUntil(ms, () => c.msgs.length > i))) fail(`${what}: timeout (got ${c.msgs.length} messages)`);
  return c.msgs[i];
}

// subPub opens the two connections most checks use: a subscriber ("sub")
// and a publisher ("pub").
async function subPub(t) {
  const sc = await t.connect("sub");
  const pc = await t.connect("pub");
  return { sc, pc };
}

// pair opens a subscriber and a publisher connection (subPub), subscribes
// the subscriber to t.subj(name) with a collector and flushes it, so that
// what pc publishes to subj from then on lands in c.msgs.
async function pair(t, name) {
  const { sc, pc } = await subPub(t);
  const subj = t.subj(name);
  const c = collect(sc, subj);
  await sc.flush();
  return { sc, pc, subj, c };
}

// counted opens a subscriber and a publisher connection (subPub) and
// subscribes the subscriber to t.subj(name) with a callback that only counts
// the messages (in k.count), and to a marker subject (see passMarker).
// Nothing is flushed yet.
async function counted(t, name) {
  const { sc, pc } = await subPub(t);
  const k = { sc, pc, subj: t.subj(name), count: 0, markerSubj: t.subj("marker") };
  k.sub = sc.subscribe(k.subj, { callback: () => k.count++ });
  k.marker = collect(sc, k.markerSubj);
  return k;
}

// passMarker publishes to k's marker subject on k.pc and waits for it.
// Messages the server routes to one connection from one publisher keep their
// order, so once the marker arrives, what k.pc published before it has been
// delivered too, if the server was going to deliver it at all.
async function passMarker(k) {
  k.pc.publish(k.markerSubj, enc.encode("marker"));
  await k.pc.flush();
  await nth(k.marker, 0, 3000, "marker");
}

// ---------------------------------------------------------------- checks

async function checkConnect(t) {
  const rc = await t.dialRaw();
  let info;
  try {
    info = await rawHandshake(rc);
  } catch (e) {
    throw new ConnectError(e.message);
  }
  if (typeof info.server_id !== "string" || info.server_id === "") fail(`INFO server_id missing or empty: ${info.server_id}`);
  if (typeof info.proto !== "number" || info.proto < 1) fail(`INFO proto = ${info.proto}, want a number >= 1`);
  if (info.headers !== true) fail(`INFO headers = ${info.headers}, want true`);
  if (typeof info.max_payload !== "number" || info.max_payload <= 0) fail(`INFO max_payload = ${info.max_payload}, want a number > 0`);
  t.log(`INFO server_id=${info.server_id} proto=${info.proto} max_payload=${info.max_payload} version=${info.version}`);

  const nc = await t.connect("client");
  await nc.flush();
  if (nc.info.server_id !== info.server_id) fail(`client sees server_id ${nc.info.server_id}, raw INFO said ${info.server_id}`);
  if (nc.info.max_payload !== info.max_payload) fail(`client max_payload ${nc.info.max_payload} != INFO ${info.max_payload}`);
  if (!nc.info.headers) fail("client says the server does not support headers");
}

async function checkPubSub(t) {
  const { pc, subj, c } = await pair(t, "one");
  const payloads = [enc.encode("hello natscheck"), Uint8Array.from(Buffer.from("bin\r\nPUB x 3\r\n\x00\xff\r\n", "latin1")), new Uint8Array(0)];
  for (const p of payloads) pc.publish(subj, p);
  const reply = t.subj("reply", "to");
  pc.publish(subj, enc.encode("with reply"), { reply });
  await pc.flush();
  for (let i = 0; i < payloads.length; i++) {
    const m = await nth(c, i, 3000, `message ${i}`);
    if (m.subject !== subj) fail(`message ${i}: subject ${m.subject}, want ${subj}`);
    if (!bytesEqual(m.data, payloads[i])) fail(`message ${i}: payload ${short(m.data)}, want ${short(payloads[i])}`);
    if (m.reply) fail(`message ${i}: unexpected reply subject ${m.reply}`);
  }
  const m = await nth(c, 3, 3000, "message with reply");
  if (m.reply !== reply || m.string() !== "with reply") fail(`message with reply: reply ${m.reply} payload ${m.string()}`);
  await sleep(100);
  if (c.msgs.length !== 4) fail(`got ${c.msgs.length} messages, want 4`);
}

async function checkWildcards(t) {
  const { sc, pc } = await subPub(t);
  const p = t.prefix;
  const want = {
    [`${p}.*.c`]: [`${p}.a.c`, `${p}.b.c`],
    [`${p}.>`]: [`${p}.a.c`, `${p}.a`, `${p}.a.b.c`, `${p}.b.c`, `${p}.a.b`, `${p}.x.y.z.w`, `${p}.c.a`],
    [`${p}.*`]: [`${p}.a`],
    [`${p}.a.*.c`]: [`${p}.a.b.c`],
    [`${p}.a.c`]: [`${p}.a.c`],
  };
  const got = {};
  for (const pat of Object.keys(want)) got[pat] = collect(sc, pat);
  await sc.flush();
  const parent = p.slice(0, p.lastIndexOf(".")) + ".zzz";
  const published = [`${p}.a.c`, `${p}.a`, `${p}.a.b.c`, `${p}.b.c`, `${p}.a.b`, `${p}.x.y.z.w`, `${p}.c.a`, p, parent];
  for (const s of published) pc.publish(s, enc.encode(s));
  await pc.flush();
  const total = Object.values(want).reduce((n, v) => n + v.length, 0);
  const count = () => Object.values(got).reduce((n, c) => n + c.msgs.length, 0);
  await waitUntil(3000, () => count() >= total);
  await sleep(100);
  const trim = (v) => v.map((s) => s.slice(p.length));
  for (const pat of Object.keys(want)) {
    const subs = got[pat].msgs.map((m) => m.subject);
    if (JSON.stringify(subs) !== JSON.stringify(want[pat])) {
      fail(`subscription ${JSON.stringify(pat.slice(p.length))} got ${JSON.stringify(trim(subs))}, want ${JSON.stringify(trim(want[pat]))}`);
    }
  }
  if (sc.stats().inMsgs !== total) fail(`subscriber connection received ${sc.stats().inMsgs} MSGs, want ${total}`);
}

async function checkQueueGroups(t) {
  const n = 300;
  const subj = t.subj("work");
  const members = [0, 0, 0];
  const byMsg = new Map();
  const conns = [];
  for (let i = 0; i < 3; i++) {
    const nc = await t.connect(`member${i}`);
    nc.subscribe(subj, {
      queue: "workers",
      callback: (err, m) => {
        if (err) return;
        const seq = Number(m.string());
        members[i]++;
        if (!byMsg.has(seq)) byMsg.set(seq, []);
        byMsg.get(seq).push(i);
      },
    });
    conns.push(nc);
  }
  const pl = await t.connect("plain");
  const plain = collect(pl, subj);
  conns.push(pl);
  for (const nc of conns) await nc.flush();
  const pc = await t.connect("pub");
  for (let i = 0; i < n; i++) pc.publish(subj, enc.encode(String(i)));
  await pc.flush();
  await waitUntil(5000, () => members[0] + members[1] + members[2] >= n && plain.msgs.length >= n);
  await sleep(100);
  if (plain.msgs.length !== n) fail(`plain subscriber got ${plain.msgs.length} messages, want ${n}`);
  plain.msgs.forEach((m, i) => {
    if (m.string() !== String(i)) fail(`plain subscriber: message ${i} has seq ${m.string()} (out of order)`);
  });
  for (let i = 0; i < n; i++) {
    const who = byMsg.get(i) || [];
    if (who.length !== 1) fail(`message ${i} went to ${who.length} queue members [${who}], want exactly 1 (member counts ${members})`);
  }
  members.forEach((c, i) => {
    if (c === 0) fail(`member ${i} got no messages (counts ${members})`);
  });
  t.log(`member counts ${members}`);
}

async function checkRequestReply(t) {
  const rc = await t.connect("responder");
  const subj = t.subj("service");
  let badReply = 0;
  rc.subscribe(subj, {
    callback: (err, m) => {
      if (err) return;
      if (!m.reply) {
        badReply++;
        return;
      }
      m.respond(Buffer.concat([Buffer.from("re:"), m.data]));
    },
  });
  await rc.flush();
  const qc = await t.connect("requester");
  for (const noMux of [false, true]) {
    const style = noMux ? "noMux" : "mux";
    for (let i = 0; i < 10; i++) {
      const data = enc.encode(`${style} request ${i}`);
      let m;
      try {
        m = await qc.request(subj, data, { timeout: 3000, noMux });
      } catch (e) {
        fail(`${style} request ${i}: ${e.message} (code ${e.code})`);
      }
      const want = enc.encode(`re:${style} request ${i}`);
      if (!bytesEqual(m.data, want)) fail(`${style} request ${i}: reply ${short(m.data)}, want ${short(want)}`);
    }
  }
  if (badReply) fail(`responder got ${badReply} requests without a reply subject`);
}

async function checkNoResponders(t) {
  const nc = await t.connect("requester");
  for (const noMux of [false, true]) {
    const style = noMux ? "noMux" : "mux";
    const start = Date.now();
    let err = null;
    try {
      const m = await nc.request(t.subj("nobody", "home", style), enc.encode("anyone?"), { timeout: 3000, noMux });
      fail(`${style}: request to a subject nobody listens on got a reply ${short(m.data)}`);
    } catch (e) {
      if (e instanceof CheckError) throw e;
      err = e;
    }
    const el = Date.now() - start;
    if (err.code !== ErrorCode.NoResponders) fail(`${style}: request error ${err.message} (code ${err.code}) after ${el}ms, want code ${ErrorCode.NoResponders}`);
    if (el >= 1000) fail(`${style}: no-responders took ${el}ms, want < 1s`);
    t.log(`${style}: no responders (code ${err.code}) after ${el}ms`);
  }
  await nc.flush();
}

async function checkHeaders(t) {
  const { pc, subj, c } = await pair(t, "hdr");
  const h1 = headers();
  h1.set("X-Natscheck", "one");
  h1.append("Multi-Value", "a");
  h1.append("Multi-Value", "b");
  h1.append("Multi-Value", "c");
  h1.set("mixedCase", "value with spaces: and colon");
  const h2 = headers();
  h2.set("Only-Header", "empty payload");
  const h3 = headers();
  h3.set("K", "v");
  const sent = [
    { data: enc.encode("payload after headers"), h: h1, reply: "" },
    { data: new Uint8Array(0), h: h2, reply: "" },
    { data: enc.encode("with reply"), h: h3, reply: t.subj("hdr", "reply") },
  ];
  for (const s of sent) pc.publish(subj, s.data, s.reply ? { headers: s.h, reply: s.reply } : { headers: s.h });
  pc.publish(subj, enc.encode("plain"));
  await pc.flush();
  for (let i = 0; i < sent.length; i++) {
    const m = await nth(c, i, 3000, `message ${i}`);
    const got = m.headers ? JSON.stringify(m.headers.toRecord()) : "none";
    const want = JSON.stringify(sent[i].h.toRecord());
    if (got !== want) fail(`message ${i}: headers ${got}, want ${want}`);
    if (!bytesEqual(m.data, sent[i].data)) fail(`message ${i}: payload ${short(m.data)}, want ${short(sent[i].data)}`);
    if ((m.reply || "") !== sent[i].reply) fail(`message ${i}: reply ${m.reply}, want ${sent[i].reply}`);
  }
  const m = await nth(c, sent.length, 3000, "plain message");
  if ((m.headers && m.headers.keys().length) || m.string() !== "plain") fail(`plain message: headers ${m.headers ? JSON.stringify(m.headers.toRecord()) : "none"} payload ${m.string()}`);
}

function randomPayload(n) {
  return new Uint8Array(randomBytes(n));
}

async function roundTrip(pc, c, subj, payload) {
  const i = c.msgs.length;
  pc.publish(subj, payload);
  await pc.flush();
  const m = await nth(c, i, 5000, `receive ${payload.length} bytes`);
  if (!bytesEqual(m.data, payload)) {
    let at = 0;
    while (at < m.data.length && at < payload.length && m.data[at] === payload[at]) at++;
    fail(`${payload.length}-byte payload came back as ${m.data.length} bytes, first difference at byte ${at}`);
  }
}

async function checkPayloadSizes(t) {
  const { pc, subj, c } = await pair(t, "sizes");
  const max = pc.info.max_payload;
  const sizes = [0, 1, 2, 127, 128, 1023, 1024, 1025, 4095, 4096, 4097, 8191, 8192, 8193, 16384, 32767, 32768, 32769, 65535, 65536, 65537, 131072, 262144, 500000, max - 1, max];
  for (const n of sizes) {
    if (n < 0 || n > max) continue;
    await roundTrip(pc, c, subj, randomPayload(n));
  }
}

async function checkPayload1MiB(t) {
  const { pc, subj, c } = await pair(t, "big");
  if (pc.info.max_payload < 1 << 20) fail(`server max_payload ${pc.info.max_payload} < 1 MiB`);
  for (let i = 0; i < 2; i++) await roundTrip(pc, c, subj, randomPayload(1 << 20));
}

// nats.js refuses locally (synchronously, code MAX_PAYLOAD_EXCEEDED) a
// publish over the server's max_payload; the connection stays usable.
async function checkPayloadTooBig(t) {
  const nc = await t.connect("pub");
  const max = nc.info.max_payload;
  const tryPub = (what, fn) => {
    try {
      fn();
    } catch (e) {
      if (e.code !== ErrorCode.MaxPayloadExceeded) fail(`${what}: error ${e.message} (code ${e.code}), want code ${ErrorCode.MaxPayloadExceeded}`);
      return;
    }
    fail(`${what}: publish accepted, want ${ErrorCode.MaxPayloadExceeded}`);
  };
  tryPub(`publish of max_payload+1 = ${max + 1} bytes`, () => nc.publish(t.subj("toobig"), new Uint8Array(max + 1)));
  const h = headers();
  h.set("K", "v");
  tryPub("header message over max_payload", () => nc.publish(t.subj("toobig"), new Uint8Array(max), { headers: h }));
  try {
    await nc.flush();
  } catch (e) {
    fail(`connection unusable after refused publish: ${e.message}`);
  }
}

// A client that ignores max_payload and sends "PUB <subject> <max+1>" gets
// -ERR 'Maximum Payload Violation' and the server closes the connection.
// nats-server answers right after the PUB line; a server that reads the
// payload first is accepted too.
async function checkPayloadTooBigRaw(t) {
  const rc = await t.dialRaw();
  const info = await rawHandshake(rc);
  const n = info.max_payload + 1;
  rc.write(`PUB ${t.subj("toobig")} ${n}\r\n`);
  const lines = [];
  let sawErr = false;
  let closed = false;
  let sentPayload = false;
  for (;;) {
    const l = await rc.readLine(sentPayload ? 3000 : 1000);
    if (l === null) {
      closed = true;
      break;
    }
    if (l === undefined) {
      if (sentPayload || sawErr) break;
      sentPayload = true;
      rc.write(Buffer.concat([Buffer.alloc(n), Buffer.from("\r\n")]));
      continue;
    }
    const s = l.trimEnd();
    lines.push(s);
    if (s.toUpperCase().startsWith("-ERR")) {
      if (!s.toLowerCase().includes("maximum payload violation")) fail(`got ${JSON.stringify(s)}, want -ERR 'Maximum Payload Violation'`);
      sawErr = true;
    }
  }
  if (!sawErr && closed) fail(`server closed the connection without -ERR 'Maximum Payload Violation' (got ${JSON.stringify(lines)})`);
  if (!sawErr) fail(`no -ERR 'Maximum Payload Violation' (got ${JSON.stringify(lines)})`);
  if (!closed) fail(`server sent ${JSON.stringify(lines)} but did not close the connection`);
  t.log(`server replied ${JSON.stringify(lines)}, closed; payload sent first: ${sentPayload}`);
}

async function checkManySubs(t) {
  const n = 10000;
  const sc = await t.connect("sub");
  const seen = new Uint8Array(n);
  let got = 0;
  let bad = "";
  for (let i = 0; i < n; i++) {
    const want = t.subj("s", String(i));
    sc.subscribe(want, {
      callback: (err, m) => {
        if (err) return;
        const k = Number(m.string());
        if (!(k >= 0 && k < n)) bad ||= `bad payload ${short(m.data)}`;
        else if (m.subject !== t.subj("s", String(k))) bad ||= `message ${k} arrived on subject ${m.subject}`;
        else if (seen[k]) bad ||= `message ${k} delivered twice`;
        else seen[k] = 1;
        got++;
      },
    });
  }
  await sc.flush();
  const pc = await t.connect("pub");
  for (let i = 0; i < n; i++) pc.publish(t.subj("s", String(i)), enc.encode(String(i)));
  await pc.flush();
  await waitUntil(10000, () => got >= n || bad !== "");
  if (bad) fail(bad);
  if (got !== n) fail(`only ${got} of ${n} messages delivered`);
  await sleep(100);
  if (got !== n) fail(`${got - n} extra messages`);
}

async function checkOrdered100k(t) {
  const n = 100000;
  const sc = await t.connect("sub");
  let next = 0;
  let bad = "";
  sc.subscribe(t.subj("seq"), {
    callback: (err, m) => {
      if (err || bad) return;
      const seq = Number(m.string());
      if (seq !== next) bad = `got seq ${m.string()}, want ${next}`;
      next++;
    },
  });
  await sc.flush();
  const pc = await t.connect("pub");
  const start = Date.now();
  const subj = t.subj("seq");
  for (let i = 0; i < n; i++) {
    pc.publish(subj, enc.encode(String(i)));
    // Let the socket drain now and then so the outbound buffer stays small.
    if (i % 10000 === 9999) await pc.flush();
  }
  await pc.flush();
  await waitUntil(20000, () => next >= n || bad !== "");
  if (bad) fail(bad);
  if (next !== n) fail(`received ${next} of ${n} messages`);
  const el = Date.now() - start;
  await sleep(50);
  if (next !== n) fail(`received ${next} messages, want exactly ${n}`);
  t.log(`${n} messages in ${el}ms (${Math.round((n / el) * 1000)} msg/s)`);
}

async function checkUnsubscribe(t) {
  const k = await counted(t, "u");
  const { sc, pc, subj } = k;
  await sc.flush();
  pc.publish(subj, enc.encode("before"));
  await pc.flush();
  if (!(await waitUntil(3000, () => k.count === 1))) fail("message before unsubscribe not received");
  k.sub.unsubscribe();
  await sc.flush();
  const before = sc.stats().inMsgs;
  for (let i = 0; i < 5; i++) pc.publish(subj, enc.encode("after"));
  await passMarker(k);
  if (k.count !== 1) fail(`handler ran ${k.count} times, want 1`);
  // nats.js drops MSGs for unknown sids silently; count what the server sent.
  const d = sc.stats().inMsgs - before;
  if (d !== 1) fail(`server sent ${d} messages after UNSUB (marker included), want 1`);
}

async function checkAutoUnsubscribe(t) {
  const k = await counted(t, "auto");
  const { sc, pc, subj } = k;
  k.sub.unsubscribe(5); // auto-unsubscribe after 5 messages
  await sc.flush();
  const before = sc.stats().inMsgs;
  for (let i = 0; i < 10; i++) pc.publish(subj, enc.encode(String(i)));
  await passMarker(k);
  await waitUntil(1000, () => k.count >= 5);
  await sleep(20);
  if (k.count !== 5) fail(`received ${k.count} messages, want 5`);
  const d = sc.stats().inMsgs - before;
  if (d !== 6) fail(`server sent ${d} messages (marker included), want 6 (UNSUB max ignored?)`);
}

async function checkNoEcho(t) {
  const ac = await t.connect("noecho", { noEcho: true });
  const bc = await t.connect("echo");
  const subj = t.subj("echo");
  const a = collect(ac, subj);
  const b = collect(bc, subj);
  await ac.flush();
  await bc.flush();
  for (let i = 0; i < 10; i++) ac.publish(subj, enc.encode("from-a"));
  await ac.flush();
  if (!(await waitUntil(3000, () => b.msgs.length >= 10))) fail(`other connection got ${b.msgs.length} of 10 messages`);
  // B's message reaches A (no_echo hides only A's own) and B (echo is on by
  // default); A's own messages were routed before it.
  bc.publish(subj, enc.encode("from-b"));
  await bc.flush();
  const ok = await waitUntil(3000, () => a.msgs.length >= 1 && b.msgs.length >= 11);
  await sleep(50);
  const aGot = a.msgs.map((m) => m.string());
  if (!ok) fail(`after B published: no-echo connection got ${JSON.stringify(aGot)}, echo connection got ${b.msgs.length} messages (want 11)`);
  if (aGot.length !== 1 || aGot[0] !== "from-b") fail(`no-echo connection got ${JSON.stringify(aGot)}, want only ["from-b"]`);
  if (b.msgs.length !== 11 || b.msgs[10].string() !== "from-b") fail(`echo connection got ${b.msgs.length} messages, want 11 ending with its own`);
  if (ac.stats().inMsgs !== 1) fail(`server sent ${ac.stats().inMsgs} messages to the no-echo connection, want 1`);
}

async function checkPingPong(t) {
  const nc = await t.connect("client");
  const start = process.hrtime.bigint();
  for (let i = 0; i < 100; i++) await nc.flush();
  const el = Number(process.hrtime.bigint() - start) / 1e6;
  const rtt = await nc.rtt();
  t.log(`100 flushes in ${el.toFixed(2)}ms, rtt ${rtt}ms`);
}

async function checkTwoConnections(t) {
  const n = 1000;
  const ac = await t.connect("a");
  const bc = await t.connect("b");
  const ab = t.subj("a-to-b");
  const ba = t.subj("b-to-a");
  const aSub = collect(ac, ba);
  const bSub = collect(bc, ab);
  await ac.flush();
  await bc.flush();
  for (let i = 0; i < n; i++) {
    ac.publish(ab, enc.encode(String(i)));
    bc.publish(ba, enc.encode(String(i)));
  }
  await Promise.all([ac.flush(), bc.flush()]);
  for (const [dir, c] of [["A->B", bSub], ["B->A", aSub]]) {
    if (!(await waitUntil(3000, () => c.msgs.length >= n))) fail(`${dir}: got ${c.msgs.length} of ${n} messages`);
    c.msgs.slice(0, n).forEach((m, i) => {
      if (m.string() !== String(i)) fail(`${dir}: message ${i} has payload ${short(m.data)} (out of order)`);
    });
  }
  await sleep(50);
  if (aSub.msgs.length !== n || bSub.msgs.length !== n) fail(`extra messages: A got ${aSub.msgs.length}, B got ${bSub.msgs.length}`);
}

const checks = [
  ["connect", 10000, checkConnect],
  ["pubsub", 10000, checkPubSub],
  ["wildcards", 10000, checkWildcards],
  ["queue_groups", 10000, checkQueueGroups],
  ["request_reply", 10000, checkRequestReply],
  ["no_responders", 10000, checkNoResponders],
  ["headers", 10000, checkHeaders],
  ["payload_sizes", 15000, checkPayloadSizes],
  ["payload_1mib", 10000, checkPayload1MiB],
  ["payload_too_big", 10000, checkPayloadTooBig],
  ["payload_too_big_raw", 10000, checkPayloadTooBigRaw],
  ["many_subs", 20000, checkManySubs],
  ["ordered_100k", 25000, checkOrdered100k],
  ["unsubscribe", 10000, checkUnsubscribe],
  ["auto_unsubscribe", 10000, checkAutoUnsubscribe],
  ["no_echo", 10000, checkNoEcho],
  ["ping_pong", 10000, checkPingPong],
  ["two_connections", 10000, checkTwoConnections],
];

// ---------------------------------------------------------------- $AQ checks
//
// atomq serves its own modes (mailbox, latest, log, channel) to NATS clients
// through request-reply on "$AQ.>": every request is answered by one JSON
// object on its reply subject, {"ok":true,...} or {"ok":false,"error":"CODE",
// "message":"..."}. Message payloads go in raw (the request's payload) and
// come back base64 in "data". nats-server does not serve these, so they run
// only with -aq (and then only they run).

const AQ_TIMEOUT = 2000; // an ordinary $AQ request
const AQ_WAIT_TIMEOUT = 5000; // a fetch that may wait (wait_ms)

// aqName returns an entity name private to this check run.
function aqName(t, kind) {
  return `${t.prefix.replaceAll(".", "-")}-${kind}`;
}

// aqDestroyAtEnd makes the request verb (a DESTROY or CLOSE) when the check
// ends, ignoring the answer, so that a failed check leaves nothing behind
// (unacked messages hold server buffers).
function aqDestroyAtEnd(t, nc, verb) {
  t.atEnd(() => nc.request(`$AQ.${verb}`, new Uint8Array(0), { timeout: AQ_TIMEOUT }));
}

// aqBody turns a request body into bytes: undefined is empty, a string or
// Uint8Array goes as is, anything else as JSON.
function aqBody(body) {
  if (body === undefined) return new Uint8Array(0);
  if (typeof body === "string") return enc.encode(body);
  if (body instanceof Uint8Array) return body;
  return enc.encode(JSON.stringify(body));
}

// AqAnswer is one decoded $AQ answer.
class AqAnswer {
  constructor(subj, raw) {
    this.subj = subj;
    this.raw = raw;
    try {
      this.f = JSON.parse(raw);
    } catch {
      this.f = null;
    }
    if (this.f === null || typeof this.f !== "object" || Array.isArray(this.f)) this.fail("the answer is not one JSON object");
  }

  fail(msg) {
    const raw = this.raw.length > 300 ? `${this.raw.slice(0, 300)}...` : this.raw;
    fail(`${this.subj}: ${msg} (answer ${raw})`);
  }

  // expect checks "ok" and the other fields, exactly those in want, with
  // their values: a string, boolean or number (an integer), or a function
  // that returns an error string for a bad value.
  expect(ok, want) {
    if (this.f.ok !== ok) this.fail(`"ok" is ${JSON.stringify(this.f.ok)}, want ${ok}`);
    for (const k of Object.keys(this.f)) {
      if (k !== "ok" && !(k in want)) this.fail(`unexpected field ${JSON.stringify(k)}`);
    }
    for (const [k, w] of Object.entries(want)) {
      if (!(k in this.f)) this.fail(`field ${JSON.stringify(k)} missing`);
      const v = this.f[k];
      let err = "";
      if (typeof w === "function") err = w(v) || "";
      else if (v !== w) err = `want ${JSON.stringify(w)}`;
      if (err) this.fail(`field ${JSON.stringify(k)} is ${JSON.stringify(v)}: ${err}`);
    }
    return this;
  }

  // expectFail checks an error answer: {"ok":false,"error":code,"message":...}.
  expectFail(code) {
    return this.expect(false, aqFailWant(code));
  }

  // messages decodes the "messages" field: an array of objects with exactly
  // the fields key ("seq" or "offset"), "data" (base64) and "deliveries".
  messages(key) {
    const arr = this.f.messages;
    if (!Array.isArray(arr)) this.fail(`"messages" is not an array`);
    return arr.map((o, i) => {
      const keys = o && typeof o === "object" ? Object.keys(o).sort().join(",") : "";
      if (keys !== [key, "data", "deliveries"].sort().join(",")) this.fail(`message ${i}: want an object with exactly "${key}", "data", "deliveries"`);
      if (!Number.isInteger(o[key]) || o[key] < 0 || !Number.isInteger(o.deliveries) || typeof o.data !== "string") {
        this.fail(`message ${i}: want "${key}" and "deliveries" integers, "data" a string`);
      }
      const data = aqBase64(o.data);
      if (!data) this.fail(`message ${i}: data is not base64`);
      return { id: o[key], data, deliveries: o.deliveries };
    });
  }

  // sameMsgs compares messages with want: ids, payloads and delivery
  // counts, in order.
  sameMsgs(key, what, got, want) {
    if (got.length !== want.length) this.fail(`${what}: got ${got.length} messages (${key} ${JSON.stringify(got.map((m) => m.id))}), want ${want.length}`);
    want.forEach((w, i) => {
      const g = got[i];
      if (g.id !== w.id || g.deliveries !== w.deliveries) {
        this.fail(`${what}: message ${i} has ${key} ${g.id}, deliveries ${g.deliveries}; want ${key} ${w.id}, deliveries ${w.deliveries}`);
      }
      if (!bytesEqual(g.data, w.data)) this.fail(`${what}: message ${i} (${key} ${g.id}): data ${short(g.data)}, want ${short(w.data)}`);
    });
  }
}

// aqBase64 decodes strict (padded, standard alphabet) base64, or returns null.
function aqBase64(s) {
  if (typeof s !== "string" || s.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(s)) return null;
  return new Uint8Array(Buffer.from(s, "base64"));
}

const aqNonEmpty = (v) => (typeof v === "string" && v !== "" ? "" : "want a non-empty string");
const aqMatch = (re) => (v) => (typeof v === "string" && re.test(v) ? "" : `want a string matching ${re}`);
const aqAnyInt = (v) => (Number.isInteger(v) ? "" : "want an integer");
// aqFailWant is what an error answer has besides "ok": the code and a message.
const aqFailWant = (code) => ({ error: code, message: aqNonEmpty });

// aqCall sends the request "$AQ.<verb>" with body (and headers, if given) on
// nc and decodes the answer, which must be exactly one JSON object.
async function aqCall(nc, verb, body, hdrs, timeout = AQ_TIMEOUT) {
  const subj = `$AQ.${verb}`;
  let m;
  try {
    m = await nc.request(subj, aqBody(body), hdrs ? { timeout, headers: hdrs } : { timeout });
  } catch (e) {
    fail(`${subj}: ${e.message} (code ${e.code})`);
  }
  return new AqAnswer(subj, dec.decode(m.data));
}

// aqOK makes a request that must succeed with exactly the fields in want.
async function aqOK(nc, verb, body, want = {}) {
  return (await aqCall(nc, verb, body)).expect(true, want);
}

// aqFail makes a request that must fail with the error code.
async function aqFail(nc, verb, body, code) {
  return (await aqCall(nc, verb, body)).expectFail(code);
}

// aqExpectCall makes a request (with headers hdrs) whose answer must have
// "ok" and exactly the fields in want; what (the headers or body sent) leads
// the error when the answer is not that.
async function aqExpectCall(nc, verb, body, hdrs, what, ok, want) {
  const a = await aqCall(nc, verb, body, hdrs);
  try {
    a.expect(ok, want);
  } catch (e) {
    fail(`${what}: ${e.message}`);
  }
}

// aqConnectCreate connects (tagged tag) and creates on that connection the
// check's own mailbox or log (mode "mailbox" or "log") named aqName(t, kind),
// with opts besides the name: the answer must be exactly {"name":name,
// "mode":mode}. The entity is destroyed when the check ends, whether the
// create succeeded or not.
async function aqConnectCreate(t, tag, mode, kind, opts = {}) {
  const nc = await t.connect(tag);
  const name = aqName(t, kind);
  const verb = mode.toUpperCase();
  aqDestroyAtEnd(t, nc, `${verb}.DESTROY.${name}`);
  await aqOK(nc, `${verb}.CREATE`, { name, ...opts }, { name, mode });
  return { nc, name };
}

// aqCreateUnnamed makes the request verb ("MAILBOX.CREATE", "CHANNEL.OPEN")
// with body, which must answer exactly {"name":<a string matching re>,
// "mode":mode}, and makes the request "<destroy>.<name>" when the check
// ends. It returns the name and the answer.
async function aqCreateUnnamed(t, nc, verb, body, mode, re, destroy) {
  const a = await aqOK(nc, verb, body, { name: aqMatch(re), mode });
  aqDestroyAtEnd(t, nc, `${destroy}.${a.f.name}`);
  return { name: a.f.name, a };
}

// aqFetch makes a fetch or read request and returns its answer and messages
// (key is "seq" or "offset").
async function aqFetch(nc, verb, body, key, timeout = AQ_TIMEOUT) {
  const a = (await aqCall(nc, verb, body, null, timeout)).expect(true, { messages: () => "" });
  return { a, msgs: a.messages(key) };
}

// aqExpectMsgs fetches (or reads) and compares the messages with want.
async function aqExpectMsgs(nc, verb, body, key, want) {
  const { a, msgs } = await aqFetch(nc, verb, body, key);
  const b = dec.decode(aqBody(body));
  a.sameMsgs(key, b ? `body ${b}` : "empty body", msgs, want);
}

// aqHeaders builds NATS headers from [key, value] pairs, keys as given.
function aqHeaders(pairs) {
  const h = headers();
  for (const [k, v] of pairs) h.append(k, v);
  return h;
}

// aqBinary is a payload with the bytes a text protocol could trip over.
const aqBinary = Uint8Array.from(Buffer.from('\x00bin\r\nPUB x 3\r\n\xff\x00\n\r{"ok":false}\xff', "latin1"));
const txt = (s) => enc.encode(s);

async function checkAqInfo(t) {
  let workers = -1;
  const seen = {};
  for (let i = 0; i < 4; i++) {
    const nc = await t.connect(`client${i}`);
    // An empty object is an empty body.
    const a = await aqOK(nc, "INFO", i % 2 ? "{}" : undefined, {
      server: "atomq",
      version: aqNonEmpty,
      workers: (v) => (Number.isInteger(v) && v >= 1 && (workers < 0 || v === workers) ? "" : `want an integer >= 1, the same for every connection (${workers})`),
      worker: aqAnyInt,
    });
    workers = a.f.workers;
    if (a.f.worker < 0 || a.f.worker >= workers) a.fail(`worker ${a.f.worker} is not in 0..workers-1`);
    seen[a.f.worker] = (seen[a.f.worker] || 0) + 1;
    if (i === 0) t.log(a.raw);
  }
  t.log(`workers answering 4 connections: ${JSON.stringify(seen)}`);
}

async function checkAqMailbox(t) {
  const { nc, name } = await aqConnectCreate(t, "client", "mailbox", "mbx", { ttl_ms: 60000, storage: "mem", max_msgs: 1000, max_bytes: 16 << 20 });
  await aqFail(nc, "MAILBOX.CREATE", { name }, "EXISTS");
  const payloads = [txt("hello mailbox"), aqBinary, new Uint8Array(0), randomPayload(100 << 10)];
  for (let i = 0; i < payloads.length; i++) await aqOK(nc, `MAILBOX.SEND.${name}`, payloads[i], { seq: i });
  const msg = (i) => ({ id: i, data: payloads[i], deliveries: 1 });
  const fetch = `MAILBOX.FETCH.${name}`;
  // The default batch is 1; a bigger batch takes what there is; what is
  // handed out and not acked is not handed out again at once.
  await aqExpectMsgs(nc, fetch, undefined, "seq", [msg(0)]);
  await aqExpectMsgs(nc, fetch, { batch: 2 }, "seq", [msg(1), msg(2)]);
  await aqExpectMsgs(nc, fetch, { batch: 64 }, "seq", [msg(3)]);
  await aqExpectMsgs(nc, fetch, { batch: 64 }, "seq", []);
  const ack = `MAILBOX.ACK.${name}`;
  for (let i = 0; i < payloads.length; i++) await aqOK(nc, ack, { seq: i });
  await aqFail(nc, ack, { seq: 1 }, "NOT_FOUND");
  await aqFail(nc, ack, {}, "BAD_REQUEST");
  await aqOK(nc, `MAILBOX.SEND.${name}`, "after the acks", { seq: 4 });
  await aqExpectMsgs(nc, fetch, { batch: 64 }, "seq", [{ id: 4, data: txt("after the acks"), deliveries: 1 }]);
  await aqOK(nc, ack, { seq: 4 });

  // No name: the server makes one up ("mbx.<hex>"), which works like any.
  const { name: made } = await aqCreateUnnamed(t, nc, "MAILBOX.CREATE", undefined, "mailbox", /^mbx\.[0-9a-f]+$/, "MAILBOX.DESTROY");
  t.log(`made-up name ${made}`);
  await aqOK(nc, `MAILBOX.SEND.${made}`, "to a made-up name", { seq: 0 });
  await aqExpectMsgs(nc, `MAILBOX.FETCH.${made}`, undefined, "seq", [{ id: 0, data: txt("to a made-up name"), deliveries: 1 }]);
  await aqOK(nc, `MAILBOX.DESTROY.${made}`);

  await aqOK(nc, `MAILBOX.DESTROY.${name}`);
  await aqFail(nc, `MAILBOX.SEND.${name}`, "after destroy", "NOT_FOUND");
  await aqFail(nc, fetch, undefined, "NOT_FOUND");
  await aqFail(nc, `MAILBOX.SEND.${aqName(t, "never-made")}`, "nobody", "NOT_FOUND");
}

async function checkAqMailboxWait(t) {
  const fc = await t.connect("fetcher");
  const { nc: sc, name } = await aqConnectCreate(t, "sender", "mailbox", "mbx");
  const fetch = `MAILBOX.FETCH.${name}`;
  let start = Date.now();
  let r = null;
  const waiting = aqFetch(fc, fetch, { batch: 1, wait_ms: 2000 }, "seq", AQ_WAIT_TIMEOUT).then(
    (v) => (r = { ...v, at: Date.now() }),
    (e) => (r = { err: e, at: Date.now() }),
  );
  await sleep(100);
  if (r) fail(`fetch with wait_ms 2000 answered after ${r.at - start}ms, before anything was sent: ${r.err ? r.err.message : JSON.stringify(r.msgs)}`);
  const sent = Date.now();
  await aqOK(sc, `MAILBOX.SEND.${name}`, "wake up", { seq: 0 });
  await waiting;
  if (r.err) throw r.err;
  if (r.at - start > 1000) fail(`fetch with wait_ms 2000 answered after ${r.at - start}ms (${r.at - sent}ms after the send), want within 1s`);
  r.a.sameMsgs("seq", "wait_ms 2000", r.msgs, [{ id: 0, data: txt("wake up"), deliveries: 1 }]);
  t.log(`waiting fetch answered ${r.at - sent}ms after the send`);
  await aqOK(fc, `MAILBOX.ACK.${name}`, { seq: 0 });

  // Nothing comes: the answer is empty, when the wait ends.
  start = Date.now();
  const { a, msgs } = await aqFetch(fc, fetch, { batch: 4, wait_ms: 200 }, "seq", AQ_WAIT_TIMEOUT);
  const el = Date.now() - start;
  if (msgs.length) a.fail(`fetch with wait_ms 200 of an empty mailbox got ${msgs.length} messages`);
  if (el < 150 || el > 1000) fail(`fetch with wait_ms 200 of an empty mailbox answered after ${el}ms, want 150ms..1s`);
  t.log(`empty fetch with wait_ms 200 answered after ${el}ms`);
}

async function checkAqHeaders(t) {
  const { nc, name } = await aqConnectCreate(t, "client", "mailbox", "mbx");
  const send = `MAILBOX.SEND.${name}`;
  const good = [
    [[["AQ-TTL-MS", "60000"]], "ttl 60s"],
    [[["AQ-Storage", "mem"]], "storage mem"],
    [[["AQ-TTL-MS", "60000"], ["AQ-Storage", "mem"], ["X-Other", "ignored"]], "both"],
    [[["AQ-TTL-MS", "1"]], "expires in 1 ms"],
  ];
  for (let i = 0; i < good.length; i++) {
    const [h, data] = good[i];
    await aqExpectCall(nc, send, data, aqHeaders(h), `headers ${JSON.stringify(h)}`, true, { seq: i });
  }
  const bad = [
    [["AQ-TTL-MS", "abc"]],
    [["AQ-TTL-MS", "-5"]],
    [["AQ-TTL-MS", "12ms"]],
    [["AQ-TTL-MS", "99999999999"]],
    [["AQ-TTL-MS", ""]],
    [["AQ-Storage", "floppy"]],
    [["AQ-Storage", ""]],
    [["AQ-TTL-MS", "60000"], ["AQ-Storage", "floppy"]],
  ];
  for (const h of bad) await aqExpectCall(nc, send, "rejected", aqHeaders(h), `headers ${JSON.stringify(h)}`, false, aqFailWant("BAD_REQUEST"));
  // The 1 ms message expires; the rejected ones took no seq.
  await sleep(100);
  await aqOK(nc, send, "last", { seq: good.length });
  const want = [
    { id: 0, data: txt("ttl 60s"), deliveries: 1 },
    { id: 1, data: txt("storage mem"), deliveries: 1 },
    { id: 2, data: txt("both"), deliveries: 1 },
    { id: 4, data: txt("last"), deliveries: 1 },
  ];
  await aqExpectMsgs(nc, `MAILBOX.FETCH.${name}`, { batch: 64 }, "seq", want);
}

async function checkAqLatest(t) {
  const wc = await t.connect("watcher");
  const nc = await t.connect("client");
  const base = aqName(t, "key");
  const watch = `$AQ.LATEST.WATCH.${base}`;
  const w = collect(wc, `${watch}.>`);
  await wc.flush();
  const puts = [
    ["a", txt("first value")],
    ["b.c", aqBinary],
    ["a", txt("second value")],
    ["e", new Uint8Array(0)],
  ];
  for (const [key, val] of puts) await aqOK(nc, `LATEST.PUT.${base}.${key}`, val);
  for (const [key, val] of [
    ["a", txt("second value")],
    ["b.c", aqBinary],
    ["e", new Uint8Array(0)],
  ]) {
    const a = await aqOK(nc, `LATEST.GET.${base}.${key}`, undefined, {
      data: (v) => {
        const b = aqBase64(v);
        return b && bytesEqual(b, val) ? "" : `want base64 of ${short(val)}`;
      },
    });
    t.log(a.raw);
  }
  await aqFail(nc, `LATEST.GET.${base}.never-put`, undefined, "NOT_FOUND");
  // Every put reaches the watcher, in order for each key (different keys
  // may live on different workers, so not necessarily in order overall).
  await nth(w, puts.length - 1, 3000, "watch");
  await sleep(100);
  if (w.msgs.length !== puts.length) fail(`watch: got ${w.msgs.length} messages, want ${puts.length}`);
  const got = {};
  const want = {};
  for (const m of w.msgs) {
    if (m.reply) fail(`watch: message on ${m.subject} has reply subject ${m.reply}`);
    (got[m.subject] ||= []).push(m.data);
  }
  for (const [key, val] of puts) (want[`${watch}.${key}`] ||= []).push(val);
  for (const [s, vals] of Object.entries(want)) {
    const g = got[s] || [];
    if (g.length !== vals.length || !vals.every((v, i) => bytesEqual(g[i], v))) {
      fail(`watch: ${s} got [${g.map(short)}], want [${vals.map(short)}]`);
    }
  }
}

async function checkAqLog(t) {
  const { nc, name } = await aqConnectCreate(t, "client", "log", "log");
  const datas = [txt("entry 0"), aqBinary, randomPayload(100 << 10)];
  const all = [];
  for (let i = 0; i < datas.length; i++) {
    await aqOK(nc, `LOG.APPEND.${name}`, datas[i], { offset: i });
    all.push({ id: i, data: datas[i], deliveries: 1 });
  }
  const read = `LOG.READ.${name}`;
  // Reading does not remove: the same twice.
  for (let i = 0; i < 2; i++) await aqExpectMsgs(nc, read, { offset: 0, max: 64 }, "offset", all);
  await aqExpectMsgs(nc, read, { offset: 1, max: 1 }, "offset", all.slice(1, 2));
  await aqExpectMsgs(nc, read, { offset: 3, max: 64 }, "offset", []);
  // A group reads from its committed cursor (new: the oldest offset);
  // reading does not move it, a commit does.
  for (let i = 0; i < 2; i++) await aqExpectMsgs(nc, read, { group: "g", max: 2 }, "offset", all.slice(0, 2));
  const commit = `LOG.COMMIT.${name}`;
  await aqOK(nc, commit, { group: "g", offset: 2 });
  await aqExpectMsgs(nc, read, { group: "g", max: 64 }, "offset", all.slice(2));
  await aqOK(nc, commit, { group: "g", offset: 3 });
  await aqExpectMsgs(nc, read, { group: "g", max: 64 }, "offset", []);
  await aqExpectMsgs(nc, read, { group: "h", max: 64 }, "offset", all);
  await aqOK(nc, `LOG.DESTROY.${name}`);
  await aqFail(nc, `LOG.APPEND.${name}`, "after destroy", "NOT_FOUND");
}

async function checkAqChannel(t) {
  const c0 = await t.connect("end0");
  const c1 = await t.connect("end1");
  const { name: id } = await aqCreateUnnamed(t, c0, "CHANNEL.OPEN", { ttl_ms: 60000 }, "channel", /^ch\.[0-9a-f]+$/, "CHANNEL.CLOSE");
  t.log(`channel ${id}`);
  // seq counts from 0 over the channel, both ends together.
  const sends = [
    [c0, "0", txt("0->1 first")],
    [c0, "0", aqBinary],
    [c1, "1", txt("1->0")],
  ];
  for (let i = 0; i < sends.length; i++) await aqOK(sends[i][0], `CHANNEL.SEND.${id}.${sends[i][1]}`, sends[i][2], { seq: i });
  const fetch0 = `CHANNEL.FETCH.${id}.0`;
  const fetch1 = `CHANNEL.FETCH.${id}.1`;
  // Each end gets what the other end sent, once.
  await aqExpectMsgs(c1, fetch1, { batch: 64 }, "seq", [
    { id: 0, data: sends[0][2], deliveries: 1 },
    { id: 1, data: sends[1][2], deliveries: 1 },
  ]);
  await aqExpectMsgs(c0, fetch0, { batch: 64 }, "seq", [{ id: 2, data: sends[2][2], deliveries: 1 }]);
  await aqExpectMsgs(c0, fetch0, { batch: 64 }, "seq", []);
  await aqExpectMsgs(c1, fetch1, { batch: 64 }, "seq", []);
  // An end does not get its own sends.
  await aqOK(c0, `CHANNEL.SEND.${id}.0`, "for end 1 only", { seq: 3 });
  await aqExpectMsgs(c0, fetch0, { batch: 64 }, "seq", []);
  await aqExpectMsgs(c1, fetch1, { batch: 64, wait_ms: 1000 }, "seq", [{ id: 3, data: txt("for end 1 only"), deliveries: 1 }]);
  await aqFail(c0, `CHANNEL.SEND.${id}.2`, "bad end", "BAD_REQUEST");
  await aqFail(c0, `CHANNEL.FETCH.${id}.2`, undefined, "BAD_REQUEST");
  await aqFail(c0, `CHANNEL.FETCH.${id}`, undefined, "BAD_REQUEST");
  await aqOK(c1, `CHANNEL.CLOSE.${id}`);
  await aqFail(c0, `CHANNEL.SEND.${id}.0`, "after close", "NOT_FOUND");
  // Opened with an empty body.
  const b = await aqCreateUnnamed(t, c1, "CHANNEL.OPEN", undefined, "channel", /^ch\.[0-9a-f]+$/, "CHANNEL.CLOSE");
  if (b.name === id) b.a.fail("the same name as the first channel");
  await aqOK(c1, `CHANNEL.CLOSE.${b.name}`);
}

async function checkAqErrors(t) {
  const { nc, name } = await aqConnectCreate(t, "client", "mailbox", "mbx");
  for (const verb of ["NOPE", `NOPE.${name}`, `MAILBOX.FROB.${name}`, "MAILBOX.SEND", "MAILBOX.CREATE.x", "INFO.x", "mailbox.create"]) {
    await aqFail(nc, verb, "{}", "UNKNOWN_SUBJECT");
  }
  const fetch = `MAILBOX.FETCH.${name}`;
  for (const [verb, body] of [
    ["MAILBOX.CREATE", "{not json"],
    ["MAILBOX.CREATE", "[1,2]"],
    ["MAILBOX.CREATE", '"a string"'],
    [fetch, '{"batch":'],
    [fetch, '{"batch":0}'],
    [fetch, '{"batch":65}'],
    [fetch, '{"batch":"1"}'],
    [fetch, '{"wait_ms":60001}'],
    [fetch, '{"wait_ms":-1}'],
    ["LOG.CREATE", "null"],
  ]) {
    await aqExpectCall(nc, verb, body, undefined, `body ${body}`, false, aqFailWant("BAD_REQUEST"));
  }
  // None of that did anything to the mailbox.
  await aqOK(nc, `MAILBOX.SEND.${name}`, "still fine", { seq: 0 });
  await aqExpectMsgs(nc, fetch, { batch: 64 }, "seq", [{ id: 0, data: txt("still fine"), deliveries: 1 }]);
}

const aqChecks = [
  ["aq_info", 10000, checkAqInfo],
  ["aq_mailbox", 10000, checkAqMailbox],
  ["aq_mailbox_wait", 10000, checkAqMailboxWait],
  ["aq_headers", 10000, checkAqHeaders],
  ["aq_latest", 10000, checkAqLatest],
  ["aq_log", 10000, checkAqLog],
  ["aq_channel", 10000, checkAqChannel],
  ["aq_errors", 10000, checkAqErrors],
];

// ---------------------------------------------------------------- main

async function run([name, timeout, fn], url, verbose) {
  const t = new T(url, name, verbose);
  let timer;
  let err = null;
  let unreachable = false;
  try {
    await Promise.race([
      fn(t),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new CheckError(`timed out after ${timeout / 1000}s`)), timeout);
      }),
    ]);
  } catch (e) {
    unreachable = e instanceof ConnectError;
    err = e instanceof CheckError ? e.message : `${e.name}: ${e.message}${e.code ? ` (code ${e.code})` : ""}`;
  } finally {
    clearTimeout(timer);
  }
  if (!err) {
    await sleep(0);
    if (t.asyncErr.length) err = t.asyncErr[0];
  }
  if (!err) {
    const dropped = t.conns.find((nc) => nc.isClosed());
    if (dropped) err = `connection ${dropped.tag} dropped`;
  }
  await t.runAtEnd();
  await t.closeAll();
  return { err, unreachable };
}

function usage(msg) {
  if (msg) console.error(`natscheck.mjs: ${msg}`);
  console.error("usage: node natscheck.mjs URL [-aq] [-only name,name] [-list] [-v]");
  process.exit(2);
}

const args = process.argv.slice(2);
let url = "";
let only = "";
let list = false;
let verbose = false;
let aq = false;
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === "-only" || a === "--only") only = args[++i] ?? usage("-only needs a value");
  else if (a.startsWith("-only=") || a.startsWith("--only=")) only = a.slice(a.indexOf("=") + 1);
  else if (a === "-list" || a === "--list") list = true;
  else if (a === "-v" || a === "--verbose") verbose = true;
  else if (a === "-aq" || a === "--aq") aq = true;
  else if (a === "-url" || a === "--url") url = args[++i] ?? usage("-url needs a value");
  else if (a.startsWith("-")) usage(`unknown flag ${a}`);
  else if (!url) url = a;
  else usage(`unexpected argument ${a}`);
}
const group = aq ? aqChecks : checks;
const other = aq ? checks : aqChecks;
if (list) {
  for (const c of group) console.log(c[0]);
  process.exit(0);
}
if (!url) usage("missing server URL");

let selected = group;
if (only) {
  selected = [];
  for (const name of only.split(",").map((s) => s.trim()).filter(Boolean)) {
    const c = group.find((c) => c[0] === name);
    if (!c && other.find((c) => c[0] === name)) usage(`check ${JSON.stringify(name)} runs only ${aq ? "without" : "with"} -aq`);
    if (!c) usage(`unknown check ${JSON.stringify(name)} (see -list)`);
    selected.push(c);
  }
}

let failed = 0;
let unreachable = 0;
const start = Date.now();
for (const c of selected) {
  const cs = Date.now();
  if (unreachable >= 3) {
    failed++;
    console.log(`FAIL ${c[0]}: not run: the server is unreachable (3 checks in a row could not connect)`);
    continue;
  }
  const r = await run(c, url, verbose);
  const err = r.err;
  unreachable = r.unreachable ? unreachable + 1 : 0;
  if (err) {
    failed++;
    console.log(`FAIL ${c[0]}: ${err}`);
  } else {
    console.log(`ok ${c[0]}`);
  }
  if (verbose) console.log(`# ${c[0]} took ${Date.now() - cs}ms`);
}
let version = "?";
try {
  const { createRequire } = await import("node:module");
  version = createRequire(import.meta.url)("nats/package.json").version;
} catch {
  // exports may hide package.json; the version is only informational
}
console.log(`# natscheck.mjs (nats.js ${version}): ${selected.length} checks, ${failed} failed, ${((Date.now() - start) / 1000).toFixed(3)}s`);
process.exit(failed ? 1 : 0);
