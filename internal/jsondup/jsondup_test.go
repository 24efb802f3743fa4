package jsondup

import "testing"

func TestFind(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in, path string
		found    bool
	}{
		{`{"client_id":"a","client_secret":"b"}`, "", false},
		{`{"client_id":"a","client_id":"b"}`, "client_id", true},
		{`{"client_id":"a","CLIENT_ID":"b"}`, "CLIENT_ID", true},
		{`{"a":{"x":1,"y":2},"b":{"x":1}}`, "", false},
		{`{"event":{"e":{"sendTo":"+1","sendTo":"+2"}}}`, "event.e.sendTo", true},
		{`{"list":[{"k":1},{"k":2,"k":3}]}`, "list.k", true},
		{`[{"k":1},{"k":1}]`, "", false},
		{`"not an object"`, "", false},
		{`{"a":`, "", false},
	}
	for _, c := range cases {
		path, found := Find([]byte(c.in))
		if path != c.path || found != c.found {
			t.Errorf("Find(%s) = %q, %v; want %q, %v", c.in, path, found, c.path, c.found)
		}
	}
}
