package app

import (
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/otphub/otphub/internal/httpx"
)

// maxHeaderBytes caps request headers; bodies are capped by each handler.
const maxHeaderBytes = 32 << 10

var validRequestID = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// httpMetrics are the per-route request metrics. The route label is the
// mux pattern (bounded), never the raw path.
type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otphub_http_requests_total",
			Help: "HTTP requests served, by route pattern and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "otphub_http_request_duration_seconds",
			Help:    "HTTP request duration, by route pattern.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"route"}),
	}
	reg.MustRegister(m.requests, m.duration)
	return m
}

// instrument wraps the mux with request IDs, panic recovery, access logs
// and metrics. It logs method, route pattern, status and duration — never
// the query string or body, which may carry secrets.
// next serves the request (mux, or a middleware in front of it).
func instrument(mux *http.ServeMux, next http.Handler, log *slog.Logger, m *httpMetrics) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get("X-Request-Id")
		if !validRequestID.MatchString(id) {
			var b [12]byte
			_, _ = rand.Read(b[:])
			id = hex.EncodeToString(b[:])
		}
		w.Header().Set("X-Request-Id", id)
		rec := &httpx.StatusRecorder{ResponseWriter: w}
		_, route := mux.Handler(r)
		if route == "" {
			route = "unmatched"
		}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				log.Error("handler panic", "request_id", id, "route", route, "panic", p)
				if rec.Status == 0 {
					httpx.Error(rec, http.StatusInternalServerError, "internal_error", "internal error; request ID "+id)
				}
			}
			d := time.Since(start)
			code := rec.Code()
			m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
			m.duration.WithLabelValues(route).Observe(d.Seconds())
			level := slog.LevelInfo
			if route == "GET /healthz" || route == "GET /readyz" || route == "GET /metrics" {
				level = slog.LevelDebug
			}
			log.Log(r.Context(), level, "http request", "request_id", id, "method", r.Method,
				"route", route, "status", code, "bytes", rec.Bytes, "duration_ms", float64(d.Microseconds())/1000)
		}()
		var out http.ResponseWriter = rec
		if route == "unmatched" {
			out = &muxErrorWriter{ResponseWriter: rec, r: r}
		}
		next.ServeHTTP(out, r)
	})
}

// muxErrorWriter turns the mux's own plain-text answers to a request no
// route takes into the JSON errors every otphub answer uses: 404 not_found
// for an unknown path, 405 method_not_allowed (with the mux's Allow header)
// for a known path asked with another method. Anything else the mux
// answers (a redirect to the cleaned path) passes through.
type muxErrorWriter struct {
	http.ResponseWriter
	r       *http.Request
	replied bool
}

func (w *muxErrorWriter) WriteHeader(code int) {
	switch code {
	case http.StatusNotFound:
		w.replied = true
		httpx.Error(w.ResponseWriter, code, "not_found", "no such endpoint: "+w.r.Method+" "+w.r.URL.Path)
	case http.StatusMethodNotAllowed:
		w.replied = true
		httpx.Error(w.ResponseWriter, code, "method_not_allowed",
			"method "+w.r.Method+" is not allowed on "+w.r.URL.Path+"; allowed: "+w.Header().Get("Allow"))
	default:
		w.ResponseWriter.WriteHeader(code)
	}
}

// Write drops the mux's text body once the JSON error is written.
func (w *muxErrorWriter) Write(b []byte) (int, error) {
	if w.replied {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

// routeRecorder registers routes on a ServeMux and remembers their
// patterns, so the served API can be checked against docs/openapi.yaml.
type routeRecorder struct {
	*http.ServeMux
	patterns []string
}

func (r *routeRecorder) Handle(pattern string, h http.Handler) {
	r.patterns = append(r.patterns, pattern)
	r.ServeMux.Handle(pattern, h)
}

func (r *routeRecorder) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	r.patterns = append(r.patterns, pattern)
	r.ServeMux.HandleFunc(pattern, h)
}
