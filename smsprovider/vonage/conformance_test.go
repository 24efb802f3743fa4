package vonage

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/otphub/otphub/delivery"
	"github.com/otphub/otphub/delivery/sendertest"
)

func TestSenderConformance(t *testing.T) {
	const secret = "vonage-secret-0123456789"
	sendertest.Run(t, sendertest.Harness{
		New: func(t *testing.T, base string, client *http.Client) delivery.Sender {
			s, err := New(Config{APIKey: "abcd1234", APISecret: secret, From: "+14155550100", BaseURL: base}, client)
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		// The SMS API's answers: 200 with messages[] (status "0": sent);
		// any other status with an error text.
		Answer: func(w http.ResponseWriter, r *http.Request, status int) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			if status == http.StatusOK {
				fmt.Fprint(w, `{"message-count":"1","messages":[{"status":"0","message-id":"0A0000000123ABCD1"}]}`)
			} else {
				fmt.Fprintf(w, `{"type":"https://developer.nexmo.com/api-errors","title":"HTTP %d"}`, status)
			}
		},
		Expect: func(status int) delivery.Rule {
			if status == http.StatusOK {
				return delivery.Rule{}
			}
			return classifier.Rule(status)
		},
		IdempotencyKey: sendertest.FormField("client-ref"),
		Secrets:        []string{secret},
	})
}
