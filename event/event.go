// Package event owns SmsOtpNotificationEvent, the one event otphub carries
// from the auth core through the log to every destination, and its codecs.
package event

import (
	"strings"
	"time"
)

// SmsOtpEventURI is the event type URI used as the key of the event data in
// the Asgardeo body, as the SET event URI and as the CloudEvents type.
const SmsOtpEventURI = "urn:ietf:params:notifications:smsOtp"

// DefaultOTPValidity is the OTP expiry assumed for an event that does not
// carry one (for example a record produced by an external Kafka client
// without ce_expirytime).
const DefaultOTPValidity = 5 * time.Minute

// SmsOtpNotificationEvent is one SMS OTP notification: security data
// (iss, iat, jti, aud) plus event data, plus the OTP's expiry, which bounds
// how long delivery is worth retrying.
type SmsOtpNotificationEvent struct {
	// Security data.
	Issuer   string    // iss: the issuer URL (otphub's public URL or an external auth core)
	ID       string    // jti: a UUID; the idempotency key everywhere
	IssuedAt time.Time // iat: millisecond precision in the Asgardeo body
	Audience string    // aud: the topic URL, <hub base>/topics/{org}/NOTIFICATIONS

	// Event data.
	OrganizationID   int64
	OrganizationName string
	SendTo           string // E.164 mobile number
	MessageBody      string

	// ExpiresAt is when the OTP in MessageBody stops being valid; zero means
	// unknown (consumers apply DefaultOTPValidity from IssuedAt).
	ExpiresAt time.Time

	// Destination, when set, restricts delivery to that one destination of
	// the org, as "<type>:<id>" (Destination(…)): the router drops every
	// other target, the org's SMS providers included. It is routing data of
	// the log (ce_otphubdest), never part of a delivered body. The hub's
	// test event sets it; events published over HTTP cannot.
	Destination string
}

// Destination names one destination of an org for
// SmsOtpNotificationEvent.Destination: "<type>:<id>", e.g.
// "webhook:<subscription id>".
func Destination(destType, id string) string { return destType + ":" + id }

// Expiry returns ExpiresAt, or IssuedAt+DefaultOTPValidity when unknown.
func (e *SmsOtpNotificationEvent) Expiry() time.Time {
	if !e.ExpiresAt.IsZero() {
		return e.ExpiresAt
	}
	return e.IssuedAt.Add(DefaultOTPValidity)
}

// TopicURL returns the canonical topic URL of org's notifications under the
// hub's public base URL: <base>/topics/{org}/NOTIFICATIONS.
func TopicURL(publicBase, org string) string {
	return strings.TrimRight(publicBase, "/") + "/topics/" + org + "/NOTIFICATIONS"
}
