package websub_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/otphub/otphub/access"
	"github.com/otphub/otphub/event"
	"github.com/otphub/otphub/websub/subscriber"
)

// TestSubscriberSDKEndToEnd runs the Go SDK (websub/subscriber) against
// this hub: it subscribes with client credentials, the hub verifies
// intent, the dispatcher delivers a published event in each body format,
// the SDK checks the signatures and hands over the event, and Shutdown
// unsubscribes.
func TestSubscriberSDKEndToEnd(t *testing.T) {
	t.Parallel()
	for _, format := range event.Formats {
		t.Run(string(format), func(t *testing.T) {
			e := newEnv(t)
			e.startDispatcher()
			org := e.org("sdk")
			id, secret := e.client(org, access.ScopeSubscribe)
			pubTok := e.token(org, access.ScopePublish)

			got := make(chan event.SmsOtpNotificationEvent, 10)
			mux := http.NewServeMux()
			cbSrv := httptest.NewServer(mux)
			t.Cleanup(cbSrv.Close)
			l, err := subscriber.New(subscriber.Config{
				HubURL: e.base + "/hub", ClientID: id, ClientSecret: secret, Org: org.Name,
				CallbackURL: cbSrv.URL + "/otp", Format: format, SignatureAlg: "sha384",
				VerifyTimeout: 25 * time.Second,
			}, subscriber.HandlerFunc(func(_ context.Context, ev event.SmsOtpNotificationEvent) error {
				got <- ev
				return nil
			}))
			if err != nil {
				t.Fatal(err)
			}
			mux.Handle("/otp", l)
			ctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
			defer cancel()
			if err := l.Start(ctx); err != nil {
				t.Fatalf("Start: %v", err)
			}
			// Start returns once the SDK answered the challenge; the hub
			// stores the subscription right after reading that answer.
			e.waitVerifications("verified", 1)
			s, ok := e.findSub(org, cbSrv.URL+"/otp")
			if !ok || s.Format != string(format) || s.SignatureAlg != "sha384" || string(s.Secret) != l.Secret() {
				t.Fatalf("subscription %+v (found %v)", s, ok)
			}

			ev := e.publishOK(pubTok, org)
			select {
			case g := <-got:
				if g.ID != ev.ID || g.SendTo != ev.SendTo || g.MessageBody != ev.MessageBody {
					t.Errorf("handler got %+v", g)
				}
			case <-ctx.Done():
				t.Fatal("the SDK handler was not called")
			}

			if err := l.Shutdown(ctx); err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
			e.waitVerifications("verified", 2)
			if _, ok := e.findSub(org, cbSrv.URL+"/otp"); ok {
				t.Error("still subscribed after Shutdown")
			}
		})
	}
}
