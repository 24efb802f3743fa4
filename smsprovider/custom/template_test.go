package custom

import (
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"
)

// seedTemplate is the seed's example with ASCII quotes and the stray
// closing brace removed.
const seedTemplate = `{"content": {{body}}, "to": {{mobile}} }`

func TestRenderJSONBareAndQuoted(t *testing.T) {
	cases := []struct {
		tmpl, body, mobile string
		want               map[string]any
	}{
		{seedTemplate, `Your code is 123456`, "+94771234567", map[string]any{"content": "Your code is 123456", "to": "+94771234567"}},
		{`{"text":"Code: {{body}}","to":"{{mobile}}"}`, `a "quoted" \ back`, "+1", map[string]any{"text": `Code: a "quoted" \ back`, "to": "+1"}},
		{`{"m":{"to":[{{ mobile }}],"b":{{body}}}}`, "line1\nline2\t\u2028\x01", "+44", map[string]any{"m": map[string]any{"to": []any{"+44"}, "b": "line1\nline2\t\u2028\x01"}}},
		{`{"lit":"\"{{body}}\"", "to": {{mobile}}}`, "x", "+2", map[string]any{"lit": `"x"`, "to": "+2"}},
		{`{"{{mobile}}": {{body}}}`, "ok", "+3", map[string]any{"+3": "ok"}},
		{`{"a":"{{\"}}", "b": {{body}}, "c": {{mobile}}}`, "ok", "+4", map[string]any{"a": `{{"}}`, "b": "ok", "c": "+4"}},
	}
	for _, c := range cases {
		tp, err := ParseTemplate(ContentJSON, c.tmpl)
		if err != nil {
			t.Fatalf("ParseTemplate(%q): %v", c.tmpl, err)
		}
		out := tp.Render(c.body, c.mobile)
		var got map[string]any
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("Render(%q) = %s: %v", c.tmpl, out, err)
		}
		gj, _ := json.Marshal(got)
		wj, _ := json.Marshal(c.want)
		if string(gj) != string(wj) {
			t.Errorf("Render(%q) = %s, want %s", c.tmpl, gj, wj)
		}
	}
}

func TestParseTemplateRefusals(t *testing.T) {
	cases := []struct {
		name, ct, tmpl string
		offset         int
		msg            string
	}{
		{"seed as printed", ContentJSON, "{“content”: {{body}},“to”: {{mobile}}}}", 1, "typographic quote"},
		{"extra brace", ContentJSON, `{"content": {{body}},"to": {{mobile}}}}`, 38, "not be valid JSON"},
		{"missing comma", ContentJSON, `{"content": {{body}} "to": {{mobile}}}`, 21, "not be valid JSON"},
		{"placeholder after literal", ContentJSON, `{"a": 1{{body}}, "b": {{mobile}}}`, 7, "not be valid JSON"},
		{"truncated", ContentJSON, `{"a": {{body}}, "b": {{mobile}}`, 31, "not be valid JSON"},
		{"unknown placeholder", ContentJSON, `{"a": {{otp}}, "b": {{mobile}}}`, 6, "unknown placeholder {{otp}}"},
		{"escape", ContentJSON, `{"a": "\{{body}}", "b": {{mobile}}}`, 8, "backslash escape"},
		{"unicode escape", ContentJSON, `{"a": "\u00{{body}}", "b": {{mobile}}}`, 11, "backslash escape"},
		{"no body", ContentJSON, `{"b": {{mobile}}}`, 17, "{{body}}"},
		{"no mobile", ContentFORM, `text={{body}}`, 13, "{{mobile}}"},
		{"empty", ContentJSON, "  ", 0, "empty"},
		{"line and column", ContentJSON, "{\n  \"a\": {{body}},\n  \"b\": {{mobile}},\n}", 38, "line 4, column 1"},
		{"form space", ContentFORM, `to={{mobile}}&text=my {{body}}`, 21, "URL-encoded"},
		{"form bad escape", ContentFORM, `to={{mobile}}&text={{body}}%zz`, 27, "%XX"},
		{"form semicolon", ContentFORM, `to={{mobile}};text={{body}}`, 13, "';'"},
		{"form non-ascii", ContentFORM, `to={{mobile}}&t=é{{body}}`, 16, "URL-encoded"},
		{"invalid utf8", ContentJSON, "{\"a\": \"\xff\", \"b\": {{body}}, \"c\": {{mobile}}}", 7, "UTF-8"},
		{"too big", ContentJSON, `{"a": {{body}}, "b": {{mobile}}, "c": "` + strings.Repeat("x", MaxTemplateSize) + `"}`, MaxTemplateSize, "exceeds"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseTemplate(c.ct, c.tmpl)
			var te *TemplateError
			if !errors.As(err, &te) {
				t.Fatalf("err = %v, want a *TemplateError", err)
			}
			if te.Offset != c.offset || !strings.Contains(te.Error(), c.msg) {
				t.Fatalf("err = %v (offset %d), want offset %d and %q", err, te.Offset, c.offset, c.msg)
			}
		})
	}
	if _, err := ParseTemplate("XML", seedTemplate); err == nil {
		t.Fatal("content type XML accepted")
	}
}

