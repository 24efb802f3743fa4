package receipts

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/otphub/otphub/smspolicy"
	"github.com/otphub/otphub/store"
	"github.com/otphub/otphub/websub/webhook"
)

// CustomReceipt is the body a custom gateway posts to
// /receipts/custom/{org}/{slot} (docs/providers.md).
type CustomReceipt struct {
	// ID is the jti of the SMS: the Idempotency-Key header otphub sent
	// the gateway. Required.
	ID string `json:"id"`
	// Status is queued, sent, delivered, undelivered or failed. Required.
	Status string `json:"status"`
	// MessageID is the gateway's own message ID, if it has one.
	MessageID string `json:"messageId,omitempty"`
	// Timestamp (RFC 3339) is when the status was reached; default: when
	// the receipt is received.
	Timestamp string `json:"timestamp,omitempty"`
	// ErrorCode is the gateway's or carrier's error code, if any.
	ErrorCode string `json:"errorCode,omitempty"`
	// To is the recipient (E.164), for the country metrics.
	To string `json:"to,omitempty"`
}

// custom serves a custom gateway's receipt, signed as Standard Webhooks
// sign (webhook-id, webhook-timestamp within MaxSkew, webhook-signature
// "v1,<base64 HMAC-SHA256(secret, id.timestamp.body)>", keyed by the
// receipt secret's bytes): the same scheme otphub signs its own webhooks
// with, so gateway authors can use the Standard Webhooks libraries.
func (s *Service) custom(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("webhook-signature") == "" {
		s.refuse(w, TypeCustom, resultForged, http.StatusUnauthorized, "invalid_signature", "webhook-id, webhook-timestamp and webhook-signature are required")
		return
	}
	org, slot, c, ok := s.target(w, r, TypeCustom)
	if !ok {
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		s.refuse(w, TypeCustom, resultMalformed, http.StatusRequestEntityTooLarge, "body_too_large", "the body must be at most 16 KiB")
		return
	}
	if code, result, msg := s.verifyStandard(r.Header, body, []byte(c.ReceiptSecret)); code != 0 {
		s.refuse(w, TypeCustom, result, code, "invalid_signature", msg)
		return
	}
	rc, err := parseCustom(body)
	if err != nil {
		s.refuse(w, TypeCustom, resultMalformed, http.StatusBadRequest, "invalid_receipt", err.Error())
		return
	}
	rc.DestinationType, rc.DestinationID = TypeCustom, slot
	s.apply(w, r, org, rc)
}

func (s *Service) verifyStandard(h http.Header, body, secret []byte) (int, string, string) {
	id, ts, sigs := h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature")
	if id == "" || ts == "" || sigs == "" {
		return http.StatusUnauthorized, resultForged, "webhook-id, webhook-timestamp and webhook-signature are required"
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return http.StatusBadRequest, resultMalformed, "webhook-timestamp must be a Unix time in seconds"
	}
	if s.cfg.Now().Sub(time.Unix(sec, 0)).Abs() > s.cfg.MaxSkew {
		return http.StatusForbidden, resultExpired, fmt.Sprintf("webhook-timestamp must be within %s of now", s.cfg.MaxSkew)
	}
	want := []byte(webhook.StandardSignature(secret, id, sec, body))
	for _, sig := range strings.Fields(sigs) {
		if subtle.ConstantTimeCompare([]byte(sig), want) == 1 {
			return 0, "", ""
		}
	}
	return http.StatusForbidden, resultForged, "webhook-signature does not verify with the receipt secret"
}

func parseCustom(body []byte) (store.Receipt, error) {
	var in CustomReceipt
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return store.Receipt{}, fmt.Errorf("the body must be a JSON object with id, status and optional messageId, timestamp, errorCode, to: %v", err)
	}
	if in.ID == "" || len(in.ID) > 200 {
		return store.Receipt{}, errors.New("id (the Idempotency-Key of the SMS) is required, at most 200 characters")
	}
	if store.HandsetRank(in.Status) == 0 {
		return store.Receipt{}, errors.New("status must be one of queued, sent, delivered, undelivered, failed")
	}
	if len(in.MessageID) > 200 || len(in.ErrorCode) > 64 {
		return store.Receipt{}, errors.New("messageId must be at most 200 characters and errorCode at most 64")
	}
	rc := store.Receipt{ReceiptKey: store.ReceiptKey{EventID: in.ID}, ProviderMessageID: in.MessageID,
		State: in.Status, ErrorCode: in.ErrorCode, CountryCode: smspolicy.CallingCode(in.To)}
	if in.Timestamp != "" {
		t, err := time.Parse(time.RFC3339Nano, in.Timestamp)
		if err != nil {
			return store.Receipt{}, errors.New("timestamp must be an RFC 3339 time, e.g. 2026-01-02T15:04:05Z")
		}
		rc.At = t
	}
	return rc, nil
}
