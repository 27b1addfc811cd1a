// natscheck - a conformance check of a NATS server's core protocol, driven
// through the official Go client (nats.go).
//
//	natscheck -url nats://127.0.0.1:4222 [-only name,name] [-list] [-v]
//
// Prints one line per check, "ok <name>" or "FAIL <name>: <why>", then a
// "# ..." summary line, and exits 0 only when every check that ran passed
// (1 when one failed, 2 on a usage error).
//
// Every check opens its own connections and uses its own subjects
// ("natscheck.<nuid>.<check>..."), so any subset can run alone (-only).
//
// Build (GOPATH mode; Debian's nuid has no go.mod, so module mode fails):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode GOPROXY=off \
//	    go build -o natscheck tests/clients/go/natscheck/main.go
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand"
	"net"
	"net/url"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
)

// connectError marks a failure to connect at all; after a few checks in a
// row fail that way the rest are not run (the server is down or hung).
type connectError struct{ error }

// check is one named test. fn returns nil when it passed.
type check struct {
	name    string
	timeout time.Duration
	fn      func(t *T) error
}

var checks = []check{
	{"connect", 10 * time.Second, checkConnect},
	{"pubsub", 10 * time.Second, checkPubSub},
	{"wildcards", 10 * time.Second, checkWildcards},
	{"queue_groups", 10 * time.Second, checkQueueGroups},
	{"request_reply", 10 * time.Second, checkRequestReply},
	{"no_responders", 10 * time.Second, checkNoResponders},
	{"headers", 10 * time.Second, checkHeaders},
	{"payload_sizes", 15 * time.Second, checkPayloadSizes},
	{"payload_1mib", 10 * time.Second, checkPayload1MiB},
	{"payload_too_big", 10 * time.Second, checkPayloadTooBig},
	{"payload_too_big_raw", 10 * time.Second, checkPayloadTooBigRaw},
	{"many_subs", 20 * time.Second, checkManySubs},
	{"ordered_100k", 25 * time.Second, checkOrdered100k},
	{"unsubscribe", 10 * time.Second, checkUnsubscribe},
	{"auto_unsubscribe", 10 * time.Second, checkAutoUnsubscribe},
	{"no_echo", 10 * time.Second, checkNoEcho},
	{"ping_pong", 10 * time.Second, checkPingPong},
	{"two_connections", 10 * time.Second, checkTwoConnections},
}

// T is the state of one running check: its server, its subject prefix, the
// connections it opened (closed when it ends) and the asynchronous errors the
// client reported on them (any one fails the check).
type T struct {
	url     string
	name    string
	prefix  string
	verbose bool

	mu       sync.Mutex
	conns    []*nats.Conn
	raw      []net.Conn
	asyncErr []string
	closed   bool
}

// subj returns a subject private to this check run.
func (t *T) subj(parts ...string) string {
	return t.prefix + "." + strings.Join(parts, ".")
}

func (t *T) logf(format string, a ...interface{}) {
	if t.verbose {
		fmt.Printf("# %s: %s\n", t.name, fmt.Sprintf(format, a...))
	}
}

// connect opens a client connection that never reconnects (a dropped
// connection must fail the check, not be papered over).
func (t *T) connect(tag string, extra ...nats.Option) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name("natscheck-" + t.name + "-" + tag),
		nats.Timeout(3 * time.Second),
		nats.NoReconnect(),
		nats.ErrorHandler(func(_ *nats.Conn, s *nats.Subscription, err error) {
			subj := ""
			if s != nil {
				subj = " on " + s.Subject
			}
			t.mu.Lock()
			t.asyncErr = append(t.asyncErr, fmt.Sprintf("%s: async error%s: %v", tag, subj, err))
			t.mu.Unlock()
		}),
	}
	opts = append(opts, extra...)
	nc, err := nats.Connect(t.url, opts...)
	if err != nil {
		return nil, connectError{fmt.Errorf("connect %s: %v", tag, err)}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		nc.Close()
		return nil, errors.New("check already timed out")
	}
	t.conns = append(t.conns, nc)
	return nc, nil
}

// dialRaw opens a plain TCP connection to the server for protocol-level
// checks.
func (t *T) dialRaw() (net.Conn, error) {
	u, err := url.Parse(t.url)
	if err != nil {
		return nil, err
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "4222")
	}
	c, err := net.DialTimeout("tcp", host, 3*time.Second)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	t.raw = append(t.raw, c)
	t.mu.Unlock()
	return c, nil
}

func (t *T) closeAll() {
	t.mu.Lock()
	t.closed = true
	conns, raw := t.conns, t.raw
	t.conns, t.raw = nil, nil
	t.mu.Unlock()
	for _, nc := range conns {
		nc.Close()
	}
	for _, c := range raw {
		c.Close()
	}
}

func (t *T) firstAsyncErr() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.asyncErr) == 0 {
		return nil
	}
	return errors.New(t.asyncErr[0])
}

// flushAll makes sure the server has processed everything each connection
// sent so far (a PING/PONG round trip per connection).
func flushAll(ncs ...*nats.Conn) error {
	for _, nc := range ncs {
		if err := nc.FlushTimeout(5 * time.Second); err != nil {
			return fmt.Errorf("flush: %v", err)
		}
	}
	return nil
}

