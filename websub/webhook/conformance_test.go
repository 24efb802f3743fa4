package webhook_test

import (
	"net/http"
	"testing"

	"github.com/otphub/otphub/delivery"
	"github.com/otphub/otphub/delivery/sendertest"
	"github.com/otphub/otphub/websub/webhook"
)

func TestSenderConformance(t *testing.T) {
	const secret, token = "whsec-conformance-0123456789", "capability-token-42"
	sendertest.Run(t, sendertest.Harness{
		New: func(t *testing.T, base string, client *http.Client) delivery.Sender {
			return webhook.New(sub(base+"/callback?token="+token, secret, "", ""), webhook.Options{HubURL: "https://hub.example/hub", Client: client})
		},
		Expect:         delivery.HTTP.Rule,
		IdempotencyKey: sendertest.Header("Webhook-Id"),
		Secrets:        []string{secret, token},
	})
}
