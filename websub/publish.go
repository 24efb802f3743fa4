package websub

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/otphub/otphub/access"
	"github.com/otphub/otphub/bus"
	"github.com/otphub/otphub/event"
	"github.com/otphub/otphub/internal/httpx"
	"github.com/otphub/otphub/internal/jsondup"
)

// PublishResponse is the body of a successful publish.
type PublishResponse struct {
	ID    string `json:"id"`    // the event's jti
	Topic string `json:"topic"` // the canonical topic URL
}

// How a published event is encoded.
type publishEncoding int

const (
	publishAsgardeo     publishEncoding = iota // application/json (or none): the Asgardeo body
	publishStructuredCE                        // application/cloudevents+json
	publishBinaryCE                            // CloudEvents HTTP binary mode: ce-* headers, data as the body
)

// publishMode tells how the request's event is encoded: a structured
// CloudEvent by its media type, a binary-mode one by its ce-specversion
// header (CloudEvents HTTP binding §3), otherwise the Asgardeo body. On
// failure it has written the error.
func publishMode(w http.ResponseWriter, r *http.Request) (publishEncoding, bool) {
	media := ""
	if ct := r.Header.Get("Content-Type"); ct != "" {
		m, _, err := mime.ParseMediaType(ct)
		if err != nil {
			httpx.Error(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "the Content-Type is malformed")
			return 0, false
		}
		media = m
	}
	switch {
	case media == event.CloudEventsContentType:
		return publishStructuredCE, true
	case media == "application/cloudevents-batch+json":
		httpx.Error(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "CloudEvents batches are not accepted: publish one event per request")
		return 0, false
	case r.Header.Get("Ce-Specversion") != "":
		if media != "" && media != "application/json" {
			httpx.Error(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "a binary-mode CloudEvent's data must be application/json")
			return 0, false
		}
		return publishBinaryCE, true
	case media == "" || media == "application/json":
		return publishAsgardeo, true
	}
	httpx.Error(w, http.StatusUnsupportedMediaType, "unsupported_media_type",
		"the event must be application/json (the Asgardeo body, or a binary-mode CloudEvent's data with ce-* headers) or application/cloudevents+json")
	return 0, false
}

// binaryHeaders maps the CloudEvents attributes of an HTTP binary-mode
// request (ce-<name> headers, values percent-encoded where the HTTP
// binding §3.1.3.2 says) and its Content-Type to the Kafka binary-mode
// header names event.DecodeBinaryAt reads (ce_<name>, content-type).
func binaryHeaders(h http.Header) (map[string]string, error) {
	out := map[string]string{}
	for name, values := range h {
		lower := strings.ToLower(name)
		attr, ok := strings.CutPrefix(lower, "ce-")
		if !ok || len(values) == 0 {
			continue
		}
		v, err := url.PathUnescape(values[0])
		if err != nil {
			return nil, fmt.Errorf("CloudEvent: header %s is not percent-encoded correctly", name)
		}
		out["ce_"+attr] = v
	}
	if ct := h.Get("Content-Type"); ct != "" {
		out[event.HeaderContentType] = ct
	}
	return out, nil
}

// decodePublished decodes a published event strictly. A CloudEvent
// without time is issued at now (time is optional in CloudEvents).
func decodePublished(mode publishEncoding, r *http.Request, body []byte, now time.Time) (*event.SmsOtpNotificationEvent, error) {
	switch mode {
	case publishStructuredCE:
		return event.UnmarshalCloudEventAt(body, now)
	case publishBinaryCE:
		headers, err := binaryHeaders(r.Header)
		if err != nil {
			return nil, err
		}
		// The log's own decoder: an HTTP binary-mode event and a Kafka one
		// carry the same attributes (ce-x here, ce_x there).
		return event.DecodeBinaryAt(nil, headers, body, now)
	}
	return event.UnmarshalAsgardeo(body)
}

// handlePublish serves POST /hub?hub.mode=publish&hub.topic=…: the body is
// the Asgardeo event JSON (docs/event-formats.md) or a CloudEvent, structured
// (application/cloudevents+json) or in binary mode (ce-* headers, the event
// data as an application/json body). It answers 202 only once the event is
// durably in the log.
func (h *Hub) handlePublish(w http.ResponseWriter, r *http.Request) {
	org, canonical, ok := h.authorizeTopic(w, r, r.URL.Query().Get("hub.topic"), access.ScopePublish)
	if !ok {
		return
	}
	mode, ok := publishMode(w, r)
	if !ok {
		return
	}
	// Back-pressure comes before the body is read: under overload most
	// publishes are refused, and a refusal that decoded the event first
	// would take the CPU the accepted ones need (docs/performance.md).
	if h.cfg.Backlog != nil {
		if over, wait := h.cfg.Backlog.Over(r.Context(), org.ID, org.Name); over {
			httpx.RetryAfter(w, wait)
			httpx.Error(w, http.StatusServiceUnavailable, "delivery_backlog", "this organization's deliveries are backed up (at every destination, or in the delivery log); the event was not accepted, retry later")
			return
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxPublishBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			httpx.Error(w, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("the event exceeds %d bytes", h.cfg.MaxPublishBytes))
			return
		}
		httpx.Error(w, http.StatusBadRequest, "invalid_request", "reading the body failed")
		return
	}
	if len(body) == 0 {
		httpx.Error(w, http.StatusBadRequest, "invalid_event", "the body is empty; the event JSON is required")
		return
	}
	ev, err := decodePublished(mode, r, body, h.cfg.Now())
	if err == nil {
		err = ev.Validate()
	}
	if err != nil {
		httpx.Error(w, http.StatusBadRequest, "invalid_event", err.Error())
		return
	}
	// Two sendTo keys would be read as the last by us and maybe as the
	// first by whatever screened the event before it reached us.
	if key, dup := jsondup.Find(body); dup {
		httpx.Error(w, http.StatusBadRequest, "invalid_event", fmt.Sprintf("duplicate key %q: each key may appear once", key))
		return
	}
	if ev.OrganizationName != org.Name {
		httpx.Error(w, http.StatusBadRequest, "organization_mismatch", fmt.Sprintf("organizationName %q is not the topic's organization %q", ev.OrganizationName, org.Name))
		return
	}
	if ev.OrganizationID != org.ID {
		httpx.Error(w, http.StatusBadRequest, "organization_mismatch", fmt.Sprintf("organizationId %d is not the id of %q (%d)", ev.OrganizationID, org.Name, org.ID))
		return
	}
	// The audience of an event the hub distributes is its topic. A
	// publisher's event goes to every destination of its org: only the
	// hub's test event is restricted to one (a ce-otphubdest header is
	// dropped).
	ev.Audience = canonical
	ev.Destination = ""

	key, headers, value, err := event.EncodeBinary(ev)
	if err != nil {
		httpx.Error(w, http.StatusBadRequest, "invalid_event", err.Error())
		return
	}
	if err := h.pub.Publish(r.Context(), bus.NotificationsTopic, bus.Message{Key: key, Value: value, Headers: headers}); err != nil {
		h.log.Error("publishing an event to the log failed", "org", org.Name, "jti", ev.ID, "err", err)
		httpx.RetryAfter(w, time.Second)
		httpx.Error(w, http.StatusServiceUnavailable, "unavailable", "the event log is unavailable; the event was not accepted")
		return
	}
	h.m.published.WithLabelValues("http").Inc()
	httpx.JSON(w, http.StatusAccepted, PublishResponse{ID: ev.ID, Topic: canonical})
}