// waitUntil polls cond until it is true or d has passed.
func waitUntil(d time.Duration, cond func() bool) bool {
	end := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(end) {
			return false
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// subPub opens the two connections most checks use: a subscriber ("sub")
// and a publisher ("pub").
func (t *T) subPub() (sc, pc *nats.Conn, err error) {
	if sc, err = t.connect("sub"); err != nil {
		return nil, nil, err
	}
	if pc, err = t.connect("pub"); err != nil {
		return nil, nil, err
	}
	return sc, pc, nil
}

// pair opens a subscriber and a publisher connection (subPub), subscribes
// the subscriber synchronously to t.subj(name) and flushes it, so that what
// pc publishes to sub.Subject from then on reaches sub.
func (t *T) pair(name string) (pc *nats.Conn, sub *nats.Subscription, err error) {
	sc, pc, err := t.subPub()
	if err != nil {
		return nil, nil, err
	}
	if sub, err = sc.SubscribeSync(t.subj(name)); err != nil {
		return nil, nil, err
	}
	if err := flushAll(sc); err != nil {
		return nil, nil, err
	}
	return pc, sub, nil
}

// expectMsgs receives n messages from sub, waiting up to d for each, and
// hands them in order to check, stopping at its first error. A message that
// does not come fails as "<prefix>message <i>: <error>".
func expectMsgs(sub *nats.Subscription, n int, d time.Duration, prefix string, check func(i int, m *nats.Msg) error) error {
	for i := 0; i < n; i++ {
		m, err := sub.NextMsg(d)
		if err != nil {
			return fmt.Errorf("%smessage %d: %v", prefix, i, err)
		}
		if err := check(i, m); err != nil {
			return err
		}
	}
	return nil
}

// publishSeq publishes the numbers 0..n-1, as decimal text, to subj on nc.
func publishSeq(nc *nats.Conn, subj string, n int) error {
	for i := 0; i < n; i++ {
		if err := nc.Publish(subj, []byte(strconv.Itoa(i))); err != nil {
			return err
		}
	}
	return nil
}

func short(b []byte) string {
	if len(b) > 40 {
		return fmt.Sprintf("%q...(%d bytes)", b[:40], len(b))
	}
	return fmt.Sprintf("%q", b)
}

// ---------------------------------------------------------------- checks

// readINFO reads the server's greeting on a raw connection.
func readINFO(r *bufio.Reader) (map[string]interface{}, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, fmt.Errorf("reading INFO: %v (got %q)", err, line)
	}
	if !strings.HasSuffix(line, "\r\n") {
		return nil, fmt.Errorf("INFO line not terminated by CRLF: %q", line)
	}
	if !strings.HasPrefix(strings.ToUpper(line), "INFO ") {
		return nil, fmt.Errorf("first line is not INFO: %q", line)
	}
	var info map[string]interface{}
	if err := json.Unmarshal([]byte(strings.TrimSpace(line[5:])), &info); err != nil {
		return nil, fmt.Errorf("INFO is not JSON: %v: %q", err, line)
	}
	return info, nil
}

// rawHandshake reads INFO, sends CONNECT and a PING, and waits for the PONG.
func rawHandshake(c net.Conn, r *bufio.Reader) (map[string]interface{}, error) {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	info, err := readINFO(r)
	if err != nil {
		return nil, err
	}
	connect := `CONNECT {"verbose":false,"pedantic":false,"name":"natscheck-raw","lang":"raw","version":"0","protocol":1,"headers":true,"no_responders":true}` + "\r\nPING\r\n"
	if _, err := c.Write([]byte(connect)); err != nil {
		return nil, fmt.Errorf("write CONNECT: %v", err)
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, fmt.Errorf("waiting for PONG: %v (got %q)", err, line)
		}
		l := strings.ToUpper(strings.TrimRight(line, "\r\n"))
		if l == "PONG" {
			return info, nil
		}
		if strings.HasPrefix(l, "-ERR") {
			return nil, fmt.Errorf("server answered CONNECT with %q", strings.TrimSpace(line))
		}
		// INFO updates are allowed; anything else is unexpected here.
		if !strings.HasPrefix(l, "INFO ") {
			return nil, fmt.Errorf("unexpected line before PONG: %q", line)
		}
	}
}

func checkConnect(t *T) error {
	c, err := t.dialRaw()
	if err != nil {
		return connectError{fmt.Errorf("tcp: %v", err)}
	}
	r := bufio.NewReader(c)
	info, err := rawHandshake(c, r)
	if err != nil {
		return connectError{err}
	}
	id, _ := info["server_id"].(string)
	if id == "" {
		return fmt.Errorf("INFO server_id missing or empty: %v", info["server_id"])
	}
	if p, ok := info["proto"].(float64); !ok || p < 1 {
		return fmt.Errorf("INFO proto = %v, want a number >= 1", info["proto"])
	}
	if h, ok := info["headers"].(bool); !ok || !h {
		return fmt.Errorf("INFO headers = %v, want true", info["headers"])
	}
	mp, ok := info["max_payload"].(float64)
	if !ok || mp <= 0 {
		return fmt.Errorf("INFO max_payload = %v, want a number > 0", info["max_payload"])
	}
	t.logf("INFO server_id=%s proto=%v max_payload=%v version=%v", id, info["proto"], mp, info["version"])

	nc, err := t.connect("client")
	if err != nil {
		return err
	}
	if err := flushAll(nc); err != nil {
		return err
	}
	if got := nc.ConnectedServerId(); got != id {
		return fmt.Errorf("client sees server_id %q, raw INFO said %q", got, id)
	}
	if !nc.HeadersSupported() {
		return errors.New("client says the server does not support headers")
	}
	if nc.MaxPayload() != int64(mp) {
		return fmt.Errorf("client max payload %d != INFO max_payload %v", nc.MaxPayload(), mp)
	}
	if !nc.IsConnected() {
		return fmt.Errorf("client not connected after flush: status %v", nc.Status())
	}
	return nil
}

