package websub_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/otphub/otphub/bus"
	"github.com/otphub/otphub/bus/embedded"
	"github.com/otphub/otphub/egress"
	"github.com/otphub/otphub/event"
	"github.com/otphub/otphub/oauth"
	"github.com/otphub/otphub/store"
	"github.com/otphub/otphub/store/sqlite"
	"github.com/otphub/otphub/websub"
)

// clock is a settable test clock; it starts at the real time.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}
func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// env is a running hub over the real SQLite store, the real embedded log
// and the real OAuth issuer, served over HTTP.
type env struct {
	t     testing.TB
	ctx   context.Context
	st    store.Store
	log   *embedded.Log
	iss   *oauth.Issuer
	eg    *egress.Client
	hub   *websub.Hub
	reg   *prometheus.Registry
	srv   *httptest.Server
	clock *clock
	mux   *http.ServeMux
	base  string
}

type envOption func(*websub.Config, *egress.Config)

func newEnv(t testing.TB, opts ...envOption) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	e := &env{t: t, ctx: ctx, reg: prometheus.NewRegistry(), clock: newClock(), mux: http.NewServeMux()}
	e.srv = httptest.NewServer(e.mux)
	e.base = e.srv.URL

	st, err := sqlite.Open(ctx, t.TempDir(), store.Options{EncryptionKey: make([]byte, 32)})
	if err != nil {
		t.Fatal(err)
	}
	e.st = st
	lg, err := embedded.Open(t.TempDir(), embedded.Config{})
	if err != nil {
		t.Fatal(err)
	}
	e.log = lg
	e.iss, err = oauth.New(oauth.Config{Issuer: e.base}, st, nil, e.reg)
	if err != nil {
		t.Fatal(err)
	}
	cfg := websub.Config{PublicURL: e.base, Now: e.clock.Now, ExpiryInterval: 20 * time.Millisecond, VerifyTimeout: 20 * time.Second}
	ecfg := egress.Config{AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	for _, o := range opts {
		o(&cfg, &ecfg)
	}
	e.eg, err = egress.New(ecfg, e.reg)
	if err != nil {
		t.Fatal(err)
	}
	e.hub, err = websub.New(cfg, st, lg, e.eg, e.iss, nil, e.reg)
	if err != nil {
		t.Fatal(err)
	}
	e.iss.Register(e.mux, e.iss)
	e.hub.Register(e.mux, e.iss)

	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := e.hub.Run(ctx); err != nil {
			t.Errorf("hub.Run: %v", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		e.srv.Close()
		e.eg.CloseIdleConnections()
		lg.Close()
		st.Close()
	})
	return e
}

// org creates an org.
func (e *env) org(name string) store.Org {
	e.t.Helper()
	o, err := e.st.CreateOrg(e.ctx, name)
	if err != nil {
		e.t.Fatal(err)
	}
	return o
}

