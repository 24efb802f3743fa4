package webhook_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/otphub/otphub/delivery"
	"github.com/otphub/otphub/egress"
	"github.com/otphub/otphub/event"
	"github.com/otphub/otphub/store"
	"github.com/otphub/otphub/websub/webhook"
)

const hubURL = "https://hub.example/hub"

func testEvent() *event.SmsOtpNotificationEvent {
	return &event.SmsOtpNotificationEvent{
		Issuer:           "https://hub.example",
		ID:               uuid.NewString(),
		IssuedAt:         time.UnixMilli(1659732032884).UTC(),
		Audience:         "https://hub.example/topics/myorg/NOTIFICATIONS",
		OrganizationID:   3,
		OrganizationName: "myorg",
		SendTo:           "+1234567890",
		MessageBody:      "Your one-time password for the myapp is 075052. This expires in 5 minutes.",
		ExpiresAt:        time.UnixMilli(1659732032884).Add(5 * time.Minute).UTC(),
	}
}

func egressClient(t testing.TB, timeout time.Duration) *http.Client {
	t.Helper()
	c, err := egress.New(egress.Config{
		AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Timeout:    timeout,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c.HTTP()
}

// received is one request a receiver got.
type received struct {
	header http.Header
	body   []byte
	query  string
}

// receiver is a real HTTP endpoint answering status (and headers) and
// recording what it got.
type receiver struct {
	*httptest.Server
	mu   sync.Mutex
	got  []received
	code int
	hdr  map[string]string
	body string // answered instead of filler when set
}

func newReceiver(t testing.TB, code int, hdr map[string]string) *receiver {
	r := &receiver{code: code, hdr: hdr}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.got = append(r.got, received{req.Header.Clone(), b, req.URL.RawQuery})
		body := r.body
		r.mu.Unlock()
		for k, v := range r.hdr {
			w.Header().Set(k, v)
		}
		w.WriteHeader(r.code)
		if body != "" {
			io.WriteString(w, body)
			return
		}
		io.WriteString(w, strings.Repeat("ignored ", 100))
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) last(t *testing.T) received {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.got) == 0 {
		t.Fatal("the receiver got nothing")
	}
	return r.got[len(r.got)-1]
}

func sub(callback string, secret string, alg, format string) store.Subscription {
	return store.Subscription{
		ID: uuid.NewString(), OrgID: 3, Topic: "https://hub.example/topics/myorg/NOTIFICATIONS",
		Callback: callback, Secret: []byte(secret), State: store.SubActive,
		Format: format, SignatureAlg: alg,
	}
}

// hubSig computes X-Hub-Signature independently of the package.
func hubSig(alg string, secret, body []byte) string {
	var h func() hash.Hash
	switch alg {
	case "sha1":
		h = sha1.New
	case "sha256":
		h = sha256.New
	case "sha384":
		h = sha512.New384
	case "sha512":
		h = sha512.New
	}
	m := hmac.New(h, secret)
	m.Write(body)
	return alg + "=" + hex.EncodeToString(m.Sum(nil))
}

// standardSig verifies a Standard Webhooks signature as the spec's
// libraries do: HMAC-SHA256 over "id.timestamp.body" with the raw secret.
func standardSig(secret []byte, id, ts string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	fmt.Fprintf(m, "%s.%s.%s", id, ts, body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

func TestSendSignedEveryAlgorithm(t *testing.T) {
	now := time.Unix(1700000000, 0)
	for _, alg := range []string{"sha1", "sha256", "sha384", "sha512", ""} {
		t.Run("alg="+alg, func(t *testing.T) {
			rc := newReceiver(t, http.StatusAccepted, nil)
			secret := "s3cr3t-" + alg
			s := sub(rc.URL+"/cb?token=abc&x=1", secret, alg, "")
			snd := webhook.New(s, webhook.Options{HubURL: hubURL, Client: egressClient(t, 0), Now: func() time.Time { return now }})
			ev := testEvent()
			res := snd.Send(context.Background(), ev)
			if !res.OK || res.StatusCode != 202 {
				t.Fatalf("result %+v", res)
			}
			got := rc.last(t)
			if got.query != "token=abc&x=1" {
				t.Errorf("callback query = %q, want it preserved", got.query)
			}
			wantAlg := alg
			if wantAlg == "" {
				wantAlg = "sha256"
			}
			if sig := got.header.Get("X-Hub-Signature"); !hmac.Equal([]byte(sig), []byte(hubSig(wantAlg, []byte(secret), got.body))) {
				t.Errorf("X-Hub-Signature = %q, want %q", sig, hubSig(wantAlg, []byte(secret), got.body))
			}
			if id := got.header.Get("webhook-id"); id != ev.ID {
				t.Errorf("webhook-id = %q, want the jti %q", id, ev.ID)
			}
			ts := got.header.Get("webhook-timestamp")
			if ts != strconv.FormatInt(now.Unix(), 10) {
				t.Errorf("webhook-timestamp = %q", ts)
			}
			if sig := got.header.Get("webhook-signature"); sig != standardSig([]byte(secret), ev.ID, ts, got.body) {
				t.Errorf("webhook-signature = %q, want %q", sig, standardSig([]byte(secret), ev.ID, ts, got.body))
			}
			if ct := got.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			wantLink := `<` + hubURL + `>; rel="hub", <` + s.Topic + `>; rel="self"`
			if l := got.header.Get("Link"); l != wantLink {
				t.Errorf("Link = %q, want %q", l, wantLink)
			}
			back, err := event.UnmarshalAsgardeo(got.body)
			if err != nil {
				t.Fatal(err)
			}
			if back.ID != ev.ID || back.SendTo != ev.SendTo || back.MessageBody != ev.MessageBody {
				t.Errorf("decoded %+v", back)
			}
		})
	}
}

func TestSendUnsignedWithoutSecret(t *testing.T) {
	rc := newReceiver(t, http.StatusOK, nil)
	snd := webhook.New(sub(rc.URL, "", "", ""), webhook.Options{HubURL: hubURL, Client: egressClient(t, 0)})
	if res := snd.Send(context.Background(), testEvent()); !res.OK {
		t.Fatalf("result %+v", res)
	}
	got := rc.last(t)
	for _, h := range []string{"X-Hub-Signature", "webhook-signature"} {
		if v := got.header.Get(h); v != "" {
			t.Errorf("%s = %q without a secret", h, v)
		}
	}
	if got.header.Get("webhook-id") == "" || got.header.Get("webhook-timestamp") == "" {
		t.Error("webhook-id and webhook-timestamp are sent even without a secret")
	}
}

// TestWebhookIDStable: every attempt of one event carries the same
// webhook-id, so receivers can deduplicate.
func TestWebhookIDStable(t *testing.T) {
	rc := newReceiver(t, http.StatusServiceUnavailable, nil)
	snd := webhook.New(sub(rc.URL, "k", "", ""), webhook.Options{HubURL: hubURL, Client: egressClient(t, 0)})
	ev := testEvent()
	for range 3 {
		if res := snd.Send(context.Background(), ev); res.OK || !res.Retry {
			t.Fatalf("result %+v", res)
		}
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, g := range rc.got {
		if g.header.Get("webhook-id") != ev.ID {
			t.Fatalf("webhook-id %q", g.header.Get("webhook-id"))
		}
	}
}

type ecKey struct{ k *ecdsa.PrivateKey }

func (e ecKey) SigningKey() (string, crypto.Signer) { return "kid-1", e.k }

func TestSendFormats(t *testing.T) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		format, contentType string
	}{
		{"asgardeo", "application/json"},
		{"set", "application/json"},
		{"set-jwt", "application/secevent+jwt"},
		{"cloudevents", "application/cloudevents+json"},
	}
	for _, tc := range cases {
		t.Run(tc.format, func(t *testing.T) {
			rc := newReceiver(t, http.StatusOK, nil)
			snd := webhook.New(sub(rc.URL, "k", "", tc.format), webhook.Options{HubURL: hubURL, Client: egressClient(t, 0), Keys: ecKey{priv}})
			ev := testEvent()
			if res := snd.Send(context.Background(), ev); !res.OK {
				t.Fatalf("result %+v", res)
			}
			got := rc.last(t)
			if ct := got.header.Get("Content-Type"); ct != tc.contentType {
				t.Errorf("Content-Type = %q, want %q", ct, tc.contentType)
			}
			var back *event.SmsOtpNotificationEvent
			if tc.format == "set-jwt" {
				back, err = event.VerifySET(string(got.body), func(*jwt.Token) (any, error) { return &priv.PublicKey, nil })
			} else {
				back, err = event.Decode(tc.contentType, got.body, nil)
			}
			if err != nil {
				t.Fatalf("decode %s: %v\n%s", tc.format, err, got.body)
			}
			if back.ID != ev.ID || back.SendTo != ev.SendTo {
				t.Errorf("decoded %+v", back)
			}
		})
	}
}

func TestSendInvalidConfig(t *testing.T) {
	rc := newReceiver(t, http.StatusOK, nil)
	for _, s := range []store.Subscription{
		sub(rc.URL, "", "", "xml"),
		sub(rc.URL, "", "", "set-jwt"), // no key source
	} {
		res := webhook.New(s, webhook.Options{HubURL: hubURL, Client: egressClient(t, 0)}).Send(context.Background(), testEvent())
		if res.OK || res.Retry || res.Reason != delivery.ReasonInvalid {
			t.Errorf("format %q: %+v", s.Format, res)
		}
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.got) != 0 {
		t.Error("an unrenderable event was sent")
	}
}

// TestSendOverHTTP checks classification against real receivers, headers included.
func TestSendOverHTTP(t *testing.T) {
	cases := []struct {
		name   string
		code   int
		hdr    map[string]string
		ok     bool
		retry  bool
		reason delivery.Reason
		after  time.Duration
	}{
		{"200", 200, nil, true, false, "", 0},
		{"204", 204, nil, true, false, "", 0},
		{"302 not followed", 302, map[string]string{"Location": "/elsewhere"}, false, false, delivery.ReasonRedirect, 0},
		{"410 gone", 410, nil, false, false, delivery.ReasonGone, 0},
		{"429 with Retry-After", 429, map[string]string{"Retry-After": "30"}, false, true, delivery.ReasonRateLimited, 30 * time.Second},
		{"500", 500, nil, false, true, delivery.ReasonServerError, 0},
		{"401", 401, nil, false, false, delivery.ReasonAuthError, 0},
		{"404", 404, nil, false, false, delivery.ReasonClientError, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rc := newReceiver(t, tc.code, tc.hdr)
			res := webhook.New(sub(rc.URL+"/cb", "k", "", ""), webhook.Options{HubURL: hubURL, Client: egressClient(t, 0)}).Send(context.Background(), testEvent())
			if res.OK != tc.ok || res.Retry != tc.retry || res.Reason != tc.reason || res.RetryAfter != tc.after || res.StatusCode != tc.code {
				t.Errorf("got %+v", res)
			}
			rc.mu.Lock()
			n := len(rc.got)
			rc.mu.Unlock()
			if n != 1 {
				t.Errorf("receiver got %d requests, want exactly 1 (redirects never followed)", n)
			}
		})
	}
}

func TestSendTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	snd := webhook.New(sub(srv.URL, "", "", ""), webhook.Options{HubURL: hubURL, Client: egressClient(t, 50*time.Millisecond)})
	res := snd.Send(context.Background(), testEvent())
	if res.OK || !res.Retry || res.Reason != delivery.ReasonTimeout {
		t.Fatalf("got %+v", res)
	}

	// A context deadline is a timeout too.
	snd = webhook.New(sub(srv.URL, "", "", ""), webhook.Options{HubURL: hubURL, Client: egressClient(t, 0)})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if res := snd.Send(ctx, testEvent()); res.Reason != delivery.ReasonTimeout || !res.Retry {
		t.Fatalf("ctx deadline: %+v", res)
	}
}