func checkPubSub(t *T) error {
	pc, sub, err := t.pair("one")
	if err != nil {
		return err
	}
	subj := sub.Subject
	payloads := [][]byte{
		[]byte("hello natscheck"),
		[]byte("bin\r\nPUB x 3\r\n\x00\xff\r\n"), // CRLF and NUL inside the payload
		{},                                       // empty payload
	}
	for _, p := range payloads {
		if err := pc.Publish(subj, p); err != nil {
			return fmt.Errorf("publish: %v", err)
		}
	}
	reply := t.subj("reply", "to")
	if err := pc.PublishRequest(subj, reply, []byte("with reply")); err != nil {
		return fmt.Errorf("publish with reply: %v", err)
	}
	if err := flushAll(pc); err != nil {
		return err
	}
	if err := expectMsgs(sub, len(payloads), 3*time.Second, "", func(i int, m *nats.Msg) error {
		p := payloads[i]
		if m.Subject != subj {
			return fmt.Errorf("message %d: subject %q, want %q", i, m.Subject, subj)
		}
		if !bytes.Equal(m.Data, p) {
			return fmt.Errorf("message %d: payload %s, want %s", i, short(m.Data), short(p))
		}
		if m.Reply != "" {
			return fmt.Errorf("message %d: unexpected reply subject %q", i, m.Reply)
		}
		return nil
	}); err != nil {
		return err
	}
	m, err := sub.NextMsg(3 * time.Second)
	if err != nil {
		return fmt.Errorf("message with reply: %v", err)
	}
	if m.Reply != reply || string(m.Data) != "with reply" {
		return fmt.Errorf("message with reply: reply %q payload %q, want %q %q", m.Reply, m.Data, reply, "with reply")
	}
	if m, err := sub.NextMsg(100 * time.Millisecond); err == nil {
		return fmt.Errorf("unexpected extra message %s", short(m.Data))
	}
	return nil
}

func checkWildcards(t *T) error {
	sc, pc, err := t.subPub()
	if err != nil {
		return err
	}
	p := t.prefix
	patterns := []string{p + ".*.c", p + ".>", p + ".*", p + ".a.*.c", p + ".a.c"}
	var mu sync.Mutex
	got := make(map[string][]string)
	for _, pat := range patterns {
		pat := pat
		if _, err := sc.Subscribe(pat, func(m *nats.Msg) {
			mu.Lock()
			got[pat] = append(got[pat], m.Subject)
			mu.Unlock()
		}); err != nil {
			return err
		}
	}
	if err := flushAll(sc); err != nil {
		return err
	}
	published := []string{p + ".a.c", p + ".a", p + ".a.b.c", p + ".b.c", p + ".a.b", p + ".x.y.z.w", p + ".c.a", p}
	// Also the prefix's parent: matches nothing.
	parent := p[:strings.LastIndex(p, ".")] + ".zzz"
	published = append(published, parent)
	want := map[string][]string{
		p + ".*.c":   {p + ".a.c", p + ".b.c"},
		p + ".>":     {p + ".a.c", p + ".a", p + ".a.b.c", p + ".b.c", p + ".a.b", p + ".x.y.z.w", p + ".c.a"},
		p + ".*":     {p + ".a"},
		p + ".a.*.c": {p + ".a.b.c"},
		p + ".a.c":   {p + ".a.c"},
	}
	total := 0
	for _, v := range want {
		total += len(v)
	}
	for _, s := range published {
		if err := pc.Publish(s, []byte(s)); err != nil {
			return fmt.Errorf("publish %s: %v", s, err)
		}
	}
	if err := flushAll(pc); err != nil {
		return err
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, v := range got {
			n += len(v)
		}
		return n
	}
	waitUntil(3*time.Second, func() bool { return count() >= total })
	time.Sleep(100 * time.Millisecond) // room for unwanted extras to show up
	mu.Lock()
	defer mu.Unlock()
	for _, pat := range patterns {
		if !reflect.DeepEqual(got[pat], want[pat]) {
			return fmt.Errorf("subscription %q got %v, want %v", strings.TrimPrefix(pat, p), trim(got[pat], p), trim(want[pat], p))
		}
	}
	if n := sc.Stats().InMsgs; n != uint64(total) {
		return fmt.Errorf("subscriber connection received %d MSGs, want %d", n, total)
	}
	return nil
}

func trim(v []string, p string) []string {
	out := make([]string, len(v))
	for i, s := range v {
		out[i] = strings.TrimPrefix(s, p)
	}
	return out
}

