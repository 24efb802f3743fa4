package webhook_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net/http"
	"strings"
	"testing"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/otphub/otphub/delivery"
	"github.com/otphub/otphub/websub/webhook"
	"github.com/otphub/otphub/websub/whsec"
)

// TestStandardWebhooksLibrary verifies deliveries with the official Go
// library (github.com/standard-webhooks/standard-webhooks/libraries), the
// way its README calls it: NewWebhook(secret) for a "whsec_" secret (the
// hub's generated kind, or one the subscriber made), NewWebhookRaw for any
// other secret. X-Hub-Signature stays keyed by the secret string as sent.
func TestStandardWebhooksLibrary(t *testing.T) {
	generated := whsec.New()
	cases := []struct {
		name, secret string
		verifier     func(secret string) (*standardwebhooks.Webhook, error)
	}{
		{"generated whsec_ with NewWebhook", generated, standardwebhooks.NewWebhook},
		{"subscriber's whsec_ with NewWebhook", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", standardwebhooks.NewWebhook},
		{"raw secret with NewWebhookRaw", "a raw hub.secret, any bytes", func(s string) (*standardwebhooks.Webhook, error) {
			return standardwebhooks.NewWebhookRaw([]byte(s))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rc := newReceiver(t, http.StatusNoContent, nil)
			snd := webhook.New(sub(rc.URL, tc.secret, "sha256", ""), webhook.Options{HubURL: hubURL, Client: egressClient(t, 0)})
			ev := testEvent()
			if res := snd.Send(context.Background(), ev); !res.OK {
				t.Fatalf("result %+v", res)
			}
			got := rc.last(t)
			wh, err := tc.verifier(tc.secret)
			if err != nil {
				t.Fatal(err)
			}
			if err := wh.Verify(got.body, got.header); err != nil {
				t.Fatalf("the Standard Webhooks library refused the delivery: %v", err)
			}
			if got.header.Get("X-Hub-Signature") != hubSig("sha256", []byte(tc.secret), got.body) {
				t.Error("X-Hub-Signature is not keyed by the secret string")
			}
			// And a tampered body fails, so the check above can fail.
			if err := wh.Verify(append(got.body, ' '), got.header); err == nil {
				t.Fatal("a tampered body verified")
			}
		})
	}
	if !strings.HasPrefix(generated, whsec.Prefix) || len(generated) != len("whsec_")+44 {
		t.Errorf("generated secret %q: want whsec_ and 32 bytes of base64", generated)
	}
}

// TestSETPushRFC8935: a set-jwt push says Accept: application/json
// (RFC 8935 §2.1), and a receiver's 400 error body (§2.3) is kept in the
// result's error, which the attempt log records.
func TestSETPushRFC8935(t *testing.T) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rc := newReceiverBody(t, http.StatusBadRequest, "application/json",
		`{"err":"invalid_key","description":"Key ID 12345 has been revoked.\nreally"}`)
	snd := webhook.New(sub(rc.URL, "", "", "set-jwt"), webhook.Options{HubURL: hubURL, Client: egressClient(t, 0), Keys: ecKey{priv}})
	res := snd.Send(context.Background(), testEvent())
	if res.OK || res.Retry || res.Reason != delivery.ReasonClientError || res.StatusCode != 400 {
		t.Fatalf("result %+v", res)
	}
	want := `the endpoint answered 400 Bad Request: err=invalid_key description="Key ID 12345 has been revoked.really"`
	if res.Err == nil || res.Err.Error() != want {
		t.Fatalf("error %v, want %s", res.Err, want)
	}
	got := rc.last(t)
	if a := got.header.Get("Accept"); a != "application/json" {
		t.Errorf("Accept = %q, want application/json", a)
	}

	// A 400 without the RFC 8935 body keeps the plain message.
	plain := newReceiverBody(t, http.StatusBadRequest, "text/plain", "nope")
	res = webhook.New(sub(plain.URL, "", "", "set-jwt"), webhook.Options{HubURL: hubURL, Client: egressClient(t, 0), Keys: ecKey{priv}}).
		Send(context.Background(), testEvent())
	if res.Err == nil || res.Err.Error() != "the endpoint answered 400 Bad Request" {
		t.Fatalf("plain 400: %v", res.Err)
	}
}

// newReceiverBody is a receiver answering code with a fixed body.
func newReceiverBody(t *testing.T, code int, contentType, body string) *receiver {
	r := newReceiver(t, code, map[string]string{"Content-Type": contentType})
	r.mu.Lock()
	r.body = body
	r.mu.Unlock()
	return r
}
