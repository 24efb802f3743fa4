package dispatcher_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/otphub/otphub/access"
	"github.com/otphub/otphub/dispatcher"
	"github.com/otphub/otphub/dispatcher/deliveries"
	dt "github.com/otphub/otphub/dispatcher/dispatchertest"
	"github.com/otphub/otphub/store"
)

// tokens is a static access.Verifier: bearer token → principal.
type tokens map[string]access.Principal

func (t tokens) Verify(_ context.Context, tok string) (access.Principal, error) {
	p, ok := t[tok]
	if !ok {
		return access.Principal{}, errors.New("unknown token")
	}
	return p, nil
}

type apiClient struct {
	t   *testing.T
	srv *httptest.Server
	tok string
}

func newAPI(t *testing.T, e *env) *apiClient { return newAPIAt(t, e, e.clock.Now) }

// newAPIAt is newAPI with the API's clock now.
func newAPIAt(t *testing.T, e *env, now func() time.Time) *apiClient {
	t.Helper()
	api, err := deliveries.New(deliveries.Config{Now: now}, e.st, nil)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	api.Register(mux, tokens{
		"admin":    {ClientID: "a", OrgID: e.orgID, OrgName: org, Scopes: []string{access.ScopeAdmin}},
		"otp":      {ClientID: "o", OrgID: e.orgID, OrgName: org, Scopes: []string{access.ScopeOTP}},
		"platform": {ClientID: "p", PlatformAdmin: true},
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &apiClient{t: t, srv: srv, tok: "admin"}
}

// do sends a request and checks the status; out (if non-nil) receives the
// JSON body. It returns the body.
func (c *apiClient) do(method, path, body string, want int, out any) string {
	c.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, c.srv.URL+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if c.tok != "" {
		req.Header.Set("Authorization", "Bearer "+c.tok)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		c.t.Fatalf("%s %s: status %d, want %d; body %s", method, path, resp.StatusCode, want, b)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		c.t.Errorf("%s %s: content type %q", method, path, ct)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			c.t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
	return string(b)
}

// with returns a copy of c that reports to t (a subtest).
func (c *apiClient) with(t *testing.T) *apiClient {
	d := *c
	d.t = t
	return &d
}

func (c *apiClient) wantError(method, path, body string, status int, code string) {
	c.t.Helper()
	var eb struct{ Error, Message string }
	c.do(method, path, body, status, &eb)
	if eb.Error != code || eb.Message == "" {
		c.t.Errorf("%s %s: error %q (%q), want %q", method, path, eb.Error, eb.Message, code)
	}
}

func TestDeliveriesAPI(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	api := newAPI(t, e)
	ctx := context.Background()

	// Five tasks of acme, one per status, a minute apart, and one of another org.
	base := time.Now().UTC().Truncate(time.Second).Add(-time.Hour)
	statuses := []string{store.DeliveryPending, store.DeliveryDelivered, store.DeliveryFailed, store.DeliveryExpired, store.DeliveryDead}
	ids := map[string]string{}
	for i, st := range statuses {
		ev := e.event(time.Hour)
		id := uuid.NewString()
		ids[st] = id
		task := store.DeliveryTask{ID: id, OrgID: e.orgID, EventID: ev.ID, DestinationType: dt.TypeWebhook,
			DestinationID: "sub-1", Event: []byte(`{"secret":"+94771234567"}`), Status: st, Attempts: 1,
			NextAttemptAt: base.Add(time.Hour), ExpiresAt: base.Add(2 * time.Hour), LastError: "server_error: HTTP 500",
			LastStatusCode: 500, CreatedAt: base.Add(time.Duration(i) * time.Minute), UpdatedAt: base.Add(time.Duration(i) * time.Minute)}
		att := store.DeliveryAttempt{TaskID: id, Number: 1, StartedAt: task.CreatedAt, Duration: 3 * time.Millisecond, StatusCode: 500, Outcome: dispatcher.OutcomeRetry, Error: "server_error: HTTP 500"}
		if _, err := e.st.InsertDeliveryTasks(ctx, []store.DeliveryTask{task}, []store.DeliveryAttempt{att}); err != nil {
			t.Fatal(err)
		}
	}
	other, err := e.st.CreateOrg(ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	otherID := uuid.NewString()
	if _, err := e.st.InsertDeliveryTasks(ctx, []store.DeliveryTask{{ID: otherID, OrgID: other.ID, EventID: uuid.NewString(),
		DestinationType: dt.TypeWebhook, DestinationID: "x", Event: []byte("{}"), Status: store.DeliveryDead}}, nil); err != nil {
		t.Fatal(err)
	}

	type page struct {
		Deliveries []map[string]any
		NextCursor string
	}
	t.Run("auth", func(t *testing.T) {
		c := api.with(t)
		c.tok = ""
		c.wantError(http.MethodGet, "/api/v1/orgs/acme/deliveries", "", http.StatusUnauthorized, "unauthorized")
		c.tok = "bogus"
		c.wantError(http.MethodGet, "/api/v1/orgs/acme/deliveries", "", http.StatusUnauthorized, "invalid_token")
		c.tok = "otp"
		c.wantError(http.MethodGet, "/api/v1/orgs/acme/deliveries", "", http.StatusForbidden, "forbidden")
		c.wantError(http.MethodPost, "/api/v1/orgs/acme/deliveries/replay", `{"status":"dead"}`, http.StatusForbidden, "forbidden")
		c.tok = "admin"
		c.wantError(http.MethodGet, "/api/v1/orgs/other/deliveries", "", http.StatusForbidden, "forbidden")
		c.tok = "platform"
		c.wantError(http.MethodGet, "/api/v1/orgs/nosuch/deliveries", "", http.StatusNotFound, "org_not_found")
		var p page
		c.do(http.MethodGet, "/api/v1/orgs/other/deliveries", "", http.StatusOK, &p)
		if len(p.Deliveries) != 1 {
			t.Errorf("platform admin sees %d deliveries of other, want 1", len(p.Deliveries))
		}
	})

	t.Run("list", func(t *testing.T) {
		api := api.with(t)
		var p page
		body := api.do(http.MethodGet, "/api/v1/orgs/acme/deliveries", "", http.StatusOK, &p)
		if len(p.Deliveries) != 5 || p.NextCursor != "" {
			t.Fatalf("got %d deliveries, cursor %q", len(p.Deliveries), p.NextCursor)
		}
		if strings.Contains(body, "+9477") || strings.Contains(body, "secret") {
			t.Error("the list exposes the event")
		}
		if p.Deliveries[0]["status"] != store.DeliveryDead { // newest first
			t.Errorf("first = %v", p.Deliveries[0])
		}
		api.do(http.MethodGet, "/api/v1/orgs/acme/deliveries?status=dead", "", http.StatusOK, &p)
		if len(p.Deliveries) != 1 || p.Deliveries[0]["id"] != ids[store.DeliveryDead] {
			t.Errorf("status=dead: %v", p.Deliveries)
		}
		// Pages of two, by cursor.
		var seen []string
		path := "/api/v1/orgs/acme/deliveries?limit=2"
		for range 5 {
			var p page
			api.do(http.MethodGet, path, "", http.StatusOK, &p)
			for _, d := range p.Deliveries {
				seen = append(seen, d["id"].(string))
			}
			if p.NextCursor == "" {
				break
			}
			path = "/api/v1/orgs/acme/deliveries?limit=2&before=" + p.NextCursor
		}
		if len(seen) != 5 {
			t.Errorf("paged through %d deliveries, want 5: %v", len(seen), seen)
		}
		// By destination and creation time.
		for q, want := range map[string]int{
			"destinationType=webhook&destinationId=sub-1": 5, "destinationType=webhook&destinationId=sub-2": 0,
			"destinationType=twilio": 0, "destinationType=webhook&status=dead": 1,
			"since=" + url.QueryEscape(base.Add(3*time.Minute).Format(time.RFC3339)): 2,
		} {
			var p page
			api.do(http.MethodGet, "/api/v1/orgs/acme/deliveries?"+q, "", http.StatusOK, &p)
			if len(p.Deliveries) != want {
				t.Errorf("%s: %d deliveries, want %d", q, len(p.Deliveries), want)
			}
		}
		for _, bad := range []struct{ q, code string }{
			{"status=lost", "invalid_status"}, {"limit=0", "invalid_limit"}, {"limit=1001", "invalid_limit"},
			{"limit=ten", "invalid_limit"}, {"before=!!!", "invalid_cursor"}, {"before=bm90LWEtY3Vyc29y", "invalid_cursor"},
			{"destinationId=sub-1", "invalid_destination"}, {"destinationType=web%20hook", "invalid_destination"},
			{"destinationType=webhook&destinationId=" + strings.Repeat("x", 201), "invalid_destination"},
			{"since=yesterday", "invalid_since"},
		} {
			api.wantError(http.MethodGet, "/api/v1/orgs/acme/deliveries?"+bad.q, "", http.StatusBadRequest, bad.code)
		}
	})

	t.Run("get", func(t *testing.T) {
		api := api.with(t)
		var d struct {
			ID         string
			Status     string
			AttemptLog []map[string]any
		}
		body := api.do(http.MethodGet, "/api/v1/orgs/acme/deliveries/"+ids[store.DeliveryFailed], "", http.StatusOK, &d)
		if d.ID != ids[store.DeliveryFailed] || d.Status != store.DeliveryFailed || len(d.AttemptLog) != 1 || d.AttemptLog[0]["outcome"] != "retry" {
			t.Errorf("got %s", body)
		}
		api.wantError(http.MethodGet, "/api/v1/orgs/acme/deliveries/"+uuid.NewString(), "", http.StatusNotFound, "delivery_not_found")
		api.wantError(http.MethodGet, "/api/v1/orgs/acme/deliveries/not-a-uuid", "", http.StatusNotFound, "delivery_not_found")
		api.wantError(http.MethodGet, "/api/v1/orgs/acme/deliveries/"+otherID, "", http.StatusNotFound, "delivery_not_found")
	})

	t.Run("retry one", func(t *testing.T) {
		api := api.with(t)
		api.wantError(http.MethodPost, "/api/v1/orgs/acme/deliveries/"+ids[store.DeliveryPending]+"/retry", "", http.StatusConflict, "delivery_pending")
		var d struct{ Status string }
		api.do(http.MethodPost, "/api/v1/orgs/acme/deliveries/"+ids[store.DeliveryExpired]+"/retry", "", http.StatusAccepted, &d)
		if d.Status != store.DeliveryPending {
			t.Errorf("after retry: %s", d.Status)
		}
		api.wantError(http.MethodPost, "/api/v1/orgs/acme/deliveries/"+ids[store.DeliveryExpired]+"/retry", "", http.StatusConflict, "delivery_pending")
		api.wantError(http.MethodPost, "/api/v1/orgs/acme/deliveries/"+otherID+"/retry", "", http.StatusNotFound, "delivery_not_found")
	})

	t.Run("replay", func(t *testing.T) {
		api := api.with(t)
		for _, bad := range []struct{ body, code string }{
			{`{}`, "invalid_request"}, {`{"status":"pending"}`, "invalid_status"}, {`{"status":"nope"}`, "invalid_status"},
			{`{"since":"yesterday"}`, "invalid_since"}, {`{"status":"dead","extra":1}`, "invalid_json"}, {`{"status":`, "invalid_json"},
			{`[]`, "invalid_json"},
		} {
			api.wantError(http.MethodPost, "/api/v1/orgs/acme/deliveries/replay", bad.body, http.StatusBadRequest, bad.code)
		}
		api.wantError(http.MethodPost, "/api/v1/orgs/acme/deliveries/replay", strings.Repeat(" ", 2000)+"{}", http.StatusRequestEntityTooLarge, "body_too_large")
		var out struct{ Requeued int }
		api.do(http.MethodPost, "/api/v1/orgs/acme/deliveries/replay", `{"status":"dead"}`, http.StatusOK, &out)
		if out.Requeued != 1 {
			t.Errorf("dead replay requeued %d, want 1", out.Requeued)
		}
		// Everything since the third task: failed (delivered is older; expired and dead are pending now).
		since := base.Add(2 * time.Minute).Format(time.RFC3339)
		api.do(http.MethodPost, "/api/v1/orgs/acme/deliveries/replay", `{"since":"`+since+`"}`, http.StatusOK, &out)
		if out.Requeued != 1 {
			t.Errorf("since replay requeued %d, want 1", out.Requeued)
		}
		// The other org's dead task is untouched.
		task, _, err := e.st.GetDelivery(ctx, other.ID, otherID)
		if err != nil || task.Status != store.DeliveryDead {
			t.Errorf("other org's task: %+v %v", task.Status, err)
		}
	})
}