func checkQueueGroups(t *T) error {
	const n = 300
	subj := t.subj("work")
	var mu sync.Mutex
	members := make([]int, 3)
	byMsg := make(map[int][]int) // message seq -> members that got it
	var plain []int
	var conns []*nats.Conn
	for i := 0; i < 3; i++ {
		i := i
		nc, err := t.connect(fmt.Sprintf("member%d", i))
		if err != nil {
			return err
		}
		if _, err := nc.QueueSubscribe(subj, "workers", func(m *nats.Msg) {
			seq, _ := strconv.Atoi(string(m.Data))
			mu.Lock()
			members[i]++
			byMsg[seq] = append(byMsg[seq], i)
			mu.Unlock()
		}); err != nil {
			return err
		}
		conns = append(conns, nc)
	}
	pl, err := t.connect("plain")
	if err != nil {
		return err
	}
	if _, err := pl.Subscribe(subj, func(m *nats.Msg) {
		seq, _ := strconv.Atoi(string(m.Data))
		mu.Lock()
		plain = append(plain, seq)
		mu.Unlock()
	}); err != nil {
		return err
	}
	conns = append(conns, pl)
	if err := flushAll(conns...); err != nil {
		return err
	}
	pc, err := t.connect("pub")
	if err != nil {
		return err
	}
	if err := publishSeq(pc, subj, n); err != nil {
		return fmt.Errorf("publish: %v", err)
	}
	if err := flushAll(pc); err != nil {
		return err
	}
	done := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return members[0]+members[1]+members[2] >= n && len(plain) >= n
	}
	waitUntil(5*time.Second, done)
	time.Sleep(100 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if len(plain) != n {
		return fmt.Errorf("plain subscriber got %d messages, want %d", len(plain), n)
	}
	for i, s := range plain {
		if s != i {
			return fmt.Errorf("plain subscriber: message %d has seq %d (out of order)", i, s)
		}
	}
	for i := 0; i < n; i++ {
		if len(byMsg[i]) != 1 {
			return fmt.Errorf("message %d went to %d queue members %v, want exactly 1 (member counts %v)", i, len(byMsg[i]), byMsg[i], members)
		}
	}
	for i, c := range members {
		if c == 0 {
			return fmt.Errorf("member %d got no messages (counts %v)", i, members)
		}
	}
	t.logf("member counts %v", members)
	return nil
}

func checkRequestReply(t *T) error {
	rc, err := t.connect("responder")
	if err != nil {
		return err
	}
	subj := t.subj("service")
	var badReply int32
	if _, err := rc.Subscribe(subj, func(m *nats.Msg) {
		if m.Reply == "" {
			atomic.AddInt32(&badReply, 1)
			return
		}
		m.Respond(append([]byte("re:"), m.Data...))
	}); err != nil {
		return err
	}
	if err := flushAll(rc); err != nil {
		return err
	}
	rs, err := t.requesters()
	if err != nil {
		return err
	}
	for _, c := range rs {
		for i := 0; i < 10; i++ {
			data := []byte(fmt.Sprintf("%s request %d", c.style, i))
			m, err := c.nc.Request(subj, data, 3*time.Second)
			if err != nil {
				return fmt.Errorf("%s request %d: %v", c.style, i, err)
			}
			want := append([]byte("re:"), data...)
			if !bytes.Equal(m.Data, want) {
				return fmt.Errorf("%s request %d: reply %s, want %s", c.style, i, short(m.Data), short(want))
			}
		}
	}
	if n := atomic.LoadInt32(&badReply); n != 0 {
		return fmt.Errorf("responder got %d requests without a reply subject", n)
	}
	return nil
}

// requester is a connection that makes requests in one style.
type requester struct {
	style string
	nc    *nats.Conn
}

// requesters opens a connection per request style: "mux" (nats.go's
// default: one wildcard inbox subscription serves all requests) and
// "old-style" (UseOldRequestStyle: a new inbox per request).
func (t *T) requesters() ([]requester, error) {
	qc, err := t.connect("requester")
	if err != nil {
		return nil, err
	}
	oc, err := t.connect("old-style", nats.UseOldRequestStyle())
	if err != nil {
		return nil, err
	}
	return []requester{{"mux", qc}, {"old-style", oc}}, nil
}

func checkNoResponders(t *T) error {
	rs, err := t.requesters()
	if err != nil {
		return err
	}
	for _, c := range rs {
		start := time.Now()
		m, err := c.nc.Request(t.subj("nobody", "home", c.style), []byte("anyone?"), 3*time.Second)
		el := time.Since(start)
		if err == nil {
			return fmt.Errorf("%s: request to a subject nobody listens on got a reply %s", c.style, short(m.Data))
		}
		if !errors.Is(err, nats.ErrNoResponders) {
			return fmt.Errorf("%s: request error %v after %v, want %v", c.style, err, el.Round(time.Millisecond), nats.ErrNoResponders)
		}
		if el >= time.Second {
			return fmt.Errorf("%s: no-responders took %v, want < 1s", c.style, el.Round(time.Millisecond))
		}
		t.logf("%s: no responders after %v", c.style, el)
	}
	// The connections must still work afterwards.
	return flushAll(rs[0].nc, rs[1].nc)
}

