package subscriber

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/otphub/otphub/delivery"
	"github.com/otphub/otphub/event"
	"github.com/otphub/otphub/store"
	"github.com/otphub/otphub/websub/webhook"
)

// specHub is a small WebSub hub for the SDK's tests, written from the
// WebSub recommendation and docs/websub.md: a client-credentials token
// endpoint, POST /hub answering 202 and then verifying intent with a GET
// to the callback (hub.mode, hub.topic, hub.challenge, hub.lease_seconds)
// that must echo the challenge, denial, and a JWKS. Deliveries go through
// otphub's real webhook sender (websub/webhook), so the signatures
// and body formats are the hub's own.
type specHub struct {
	t      *testing.T
	srv    *httptest.Server
	key    *ecdsa.PrivateKey
	org    string
	client *http.Client

	mu        sync.Mutex
	grant     int    // lease granted (seconds); 0 grants what was asked
	deny      string // when set, subscribe requests are denied with this reason
	subs      map[string]*store.Subscription
	requests  []url.Values // every accepted /hub request
	verifyErr []error      // verification GETs that did not echo the challenge
}

func newSpecHub(t *testing.T, org string) *specHub {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	h := &specHub{t: t, key: key, org: org, subs: map[string]*store.Subscription{},
		client: &http.Client{Timeout: 5 * time.Second}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /oauth2/token", h.token)
	mux.HandleFunc("POST /hub", h.hub)
	mux.HandleFunc("GET /.well-known/jwks.json", h.jwks)
	h.srv = httptest.NewServer(mux)
	t.Cleanup(h.srv.Close)
	return h
}

func (h *specHub) hubURL() string { return h.srv.URL + "/hub" }
func (h *specHub) topic() string  { return event.TopicURL(h.srv.URL, h.org) }

// SigningKey makes specHub a webhook.KeySource.
func (h *specHub) SigningKey() (string, crypto.Signer) { return "hub-key-1", h.key }

func (h *specHub) token(w http.ResponseWriter, r *http.Request) {
	id, secret, ok := r.BasicAuth()
	if !ok || id != "client-1" || secret != "s3cret" || r.FormValue("grant_type") != "client_credentials" {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"error":"invalid_client","message":"bad credentials"}`)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"access_token":"tok-1","token_type":"Bearer","expires_in":3600}`)
}

func (h *specHub) jwks(w http.ResponseWriter, r *http.Request) {
	kid, key := h.SigningKey()
	jwk, err := event.NewJWK(kid, key.Public())
	if err != nil {
		h.t.Error(err)
	}
	b, _ := event.MarshalJWKS(&event.JWKS{Keys: []event.JWK{jwk}})
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

func (h *specHub) hub(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer tok-1" {
		http.Error(w, `{"error":"unauthorized"}`, http.StatusUnauthorized)
		return
	}
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	f := r.PostForm
	if f.Get("hub.topic") != h.topic() {
		http.Error(w, `{"error":"unknown_topic","message":"no such topic"}`, http.StatusBadRequest)
		return
	}
	mode, callback := f.Get("hub.mode"), f.Get("hub.callback")
	lease, _ := strconv.Atoi(f.Get("hub.lease_seconds"))
	h.mu.Lock()
	h.requests = append(h.requests, f)
	if h.grant != 0 || lease == 0 {
		lease = h.grant
	}
	if lease == 0 {
		lease = 864000
	}
	deny := h.deny
	h.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)

	go func() {
		q := url.Values{"hub.topic": {f.Get("hub.topic")}}
		if mode == "subscribe" && deny != "" {
			q.Set("hub.mode", "denied")
			q.Set("hub.reason", deny)
			_, _, _ = h.get(callback, q)
			return
		}
		challenge := base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprint(time.Now().UnixNano())))
		q.Set("hub.mode", mode)
		q.Set("hub.challenge", challenge)
		if mode == "subscribe" {
			q.Set("hub.lease_seconds", strconv.Itoa(lease))
		}
		code, body, err := h.get(callback, q)
		h.mu.Lock()
		defer h.mu.Unlock()
		if err != nil || code/100 != 2 || body != challenge {
			h.verifyErr = append(h.verifyErr, fmt.Errorf("%s: code %d body %q err %v", mode, code, body, err))
			return
		}
		if mode == "unsubscribe" {
			delete(h.subs, callback)
			return
		}
		h.subs[callback] = &store.Subscription{
			ID: "sub-" + strconv.Itoa(len(h.requests)), Topic: h.topic(), Callback: callback,
			Secret: []byte(f.Get("hub.secret")), State: store.SubActive, LeaseSeconds: lease,
			Format: f.Get("otphub.format"), SignatureAlg: f.Get("otphub.signature_alg"),
		}
	}()
}

// get sends a verification GET, preserving the callback's own query.
func (h *specHub) get(callback string, q url.Values) (int, string, error) {
	u, err := url.Parse(callback)
	if err != nil {
		return 0, "", err
	}
	own := u.Query()
	for k, v := range q {
		own[k] = v
	}
	u.RawQuery = own.Encode()
	resp, err := h.client.Get(u.String())
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, string(b), nil
}

func (h *specHub) sub(callback string) *store.Subscription {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.subs[callback]
}

func (h *specHub) requestCount(mode string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, r := range h.requests {
		if r.Get("hub.mode") == mode {
			n++
		}
	}
	return n
}

// deliver sends ev to the subscription at callback with otphub's webhook
// sender.
func (h *specHub) deliver(callback string, ev *event.SmsOtpNotificationEvent) delivery.Result {
	sub := h.sub(callback)
	if sub == nil {
		h.t.Fatalf("no subscription for %s", callback)
	}
	s := webhook.New(*sub, webhook.Options{HubURL: h.hubURL(), Client: h.client, Keys: h})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.Send(ctx, ev)
}

// request builds the delivery request of ev (signed as the hub signs it),
// for tests that tamper with it.
func (h *specHub) request(callback string, ev *event.SmsOtpNotificationEvent) *http.Request {
	sub := h.sub(callback)
	s := webhook.New(*sub, webhook.Options{HubURL: h.hubURL(), Client: h.client, Keys: h})
	req, err := s.Request(context.Background(), ev)
	if err != nil {
		h.t.Fatal(err)
	}
	return req
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func testEvent(org string) *event.SmsOtpNotificationEvent {
	now := time.Now().UTC().Truncate(time.Second)
	return &event.SmsOtpNotificationEvent{
		Issuer: "https://otphub.example.com", ID: newUUID(), IssuedAt: now,
		OrganizationID: 7, OrganizationName: org, SendTo: "+94771234567",
		MessageBody: "Your one-time password for the myapp is 075052. This expires in 5 minutes.",
		ExpiresAt:   now.Add(5 * time.Minute),
	}
}

func newUUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// recorder is a Handler that records events and fails while failing is set.
type recorder struct {
	mu      sync.Mutex
	events  []event.SmsOtpNotificationEvent
	failing bool
	calls   int
}

func (r *recorder) OnSmsOtp(_ context.Context, ev event.SmsOtpNotificationEvent) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.failing {
		return fmt.Errorf("gateway down")
	}
	r.events = append(r.events, ev)
	return nil
}

func (r *recorder) snapshot() (calls int, events []event.SmsOtpNotificationEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls, append([]event.SmsOtpNotificationEvent(nil), r.events...)
}

func (r *recorder) setFailing(v bool) {
	r.mu.Lock()
	r.failing = v
	r.mu.Unlock()
}

var _ = json.Marshal