func TestRenderForm(t *testing.T) {
	tp, err := ParseTemplate(ContentFORM, `to={{mobile}}&text={{body}}&from=otphub%20dev&x=a+b`)
	if err != nil {
		t.Fatal(err)
	}
	body := "Your code: 12 34&x=1 % +é"
	out := tp.Render(body, "+94771234567")
	v, err := url.ParseQuery(string(out))
	if err != nil {
		t.Fatal(err)
	}
	if v.Get("to") != "+94771234567" || v.Get("text") != body || v.Get("from") != "otphub dev" || v.Get("x") != "a b" || len(v) != 4 {
		t.Fatalf("decoded %v", v)
	}
}

// validRunes mirrors AppendJSONString's treatment of invalid UTF-8: one
// U+FFFD per bad byte.
func validRunes(s string) string {
	var b strings.Builder
	for _, r := range s {
		b.WriteRune(r)
	}
	return b.String()
}

func FuzzRenderJSON(f *testing.F) {
	f.Add("Your myapp code is 123456. It expires in 5 minutes.", "+94771234567")
	f.Add("\"\\\n\r\t\x00\x1f\u2028\u2029</script>", "+1")
	f.Add("\xff\xfe invalid", "\xc3")
	f.Add("{{body}} {{mobile}}", "{{mobile}}")
	bare, _ := ParseTemplate(ContentJSON, seedTemplate)
	quoted, _ := ParseTemplate(ContentJSON, `{"text":"Code: {{body}}!","to":"tel:{{mobile}}"}`)
	f.Fuzz(func(t *testing.T, body, mobile string) {
		var a struct{ Content, To string }
		out := bare.Render(body, mobile)
		if !json.Valid(out) {
			t.Fatalf("invalid JSON %q", out)
		}
		if err := json.Unmarshal(out, &a); err != nil || a.Content != validRunes(body) || a.To != validRunes(mobile) {
			t.Fatalf("round trip %q: %+v %v", out, a, err)
		}
		var b struct{ Text, To string }
		out = quoted.Render(body, mobile)
		if err := json.Unmarshal(out, &b); err != nil || b.Text != "Code: "+validRunes(body)+"!" || b.To != "tel:"+validRunes(mobile) {
			t.Fatalf("round trip %q: %+v %v", out, b, err)
		}
		if !utf8.Valid(out) {
			t.Fatalf("invalid UTF-8 %q", out)
		}
	})
}

func FuzzRenderForm(f *testing.F) {
	f.Add("Your myapp code is 123456.", "+94771234567")
	f.Add("a&b=c;d%zz+ \n\xff", "+1 2")
	tp, _ := ParseTemplate(ContentFORM, `to={{mobile}}&text={{body}}`)
	f.Fuzz(func(t *testing.T, body, mobile string) {
		v, err := url.ParseQuery(string(tp.Render(body, mobile)))
		if err != nil || len(v) != 2 || v.Get("to") != mobile || v.Get("text") != body {
			t.Fatalf("round trip: %v %v", v, err)
		}
	})
}

// FuzzParseTemplateJSON checks the parser's promise: a template it accepts
// yields valid JSON for every value, not only for the sample.
func FuzzParseTemplateJSON(f *testing.F) {
	f.Add(seedTemplate, "x\"y", "+1")
	f.Add(`{"a":"\\{{body}}","b":{{mobile}}}`, "n", "+1")
	f.Add(`["{{body}}",{{mobile}}]`, "\\", "\"")
	f.Fuzz(func(t *testing.T, tmpl, body, mobile string) {
		tp, err := ParseTemplate(ContentJSON, tmpl)
		if err != nil {
			return
		}
		if out := tp.Render(body, mobile); !json.Valid(out) {
			t.Fatalf("template %q accepted but renders invalid JSON %q", tmpl, out)
		}
	})
}

func BenchmarkCustomRenderJSON(b *testing.B) {
	tp, err := ParseTemplate(ContentJSON, `{"content": {{body}}, "to": {{mobile}}, "meta": {"source": "otphub", "text": "{{body}}"}}`)
	if err != nil {
		b.Fatal(err)
	}
	body := "Your myapp verification code is 482913. It expires in 5 minutes. Do not share it."
	b.ReportAllocs()
	for b.Loop() {
		_ = tp.Render(body, "+94771234567")
	}
}