func checkHeaders(t *T) error {
	pc, sub, err := t.pair("hdr")
	if err != nil {
		return err
	}
	subj := sub.Subject
	msgs := []*nats.Msg{
		{Subject: subj, Data: []byte("payload after headers"), Header: nats.Header{
			"X-Natscheck": {"one"},
			"Multi-Value": {"a", "b", "c"},
			"mixedCase":   {"value with spaces: and colon"},
		}},
		{Subject: subj, Data: nil, Header: nats.Header{"Only-Header": {"empty payload"}}},
		{Subject: subj, Reply: t.subj("hdr", "reply"), Data: []byte("with reply"), Header: nats.Header{"K": {"v"}}},
	}
	for i, m := range msgs {
		if err := pc.PublishMsg(m); err != nil {
			return fmt.Errorf("publish message %d: %v", i, err)
		}
	}
	// A plain message after header messages must arrive without headers.
	if err := pc.Publish(subj, []byte("plain")); err != nil {
		return err
	}
	if err := flushAll(pc); err != nil {
		return err
	}
	if err := expectMsgs(sub, len(msgs), 3*time.Second, "", func(i int, m *nats.Msg) error {
		want := msgs[i]
		if !reflect.DeepEqual(m.Header, want.Header) {
			return fmt.Errorf("message %d: headers %v, want %v", i, m.Header, want.Header)
		}
		if !bytes.Equal(m.Data, want.Data) {
			return fmt.Errorf("message %d: payload %s, want %s", i, short(m.Data), short(want.Data))
		}
		if m.Reply != want.Reply {
			return fmt.Errorf("message %d: reply %q, want %q", i, m.Reply, want.Reply)
		}
		return nil
	}); err != nil {
		return err
	}
	m, err := sub.NextMsg(3 * time.Second)
	if err != nil {
		return fmt.Errorf("plain message: %v", err)
	}
	if len(m.Header) != 0 || string(m.Data) != "plain" {
		return fmt.Errorf("plain message: headers %v payload %s", m.Header, short(m.Data))
	}
	return nil
}

// roundTrip publishes payload on pc and checks that sub gets it back exactly.
func roundTrip(pc *nats.Conn, sub *nats.Subscription, payload []byte) error {
	if err := pc.Publish(sub.Subject, payload); err != nil {
		return fmt.Errorf("publish %d bytes: %v", len(payload), err)
	}
	if err := flushAll(pc); err != nil {
		return err
	}
	m, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		return fmt.Errorf("receive %d bytes: %v", len(payload), err)
	}
	if !bytes.Equal(m.Data, payload) {
		at := 0
		for at < len(m.Data) && at < len(payload) && m.Data[at] == payload[at] {
			at++
		}
		return fmt.Errorf("%d-byte payload came back as %d bytes, first difference at byte %d", len(payload), len(m.Data), at)
	}
	return nil
}

func randomPayload(n int, seed int64) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

func checkPayloadSizes(t *T) error {
	pc, sub, err := t.pair("sizes")
	if err != nil {
		return err
	}
	sub.SetPendingLimits(-1, -1)
	max := int(pc.MaxPayload())
	sizes := []int{0, 1, 2, 127, 128, 1023, 1024, 1025, 4095, 4096, 4097, 8191, 8192, 8193,
		16384, 32767, 32768, 32769, 65535, 65536, 65537, 131072, 262144, 500000, max - 1, max}
	for _, n := range sizes {
		if n < 0 || n > max {
			continue
		}
		if err := roundTrip(pc, sub, randomPayload(n, int64(n))); err != nil {
			return err
		}
	}
	return nil
}

func checkPayload1MiB(t *T) error {
	pc, sub, err := t.pair("big")
	if err != nil {
		return err
	}
	if mp := pc.MaxPayload(); mp < 1<<20 {
		return fmt.Errorf("server max_payload %d < 1 MiB", mp)
	}
	// Twice: the second one checks the connection state after a max-size frame.
	for i := 0; i < 2; i++ {
		if err := roundTrip(pc, sub, randomPayload(1<<20, int64(42+i))); err != nil {
			return err
		}
	}
	return nil
}

// checkPayloadTooBig: nats.go refuses locally a payload over the server's
// max_payload (ErrMaxPayload), and the connection stays usable.
func checkPayloadTooBig(t *T) error {
	nc, err := t.connect("pub")
	if err != nil {
		return err
	}
	max := nc.MaxPayload()
	err = nc.Publish(t.subj("toobig"), make([]byte, max+1))
	if !errors.Is(err, nats.ErrMaxPayload) {
		return fmt.Errorf("publish of max_payload+1 = %d bytes: error %v, want %v", max+1, err, nats.ErrMaxPayload)
	}
	// A header message whose headers+payload exceed the limit is refused too.
	m := &nats.Msg{Subject: t.subj("toobig"), Header: nats.Header{"K": {"v"}}, Data: make([]byte, max)}
	if err := nc.PublishMsg(m); !errors.Is(err, nats.ErrMaxPayload) {
		return fmt.Errorf("header message over max_payload: error %v, want %v", err, nats.ErrMaxPayload)
	}
	if err := flushAll(nc); err != nil {
		return fmt.Errorf("connection unusable after refused publish: %v", err)
	}
	return nil
}

