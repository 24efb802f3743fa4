package receipts

import (
	"net/http"

	twclient "github.com/twilio/twilio-go/client"

	"github.com/otphub/otphub/smspolicy"
	"github.com/otphub/otphub/store"
)

// TwilioState maps a Twilio MessageStatus onto a handset state: accepted,
// scheduled and queued are queued; sending and sent are sent; delivered
// and read (channels with read receipts) are delivered; undelivered is
// undelivered; failed and canceled are failed. ok is false for statuses
// of inbound messages and unknown ones.
func TwilioState(status string) (state string, ok bool) {
	switch status {
	case "accepted", "scheduled", "queued":
		return store.HandsetQueued, true
	case "sending", "sent", "partially_delivered":
		return store.HandsetSent, true
	case "delivered", "read":
		return store.HandsetDelivered, true
	case "undelivered":
		return store.HandsetUndelivered, true
	case "failed", "canceled":
		return store.HandsetFailed, true
	}
	return "", false
}

// twilio serves a status callback: a form POST to the StatusCallback URL
// the message was created with, signed in X-Twilio-Signature with the
// account's auth token over that URL and the sorted POST parameters
// (twilio-go's RequestValidator checks it). The message is the one of the
// URL's org, slot and jti; Twilio's own fields are MessageSid,
// MessageStatus (SmsStatus on older accounts), ErrorCode, AccountSid, To.
func (s *Service) twilio(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-Twilio-Signature") == "" {
		s.refuse(w, TypeTwilio, resultForged, http.StatusForbidden, "invalid_signature", "X-Twilio-Signature is required")
		return
	}
	org, slot, c, ok := s.target(w, r, TypeTwilio)
	if !ok {
		return
	}
	jti := r.PathValue("jti")
	r.Body = http.MaxBytesReader(w, r.Body, MaxBody)
	if err := r.ParseForm(); err != nil {
		s.refuse(w, TypeTwilio, resultMalformed, http.StatusBadRequest, "invalid_form", "the body must be a form of at most 16 KiB")
		return
	}
	// Twilio signs the URL it was given: ours, with any query the
	// callback URL carried, whatever proxy the request came through.
	u := s.TwilioCallbackURL(org.Name, slot, jti)
	if r.URL.RawQuery != "" {
		u += "?" + r.URL.RawQuery
	}
	params := make(map[string]string, len(r.PostForm))
	for k, v := range r.PostForm {
		params[k] = v[0]
	}
	v := twclient.NewRequestValidator(c.AuthToken)
	if !v.Validate(u, params, r.Header.Get("X-Twilio-Signature")) {
		s.refuse(w, TypeTwilio, resultForged, http.StatusForbidden, "invalid_signature", "X-Twilio-Signature does not verify")
		return
	}
	if params["AccountSid"] != c.AccountSID {
		s.refuse(w, TypeTwilio, resultForged, http.StatusForbidden, "invalid_signature", "AccountSid is not the configured account")
		return
	}
	status := params["MessageStatus"]
	if status == "" {
		status = params["SmsStatus"]
	}
	state, known := TwilioState(status)
	if params["MessageSid"] == "" || !known || jti == "" || len(jti) > 200 {
		s.refuse(w, TypeTwilio, resultMalformed, http.StatusBadRequest, "invalid_receipt", "MessageSid and a known MessageStatus are required")
		return
	}
	s.apply(w, r, org, store.Receipt{
		ReceiptKey:        store.ReceiptKey{EventID: jti, DestinationType: TypeTwilio, DestinationID: slot},
		ProviderMessageID: params["MessageSid"], State: state, ErrorCode: params["ErrorCode"],
		CountryCode: smspolicy.CallingCode(params["To"]),
	})
}
