package orgs_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/otphub/otphub/internal/orgs"
	"github.com/otphub/otphub/store"
)

// getter answers acme, knows no other org, and fails for "broken".
type getter struct{}

func (getter) GetOrg(_ context.Context, name string) (store.Org, error) {
	switch name {
	case "acme":
		return store.Org{ID: 7, Name: "acme"}, nil
	case "broken":
		return store.Org{}, errors.New("connection refused")
	}
	return store.Org{}, store.ErrNotFound
}

func TestWith(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle("GET /orgs/{org}", orgs.With(getter{}, slog.New(slog.DiscardHandler), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o, ok := orgs.From(r.Context())
		if !ok || o.ID != 7 {
			t.Errorf("org in context: %+v %v", o, ok)
		}
		w.WriteHeader(http.StatusNoContent)
	})))
	for path, want := range map[string]struct {
		status int
		code   string
	}{
		"/orgs/acme":   {http.StatusNoContent, ""},
		"/orgs/globex": {http.StatusNotFound, "org_not_found"},
		"/orgs/Not_Ok": {http.StatusNotFound, "org_not_found"},
		"/orgs/broken": {http.StatusServiceUnavailable, "unavailable"},
	} {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		var body struct{ Error string }
		_ = json.Unmarshal(rec.Body.Bytes(), &body)
		if rec.Code != want.status || body.Error != want.code {
			t.Errorf("%s: %d %q, want %d %q", path, rec.Code, body.Error, want.status, want.code)
		}
	}
}