// checkPayloadTooBigRaw: a client that ignores max_payload and sends
// "PUB <subject> <max_payload+1>" gets -ERR 'Maximum Payload Violation' and
// the server closes the connection. nats-server answers as soon as it has
// parsed the PUB line (it does not wait for the payload); a server that reads
// the payload first is accepted too.
func checkPayloadTooBigRaw(t *T) error {
	c, err := t.dialRaw()
	if err != nil {
		return fmt.Errorf("tcp: %v", err)
	}
	r := bufio.NewReader(c)
	info, err := rawHandshake(c, r)
	if err != nil {
		return err
	}
	mp, _ := info["max_payload"].(float64)
	if mp <= 0 {
		return fmt.Errorf("INFO max_payload = %v", info["max_payload"])
	}
	n := int(mp) + 1
	if _, err := fmt.Fprintf(c, "PUB %s %d\r\n", t.subj("toobig"), n); err != nil {
		return fmt.Errorf("write PUB: %v", err)
	}
	var lines []string
	sawErr, closed, sentPayload := false, false, false
	c.SetDeadline(time.Now().Add(time.Second))
	for !closed {
		line, err := r.ReadString('\n')
		if line != "" {
			l := strings.TrimRight(line, "\r\n")
			lines = append(lines, l)
			if strings.HasPrefix(strings.ToUpper(l), "-ERR") {
				if !strings.Contains(strings.ToLower(l), "maximum payload violation") {
					return fmt.Errorf("got %q, want -ERR 'Maximum Payload Violation'", l)
				}
				sawErr = true
			}
		}
		if err == nil {
			continue
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			if sentPayload || sawErr {
				break
			}
			// The server waits for the payload: send it, then wait again.
			sentPayload = true
			c.SetDeadline(time.Now().Add(3 * time.Second))
			c.Write(append(make([]byte, n), '\r', '\n'))
			continue
		}
		closed = true // EOF or reset
	}
	switch {
	case !sawErr && closed:
		return fmt.Errorf("server closed the connection without -ERR 'Maximum Payload Violation' (got %q)", lines)
	case !sawErr:
		return fmt.Errorf("no -ERR 'Maximum Payload Violation' (got %q)", lines)
	case !closed:
		return fmt.Errorf("server sent %q but did not close the connection", lines)
	}
	t.logf("server replied %q, closed; payload sent first: %v", lines, sentPayload)
	return nil
}

func checkManySubs(t *T) error {
	const n = 10000
	sc, err := t.connect("sub")
	if err != nil {
		return err
	}
	ch := make(chan *nats.Msg, 2*n)
	for i := 0; i < n; i++ {
		if _, err := sc.ChanSubscribe(t.subj("s", strconv.Itoa(i)), ch); err != nil {
			return fmt.Errorf("subscribe %d: %v", i, err)
		}
	}
	if err := flushAll(sc); err != nil {
		return err
	}
	if got := sc.NumSubscriptions(); got != n {
		return fmt.Errorf("client has %d subscriptions, want %d", got, n)
	}
	pc, err := t.connect("pub")
	if err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		if err := pc.Publish(t.subj("s", strconv.Itoa(i)), []byte(strconv.Itoa(i))); err != nil {
			return fmt.Errorf("publish %d: %v", i, err)
		}
	}
	if err := flushAll(pc); err != nil {
		return err
	}
	seen := make([]bool, n)
	timeout := time.After(10 * time.Second)
	for got := 0; got < n; got++ {
		select {
		case m := <-ch:
			i, err := strconv.Atoi(string(m.Data))
			if err != nil || i < 0 || i >= n {
				return fmt.Errorf("bad payload %s", short(m.Data))
			}
			if m.Subject != t.subj("s", strconv.Itoa(i)) {
				return fmt.Errorf("message %d arrived on subject %q", i, m.Subject)
			}
			if seen[i] {
				return fmt.Errorf("message %d delivered twice", i)
			}
			seen[i] = true
		case <-timeout:
			return fmt.Errorf("only %d of %d messages delivered", got, n)
		}
	}
	select {
	case m := <-ch:
		return fmt.Errorf("extra message on %q", m.Subject)
	case <-time.After(100 * time.Millisecond):
	}
	return nil
}

func checkOrdered100k(t *T) error {
	const n = 100000
	sc, err := t.connect("sub")
	if err != nil {
		return err
	}
	var mu sync.Mutex
	next, bad := 0, ""
	done := make(chan struct{})
	sub, err := sc.Subscribe(t.subj("seq"), func(m *nats.Msg) {
		seq, err := strconv.Atoi(string(m.Data))
		mu.Lock()
		defer mu.Unlock()
		if bad != "" {
			return
		}
		if err != nil {
			bad = fmt.Sprintf("bad payload %s", short(m.Data))
		} else if seq != next {
			bad = fmt.Sprintf("got seq %d, want %d", seq, next)
		}
		next++
		if bad != "" || next == n {
			close(done)
		}
	})
	if err != nil {
		return err
	}
	sub.SetPendingLimits(-1, -1)
	if err := flushAll(sc); err != nil {
		return err
	}
	pc, err := t.connect("pub")
	if err != nil {
		return err
	}
	start := time.Now()
	buf := make([]byte, 0, 16)
	for i := 0; i < n; i++ {
		buf = strconv.AppendInt(buf[:0], int64(i), 10)
		if err := pc.Publish(t.subj("seq"), buf); err != nil {
			return fmt.Errorf("publish %d: %v", i, err)
		}
	}
	if err := flushAll(pc); err != nil {
		return err
	}
	select {
	case <-done:
	case <-time.After(20 * time.Second):
	}
	mu.Lock()
	got, why := next, bad
	mu.Unlock()
	if why != "" {
		return errors.New(why)
	}
	if got != n {
		return fmt.Errorf("received %d of %d messages", got, n)
	}
	el := time.Since(start)
	time.Sleep(50 * time.Millisecond)
	mu.Lock()
	got = next
	mu.Unlock()
	if got != n {
		return fmt.Errorf("received %d messages, want exactly %d", got, n)
	}
	t.logf("%d messages in %v (%.0f msg/s)", n, el.Round(time.Millisecond), float64(n)/el.Seconds())
	return nil
}

