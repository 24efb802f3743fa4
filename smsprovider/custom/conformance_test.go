package custom

import (
	"net/http"
	"testing"

	"github.com/otphub/otphub/delivery"
	"github.com/otphub/otphub/delivery/sendertest"
)

func TestSenderConformance(t *testing.T) {
	const secret = "gateway-api-key-0123456789"
	sendertest.Run(t, sendertest.Harness{
		New: func(t *testing.T, base string, client *http.Client) delivery.Sender {
			s, err := New(Config{URL: base + "/sms", PayloadTemplate: seedTemplate, Headers: "X-Api-Key: " + secret}, client)
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		Expect:         delivery.Provider.Rule,
		IdempotencyKey: sendertest.Header("Idempotency-Key"),
		Secrets:        []string{secret},
	})
}
