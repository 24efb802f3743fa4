package deploy

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// metrics are the names every otphub component agreed on (the helpers'
// brief): dashboards and alerts may use these and nothing else.
var metrics = map[string]string{
	"otphub_events_published_total":            "counter",
	"otphub_deliveries_total":                  "counter",
	"otphub_delivery_attempts_total":           "counter",
	"otphub_delivery_failures_total":           "counter",
	"otphub_delivery_latency_seconds":          "histogram",
	"otphub_delivery_attempt_duration_seconds": "histogram",
	"otphub_delivery_queue_depth":              "gauge",
	"otphub_delivery_queue_oldest_age_seconds": "gauge",
	"otphub_retries_scheduled_total":           "counter",
	"otphub_dead_letters":                      "gauge",
	"otphub_log_records_dead_lettered_total":   "counter",
	"otphub_circuit_breakers":                  "gauge",
	"otphub_egress_refused_total":              "counter",
	"otphub_otp_challenges_started_total":      "counter",
	"otphub_otp_resends_total":                 "counter",
	"otphub_otp_verifications_total":           "counter",
	"otphub_otp_send_limited_total":            "counter",
	"otphub_otp_overloaded_total":              "counter",
	"otphub_log_consumer_lag_records":          "gauge",
	"otphub_log_wait_seconds":                  "histogram",
	"otphub_websub_subscriptions":              "gauge",
	"otphub_websub_intent_verifications_total": "counter",
	"otphub_http_requests_total":               "counter",
	"otphub_http_request_duration_seconds":     "histogram",
	"otphub_login_outcomes_total":              "counter",
	"otphub_sms_receipt_callbacks_total":       "counter",
	"otphub_sms_handset_outcomes_total":        "counter",
	"otphub_sms_receipt_latency_seconds":       "histogram",
	"otphub_sms_failovers_total":               "counter",
	"otphub_sms_accepted_total":                "counter",
	"otphub_sms_otp_verified_total":            "counter",
}

var metricRef = regexp.MustCompile(`\botphub_[a-z0-9_]+`)

// referenced returns the metric names an expression uses, with histogram
// series suffixes folded into their histogram's name. Counters must be
// wrapped in rate() or increase() unless the expression only lists labels.
func referenced(t *testing.T, where, expr string, labelQuery bool) []string {
	t.Helper()
	var out []string
	for _, name := range metricRef.FindAllString(expr, -1) {
		base := name
		for _, suffix := range []string{"_bucket", "_count", "_sum"} {
			if b, ok := strings.CutSuffix(name, suffix); ok && metrics[b] == "histogram" {
				base = b
			}
		}
		if _, ok := metrics[base]; !ok {
			t.Errorf("%s: %s is not an otphub metric name", where, name)
			continue
		}
		if base == name && metrics[base] == "histogram" {
			t.Errorf("%s: histogram %s queried without _bucket/_count/_sum", where, name)
		}
		if !labelQuery && metrics[base] == "counter" && !strings.Contains(expr, "rate("+name) && !strings.Contains(expr, "increase("+name) {
			t.Errorf("%s: counter %s used without rate() or increase()", where, name)
		}
		out = append(out, base)
	}
	return out
}

type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name       string `json:"name"`
			Definition string `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	GridPos struct{ H, W, X, Y int } `json:"gridPos"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
}

