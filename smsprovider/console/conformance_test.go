package console

import (
	"io"
	"testing"

	"github.com/otphub/otphub/delivery"
	"github.com/otphub/otphub/delivery/sendertest"
)

func TestSenderConformance(t *testing.T) {
	sendertest.RunLocal(t, func(*testing.T) delivery.Sender { return New(io.Discard) })
}
