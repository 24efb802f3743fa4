package httpx_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/otphub/otphub/internal/httpx"
)

func TestStatusRecorder(t *testing.T) {
	rec := &httpx.StatusRecorder{ResponseWriter: httptest.NewRecorder()}
	if rec.Code() != http.StatusOK || rec.Status != 0 {
		t.Fatalf("before writing: Code %d, Status %d; want 200, 0", rec.Code(), rec.Status)
	}
	rec.WriteHeader(http.StatusCreated)
	rec.WriteHeader(http.StatusTeapot) // superfluous: net/http ignores it too
	if _, err := rec.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if rec.Code() != http.StatusCreated || rec.Bytes != 5 {
		t.Fatalf("Code %d, Bytes %d; want 201, 5", rec.Code(), rec.Bytes)
	}
	if _, ok := http.ResponseWriter(rec).(interface{ Unwrap() http.ResponseWriter }); !ok {
		t.Fatal("StatusRecorder does not unwrap for http.ResponseController")
	}

	implicit := &httpx.StatusRecorder{ResponseWriter: httptest.NewRecorder()}
	_, _ = implicit.Write([]byte("x"))
	if implicit.Status != http.StatusOK {
		t.Fatalf("a body without WriteHeader: Status %d, want 200", implicit.Status)
	}
}
