package receipts

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"mime"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/otphub/otphub/smspolicy"
	"github.com/otphub/otphub/store"
)

// Vonage signature methods, as the dashboard offers them.
const (
	SignatureMD5Hash = "md5hash" // MD5 hash (Vonage's default)
	SignatureMD5     = "md5"     // MD5 HMAC
	SignatureSHA1    = "sha1"    // SHA1 HMAC
	SignatureSHA256  = "sha256"  // SHA-256 HMAC
	SignatureSHA512  = "sha512"  // SHA-512 HMAC
)

// SignatureMethods lists the Vonage signature methods.
var SignatureMethods = []string{SignatureMD5Hash, SignatureMD5, SignatureSHA1, SignatureSHA256, SignatureSHA512}

// VonageSignature computes the sig of a signed Vonage request's params,
// as Vonage documents it and its libraries do: every parameter but sig
// with a non-empty value, sorted by name, each as "&name=value" with '&'
// and '=' in names and values replaced by '_'; for md5hash the hex MD5 of
// that string followed by the secret, for the others the hex HMAC of it
// keyed by the secret. It returns "" for an unknown method.
func VonageSignature(params map[string]string, secret, method string) string {
	keys := make([]string, 0, len(params))
	for k, v := range params {
		if k != "sig" && strings.TrimSpace(v) != "" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	clean := strings.NewReplacer("&", "_", "=", "_")
	var b strings.Builder
	for _, k := range keys {
		b.WriteString("&")
		b.WriteString(clean.Replace(k))
		b.WriteString("=")
		b.WriteString(clean.Replace(params[k]))
	}
	var h hash.Hash
	switch method {
	case "", SignatureMD5Hash:
		h = md5.New()
		h.Write([]byte(b.String() + secret))
		return hex.EncodeToString(h.Sum(nil))
	case SignatureMD5:
		h = hmac.New(md5.New, []byte(secret))
	case SignatureSHA1:
		h = hmac.New(sha1.New, []byte(secret))
	case SignatureSHA256:
		h = hmac.New(sha256.New, []byte(secret))
	case SignatureSHA512:
		h = hmac.New(sha512.New, []byte(secret))
	default:
		return ""
	}
	h.Write([]byte(b.String()))
	return hex.EncodeToString(h.Sum(nil))
}

// VonageState maps a delivery receipt's status onto a handset state:
// delivered; expired (the carrier gave up) is undelivered; failed and
// rejected are failed; accepted, buffered and unknown are sent, not final,
// so a message that never reports more fails over after the window.
func VonageState(status string) (string, bool) {
	switch status {
	case "delivered":
		return store.HandsetDelivered, true
	case "expired":
		return store.HandsetUndelivered, true
	case "failed", "rejected":
		return store.HandsetFailed, true
	case "accepted", "buffered", "unknown":
		return store.HandsetSent, true
	}
	return "", false
}

// vonage serves an SMS API delivery receipt, sent with GET (query) or POST
// (form or JSON) as the account's dashboard says, signed: sig over every
// parameter with the account's signature secret, and a timestamp within
// MaxSkew. Fields: messageId, status, err-code, msisdn, client-ref (the
// jti otphub sent), api-key, message-timestamp, scts.
func (s *Service) vonage(w http.ResponseWriter, r *http.Request) {
	org, slot, c, ok := s.target(w, r, TypeVonage)
	if !ok {
		return
	}
	params, err := vonageParams(w, r)
	if err != nil {
		s.refuse(w, TypeVonage, resultMalformed, http.StatusBadRequest, "invalid_receipt", err.Error())
		return
	}
	want := VonageSignature(params, c.SignatureSecret, c.SignatureMethod)
	got := strings.ToLower(params["sig"])
	if got == "" || want == "" || subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
		s.refuse(w, TypeVonage, resultForged, http.StatusForbidden, "invalid_signature", "sig does not verify with the signature secret")
		return
	}
	ts, err := strconv.ParseInt(params["timestamp"], 10, 64)
	if now := s.cfg.Now(); err != nil || now.Sub(time.Unix(ts, 0)).Abs() > s.cfg.MaxSkew {
		s.refuse(w, TypeVonage, resultExpired, http.StatusForbidden, "stale_signature",
			fmt.Sprintf("timestamp must be within %s of now", s.cfg.MaxSkew))
		return
	}
	if c.APIKey != "" && params["api-key"] != "" && params["api-key"] != c.APIKey {
		s.refuse(w, TypeVonage, resultForged, http.StatusForbidden, "invalid_signature", "api-key is not the configured account")
		return
	}
	state, known := VonageState(params["status"])
	jti := params["client-ref"]
	if params["messageId"] == "" || !known || jti == "" || len(jti) > 200 {
		s.refuse(w, TypeVonage, resultMalformed, http.StatusBadRequest, "invalid_receipt",
			"messageId, client-ref and a known status are required")
		return
	}
	rc := store.Receipt{
		ReceiptKey:        store.ReceiptKey{EventID: jti, DestinationType: TypeVonage, DestinationID: slot},
		ProviderMessageID: params["messageId"], State: state, At: vonageTime(params),
	}
	if code := params["err-code"]; code != "" && code != "0" {
		rc.ErrorCode = code
	}
	if msisdn := params["msisdn"]; msisdn != "" {
		rc.CountryCode = smspolicy.CallingCode("+" + strings.TrimPrefix(msisdn, "+"))
	}
	s.apply(w, r, org, rc)
}

// vonageParams reads a receipt's parameters from the query (GET), a form
// or a JSON object (POST); repeated ones count once.
func vonageParams(w http.ResponseWriter, r *http.Request) (map[string]string, error) {
	out := map[string]string{}
	if r.Method == http.MethodGet {
		for k, v := range r.URL.Query() {
			out[k] = v[0]
		}
		return out, nil
	}
	r.Body = http.MaxBytesReader(w, r.Body, MaxBody)
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct == "application/json" {
		var m map[string]any
		dec := json.NewDecoder(r.Body)
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil {
			return nil, fmt.Errorf("the body must be a JSON object of at most 16 KiB")
		}
		for k, v := range m {
			switch v := v.(type) {
			case string:
				out[k] = v
			case json.Number:
				out[k] = v.String()
			case bool:
				out[k] = strconv.FormatBool(v)
			case nil:
			default:
				return nil, fmt.Errorf("field %q must be a string", k)
			}
		}
		return out, nil
	}
	if err := r.ParseForm(); err != nil {
		return nil, fmt.Errorf("the body must be a form of at most 16 KiB")
	}
	for k, v := range r.PostForm {
		out[k] = v[0]
	}
	return out, nil
}

// vonageTime is when the receipt's status was reached: message-timestamp
// ("2006-01-02 15:04:05", UTC), else scts (YYMMDDhhmm, the carrier's, UTC),
// else zero (the time it was received).
func vonageTime(p map[string]string) time.Time {
	if t, err := time.Parse("2006-01-02 15:04:05", p["message-timestamp"]); err == nil {
		return t
	}
	if t, err := time.Parse("0601021504", p["scts"]); err == nil {
		return t
	}
	return time.Time{}
}
