// natscheck - a conformance check of a NATS server's core protocol, driven
// through the official Go client (nats.go).
//
//	natscheck -url nats://127.0.0.1:4222 [-aq] [-only name,name] [-list] [-v]
//
// Prints one line per check, "ok <name>" or "FAIL <name>: <why>", then a
// "# ..." summary line, and exits 0 only when every check that ran passed
// (1 when one failed, 2 on a usage error).
//
// Every check opens its own connections and uses its own subjects
// ("natscheck.<nuid>.<check>..."), so any subset can run alone (-only).
//
// With -aq it runs, instead, the checks of atomq's own modes, served through
// request-reply on "$AQ.>" (nats-server does not serve those).
//
// Build (GOPATH mode; Debian's nuid has no go.mod, so module mode fails):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode GOPROXY=off \
//	    go build -o natscheck tests/clients/go/natscheck/main.go
package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/url"
	"os"
	"reflect"
	"regexp"
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
	atEndFns []func()
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

// atEnd registers f to run when the check ends, passed or not, before its
// connections close (e.g. to destroy what the check created on the server).
func (t *T) atEnd(f func()) {
	t.mu.Lock()
	t.atEndFns = append(t.atEndFns, f)
	t.mu.Unlock()
}

func (t *T) runAtEnd() {
	t.mu.Lock()
	fns := t.atEndFns
	t.atEndFns = nil
	t.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
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

// connect2 opens two connections, tagged a and b, in that order.
func (t *T) connect2(a, b string) (ac, bc *nats.Conn, err error) {
	if ac, err = t.connect(a); err != nil {
		return nil, nil, err
	}
	if bc, err = t.connect(b); err != nil {
		return nil, nil, err
	}
	return ac, bc, nil
}

// subPub opens the two connections most checks use: a subscriber ("sub")
// and a publisher ("pub").
func (t *T) subPub() (sc, pc *nats.Conn, err error) {
	return t.connect2("sub", "pub")
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
	ac, bc, err := t.connect2("a", "b")
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

// ---------------------------------------------------------------- $AQ checks
//
// atomq serves its own modes (mailbox, latest, log, channel) to NATS clients
// through request-reply on "$AQ.>": every request is answered by one JSON
// object on its reply subject, {"ok":true,...} or {"ok":false,"error":"CODE",
// "message":"..."}. Message payloads go in raw (the request's payload) and
// come back base64 in "data". nats-server does not serve these, so they run
// only with -aq (and then only they run).

var aqChecks = []check{
	{"aq_info", 10 * time.Second, checkAqInfo},
	{"aq_mailbox", 10 * time.Second, checkAqMailbox},
	{"aq_mailbox_wait", 10 * time.Second, checkAqMailboxWait},
	{"aq_headers", 10 * time.Second, checkAqHeaders},
	{"aq_latest", 10 * time.Second, checkAqLatest},
	{"aq_log", 10 * time.Second, checkAqLog},
	{"aq_channel", 10 * time.Second, checkAqChannel},
	{"aq_errors", 10 * time.Second, checkAqErrors},
}

const (
	aqTimeout     = 2 * time.Second // an ordinary $AQ request
	aqWaitTimeout = 5 * time.Second // a fetch that may wait (wait_ms)
)

// jobj is a JSON object to send as a request body.
type jobj map[string]interface{}

// aqName returns an entity name private to this check run.
func (t *T) aqName(kind string) string {
	return strings.ReplaceAll(t.prefix, ".", "-") + "-" + kind
}

// aqDestroyAtEnd makes the request verb (a DESTROY or CLOSE) when the check
// ends, ignoring the answer, so that a failed check leaves nothing behind
// (unacked messages hold server buffers).
func (t *T) aqDestroyAtEnd(nc *nats.Conn, verb string) {
	t.atEnd(func() { aqCall(nc, verb, nil, nil, aqTimeout) })
}

// aqAnswer is one decoded $AQ answer (numbers as json.Number).
type aqAnswer struct {
	subj string
	raw  []byte
	f    map[string]interface{}
}

func (a *aqAnswer) errf(format string, args ...interface{}) error {
	raw := a.raw
	if len(raw) > 300 {
		raw = append(append([]byte{}, raw[:300]...), "..."...)
	}
	return fmt.Errorf("%s: %s (answer %s)", a.subj, fmt.Sprintf(format, args...), raw)
}

// aqBody turns a request body into bytes: nil is empty, a string or []byte
// goes as is, anything else as JSON.
func aqBody(body interface{}) []byte {
	switch b := body.(type) {
	case nil:
		return nil
	case string:
		return []byte(b)
	case []byte:
		return b
	}
	out, err := json.Marshal(body)
	if err != nil {
		panic(err)
	}
	return out
}

// aqCall sends the request "$AQ.<verb>" with body (and headers when hdr is
// not nil) on nc and decodes the answer, which must be exactly one JSON
// object.
func aqCall(nc *nats.Conn, verb string, body interface{}, hdr nats.Header, timeout time.Duration) (*aqAnswer, error) {
	subj := "$AQ." + verb
	r, err := nc.RequestMsg(&nats.Msg{Subject: subj, Data: aqBody(body), Header: hdr}, timeout)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", subj, err)
	}
	a := &aqAnswer{subj: subj, raw: r.Data}
	d := json.NewDecoder(bytes.NewReader(r.Data))
	d.UseNumber()
	if err := d.Decode(&a.f); err != nil || a.f == nil {
		return nil, a.errf("the answer is not a JSON object")
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, a.errf("data after the JSON object")
	}
	return a, nil
}

// aqInt returns v as an integer if it is a JSON integer.
func aqInt(v interface{}) (int64, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	i, err := strconv.ParseInt(string(n), 10, 64)
	return i, err == nil
}

// aqNonEmpty accepts a non-empty string.
func aqNonEmpty(v interface{}) error {
	if s, ok := v.(string); !ok || s == "" {
		return errors.New("want a non-empty string")
	}
	return nil
}

// aqMatch accepts a string matching re.
func aqMatch(re string) func(interface{}) error {
	rx := regexp.MustCompile(re)
	return func(v interface{}) error {
		if s, ok := v.(string); !ok || !rx.MatchString(s) {
			return fmt.Errorf("want a string matching %s", re)
		}
		return nil
	}
}

// aqWant lists the fields an answer must have besides "ok", with their
// values: a string, a bool, an int (a JSON integer), or a func that checks
// the value. A field it does not list fails the answer.
type aqWant map[string]interface{}

func (a *aqAnswer) expect(ok bool, want aqWant) error {
	if v, has := a.f["ok"]; !has || v != ok {
		return a.errf(`"ok" is %v, want %v`, a.f["ok"], ok)
	}
	for k := range a.f {
		if _, listed := want[k]; !listed && k != "ok" {
			return a.errf("unexpected field %q", k)
		}
	}
	for k, w := range want {
		v, has := a.f[k]
		if !has {
			return a.errf("field %q missing", k)
		}
		var err error
		switch w := w.(type) {
		case string, bool:
			if v != w {
				err = fmt.Errorf("want %#v", w)
			}
		case int:
			if n, isInt := aqInt(v); !isInt || n != int64(w) {
				err = fmt.Errorf("want %d", w)
			}
		case func(interface{}) error:
			err = w(v)
		default:
			panic(fmt.Sprintf("aqWant %q: %T", k, w))
		}
		if err != nil {
			return a.errf("field %q is %v: %v", k, v, err)
		}
	}
	return nil
}

// aqFailWant is what an error answer has besides "ok": the code and a
// message.
func aqFailWant(code string) aqWant {
	return aqWant{"error": code, "message": aqNonEmpty}
}

// expectFail checks an error answer: {"ok":false,"error":code,"message":...}.
func (a *aqAnswer) expectFail(code string) error {
	return a.expect(false, aqFailWant(code))
}

// aqOK makes a request that must succeed with exactly the fields in want.
func aqOK(nc *nats.Conn, verb string, body interface{}, want aqWant) (*aqAnswer, error) {
	a, err := aqCall(nc, verb, body, nil, aqTimeout)
	if err != nil {
		return nil, err
	}
	return a, a.expect(true, want)
}

// aqFail makes a request that must fail with the error code.
func aqFail(nc *nats.Conn, verb string, body interface{}, code string) error {
	a, err := aqCall(nc, verb, body, nil, aqTimeout)
	if err != nil {
		return err
	}
	return a.expectFail(code)
}

// aqExpectCall makes a request (with headers hdr) whose answer must have
// "ok" and exactly the fields in want; what (the headers or body sent)
// leads the error when the answer is not that.
func aqExpectCall(nc *nats.Conn, verb string, body interface{}, hdr nats.Header, what string, ok bool, want aqWant) error {
	a, err := aqCall(nc, verb, body, hdr, aqTimeout)
	if err != nil {
		return err
	}
	if err := a.expect(ok, want); err != nil {
		return fmt.Errorf("%s: %v", what, err)
	}
	return nil
}

// aqConnectCreate connects (tagged tag) and creates on that connection the
// check's own mailbox or log (mode "mailbox" or "log") named
// t.aqName(kind), with opts besides the name: the answer must be exactly
// {"name":name,"mode":mode}. The entity is destroyed when the check ends,
// whether the create succeeded or not.
func (t *T) aqConnectCreate(tag, mode, kind string, opts jobj) (*nats.Conn, string, error) {
	nc, err := t.connect(tag)
	if err != nil {
		return nil, "", err
	}
	name := t.aqName(kind)
	verb := strings.ToUpper(mode)
	t.aqDestroyAtEnd(nc, verb+".DESTROY."+name)
	body := jobj{"name": name}
	for k, v := range opts {
		body[k] = v
	}
	if _, err := aqOK(nc, verb+".CREATE", body, aqWant{"name": name, "mode": mode}); err != nil {
		return nil, "", err
	}
	return nc, name, nil
}

// aqCreateUnnamed makes the request verb ("MAILBOX.CREATE", "CHANNEL.OPEN")
// with body, which must answer exactly {"name":<a string matching re>,
// "mode":mode}, and makes the request "<destroy>.<name>" when the check
// ends. It returns the name and the answer.
func (t *T) aqCreateUnnamed(nc *nats.Conn, verb string, body interface{}, mode, re, destroy string) (string, *aqAnswer, error) {
	a, err := aqOK(nc, verb, body, aqWant{"name": aqMatch(re), "mode": mode})
	if err != nil {
		return "", nil, err
	}
	name := a.f["name"].(string)
	t.aqDestroyAtEnd(nc, destroy+"."+name)
	return name, a, nil
}

// aqMsg is one message of a fetch or read answer: its seq (or offset), its
// payload and its delivery count.
type aqMsg struct {
	id         int64
	data       []byte
	deliveries int64
}

// messages decodes the "messages" field: an array of objects with exactly
// the fields key ("seq" or "offset"), "data" (base64) and "deliveries".
func (a *aqAnswer) messages(key string) ([]aqMsg, error) {
	arr, ok := a.f["messages"].([]interface{})
	if !ok {
		return nil, a.errf(`"messages" is not an array`)
	}
	out := make([]aqMsg, 0, len(arr))
	for i, e := range arr {
		o, ok := e.(map[string]interface{})
		if !ok || len(o) != 3 {
			return nil, a.errf("message %d: want an object with exactly %q, \"data\", \"deliveries\"", i, key)
		}
		id, ok1 := aqInt(o[key])
		n, ok2 := aqInt(o["deliveries"])
		s, ok3 := o["data"].(string)
		if !ok1 || !ok2 || !ok3 || id < 0 {
			return nil, a.errf("message %d: want %q and \"deliveries\" integers, \"data\" a string", i, key)
		}
		data, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, a.errf("message %d: data is not base64: %v", i, err)
		}
		out = append(out, aqMsg{id, data, n})
	}
	return out, nil
}