func TestSendConnectionRefused(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL + "/cb?token=capability"
	srv.Close()
	res := webhook.New(sub(url, "", "", ""), webhook.Options{HubURL: hubURL, Client: egressClient(t, 0)}).Send(context.Background(), testEvent())
	if res.OK || !res.Retry || res.Reason != delivery.ReasonConnection {
		t.Fatalf("got %+v", res)
	}
	if strings.Contains(res.Err.Error(), "capability") {
		t.Errorf("the error repeats the callback URL: %v", res.Err)
	}
}

func TestSendEgressRefused(t *testing.T) {
	rc := newReceiver(t, http.StatusOK, nil)
	guarded, err := egress.New(egress.Config{}, nil) // no allow-list: loopback refused
	if err != nil {
		t.Fatal(err)
	}
	res := webhook.New(sub(rc.URL, "", "", ""), webhook.Options{HubURL: hubURL, Client: guarded.HTTP()}).Send(context.Background(), testEvent())
	if res.OK || res.Retry || res.Reason != delivery.ReasonEgressRefused {
		t.Fatalf("got %+v", res)
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.got) != 0 {
		t.Fatal("a refused request reached the receiver")
	}
}

// TestAudienceDefaultsToTopic: an event without aud (from Kafka) is sent
// with the subscription's topic as aud.
func TestAudienceDefaultsToTopic(t *testing.T) {
	rc := newReceiver(t, http.StatusOK, nil)
	s := sub(rc.URL, "", "", "")
	ev := testEvent()
	ev.Audience = ""
	if res := webhook.New(s, webhook.Options{HubURL: hubURL, Client: egressClient(t, 0)}).Send(context.Background(), ev); !res.OK {
		t.Fatal(res)
	}
	var body struct {
		Aud string `json:"aud"`
	}
	if err := json.Unmarshal(rc.last(t).body, &body); err != nil || body.Aud != s.Topic {
		t.Fatalf("aud = %q, %v", body.Aud, err)
	}
	if ev.Audience != "" {
		t.Error("Send modified the caller's event")
	}
}

func BenchmarkWebhookSend(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	b.Cleanup(srv.Close)
	snd := webhook.New(sub(srv.URL+"/cb", "bench-secret", "sha256", ""), webhook.Options{HubURL: hubURL, Client: egressClient(b, 0)})
	ev := testEvent()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if res := snd.Send(context.Background(), ev); !res.OK {
				b.Fatal(res)
			}
		}
	})
}
