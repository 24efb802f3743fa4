package twilio

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/otphub/otphub/delivery"
	"github.com/otphub/otphub/delivery/sendertest"
)

func TestSenderConformance(t *testing.T) {
	sendertest.Run(t, sendertest.Harness{
		New: func(t *testing.T, base string, client *http.Client) delivery.Sender {
			s, err := New(Config{AccountSID: testSID, AuthToken: testToken, From: testFrom, BaseURL: base}, client, nil)
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		// CreateMessage's answers: a Message for a 2xx, Twilio's error
		// body (code 21211, invalid To) otherwise.
		Answer: func(w http.ResponseWriter, r *http.Request, status int) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			if status < 300 {
				fmt.Fprint(w, `{"sid":"SM0123456789abcdef0123456789abcdef","status":"queued"}`)
			} else {
				fmt.Fprintf(w, `{"code":%d,"message":"The 'To' number is not a valid phone number.","status":%d}`, CodeInvalidTo, status)
			}
		},
		Expect: func(status int) delivery.Rule {
			if status < 300 {
				return delivery.Rule{} // a Message: created
			}
			r := Classify(status, CodeInvalidTo)
			return delivery.Rule{Retry: r.Retry, Reason: r.Reason}
		},
		NoIdempotencyKey: "Twilio's CreateMessage takes no idempotency key; the engine's record by (org, jti) keeps an OTP from being sent twice",
		Secrets:          []string{testToken},
	})
}