// aqFetch makes a fetch or read request and returns its messages (key is
// "seq" or "offset").
func aqFetch(nc *nats.Conn, verb string, body interface{}, key string, timeout time.Duration) ([]aqMsg, *aqAnswer, error) {
	a, err := aqCall(nc, verb, body, nil, timeout)
	if err != nil {
		return nil, nil, err
	}
	if err := a.expect(true, aqWant{"messages": func(interface{}) error { return nil }}); err != nil {
		return nil, a, err
	}
	msgs, err := a.messages(key)
	return msgs, a, err
}

// aqExpectMsgs fetches (or reads) and compares the messages with want:
// ids, payloads and delivery counts, in order.
func aqExpectMsgs(nc *nats.Conn, verb string, body interface{}, key string, want []aqMsg) error {
	got, a, err := aqFetch(nc, verb, body, key, aqTimeout)
	if err != nil {
		return err
	}
	return a.sameMsgs(key, body, got, want)
}

func (a *aqAnswer) sameMsgs(key string, body interface{}, got, want []aqMsg) error {
	what := "empty body"
	if b := aqBody(body); len(b) != 0 {
		what = fmt.Sprintf("body %s", b)
	}
	if len(got) != len(want) {
		ids := make([]int64, len(got))
		for i, m := range got {
			ids[i] = m.id
		}
		return a.errf("%s: got %d messages (%s %v), want %d", what, len(got), key, ids, len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.id != w.id || g.deliveries != w.deliveries {
			return a.errf("%s: message %d has %s %d, deliveries %d; want %s %d, deliveries %d", what, i, key, g.id, g.deliveries, key, w.id, w.deliveries)
		}
		if !bytes.Equal(g.data, w.data) {
			return a.errf("%s: message %d (%s %d): data %s, want %s", what, i, key, g.id, short(g.data), short(w.data))
		}
	}
	return nil
}

// aqBinary is a payload with the bytes a text protocol could trip over.
var aqBinary = []byte("\x00bin\r\nPUB x 3\r\n\xff\x00\n\r{\"ok\":false}\xff")

func checkAqInfo(t *T) error {
	var workers int64 = -1
	seen := map[int64]int{}
	for i := 0; i < 4; i++ {
		nc, err := t.connect(fmt.Sprintf("client%d", i))
		if err != nil {
			return err
		}
		var body interface{}
		if i%2 == 1 {
			body = "{}" // an empty object is an empty body
		}
		a, err := aqOK(nc, "INFO", body, aqWant{"server": "atomq", "version": aqNonEmpty, "workers": func(v interface{}) error {
			if n, ok := aqInt(v); !ok || n < 1 || (workers >= 0 && n != workers) {
				return fmt.Errorf("want an integer >= 1, the same for every connection (%d)", workers)
			}
			return nil
		}, "worker": func(v interface{}) error {
			if _, ok := aqInt(v); !ok {
				return errors.New("want an integer")
			}
			return nil
		}})
		if err != nil {
			return err
		}
		workers, _ = aqInt(a.f["workers"])
		w, _ := aqInt(a.f["worker"])
		if w < 0 || w >= workers {
			return a.errf("worker %d is not in 0..workers-1", w)
		}
		seen[w]++
		if i == 0 {
			t.logf("%s", a.raw)
		}
	}
	t.logf("workers answering 4 connections: %v", seen)
	return nil
}

func checkAqMailbox(t *T) error {
	nc, name, err := t.aqConnectCreate("client", "mailbox", "mbx", jobj{"ttl_ms": 60000, "storage": "mem", "max_msgs": 1000, "max_bytes": 16 << 20})
	if err != nil {
		return err
	}
	if err := aqFail(nc, "MAILBOX.CREATE", jobj{"name": name}, "EXISTS"); err != nil {
		return err
	}
	payloads := [][]byte{[]byte("hello mailbox"), aqBinary, {}, randomPayload(100<<10, 100)}
	for i, p := range payloads {
		if _, err := aqOK(nc, "MAILBOX.SEND."+name, p, aqWant{"seq": i}); err != nil {
			return err
		}
	}
	msg := func(i int) aqMsg { return aqMsg{int64(i), payloads[i], 1} }
	fetch := "MAILBOX.FETCH." + name
	// The default batch is 1; a bigger batch takes what there is; what
	// is handed out and not acked is not handed out again at once.
	if err := aqExpectMsgs(nc, fetch, nil, "seq", []aqMsg{msg(0)}); err != nil {
		return err
	}
	if err := aqExpectMsgs(nc, fetch, jobj{"batch": 2}, "seq", []aqMsg{msg(1), msg(2)}); err != nil {
		return err
	}
	if err := aqExpectMsgs(nc, fetch, jobj{"batch": 64}, "seq", []aqMsg{msg(3)}); err != nil {
		return err
	}
	if err := aqExpectMsgs(nc, fetch, jobj{"batch": 64}, "seq", nil); err != nil {
		return err
	}
	ack := "MAILBOX.ACK." + name
	for i := range payloads {
		if _, err := aqOK(nc, ack, jobj{"seq": i}, aqWant{}); err != nil {
			return err
		}
	}
	if err := aqFail(nc, ack, jobj{"seq": 1}, "NOT_FOUND"); err != nil {
		return err
	}
	if err := aqFail(nc, ack, jobj{}, "BAD_REQUEST"); err != nil {
		return err
	}
	if _, err := aqOK(nc, "MAILBOX.SEND."+name, "after the acks", aqWant{"seq": 4}); err != nil {
		return err
	}
	if err := aqExpectMsgs(nc, fetch, jobj{"batch": 64}, "seq", []aqMsg{{4, []byte("after the acks"), 1}}); err != nil {
		return err
	}
	if _, err := aqOK(nc, ack, jobj{"seq": 4}, aqWant{}); err != nil {
		return err
	}

	// No name: the server makes one up ("mbx.<hex>"), which works like any.
	made, _, err := t.aqCreateUnnamed(nc, "MAILBOX.CREATE", nil, "mailbox", `^mbx\.[0-9a-f]+$`, "MAILBOX.DESTROY")
	if err != nil {
		return err
	}
	t.logf("made-up name %s", made)
	if _, err := aqOK(nc, "MAILBOX.SEND."+made, "to a made-up name", aqWant{"seq": 0}); err != nil {
		return err
	}
	if err := aqExpectMsgs(nc, "MAILBOX.FETCH."+made, nil, "seq", []aqMsg{{0, []byte("to a made-up name"), 1}}); err != nil {
		return err
	}
	if _, err := aqOK(nc, "MAILBOX.DESTROY."+made, nil, aqWant{}); err != nil {
		return err
	}

	if _, err := aqOK(nc, "MAILBOX.DESTROY."+name, nil, aqWant{}); err != nil {
		return err
	}
	if err := aqFail(nc, "MAILBOX.SEND."+name, "after destroy", "NOT_FOUND"); err != nil {
		return err
	}
	if err := aqFail(nc, fetch, nil, "NOT_FOUND"); err != nil {
		return err
	}
	return aqFail(nc, "MAILBOX.SEND."+t.aqName("never-made"), "nobody", "NOT_FOUND")
}

func checkAqMailboxWait(t *T) error {
	fc, err := t.connect("fetcher")
	if err != nil {
		return err
	}
	sc, name, err := t.aqConnectCreate("sender", "mailbox", "mbx", nil)
	if err != nil {
		return err
	}
	fetch := "MAILBOX.FETCH." + name
	type result struct {
		msgs []aqMsg
		a    *aqAnswer
		err  error
		at   time.Time
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		msgs, a, err := aqFetch(fc, fetch, jobj{"batch": 1, "wait_ms": 2000}, "seq", aqWaitTimeout)
		done <- result{msgs, a, err, time.Now()}
	}()
	time.Sleep(100 * time.Millisecond)
	select {
	case r := <-done:
		return fmt.Errorf("fetch with wait_ms 2000 answered after %v, before anything was sent: %v %v", time.Since(start).Round(time.Millisecond), r.msgs, r.err)
	default:
	}
	sent := time.Now()
	if _, err := aqOK(sc, "MAILBOX.SEND."+name, "wake up", aqWant{"seq": 0}); err != nil {
		return err
	}
	var r result
	select {
	case r = <-done:
	case <-time.After(aqWaitTimeout + time.Second):
		return errors.New("fetch with wait_ms 2000: no answer")
	}
	if r.err != nil {
		return r.err
	}
	if el := r.at.Sub(start); el > time.Second {
		return fmt.Errorf("fetch with wait_ms 2000 answered after %v (%v after the send), want within 1s", el.Round(time.Millisecond), r.at.Sub(sent).Round(time.Millisecond))
	}
	if err := r.a.sameMsgs("seq", "wait_ms 2000", r.msgs, []aqMsg{{0, []byte("wake up"), 1}}); err != nil {
		return err
	}
	t.logf("waiting fetch answered %v after the send", r.at.Sub(sent).Round(time.Microsecond))
	if _, err := aqOK(fc, "MAILBOX.ACK."+name, jobj{"seq": 0}, aqWant{}); err != nil {
		return err
	}

	// Nothing comes: the answer is empty, when the wait ends.
	start = time.Now()
	msgs, a, err := aqFetch(fc, fetch, jobj{"batch": 4, "wait_ms": 200}, "seq", aqWaitTimeout)
	el := time.Since(start)
	if err != nil {
		return err
	}
	if len(msgs) != 0 {
		return a.errf("fetch with wait_ms 200 of an empty mailbox got %d messages", len(msgs))
	}
	if el < 150*time.Millisecond || el > time.Second {
		return fmt.Errorf("fetch with wait_ms 200 of an empty mailbox answered after %v, want 150ms..1s", el.Round(time.Millisecond))
	}
	t.logf("empty fetch with wait_ms 200 answered after %v", el.Round(time.Microsecond))
	return nil
}

func checkAqHeaders(t *T) error {
	nc, name, err := t.aqConnectCreate("client", "mailbox", "mbx", nil)
	if err != nil {
		return err
	}
	send := "MAILBOX.SEND." + name
	good := []struct {
		hdr  nats.Header
		data string
	}{
		{nats.Header{"AQ-TTL-MS": {"60000"}}, "ttl 60s"},
		{nats.Header{"AQ-Storage": {"mem"}}, "storage mem"},
		{nats.Header{"AQ-TTL-MS": {"60000"}, "AQ-Storage": {"mem"}, "X-Other": {"ignored"}}, "both"},
		{nats.Header{"AQ-TTL-MS": {"1"}}, "expires in 1 ms"},
	}
	for i, s := range good {
		if err := aqExpectCall(nc, send, s.data, s.hdr, fmt.Sprintf("headers %v", s.hdr), true, aqWant{"seq": i}); err != nil {
			return err
		}
	}
	bad := []nats.Header{
		{"AQ-TTL-MS": {"abc"}},
		{"AQ-TTL-MS": {"-5"}},
		{"AQ-TTL-MS": {"12ms"}},
		{"AQ-TTL-MS": {"99999999999"}},
		{"AQ-TTL-MS": {""}},
		{"AQ-Storage": {"floppy"}},
		{"AQ-Storage": {""}},
		{"AQ-TTL-MS": {"60000"}, "AQ-Storage": {"floppy"}},
	}
	for _, h := range bad {
		if err := aqExpectCall(nc, send, "rejected", h, fmt.Sprintf("headers %v", h), false, aqFailWant("BAD_REQUEST")); err != nil {
			return err
		}
	}
	// The 1 ms message expires; the rejected ones took no seq.
	time.Sleep(100 * time.Millisecond)
	if _, err := aqOK(nc, send, "last", aqWant{"seq": len(good)}); err != nil {
		return err
	}
	want := []aqMsg{{0, []byte("ttl 60s"), 1}, {1, []byte("storage mem"), 1}, {2, []byte("both"), 1}, {4, []byte("last"), 1}}
	return aqExpectMsgs(nc, "MAILBOX.FETCH."+name, jobj{"batch": 64}, "seq", want)
}

func checkAqLatest(t *T) error {
	wc, nc, err := t.connect2("watcher", "client")
	if err != nil {
		return err
	}
	base := t.aqName("key")
	watch := "$AQ.LATEST.WATCH." + base
	sub, err := wc.SubscribeSync(watch + ".>")
	if err != nil {
		return err
	}
	if err := flushAll(wc); err != nil {
		return err
	}
	puts := []struct {
		key string
		val []byte
	}{{"a", []byte("first value")}, {"b.c", aqBinary}, {"a", []byte("second value")}, {"e", []byte{}}}
	for _, p := range puts {
		if _, err := aqOK(nc, "LATEST.PUT."+base+"."+p.key, p.val, aqWant{}); err != nil {
			return err
		}
	}
	for _, kv := range []struct {
		key string
		val []byte
	}{{"a", []byte("second value")}, {"b.c", aqBinary}, {"e", []byte{}}} {
		a, err := aqOK(nc, "LATEST.GET."+base+"."+kv.key, nil, aqWant{"data": func(v interface{}) error {
			s, ok := v.(string)
			if !ok {
				return errors.New("want a string")
			}
			if b, err := base64.StdEncoding.DecodeString(s); err != nil || !bytes.Equal(b, kv.val) {
				return fmt.Errorf("want base64 of %s", short(kv.val))
			}
			return nil
		}})
		if err != nil {
			return err
		}
		t.logf("%s", a.raw)
	}
	if err := aqFail(nc, "LATEST.GET."+base+".never-put", nil, "NOT_FOUND"); err != nil {
		return err
	}
	// Every put reaches the watcher, in order for each key (different keys
	// may live on different workers, so not necessarily in order overall).
	got := map[string][][]byte{}
	if err := expectMsgs(sub, len(puts), 3*time.Second, "watch: ", func(i int, m *nats.Msg) error {
		if m.Reply != "" {
			return fmt.Errorf("watch: message on %s has reply subject %q", m.Subject, m.Reply)
		}
		got[m.Subject] = append(got[m.Subject], m.Data)
		return nil
	}); err != nil {
		return err
	}
	want := map[string][][]byte{}
	for _, p := range puts {
		want[watch+"."+p.key] = append(want[watch+"."+p.key], p.val)
	}
	for s, w := range want {
		g := got[s]
		ok := len(g) == len(w)
		for i := 0; ok && i < len(w); i++ {
			ok = bytes.Equal(g[i], w[i])
		}
		if !ok {
			return fmt.Errorf("watch: %s got %q, want %q (all: %q)", s, g, w, got)
		}
	}
	if m, err := sub.NextMsg(100 * time.Millisecond); err == nil {
		return fmt.Errorf("watch: extra message on %s: %s", m.Subject, short(m.Data))
	}
	return nil
}

func checkAqLog(t *T) error {
	nc, name, err := t.aqConnectCreate("client", "log", "log", nil)
	if err != nil {
		return err
	}
	datas := [][]byte{[]byte("entry 0"), aqBinary, randomPayload(100<<10, 200)}
	var all []aqMsg
	for i, d := range datas {
		if _, err := aqOK(nc, "LOG.APPEND."+name, d, aqWant{"offset": i}); err != nil {
			return err
		}
		all = append(all, aqMsg{int64(i), d, 1})
	}
	read := "LOG.READ." + name
	// Reading does not remove: the same twice.
	for i := 0; i < 2; i++ {
		if err := aqExpectMsgs(nc, read, jobj{"offset": 0, "max": 64}, "offset", all); err != nil {
			return err
		}
	}
	if err := aqExpectMsgs(nc, read, jobj{"offset": 1, "max": 1}, "offset", all[1:2]); err != nil {
		return err
	}
	if err := aqExpectMsgs(nc, read, jobj{"offset": 3, "max": 64}, "offset", nil); err != nil {
		return err
	}
	// A group reads from its committed cursor (new: the oldest offset);
	// reading does not move it, a commit does.
	for i := 0; i < 2; i++ {
		if err := aqExpectMsgs(nc, read, jobj{"group": "g", "max": 2}, "offset", all[:2]); err != nil {
			return err
		}
	}
	commit := "LOG.COMMIT." + name
	if _, err := aqOK(nc, commit, jobj{"group": "g", "offset": 2}, aqWant{}); err != nil {
		return err
	}
	if err := aqExpectMsgs(nc, read, jobj{"group": "g", "max": 64}, "offset", all[2:]); err != nil {
		return err
	}
	if _, err := aqOK(nc, commit, jobj{"group": "g", "offset": 3}, aqWant{}); err != nil {
		return err
	}
	if err := aqExpectMsgs(nc, read, jobj{"group": "g", "max": 64}, "offset", nil); err != nil {
		return err
	}
	if err := aqExpectMsgs(nc, read, jobj{"group": "h", "max": 64}, "offset", all); err != nil {
		return err
	}
	if _, err := aqOK(nc, "LOG.DESTROY."+name, nil, aqWant{}); err != nil {
		return err
	}
	return aqFail(nc, "LOG.APPEND."+name, "after destroy", "NOT_FOUND")
}

func checkAqChannel(t *T) error {
	c0, c1, err := t.connect2("end0", "end1")
	if err != nil {
		return err
	}
	id, _, err := t.aqCreateUnnamed(c0, "CHANNEL.OPEN", jobj{"ttl_ms": 60000}, "channel", `^ch\.[0-9a-f]+$`, "CHANNEL.CLOSE")
	if err != nil {
		return err
	}
	t.logf("channel %s", id)
	// seq counts from 0 over the channel, both ends together.
	sends := []struct {
		nc   *nats.Conn
		end  string
		data []byte
	}{{c0, "0", []byte("0->1 first")}, {c0, "0", aqBinary}, {c1, "1", []byte("1->0")}}
	for i, s := range sends {
		if _, err := aqOK(s.nc, "CHANNEL.SEND."+id+"."+s.end, s.data, aqWant{"seq": i}); err != nil {
			return err
		}
	}
	fetch0, fetch1 := "CHANNEL.FETCH."+id+".0", "CHANNEL.FETCH."+id+".1"
	// Each end gets what the other end sent, once.
	if err := aqExpectMsgs(c1, fetch1, jobj{"batch": 64}, "seq", []aqMsg{{0, sends[0].data, 1}, {1, sends[1].data, 1}}); err != nil {
		return err
	}
	if err := aqExpectMsgs(c0, fetch0, jobj{"batch": 64}, "seq", []aqMsg{{2, sends[2].data, 1}}); err != nil {
		return err
	}
	for _, f := range []struct {
		nc   *nats.Conn
		verb string
	}{{c0, fetch0}, {c1, fetch1}} {
		if err := aqExpectMsgs(f.nc, f.verb, jobj{"batch": 64}, "seq", nil); err != nil {
			return err
		}
	}
	// An end does not get its own sends.
	if _, err := aqOK(c0, "CHANNEL.SEND."+id+".0", "for end 1 only", aqWant{"seq": 3}); err != nil {
		return err
	}
	if err := aqExpectMsgs(c0, fetch0, jobj{"batch": 64}, "seq", nil); err != nil {
		return err
	}
	if err := aqExpectMsgs(c1, fetch1, jobj{"batch": 64, "wait_ms": 1000}, "seq", []aqMsg{{3, []byte("for end 1 only"), 1}}); err != nil {
		return err
	}
	if err := aqFail(c0, "CHANNEL.SEND."+id+".2", "bad end", "BAD_REQUEST"); err != nil {
		return err
	}
	if err := aqFail(c0, "CHANNEL.FETCH."+id+".2", nil, "BAD_REQUEST"); err != nil {
		return err
	}
	if err := aqFail(c0, "CHANNEL.FETCH."+id, nil, "BAD_REQUEST"); err != nil {
		return err
	}
	if _, err := aqOK(c1, "CHANNEL.CLOSE."+id, nil, aqWant{}); err != nil {
		return err
	}
	if err := aqFail(c0, "CHANNEL.SEND."+id+".0", "after close", "NOT_FOUND"); err != nil {
		return err
	}
	// Opened with an empty body.
	id2, a, err := t.aqCreateUnnamed(c1, "CHANNEL.OPEN", nil, "channel", `^ch\.[0-9a-f]+$`, "CHANNEL.CLOSE")
	if err != nil {
		return err
	}
	if id2 == id {
		return a.errf("the same name as the first channel")
	}
	_, err = aqOK(c1, "CHANNEL.CLOSE."+id2, nil, aqWant{})
	return err
}

func checkAqErrors(t *T) error {
	nc, name, err := t.aqConnectCreate("client", "mailbox", "mbx", nil)
	if err != nil {
		return err
	}
	for _, verb := range []string{"NOPE", "NOPE." + name, "MAILBOX.FROB." + name, "MAILBOX.SEND", "MAILBOX.CREATE.x", "INFO.x", "mailbox.create"} {
		if err := aqFail(nc, verb, "{}", "UNKNOWN_SUBJECT"); err != nil {
			return err
		}
	}
	fetch := "MAILBOX.FETCH." + name
	for _, r := range []struct{ verb, body string }{
		{"MAILBOX.CREATE", "{not json"},
		{"MAILBOX.CREATE", "[1,2]"},
		{"MAILBOX.CREATE", `"a string"`},
		{fetch, `{"batch":`},
		{fetch, `{"batch":0}`},
		{fetch, `{"batch":65}`},
		{fetch, `{"batch":"1"}`},
		{fetch, `{"wait_ms":60001}`},
		{fetch, `{"wait_ms":-1}`},
		{"LOG.CREATE", "null"},
	} {
		if err := aqExpectCall(nc, r.verb, r.body, nil, "body "+r.body, false, aqFailWant("BAD_REQUEST")); err != nil {
			return err
		}
	}
	// None of that did anything to the mailbox.
	if _, err := aqOK(nc, "MAILBOX.SEND."+name, "still fine", aqWant{"seq": 0}); err != nil {
		return err
	}
	return aqExpectMsgs(nc, fetch, jobj{"batch": 64}, "seq", []aqMsg{{0, []byte("still fine"), 1}})
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
	t.runAtEnd()
	t.closeAll()
	return err
}

func main() {
	url := flag.String("url", "nats://127.0.0.1:4222", "server URL")
	only := flag.String("only", "", "comma-separated check names to run (default: all)")
	list := flag.Bool("list", false, "print the check names and exit")
	verbose := flag.Bool("v", false, "print details as '# ...' lines")
	aq := flag.Bool("aq", false, "run atomq's $AQ checks (only them) instead of the core checks")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "natscheck: unexpected argument %q\n", flag.Arg(0))
		os.Exit(2)
	}
	group, other, otherFlag := checks, aqChecks, "with -aq"
	if *aq {
		group, other, otherFlag = aqChecks, checks, "without -aq"
	}
	if *list {
		for _, c := range group {
			fmt.Println(c.name)
		}
		return
	}
	selected := group
	if *only != "" {
		selected = nil
		for _, name := range strings.Split(*only, ",") {
			name = strings.TrimSpace(name)
			found := false
			for _, c := range group {
				if c.name == name {
					selected = append(selected, c)
					found = true
				}
			}
			if !found && name != "" {
				for _, c := range other {
					if c.name == name {
						fmt.Fprintf(os.Stderr, "natscheck: check %q runs only %s\n", name, otherFlag)
						os.Exit(2)
					}
				}
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
