package main

import (
	"encoding/json"
	"fmt"
	"regexp"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The prometheus-operator types are not in k8s.io/api, and importing the
// operator's module would pull in half of Prometheus. These structs carry the
// fields of monitoring.coreos.com/v1 that a chart plausibly sets, with the
// operator's JSON names, so a misspelt field still fails strict decoding.
// Rarely used nested structures (authorization, secrets) are kept raw.

// ServiceMonitor is monitoring.coreos.com/v1 ServiceMonitor.
type ServiceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              ServiceMonitorSpec `json:"spec"`
}

// ServiceMonitorSpec is the subset of the operator's spec we check.
type ServiceMonitorSpec struct {
	JobLabel          string               `json:"jobLabel,omitempty"`
	TargetLabels      []string             `json:"targetLabels,omitempty"`
	PodTargetLabels   []string             `json:"podTargetLabels,omitempty"`
	Endpoints         []Endpoint           `json:"endpoints"`
	Selector          metav1.LabelSelector `json:"selector"`
	NamespaceSelector *NamespaceSelector   `json:"namespaceSelector,omitempty"`
	SampleLimit       *uint64              `json:"sampleLimit,omitempty"`
	TargetLimit       *uint64              `json:"targetLimit,omitempty"`
	LabelLimit        *uint64              `json:"labelLimit,omitempty"`
	ScrapeClass       *string              `json:"scrapeClass,omitempty"`
}

// NamespaceSelector picks the namespaces a ServiceMonitor looks in.
type NamespaceSelector struct {
	Any        bool     `json:"any,omitempty"`
	MatchNames []string `json:"matchNames,omitempty"`
}

// Endpoint is one scrape endpoint of a ServiceMonitor.
type Endpoint struct {
	Port              string              `json:"port,omitempty"`
	TargetPort        *intstr.IntOrString `json:"targetPort,omitempty"`
	Path              string              `json:"path,omitempty"`
	Scheme            string              `json:"scheme,omitempty"`
	Params            map[string][]string `json:"params,omitempty"`
	Interval          Duration            `json:"interval,omitempty"`
	ScrapeTimeout     Duration            `json:"scrapeTimeout,omitempty"`
	HonorLabels       bool                `json:"honorLabels,omitempty"`
	HonorTimestamps   *bool               `json:"honorTimestamps,omitempty"`
	FollowRedirects   *bool               `json:"followRedirects,omitempty"`
	EnableHTTP2       *bool               `json:"enableHttp2,omitempty"`
	FilterRunning     *bool               `json:"filterRunning,omitempty"`
	TLSConfig         *TLSConfig          `json:"tlsConfig,omitempty"`
	BearerTokenSecret json.RawMessage     `json:"bearerTokenSecret,omitempty"`
	Authorization     json.RawMessage     `json:"authorization,omitempty"`
	BasicAuth         json.RawMessage     `json:"basicAuth,omitempty"`
	OAuth2            json.RawMessage     `json:"oauth2,omitempty"`
	ProxyURL          *string             `json:"proxyUrl,omitempty"`
	MetricRelabelings []RelabelConfig     `json:"metricRelabelings,omitempty"`
	Relabelings       []RelabelConfig     `json:"relabelings,omitempty"`
}

// TLSConfig is the endpoint's TLS settings.
type TLSConfig struct {
	CAFile             string          `json:"caFile,omitempty"`
	CertFile           string          `json:"certFile,omitempty"`
	KeyFile            string          `json:"keyFile,omitempty"`
	ServerName         string          `json:"serverName,omitempty"`
	InsecureSkipVerify bool            `json:"insecureSkipVerify,omitempty"`
	CA                 json.RawMessage `json:"ca,omitempty"`
	Cert               json.RawMessage `json:"cert,omitempty"`
	KeySecret          json.RawMessage `json:"keySecret,omitempty"`
}

// RelabelConfig is a Prometheus relabel rule in the operator's spelling.
type RelabelConfig struct {
	SourceLabels []string `json:"sourceLabels,omitempty"`
	Separator    *string  `json:"separator,omitempty"`
	TargetLabel  string   `json:"targetLabel,omitempty"`
	Regex        string   `json:"regex,omitempty"`
	Modulus      uint64   `json:"modulus,omitempty"`
	Replacement  *string  `json:"replacement,omitempty"`
	Action       Action   `json:"action,omitempty"`
}

// Action is a relabel action; decoding refuses an unknown one.
type Action string

var relabelActions = map[string]bool{
	"replace": true, "Replace": true, "keep": true, "Keep": true, "drop": true, "Drop": true,
	"hashmod": true, "HashMod": true, "labelmap": true, "LabelMap": true, "labeldrop": true,
	"LabelDrop": true, "labelkeep": true, "LabelKeep": true, "lowercase": true, "Lowercase": true,
	"uppercase": true, "Uppercase": true, "keepequal": true, "KeepEqual": true, "dropequal": true, "DropEqual": true,
}

// UnmarshalJSON refuses relabel actions Prometheus does not know.
func (a *Action) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	if !relabelActions[s] {
		return fmt.Errorf("unknown relabel action %q", s)
	}
	*a = Action(s)
	return nil
}

// Duration is a Prometheus duration ("30s", "1m30s"); decoding refuses others.
type Duration string

var promDuration = regexp.MustCompile(`^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$`)

// UnmarshalJSON refuses strings that are not Prometheus durations.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	if s == "" || !promDuration.MatchString(s) {
		return fmt.Errorf("%q is not a Prometheus duration", s)
	}
	*d = Duration(s)
	return nil
}

// PrometheusRule is monitoring.coreos.com/v1 PrometheusRule.
type PrometheusRule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              PrometheusRuleSpec `json:"spec"`
}

// PrometheusRuleSpec holds rule groups as Prometheus reads them.
type PrometheusRuleSpec struct {
	Groups []RuleGroup `json:"groups"`
}

// RuleGroup is one group of rules.
type RuleGroup struct {
	Name        string            `json:"name"`
	Interval    Duration          `json:"interval,omitempty"`
	QueryOffset Duration          `json:"query_offset,omitempty"`
	Limit       *int              `json:"limit,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Rules       []Rule            `json:"rules"`
	PartialResp string            `json:"partial_response_strategy,omitempty"`
}

// Rule is an alerting or recording rule.
type Rule struct {
	Alert         string            `json:"alert,omitempty"`
	Record        string            `json:"record,omitempty"`
	Expr          string            `json:"expr"`
	For           Duration          `json:"for,omitempty"`
	KeepFiringFor Duration          `json:"keep_firing_for,omitempty"`
	Labels        map[string]string `json:"labels,omitempty"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}