func TestDashboard(t *testing.T) {
	raw, err := os.ReadFile("grafana/otphub-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	if chartCopy, err := os.ReadFile("../charts/otphub/files/otphub-dashboard.json"); err != nil || !bytes.Equal(raw, chartCopy) {
		t.Errorf("charts/otphub/files/otphub-dashboard.json differs from grafana/otphub-dashboard.json (%v): copy it", err)
	}
	var d dashboard
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("dashboard is not valid JSON: %v", err)
	}
	if d.UID == "" || d.Title == "" {
		t.Error("dashboard needs a uid and a title")
	}
	used := map[string]bool{}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		where := "panel " + p.Title
		if ids[p.ID] {
			t.Errorf("%s: duplicate panel id %d", where, p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.W <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("%s: gridPos %+v outside the 24-column grid", where, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("%s: datasource must be the ${datasource} variable", where)
		}
		if len(p.Targets) == 0 {
			t.Errorf("%s: no queries", where)
		}
		for _, tg := range p.Targets {
			if !strings.Contains(tg.Expr, `namespace=~"$namespace"`) || !strings.Contains(tg.Expr, `job=~"$job"`) {
				t.Errorf("%s: query %q ignores the namespace/job variables", where, tg.Expr)
			}
			for _, m := range referenced(t, where, tg.Expr, false) {
				used[m] = true
			}
		}
	}
	for _, v := range d.Templating.List {
		referenced(t, "variable "+v.Name, v.Definition, true)
	}
	for name := range metrics {
		if !used[name] {
			t.Errorf("metric %s is not on the dashboard", name)
		}
	}
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// anchors returns the GitHub anchors of a Markdown file's headings.
func anchors(t *testing.T, path string) map[string]bool {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	drop := regexp.MustCompile(`[^a-z0-9 _-]`)
	inFence := false
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "```") {
			inFence = !inFence
		}
		if inFence || !strings.HasPrefix(line, "#") {
			continue
		}
		h := strings.ToLower(strings.TrimSpace(strings.TrimLeft(line, "#")))
		h = strings.ReplaceAll(drop.ReplaceAllString(h, ""), " ", "-")
		out[h] = true
	}
	return out
}

func TestAlertRules(t *testing.T) {
	raw, err := os.ReadFile("prometheus/otphub-alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&rf); err != nil {
		t.Fatalf("alert rules: %v", err)
	}
	docs := anchors(t, "../docs/operations.md")
	names := map[string]bool{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			where := "alert " + r.Alert
			if r.Alert == "" {
				t.Errorf("group %s: a rule without an alert name", g.Name)
			}
			if names[r.Alert] {
				t.Errorf("%s: duplicate", where)
			}
			names[r.Alert] = true
			referenced(t, where, r.Expr, false)
			if !slices.Contains([]string{"critical", "warning", "info"}, r.Labels["severity"]) {
				t.Errorf("%s: severity %q, want critical, warning or info", where, r.Labels["severity"])
			}
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if r.Annotations[a] == "" {
					t.Errorf("%s: no %s annotation", where, a)
				}
			}
			_, anchor, _ := strings.Cut(r.Annotations["runbook_url"], "docs/operations.md#")
			if !docs[anchor] {
				t.Errorf("%s: runbook_url anchor %q is not a heading of docs/operations.md", where, anchor)
			}
		}
	}
	for _, want := range []string{"OtphubDeliveryFailureRateHigh", "OtphubDeliveryBacklogExpiring", "OtphubConsumerLagGrowing",
		"OtphubDeadLettersIncreasing", "OtphubLogRecordsDeadLettered", "OtphubAbsent", "OtphubCircuitBreakersOpen", "OtphubSMSHandsetDeliveryRateDrop"} {
		if !names[want] {
			t.Errorf("alert %s is missing", want)
		}
	}
	chartCopy, err := os.ReadFile("../charts/otphub/files/otphub-alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(raw, chartCopy) {
		t.Error("charts/otphub/files/otphub-alerts.yaml differs from deploy/prometheus/otphub-alerts.yaml: copy it")
	}
}

// TestMetricsAreExported checks the other direction: every name the
// dashboard and alerts rely on is registered by some otphub package, so a
// rename in the code cannot silently empty a panel.
func TestMetricsAreExported(t *testing.T) {
	found := map[string]bool{}
	lit := regexp.MustCompile(`"(otphub_[a-z0-9_]+)"`)
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "deploy" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range lit.FindAllStringSubmatch(string(src), -1) {
			found[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var missing []string
	for name := range metrics {
		if !found[name] {
			missing = append(missing, name)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("no Go source registers %s (the dashboard and alerts query them)", strings.Join(missing, ", "))
	}
}