// counted opens a subscriber and a publisher connection (subPub) and
// subscribes the subscriber to t.subj(name) with a handler that only counts
// the messages (in *count), and synchronously to a marker subject (see
// passMarker). Nothing is flushed yet.
func (t *T) counted(name string, count *int32) (sc, pc *nats.Conn, sub, msub *nats.Subscription, err error) {
	if sc, pc, err = t.subPub(); err != nil {
		return nil, nil, nil, nil, err
	}
	if sub, err = sc.Subscribe(t.subj(name), func(*nats.Msg) { atomic.AddInt32(count, 1) }); err != nil {
		return nil, nil, nil, nil, err
	}
	if msub, err = sc.SubscribeSync(t.subj("marker")); err != nil {
		return nil, nil, nil, nil, err
	}
	return sc, pc, sub, msub, nil
}

// passMarker publishes to msub's marker subject on pc and waits for it.
// Messages the server routes to one connection from one publisher keep
// their order, so once the marker arrives, what pc published before it has
// been delivered too, if the server was going to deliver it at all.
func passMarker(pc *nats.Conn, msub *nats.Subscription) error {
	if err := pc.Publish(msub.Subject, []byte("marker")); err != nil {
		return err
	}
	if err := flushAll(pc); err != nil {
		return err
	}
	if _, err := msub.NextMsg(3 * time.Second); err != nil {
		return fmt.Errorf("marker: %v", err)
	}
	return nil
}

func checkUnsubscribe(t *T) error {
	var count int32
	sc, pc, sub, msub, err := t.counted("u", &count)
	if err != nil {
		return err
	}
	subj := sub.Subject
	if err := flushAll(sc); err != nil {
		return err
	}
	if err := pc.Publish(subj, []byte("before")); err != nil {
		return err
	}
	if err := flushAll(pc); err != nil {
		return err
	}
	if !waitUntil(3*time.Second, func() bool { return atomic.LoadInt32(&count) == 1 }) {
		return errors.New("message before unsubscribe not received")
	}
	if err := sub.Unsubscribe(); err != nil {
		return fmt.Errorf("unsubscribe: %v", err)
	}
	if err := flushAll(sc); err != nil {
		return err
	}
	before := sc.Stats().InMsgs
	for i := 0; i < 5; i++ {
		if err := pc.Publish(subj, []byte("after")); err != nil {
			return err
		}
	}
	if err := passMarker(pc, msub); err != nil {
		return err
	}
	if c := atomic.LoadInt32(&count); c != 1 {
		return fmt.Errorf("handler ran %d times, want 1", c)
	}
	// nats.go drops MSGs for unknown sids silently; count what the server sent.
	if d := sc.Stats().InMsgs - before; d != 1 {
		return fmt.Errorf("server sent %d messages after UNSUB (marker included), want 1", d)
	}
	return nil
}

func checkAutoUnsubscribe(t *T) error {
	var count int32
	sc, pc, sub, msub, err := t.counted("auto", &count)
	if err != nil {
		return err
	}
	if err := sub.AutoUnsubscribe(5); err != nil {
		return fmt.Errorf("auto-unsubscribe: %v", err)
	}
	if err := flushAll(sc); err != nil {
		return err
	}
	before := sc.Stats().InMsgs
	if err := publishSeq(pc, sub.Subject, 10); err != nil {
		return err
	}
	if err := passMarker(pc, msub); err != nil {
		return err
	}
	waitUntil(time.Second, func() bool { return atomic.LoadInt32(&count) >= 5 })
	time.Sleep(20 * time.Millisecond)
	if c := atomic.LoadInt32(&count); c != 5 {
		return fmt.Errorf("received %d messages, want 5", c)
	}
	if d := sc.Stats().InMsgs - before; d != 6 {
		return fmt.Errorf("server sent %d messages (marker included), want 6 (UNSUB max ignored?)", d)
	}
	return nil
}

func checkNoEcho(t *T) error {
	ac, err := t.connect("noecho", nats.NoEcho())
	if err != nil {
		return err
	}
	bc, err := t.connect("echo")
	if err != nil {
		return err
	}
	subj := t.subj("echo")
	var mu sync.Mutex
	var aGot, bGot []string
	record := func(nc *nats.Conn, got *[]string) error {
		_, err := nc.Subscribe(subj, func(m *nats.Msg) {
			mu.Lock()
			*got = append(*got, string(m.Data))
			mu.Unlock()
		})
		return err
	}
	if err := record(ac, &aGot); err != nil {
		return err
	}
	if err := record(bc, &bGot); err != nil {
		return err
	}
	if err := flushAll(ac, bc); err != nil {
		return err
	}
	for i := 0; i < 10; i++ {
		if err := ac.Publish(subj, []byte("from-a")); err != nil {
			return err
		}
	}
	if err := flushAll(ac); err != nil {
		return err
	}
	if !waitUntil(3*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(bGot) >= 10 }) {
		mu.Lock()
		defer mu.Unlock()
		return fmt.Errorf("other connection got %d of 10 messages", len(bGot))
	}
	// B's message reaches A (no_echo only hides A's own) and B (echo is on by
	// default). A's own messages were routed before it, so by the time it
	// arrives they would have been delivered too.
	if err := bc.Publish(subj, []byte("from-b")); err != nil {
		return err
	}
	if err := flushAll(bc); err != nil {
		return err
	}
	ok := waitUntil(3*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(aGot) >= 1 && len(bGot) >= 11
	})
	time.Sleep(50 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if !ok {
		return fmt.Errorf("after B published: no-echo connection got %v, echo connection got %d messages (want 11)", aGot, len(bGot))
	}
	if len(aGot) != 1 || aGot[0] != "from-b" {
		return fmt.Errorf("no-echo connection got %v, want only [from-b]", aGot)
	}
	if len(bGot) != 11 || bGot[10] != "from-b" {
		return fmt.Errorf("echo connection got %d messages, want 11 ending with its own", len(bGot))
	}
	if d := ac.Stats().InMsgs; d != 1 {
		return fmt.Errorf("server sent %d messages to the no-echo connection, want 1", d)
	}
	return nil
}

