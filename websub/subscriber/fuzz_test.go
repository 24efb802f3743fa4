package subscriber

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/otphub/otphub/event"
)

// FuzzServeDelivery: a correctly signed delivery with any body and content
// type never panics, and is answered 2xx only when the body is an event of
// the Listener's org that reached the handler.
func FuzzServeDelivery(f *testing.F) {
	ev := testEvent("acme")
	for _, format := range []event.Format{event.FormatAsgardeo, event.FormatSET, event.FormatCloudEvents} {
		body, ct, err := event.Encode(format, ev, nil)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(ct, body)
	}
	f.Add("application/json", []byte(`{"event":{"urn:ietf:params:notifications:smsOtp":null}}`))
	f.Add(event.SETContentType, []byte("a.b.c"))
	f.Add("", []byte(""))
	rec := &recorder{}
	l, err := New(Config{HubURL: "http://127.0.0.1:1/hub", ClientID: "c", ClientSecret: "s", Org: "acme",
		CallbackURL: "http://127.0.0.1:1/cb", Secret: "fuzz-secret", JWKSURL: "http://127.0.0.1:1/jwks"}, rec)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		m := hmac.New(sha256.New, []byte("fuzz-secret"))
		m.Write(body)
		req := httptest.NewRequest(http.MethodPost, "/cb", strings.NewReader(string(body)))
		req.Header.Set("Content-Type", contentType)
		req.Header.Set("X-Hub-Signature", "sha256="+hex.EncodeToString(m.Sum(nil)))
		w := httptest.NewRecorder()
		before, _ := rec.snapshot()
		l.ServeHTTP(w, req)
		after, _ := rec.snapshot()
		if w.Code/100 == 2 {
			got, err := event.Decode(contentType, body, nil)
			if err != nil || got.OrganizationName != "acme" {
				t.Fatalf("answered %d to an undecodable or foreign body: %v", w.Code, err)
			}
			if after == before && w.Body.String() != "duplicate" {
				t.Fatalf("answered %d without calling the handler", w.Code)
			}
		}
	})
}