// token registers a client of org with scopes and gets a token from the
// real token endpoint (client credentials, HTTP Basic).
func (e *env) token(org store.Org, scopes ...string) string {
	e.t.Helper()
	id, secret := e.client(org, scopes...)
	req, _ := http.NewRequest(http.MethodPost, e.base+"/oauth2/token", strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(id, secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || resp.StatusCode != 200 || tok.AccessToken == "" {
		e.t.Fatalf("token endpoint: %d %v", resp.StatusCode, err)
	}
	return tok.AccessToken
}

// client registers an OAuth client of org with scopes and returns its
// credentials.
func (e *env) client(org store.Org, scopes ...string) (id, secret string) {
	e.t.Helper()
	secret, err := oauth.NewSecret()
	if err != nil {
		e.t.Fatal(err)
	}
	hash, err := oauth.HashSecret(secret)
	if err != nil {
		e.t.Fatal(err)
	}
	id = "client-" + uuid.NewString()
	if err := e.st.CreateClient(e.ctx, store.Client{ClientID: id, OrgID: org.ID, Name: id, SecretHash: hash, Scopes: scopes}); err != nil {
		e.t.Fatal(err)
	}
	return id, secret
}

// adminToken returns a platform admin token.
func (e *env) adminToken() string {
	e.t.Helper()
	id, secret := "platform-admin", "platform-admin-secret-0123456789"
	if _, _, err := e.iss.EnsurePlatformAdmin(e.ctx, id, secret); err != nil {
		e.t.Fatalf("EnsurePlatformAdmin: %v", err)
	}
	req, _ := http.NewRequest(http.MethodPost, e.base+"/oauth2/token", strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(id, secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.AccessToken == "" {
		e.t.Fatalf("admin token: %d %v", resp.StatusCode, err)
	}
	return tok.AccessToken
}

// topic is the canonical topic URL of org.
// firstLogRecord reads the first record of the notifications topic (as a
// consumer group of its own), acknowledges it and returns it; the test
// fails when none comes within 10 s.
func (e *env) firstLogRecord() *bus.Message {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	c, err := e.log.Subscribe(ctx, bus.NotificationsTopic, "test-reader")
	if err != nil {
		e.t.Fatal(err)
	}
	defer c.Close()
	select {
	case m := <-c.Messages():
		m.Ack()
		return m
	case <-ctx.Done():
		e.t.Fatal("nothing in the log")
		return nil
	}
}

func (e *env) topic(org string) string { return event.TopicURL(e.base, org) }

// response is a read HTTP answer.
type response struct {
	code   int
	header http.Header
	body   []byte
}

// errorCode returns the "error" member of a JSON error body.
func (r response) errorCode() string {
	var b struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}
	_ = json.Unmarshal(r.body, &b)
	return b.Error
}

func (e *env) do(method, path, token, contentType string, body io.Reader) response {
	e.t.Helper()
	req, err := http.NewRequestWithContext(e.ctx, method, e.base+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header, b}
}

// hubForm POSTs a form-encoded request to /hub.
func (e *env) hubForm(token string, form url.Values) response {
	e.t.Helper()
	return e.do(http.MethodPost, "/hub", token, "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
}

// subscribe sends a subscribe request and requires 202.
func (e *env) subscribe(token, topic, callback string, extra url.Values) {
	e.t.Helper()
	form := url.Values{"hub.mode": {"subscribe"}, "hub.topic": {topic}, "hub.callback": {callback}}
	for k, v := range extra {
		form[k] = v
	}
	if r := e.hubForm(token, form); r.code != http.StatusAccepted {
		e.t.Fatalf("subscribe: %d %s", r.code, r.body)
	}
}

// publish POSTs ev (Asgardeo JSON) to /hub?hub.mode=publish.
func (e *env) publish(token, topic string, body []byte) response {
	e.t.Helper()
	q := url.Values{"hub.mode": {"publish"}, "hub.topic": {topic}}
	return e.do(http.MethodPost, "/hub?"+q.Encode(), token, "application/json", strings.NewReader(string(body)))
}

// eventFor returns a valid event of org, Asgardeo-encoded.
func eventFor(t testing.TB, org store.Org) (*event.SmsOtpNotificationEvent, []byte) {
	t.Helper()
	ev := &event.SmsOtpNotificationEvent{
		Issuer: "https://auth.example", ID: uuid.NewString(), IssuedAt: time.Now().Truncate(time.Millisecond).UTC(),
		OrganizationID: org.ID, OrganizationName: org.Name, SendTo: "+94771234567",
		MessageBody: "Your one-time password for the myapp is 075052. This expires in 5 minutes.",
	}
	b, err := event.MarshalAsgardeo(ev)
	if err != nil {
		t.Fatal(err)
	}
	return ev, b
}

// counter reads a counter or gauge with one label from the registry.
func (e *env) metric(name, label, value string) float64 {
	e.t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					if m.Counter != nil {
						return m.GetCounter().GetValue()
					}
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	e.t.Fatalf("no %s{%s=%q}", name, label, value)
	return 0
}

// eventually polls cond until it holds or 30 s pass (generous: CI machines are busy).
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitVerifications waits until n verifications ended with outcome.
func (e *env) waitVerifications(outcome string, n float64) {
	e.t.Helper()
	eventually(e.t, fmt.Sprintf("%v %s verifications", n, outcome), func() bool {
		return e.metric("otphub_websub_intent_verifications_total", "outcome", outcome) >= n
	})
}

// findSub returns org's subscription of callback, if any.
func (e *env) findSub(org store.Org, callback string) (store.Subscription, bool) {
	e.t.Helper()
	s, err := e.st.FindSubscription(e.ctx, org.ID, e.topic(org.Name), callback)
	if err != nil {
		return store.Subscription{}, false
	}
	return s, true
}

// receiver is a real WebSub subscriber endpoint: it answers
// verification GETs per its policy and records content POSTs.
type receiver struct {
	*httptest.Server
	mu       sync.Mutex
	gets     []url.Values
	rawGets  []string
	posts    []post
	answer   func(q url.Values) (int, string) // default: 200 echoing hub.challenge
	postCode int                              // default 200
	postCh   chan post
}

type post struct {
	header http.Header
	body   []byte
	query  string
}

func newSubscriber(t *testing.T) *receiver {
	s := &receiver{postCh: make(chan post, 100)}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		answer, postCode := s.answer, s.postCode
		s.mu.Unlock()
		switch r.Method {
		case http.MethodGet:
			q := r.URL.Query()
			s.mu.Lock()
			s.gets = append(s.gets, q)
			s.rawGets = append(s.rawGets, r.URL.RawQuery)
			s.mu.Unlock()
			if q.Get("hub.mode") == "denied" {
				w.WriteHeader(http.StatusOK)
				return
			}
			code, body := http.StatusOK, q.Get("hub.challenge")
			if answer != nil {
				code, body = answer(q)
			}
			w.WriteHeader(code)
			io.WriteString(w, body)
		case http.MethodPost:
			b, _ := io.ReadAll(r.Body)
			d := post{r.Header.Clone(), b, r.URL.RawQuery}
			s.mu.Lock()
			s.posts = append(s.posts, d)
			s.mu.Unlock()
			select {
			case s.postCh <- d:
			default:
			}
			if postCode == 0 {
				postCode = http.StatusOK
			}
			w.WriteHeader(postCode)
		default:
			w.WriteHeader(http.StatusMethodNotAllowed)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *receiver) setAnswer(f func(q url.Values) (int, string)) {
	s.mu.Lock()
	s.answer = f
	s.mu.Unlock()
}

// verifications returns the GETs received so far.
func (s *receiver) verifications() []url.Values {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]url.Values(nil), s.gets...)
}

// waitPost waits for a content distribution request.
func (s *receiver) waitPost(t *testing.T) post {
	t.Helper()
	select {
	case d := <-s.postCh:
		return d
	case <-time.After(30 * time.Second):
		t.Fatal("no content distribution request arrived")
		return post{}
	}
}

// hubSignature computes X-Hub-Signature independently of the hub.
func hubSignature(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// standardSignature computes the Standard Webhooks signature of d with
// secret, independently of the hub.
func standardSignature(secret string, d post) string {
	m := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(m, "%s.%s.%s", d.header.Get("webhook-id"), d.header.Get("webhook-timestamp"), d.body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}