func checkPingPong(t *T) error {
	nc, err := t.connect("client")
	if err != nil {
		return err
	}
	start := time.Now()
	for i := 0; i < 100; i++ {
		if err := nc.FlushTimeout(2 * time.Second); err != nil {
			return fmt.Errorf("flush %d: %v", i, err)
		}
	}
	el := time.Since(start)
	rtt, err := nc.RTT()
	if err != nil {
		return fmt.Errorf("rtt: %v", err)
	}
	t.logf("100 flushes in %v, rtt %v", el.Round(time.Microsecond), rtt)
	return nil
}

func checkTwoConnections(t *T) error {
	const n = 1000
	ac, err := t.connect("a")
	if err != nil {
		return err
	}
	bc, err := t.connect("b")
	if err != nil {
		return err
	}
	ab, ba := t.subj("a-to-b"), t.subj("b-to-a")
	aSub, err := ac.SubscribeSync(ba)
	if err != nil {
		return err
	}
	bSub, err := bc.SubscribeSync(ab)
	if err != nil {
		return err
	}
	aSub.SetPendingLimits(-1, -1)
	bSub.SetPendingLimits(-1, -1)
	if err := flushAll(ac, bc); err != nil {
		return err
	}
	errc := make(chan error, 2)
	send := func(nc *nats.Conn, subj string) {
		if err := publishSeq(nc, subj, n); err != nil {
			errc <- err
			return
		}
		errc <- flushAll(nc)
	}
	go send(ac, ab)
	go send(bc, ba)
	for i := 0; i < 2; i++ {
		if err := <-errc; err != nil {
			return fmt.Errorf("publish: %v", err)
		}
	}
	for _, s := range []struct {
		dir string
		sub *nats.Subscription
	}{{"A->B", bSub}, {"B->A", aSub}} {
		if err := expectMsgs(s.sub, n, 3*time.Second, s.dir+": ", func(i int, m *nats.Msg) error {
			if string(m.Data) != strconv.Itoa(i) {
				return fmt.Errorf("%s: message %d has payload %s (out of order)", s.dir, i, short(m.Data))
			}
			return nil
		}); err != nil {
			return err
		}
		if m, err := s.sub.NextMsg(50 * time.Millisecond); err == nil {
			return fmt.Errorf("%s: extra message %s", s.dir, short(m.Data))
		}
	}
	return nil
}

// ---------------------------------------------------------------- main

func run(c check, url string, verbose bool) error {
	t := &T{url: url, name: c.name, prefix: "natscheck." + nuid.Next() + "." + c.name, verbose: verbose}
	done := make(chan error, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- fmt.Errorf("panic: %v", r)
			}
		}()
		done <- c.fn(t)
	}()
	var err error
	select {
	case err = <-done:
	case <-time.After(c.timeout):
		err = fmt.Errorf("timed out after %v", c.timeout)
	}
	if err == nil {
		err = t.firstAsyncErr()
	}
	if err == nil {
		t.mu.Lock()
		for _, nc := range t.conns {
			if !nc.IsConnected() {
				err = fmt.Errorf("connection %q dropped: %v", nc.Opts.Name, nc.LastError())
				break
			}
		}
		t.mu.Unlock()
	}
	t.closeAll()
	return err
}

func main() {
	url := flag.String("url", "nats://127.0.0.1:4222", "server URL")
	only := flag.String("only", "", "comma-separated check names to run (default: all)")
	list := flag.Bool("list", false, "print the check names and exit")
	verbose := flag.Bool("v", false, "print details as '# ...' lines")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "natscheck: unexpected argument %q\n", flag.Arg(0))
		os.Exit(2)
	}
	if *list {
		for _, c := range checks {
			fmt.Println(c.name)
		}
		return
	}
	selected := checks
	if *only != "" {
		selected = nil
		for _, name := range strings.Split(*only, ",") {
			name = strings.TrimSpace(name)
			found := false
			for _, c := range checks {
				if c.name == name {
					selected = append(selected, c)
					found = true
				}
			}
			if !found && name != "" {
				fmt.Fprintf(os.Stderr, "natscheck: unknown check %q (see -list)\n", name)
				os.Exit(2)
			}
		}
	}
	failed, unreachable := 0, 0
	start := time.Now()
	for _, c := range selected {
		cs := time.Now()
		if unreachable >= 3 {
			failed++
			fmt.Printf("FAIL %s: not run: the server is unreachable (3 checks in a row could not connect)\n", c.name)
			continue
		}
		if err := run(c, *url, *verbose); err != nil {
			failed++
			if errors.As(err, new(connectError)) {
				unreachable++
			} else {
				unreachable = 0
			}
			fmt.Printf("FAIL %s: %v\n", c.name, err)
		} else {
			unreachable = 0
			fmt.Printf("ok %s\n", c.name)
		}
		if *verbose {
			fmt.Printf("# %s took %v\n", c.name, time.Since(cs).Round(time.Millisecond))
		}
	}
	fmt.Printf("# natscheck (nats.go %s): %d checks, %d failed, %v\n", nats.Version, len(selected), failed, time.Since(start).Round(time.Millisecond))
	if failed > 0 {
		os.Exit(1)
	}
}
