package websub

import (
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"strconv"

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

// handlePublish serves POST /hub?hub.mode=publish&hub.topic=…: the body is
// the Asgardeo event JSON (DESIGN §4.1). It answers 202 only once the event
// is durably in the log.
func (h *Hub) handlePublish(w http.ResponseWriter, r *http.Request) {
	org, canonical, ok := h.authorizeTopic(w, r, r.URL.Query().Get("hub.topic"), access.ScopePublish)
	if !ok {
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		media, _, err := mime.ParseMediaType(ct)
		if err != nil || media != "application/json" {
			httpx.Error(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "the event must be application/json")
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
	ev, err := event.UnmarshalAsgardeo(body)
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
	if h.cfg.Backlog != nil {
		if over, wait := h.cfg.Backlog.Over(r.Context(), org.ID, org.Name); over {
			w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(wait.Seconds())))))
			httpx.Error(w, http.StatusServiceUnavailable, "delivery_backlog", "every destination of this organization is backed up; the event was not accepted, retry later")
			return
		}
	}
	// The audience of an event the hub distributes is its topic.
	ev.Audience = canonical

	key, headers, value, err := event.EncodeBinary(ev)
	if err != nil {
		httpx.Error(w, http.StatusBadRequest, "invalid_event", err.Error())
		return
	}
	if err := h.pub.Publish(r.Context(), bus.NotificationsTopic, bus.Message{Key: key, Value: value, Headers: headers}); err != nil {
		h.log.Error("publishing an event to the log failed", "org", org.Name, "jti", ev.ID, "err", err)
		w.Header().Set("Retry-After", "1")
		httpx.Error(w, http.StatusServiceUnavailable, "unavailable", "the event log is unavailable; the event was not accepted")
		return
	}
	h.m.published.WithLabelValues("http").Inc()
	httpx.JSON(w, http.StatusAccepted, PublishResponse{ID: ev.ID, Topic: canonical})
}
