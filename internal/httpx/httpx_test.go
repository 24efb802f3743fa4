package httpx_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/otphub/otphub/internal/httpx"
)

// request is a body of the shapes handlers decode: scalars, pointers,
// nested objects, arrays and maps.
type request struct {
	Mobile  string  `json:"mobile"`
	Length  *int    `json:"length"`
	Small   uint8   `json:"small"`
	Codes   []int   `json:"codes"`
	Enabled bool    `json:"enabled"`
	Ratio   float64 `json:"ratio"`
	Nested  struct {
		Labels map[string]string `json:"labels"`
		When   *time.Time        `json:"when"`
	} `json:"nested"`
}

// TestDecodeJSONErrors: every body that is not the expected object is a
// 400 invalid_json whose message names the JSON field and type, never a
// Go type.
func TestDecodeJSONErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req request
		if err := httpx.DecodeJSON(w, r, &req, 0); err != nil {
			httpx.WriteDecodeError(w, err)
			return
		}
		httpx.JSON(w, http.StatusOK, req)
	}))
	t.Cleanup(srv.Close)
	for _, c := range []struct{ body, code, msg string }{
		{`[]`, "invalid_json", "the body must be a JSON object"},
		{` [{"mobile":"+1"}]`, "invalid_json", "the body must be a JSON object"},
		{`"x"`, "invalid_json", "the body must be a JSON object"},
		{`42`, "invalid_json", "the body must be a JSON object"},
		{`null`, "invalid_json", "the body must be a JSON object"},
		{`true`, "invalid_json", "the body must be a JSON object"},
		{``, "invalid_json", "the body is empty; a JSON object is required"},
		{"  \n", "invalid_json", "the body is empty; a JSON object is required"},
		{`{"mobile":1}`, "invalid_json", `field "mobile" has a number where a string is expected`},
		{`{"length":"10"}`, "invalid_json", `field "length" has a string where an integer is expected`},
		{`{"length":1.5}`, "invalid_json", `field "length" has 1.5 where an integer from -9223372036854775808 to 9223372036854775807 is expected`},
		{`{"small":300}`, "invalid_json", `field "small" has 300 where an integer from 0 to 255 is expected`},
		{`{"codes":{}}`, "invalid_json", `field "codes" has an object where an array is expected`},
		{`{"codes":["1"]}`, "invalid_json", `field "codes" has a string where an integer is expected`},
		{`{"enabled":"yes"}`, "invalid_json", `field "enabled" has a string where true or false is expected`},
		{`{"ratio":[]}`, "invalid_json", `field "ratio" has an array where a number is expected`},
		{`{"nested":[]}`, "invalid_json", `field "nested" has an array where an object is expected`},
		{`{"nested":{"labels":{"a":1}}}`, "invalid_json", `field "nested.labels" has a number where a string is expected`},
		{`{"nested":{"labels":[]}}`, "invalid_json", `field "nested.labels" has an array where an object is expected`},
		{`{"nested":{"when":5}}`, "invalid_json", "malformed JSON: input is not a JSON string"},
		{`{"other":1}`, "invalid_json", `unknown field "other"`},
		{`{"mobile":"+1"} {}`, "invalid_json", "unexpected data after the JSON object"},
		{`{"mobile":`, "invalid_json", "malformed JSON: unexpected EOF"},
		{`{"mobile":"+1","mobile":"+2"}`, "invalid_json", `duplicate key "mobile": each key may appear once`},
		{`{"mobile":"+1","MOBILE":"+2"}`, "invalid_json", `duplicate key "MOBILE": each key may appear once`},
		{`{"nested":{"labels":{"a":"1","a":"2"}}}`, "invalid_json", `duplicate key "nested.labels.a": each key may appear once`},
	} {
		resp, err := http.Post(srv.URL, "application/json", strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		var got httpx.ErrorBody
		err = json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 400 || got.Error != c.code || got.Message != c.msg {
			t.Errorf("%s: %d %+v (%v), want 400 %s %q", c.body, resp.StatusCode, got, err, c.code, c.msg)
		}
		for _, goType := range []string{"struct", "Go ", "httpx", "int64", "uint8", "map[", "[]int", "Time", "Unmarshal"} {
			if strings.Contains(got.Message, goType) {
				t.Errorf("%s: message %q names a Go type (%s)", c.body, got.Message, goType)
			}
		}
	}
	resp, err := http.Post(srv.URL, "application/json", strings.NewReader(` {"mobile":"+1","nested":{"labels":{"a":"b"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("a valid object after whitespace: %d", resp.StatusCode)
	}
}
