package httpx

import "net/http"

// StatusRecorder is the one way a middleware learns what a handler answered:
// it passes everything through to the wrapped ResponseWriter and remembers
// the first status code and how many body bytes were written. Unwrap lets
// http.ResponseController reach the original writer.
type StatusRecorder struct {
	http.ResponseWriter
	// Status is the status code written, 0 while nothing is.
	Status int
	// Bytes counts the body bytes written.
	Bytes int
}

// WriteHeader records the first status code and passes code on.
func (r *StatusRecorder) WriteHeader(code int) {
	if r.Status == 0 {
		r.Status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

// Write records an implicit 200 and counts the bytes written.
func (r *StatusRecorder) Write(b []byte) (int, error) {
	if r.Status == 0 {
		r.Status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(b)
	r.Bytes += n
	return n, err
}

// Unwrap returns the wrapped ResponseWriter.
func (r *StatusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Code returns the status code the handler answered with: 200 when it
// wrote nothing, as net/http does.
func (r *StatusRecorder) Code() int {
	if r.Status == 0 {
		return http.StatusOK
	}
	return r.Status
}
