package interop

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// receiver is a plain WebSub subscriber endpoint: it echoes every
// verification challenge and hands over every delivery.
type receiver struct {
	*httptest.Server
	posts chan post
}

type post struct {
	header http.Header
	body   []byte
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{posts: make(chan post, 64)}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method == http.MethodGet {
			io.WriteString(w, req.URL.Query().Get("hub.challenge"))
			return
		}
		b, _ := io.ReadAll(req.Body)
		r.posts <- post{req.Header.Clone(), b}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) next(t *testing.T) post {
	t.Helper()
	select {
	case p := <-r.posts:
		return p
	case <-time.After(30 * time.Second):
		t.Fatal("no delivery within 30 s")
	}
	return post{}
}

// subscribe sends a subscribe request with form and returns the 202 body.
func (o *otphub) subscribe(token string, form url.Values) map[string]any {
	o.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, o.srv.URL+"/hub", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		o.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusAccepted {
		o.t.Fatalf("subscribe: %d %v %v", resp.StatusCode, out, err)
	}
	return out
}

// waitActive waits until org has n active subscriptions.
func (o *otphub) waitActive(org, token string, n int) {
	o.t.Helper()
	eventually(o.t, "the subscriptions to be verified", func() bool {
		var subs struct{ Subscriptions []struct{ State string } }
		o.call(http.MethodGet, "/api/v1/orgs/"+org+"/subscriptions", token, nil, &subs, http.StatusOK)
		active := 0
		for _, s := range subs.Subscriptions {
			if s.State == "active" {
				active++
			}
		}
		return active == n
	})
}

// TestStandardWebhooksLibraries: deliveries verify with the official
// libraries called as their READMEs show, unchanged: NewWebhook(secret)
// (Go) and new Webhook(secret) (npm standardwebhooks, run with node) for a
// whsec_ secret, whether the hub generated it (otphub.generate_secret) or
// the subscriber sent it; the raw-secret options (NewWebhookRaw,
// {format: "raw"}) for any other hub.secret.
func TestStandardWebhooksLibraries(t *testing.T) {
	o := start(t)
	const org = "stdwh"
	_, c, admin := o.org(org, "subscribe")
	tok := o.token(c.ClientID, c.ClientSecret)
	cases := []struct {
		name string
		form url.Values
		raw  bool
	}{
		{"hub-generated whsec_", url.Values{"otphub.generate_secret": {"whsec"}}, false},
		{"subscriber's whsec_", url.Values{"hub.secret": {"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}}, false},
		{"raw hub.secret", url.Values{"hub.secret": {"a plain WebSub secret"}}, true},
	}
	rcvs := make([]*receiver, len(cases))
	secrets := make([]string, len(cases))
	for i, tc := range cases {
		rcvs[i] = newReceiver(t)
		form := url.Values{"hub.mode": {"subscribe"}, "hub.topic": {org + "-NOTIFICATIONS"}, "hub.callback": {rcvs[i].URL + "/hook"}}
		for k, v := range tc.form {
			form[k] = v
		}
		ack := o.subscribe(tok, form)
		if s, ok := ack["secret"].(string); ok {
			secrets[i] = s
		} else {
			secrets[i] = tc.form.Get("hub.secret")
		}
		if ack["mode"] != "subscribe" || ack["callback"] != rcvs[i].URL+"/hook" {
			t.Errorf("202 body %v", ack)
		}
	}
	if !strings.HasPrefix(secrets[0], "whsec_") {
		t.Fatalf("generated secret %q", secrets[0])
	}
	o.waitActive(org, admin, len(cases))
	o.challenge(org, admin, "+94771234567")

	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := rcvs[i].next(t)
			// Go: github.com/standard-webhooks/standard-webhooks/libraries
			var wh *standardwebhooks.Webhook
			var err error
			if tc.raw {
				wh, err = standardwebhooks.NewWebhookRaw([]byte(secrets[i]))
			} else {
				wh, err = standardwebhooks.NewWebhook(secrets[i])
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := wh.Verify(d.body, d.header); err != nil {
				t.Errorf("Go library: %v", err)
			}
			// npm: standardwebhooks, with node.
			in, _ := json.Marshal(map[string]any{"secret": secrets[i], "raw": tc.raw, "body": string(d.body), "headers": map[string]string{
				"webhook-id": d.header.Get("webhook-id"), "webhook-timestamp": d.header.Get("webhook-timestamp"),
				"webhook-signature": d.header.Get("webhook-signature")}})
			var res struct {
				OK      bool
				Error   string
				Payload map[string]any
			}
			if err := json.Unmarshal(runNode(t, "verify-webhook.mjs", in), &res); err != nil {
				t.Fatal(err)
			}
			if !res.OK || res.Payload["jti"] != d.header.Get("webhook-id") {
				t.Errorf("npm standardwebhooks: %+v", res)
			}
			// The check can fail: a tampered body does not verify.
			in, _ = json.Marshal(map[string]any{"secret": secrets[i], "raw": tc.raw, "body": string(d.body) + " ", "headers": map[string]string{
				"webhook-id": d.header.Get("webhook-id"), "webhook-timestamp": d.header.Get("webhook-timestamp"),
				"webhook-signature": d.header.Get("webhook-signature")}})
			if err := json.Unmarshal(runNode(t, "verify-webhook.mjs", in), &res); err != nil || res.OK {
				t.Errorf("npm standardwebhooks verified a tampered body: %+v %v", res, err)
			}
		})
	}
}
