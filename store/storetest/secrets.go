package storetest

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"testing"
	"time"

	"github.com/otphub/otphub/store"
)

// CheckSecretsAtRest stores secrets through s, then reads the adapter's raw
// tables through raw (a separate handle on the same database) and fails if
// any secret appears in clear, or if a sealed value copied into another row
// still opens. s must be fresh.
func CheckSecretsAtRest(t *testing.T, s store.Store, raw *sql.DB) {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a, b := mustOrg(t, s, "org-a"), mustOrg(t, s, "org-b")
	providerSecret := []byte("twilio-auth-token-0123456789")
	subSecret := []byte("websub-hub-secret-0123456789")
	keySecret := []byte("pkcs8-private-key-0123456789")
	eventOTP := []byte("Your code is 918273")

	cfg, _ := json.Marshal(map[string]string{"authToken": string(providerSecret)})
	must(t, s.PutSMSProvider(c, store.SMSProvider{OrgID: a.ID, Slot: store.ProviderPrimary, Type: "twilio", Config: cfg}), "PutSMSProvider")
	must(t, s.PutSMSProvider(c, store.SMSProvider{OrgID: b.ID, Slot: store.ProviderPrimary, Type: "twilio", Config: []byte(`{"authToken":"b"}`)}), "PutSMSProvider(B)")
	_, err := s.UpsertSubscription(c, store.Subscription{OrgID: a.ID, Topic: topicA, Callback: "https://cb/x", Secret: subSecret, State: store.SubActive})
	must(t, err, "UpsertSubscription")
	must(t, s.InsertSigningKey(c, store.SigningKey{KID: "k1", Algorithm: "ES256", PrivateKey: keySecret}), "InsertSigningKey")
	_, err = s.InsertDeliveryTasks(c, []store.DeliveryTask{{ID: "t1", OrgID: a.ID, EventID: "e1", DestinationType: "webhook",
		DestinationID: "s1", Event: eventOTP, Status: store.DeliveryPending}}, nil)
	must(t, err, "InsertDeliveryTasks")
	appSecret := []byte("application-client-secret-0123456789")
	must(t, s.CreateApplication(c, store.Application{ID: "app-1", OrgID: a.ID, Name: "app", ClientID: "client-1", ClientSecret: appSecret}), "CreateApplication")

	for _, q := range []struct {
		query  string
		secret []byte
	}{
		{`SELECT config FROM sms_providers`, providerSecret},
		{`SELECT secret FROM subscriptions`, subSecret},
		{`SELECT private_key FROM signing_keys`, keySecret},
		{`SELECT event FROM delivery_tasks`, eventOTP},
		{`SELECT client_secret FROM applications`, appSecret},
	} {
		rows, err := raw.QueryContext(c, q.query)
		must(t, err, "raw %s", q.query)
		n := 0
		for rows.Next() {
			var v []byte
			must(t, rows.Scan(&v), "scan %s", q.query)
			n++
			if bytes.Contains(v, q.secret) || len(v) < len(q.secret) {
				t.Errorf("%s: stored value %q holds the secret in clear (or is too short to be sealed)", q.query, v)
			}
		}
		must(t, rows.Err(), "rows %s", q.query)
		rows.Close()
		if n == 0 {
			t.Errorf("%s: no rows; the table layout changed?", q.query)
		}
	}

	// A sealed value moved to another org's row must not open there.
	if _, err := raw.ExecContext(c, `UPDATE sms_providers SET config = (SELECT config FROM sms_providers WHERE org_id = `+
		itoa(a.ID)+`) WHERE org_id = `+itoa(b.ID)); err != nil {
		t.Fatalf("raw copy: %v", err)
	}
	if p, err := s.GetSMSProvider(c, b.ID, store.ProviderPrimary); err == nil {
		t.Fatalf("org A's sealed config opened as org B's: %s", p.Config)
	}
	got, err := s.GetSMSProvider(c, a.ID, store.ProviderPrimary)
	must(t, err, "GetSMSProvider(A)")
	eqBytes(t, got.Config, cfg, "org A's config")
}

func itoa(v int64) string {
	b, _ := json.Marshal(v)
	return string(b)
}
