package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// kinds maps "apiVersion/kind" to a constructor of the typed object a document
// must decode into without unknown fields. A kind missing here is an error:
// the chart must not render something this check cannot vouch for.
var kinds = map[string]func() any{
	"v1/ConfigMap":                             func() any { return &corev1.ConfigMap{} },
	"v1/Secret":                                func() any { return &corev1.Secret{} },
	"v1/Service":                               func() any { return &corev1.Service{} },
	"v1/ServiceAccount":                        func() any { return &corev1.ServiceAccount{} },
	"v1/Pod":                                   func() any { return &corev1.Pod{} },
	"v1/PersistentVolumeClaim":                 func() any { return &corev1.PersistentVolumeClaim{} },
	"apps/v1/Deployment":                       func() any { return &appsv1.Deployment{} },
	"autoscaling/v2/HorizontalPodAutoscaler":   func() any { return &autoscalingv2.HorizontalPodAutoscaler{} },
	"policy/v1/PodDisruptionBudget":            func() any { return &policyv1.PodDisruptionBudget{} },
	"networking.k8s.io/v1/NetworkPolicy":       func() any { return &networkingv1.NetworkPolicy{} },
	"networking.k8s.io/v1/Ingress":             func() any { return &networkingv1.Ingress{} },
	"rbac.authorization.k8s.io/v1/Role":        func() any { return &rbacv1.Role{} },
	"rbac.authorization.k8s.io/v1/RoleBinding": func() any { return &rbacv1.RoleBinding{} },
	"monitoring.coreos.com/v1/ServiceMonitor":  func() any { return &ServiceMonitor{} },
	"monitoring.coreos.com/v1/PrometheusRule":  func() any { return &PrometheusRule{} },
}

// Document is one decoded manifest with where it came from.
type Document struct {
	Source string // file name and document index, for messages
	Key    string // apiVersion/kind
	Name   string
	Object any
}

// Report collects every problem found, so one run shows them all.
type Report struct {
	Documents []Document
	Problems  []string

	// external holds "Kind/name" of objects that exist outside the release
	// (an existingSecret), which references may name without rendering them.
	external map[string]bool
}

func (r *Report) addf(format string, args ...any) {
	r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
}

// Err returns all problems as one error, or nil.
func (r *Report) Err() error {
	if len(r.Problems) == 0 {
		return nil
	}
	return errors.New(strings.Join(r.Problems, "\n"))
}

// splitDocuments splits a multi-document YAML stream on "---" lines, dropping
// documents that hold only comments and blank lines (helm emits those for
// templates that render nothing).
func splitDocuments(r io.Reader) ([][]byte, error) {
	var docs [][]byte
	var cur bytes.Buffer
	flush := func() {
		if hasContent(cur.Bytes()) {
			docs = append(docs, bytes.Clone(cur.Bytes()))
		}
		cur.Reset()
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "---") && strings.TrimSpace(strings.TrimPrefix(line, "---")) == "" ||
			strings.HasPrefix(line, "--- #") {
			flush()
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	flush()
	return docs, nil
}

func hasContent(doc []byte) bool {
	for _, line := range strings.Split(string(doc), "\n") {
		t := strings.TrimSpace(line)
		if t != "" && !strings.HasPrefix(t, "#") {
			return true
		}
	}
	return false
}

// decodeStrict turns one YAML document into the typed object for its kind,
// refusing duplicate keys, unknown or miscased fields and wrong types.
func decodeStrict(doc []byte) (key string, obj any, err error) {
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return "", nil, fmt.Errorf("yaml: %w", err)
	}
	var tm metav1.TypeMeta
	if err := json.Unmarshal(js, &tm); err != nil {
		return "", nil, fmt.Errorf("type meta: %w", err)
	}
	if tm.APIVersion == "" || tm.Kind == "" {
		return "", nil, errors.New("apiVersion and kind are required")
	}
	key = tm.APIVersion + "/" + tm.Kind
	newObj, ok := kinds[key]
	if !ok {
		return key, nil, fmt.Errorf("%s is not a kind this check knows", key)
	}
	obj = newObj()
	// sigs.k8s.io/json is what the API server decodes with: unlike
	// encoding/json it matches field names case-sensitively, so
	// "readOnlyRootFileSystem" is an unknown field rather than a silent
	// alias of "readOnlyRootFilesystem".
	strictErrs, err := kjson.UnmarshalStrict(js, obj)
	if err != nil {
		return key, nil, fmt.Errorf("%s: %w", key, err)
	}
	if len(strictErrs) > 0 {
		msgs := make([]string, len(strictErrs))
		for i, e := range strictErrs {
			msgs[i] = e.Error()
		}
		return key, nil, fmt.Errorf("%s: %s", key, strings.Join(msgs, "; "))
	}
	return key, obj, nil
}

// Validate decodes every document of every stream and then checks the set as
// a whole: names, labels, selectors and references between objects.
func Validate(streams map[string]io.Reader, external map[string]bool) *Report {
	rep := &Report{external: external}
	names := make([]string, 0, len(streams))
	for n := range streams {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		docs, err := splitDocuments(streams[n])
		if err != nil {
			rep.addf("%s: %v", n, err)
			continue
		}
		for i, d := range docs {
			src := fmt.Sprintf("%s#%d", n, i)
			key, obj, err := decodeStrict(d)
			if err != nil {
				rep.addf("%s: %v", src, err)
				continue
			}
			meta := objectMeta(obj)
			rep.Documents = append(rep.Documents, Document{Source: src, Key: key, Name: meta.Name, Object: obj})
			checkMeta(rep, src, key, meta)
		}
	}
	// Cross-object checks over a partly decoded release would only repeat
	// the decoding errors in other words.
	if len(rep.Problems) == 0 {
		checkSet(rep)
	}
	return rep
}

func objectMeta(obj any) *metav1.ObjectMeta {
	if o, ok := obj.(interface{ GetObjectMeta() metav1.Object }); ok {
		if m, ok := o.GetObjectMeta().(*metav1.ObjectMeta); ok {
			return m
		}
	}
	switch o := obj.(type) {
	case *ServiceMonitor:
		return &o.ObjectMeta
	case *PrometheusRule:
		return &o.ObjectMeta
	}
	return &metav1.ObjectMeta{}
}

// requiredLabels are the Helm best-practice labels every object carries.
var requiredLabels = []string{
	"app.kubernetes.io/name",
	"app.kubernetes.io/instance",
	"app.kubernetes.io/version",
	"app.kubernetes.io/managed-by",
	"helm.sh/chart",
}

func checkMeta(rep *Report, src, key string, m *metav1.ObjectMeta) {
	if m.Name == "" {
		rep.addf("%s: %s has no metadata.name", src, key)
	} else if errs := validation.IsDNS1123Subdomain(m.Name); len(errs) > 0 {
		rep.addf("%s: name %q: %s", src, m.Name, strings.Join(errs, "; "))
	}
	if len(m.Name) > 63 && (strings.HasSuffix(key, "/Service") || strings.HasSuffix(key, "/Deployment")) {
		rep.addf("%s: name %q longer than 63 characters", src, m.Name)
	}
	for k, v := range m.Labels {
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			rep.addf("%s: label key %q: %s", src, k, strings.Join(errs, "; "))
		}
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			rep.addf("%s: label %s=%q: %s", src, k, v, strings.Join(errs, "; "))
		}
	}
	for _, l := range requiredLabels {
		if _, ok := m.Labels[l]; !ok {
			rep.addf("%s: %s %q lacks label %s", src, key, m.Name, l)
		}
	}
}

// checkSet checks what only the whole release shows.
func checkSet(rep *Report) {
	byKind := map[string]map[string]Document{}
	for _, d := range rep.Documents {
		kind := d.Key[strings.LastIndex(d.Key, "/")+1:]
		if byKind[kind] == nil {
			byKind[kind] = map[string]Document{}
		}
		if _, dup := byKind[kind][d.Name]; dup {
			rep.addf("%s: duplicate %s %q", d.Source, kind, d.Name)
		}
		byKind[kind][d.Name] = d
	}
	var podTemplates []map[string]string // labels of every pod this release makes
	for _, d := range sortedDocs(byKind["Deployment"]) {
		dep := d.Object.(*appsv1.Deployment)
		podTemplates = append(podTemplates, dep.Spec.Template.Labels)
		sel, err := metav1.LabelSelectorAsSelector(dep.Spec.Selector)
		switch {
		case dep.Spec.Selector == nil || err != nil || sel.Empty():
			rep.addf("%s: Deployment %q needs a non-empty selector (%v)", d.Source, d.Name, err)
		case !sel.Matches(labels.Set(dep.Spec.Template.Labels)):
			rep.addf("%s: Deployment %q selector does not match its pod template labels", d.Source, d.Name)
		}
		checkPodSpec(rep, d.Source, "Deployment "+d.Name, &dep.Spec.Template.Spec, byKind, true)
	}
	for _, d := range sortedDocs(byKind["Pod"]) {
		pod := d.Object.(*corev1.Pod)
		checkPodSpec(rep, d.Source, "Pod "+d.Name, &pod.Spec, byKind, false)
	}
	for _, d := range sortedDocs(byKind["Service"]) {
		svc := d.Object.(*corev1.Service)
		if len(svc.Spec.Selector) == 0 {
			rep.addf("%s: Service %q has no selector", d.Source, d.Name)
		} else if !anyMatches(labels.SelectorFromSet(svc.Spec.Selector), podTemplates) {
			rep.addf("%s: Service %q selects no pod of this release", d.Source, d.Name)
		}
		for _, p := range svc.Spec.Ports {
			if p.Name == "" && len(svc.Spec.Ports) > 1 {
				rep.addf("%s: Service %q port %d needs a name", d.Source, d.Name, p.Port)
			}
		}
	}
	for _, d := range sortedDocs(byKind["HorizontalPodAutoscaler"]) {
		hpa := d.Object.(*autoscalingv2.HorizontalPodAutoscaler)
		ref := hpa.Spec.ScaleTargetRef
		if ref.Kind != "Deployment" || ref.APIVersion != "apps/v1" {
			rep.addf("%s: HPA %q targets %s %s, want apps/v1 Deployment", d.Source, d.Name, ref.APIVersion, ref.Kind)
		} else if _, ok := byKind["Deployment"][ref.Name]; !ok {
			rep.addf("%s: HPA %q targets Deployment %q which is not rendered", d.Source, d.Name, ref.Name)
		}
		if hpa.Spec.MinReplicas != nil && *hpa.Spec.MinReplicas > hpa.Spec.MaxReplicas {
			rep.addf("%s: HPA %q minReplicas > maxReplicas", d.Source, d.Name)
		}
		if len(hpa.Spec.Metrics) == 0 {
			rep.addf("%s: HPA %q has no metrics", d.Source, d.Name)
		}
	}
	for _, d := range sortedDocs(byKind["PodDisruptionBudget"]) {
		pdb := d.Object.(*policyv1.PodDisruptionBudget)
		if (pdb.Spec.MinAvailable == nil) == (pdb.Spec.MaxUnavailable == nil) {
			rep.addf("%s: PDB %q must set exactly one of minAvailable and maxUnavailable", d.Source, d.Name)
		}
		if !selectsPods(pdb.Spec.Selector, podTemplates) {
			rep.addf("%s: PDB %q selects no pod of this release", d.Source, d.Name)
		}
	}
	for _, d := range sortedDocs(byKind["NetworkPolicy"]) {
		np := d.Object.(*networkingv1.NetworkPolicy)
		if !selectsPods(&np.Spec.PodSelector, podTemplates) {
			rep.addf("%s: NetworkPolicy %q selects no pod of this release", d.Source, d.Name)
		}
		if len(np.Spec.PolicyTypes) == 0 {
			rep.addf("%s: NetworkPolicy %q should list its policyTypes", d.Source, d.Name)
		}
	}
	for _, d := range sortedDocs(byKind["Ingress"]) {
		ing := d.Object.(*networkingv1.Ingress)
		for _, rule := range ing.Spec.Rules {
			if rule.HTTP == nil {
				continue
			}
			for _, p := range rule.HTTP.Paths {
				if p.PathType == nil {
					rep.addf("%s: Ingress %q path %q has no pathType", d.Source, d.Name, p.Path)
				}
				if p.Backend.Service == nil {
					continue
				}
				if _, ok := byKind["Service"][p.Backend.Service.Name]; !ok {
					rep.addf("%s: Ingress %q routes to Service %q which is not rendered", d.Source, d.Name, p.Backend.Service.Name)
				}
			}
		}
	}
	for _, d := range sortedDocs(byKind["ServiceMonitor"]) {
		sm := d.Object.(*ServiceMonitor)
		if len(sm.Spec.Endpoints) == 0 {
			rep.addf("%s: ServiceMonitor %q has no endpoints", d.Source, d.Name)
		}
		sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
		if err != nil || sel.Empty() {
			rep.addf("%s: ServiceMonitor %q needs a non-empty selector (%v)", d.Source, d.Name, err)
			continue
		}
		found := false
		for _, s := range byKind["Service"] {
			if sel.Matches(labels.Set(s.Object.(*corev1.Service).Labels)) {
				found = true
				for _, ep := range sm.Spec.Endpoints {
					if ep.Port != "" && !servicePortNamed(s.Object.(*corev1.Service), ep.Port) {
						rep.addf("%s: ServiceMonitor %q endpoint port %q is not a port of Service %q", d.Source, d.Name, ep.Port, s.Name)
					}
				}
			}
		}
		if !found {
			rep.addf("%s: ServiceMonitor %q selects no Service of this release", d.Source, d.Name)
		}
	}
	checkOtphubConfig(rep, byKind)
	for _, d := range sortedDocs(byKind["PrometheusRule"]) {
		pr := d.Object.(*PrometheusRule)
		for _, g := range pr.Spec.Groups {
			for _, r := range g.Rules {
				if (r.Alert == "") == (r.Record == "") || r.Expr == "" {
					rep.addf("%s: PrometheusRule %q group %q has a rule that is not exactly one of alert/record with an expr", d.Source, d.Name, g.Name)
				}
			}
		}
	}
}

func sortedDocs(m map[string]Document) []Document {
	out := make([]Document, 0, len(m))
	for _, d := range m {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Source < out[j].Source })
	return out
}

func servicePortNamed(svc *corev1.Service, name string) bool {
	for _, p := range svc.Spec.Ports {
		if p.Name == name {
			return true
		}
	}
	return false
}

func selectsPods(ls *metav1.LabelSelector, pods []map[string]string) bool {
	if ls == nil {
		return false
	}
	sel, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil || sel.Empty() {
		return false
	}
	return anyMatches(sel, pods)
}

func anyMatches(sel labels.Selector, pods []map[string]string) bool {
	for _, l := range pods {
		if sel.Matches(labels.Set(l)) {
			return true
		}
	}
	return false
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// checkPodSpec checks the hardening and the references of one pod spec.
func checkPodSpec(rep *Report, src, what string, ps *corev1.PodSpec, byKind map[string]map[string]Document, workload bool) {
	if ps.ServiceAccountName != "" && ps.ServiceAccountName != "default" {
		checkRef(rep, src, what, "ServiceAccount", ps.ServiceAccountName, byKind, false)
	}
	if ps.SecurityContext == nil || ps.SecurityContext.RunAsNonRoot == nil || !*ps.SecurityContext.RunAsNonRoot {
		rep.addf("%s: %s must set pod securityContext.runAsNonRoot: true", src, what)
	}
	volumes := map[string]bool{}
	for _, v := range ps.Volumes {
		volumes[v.Name] = true
		if v.ConfigMap != nil {
			checkRef(rep, src, what, "ConfigMap", v.ConfigMap.Name, byKind, false)
		}
		if v.Secret != nil {
			checkRef(rep, src, what, "Secret", v.Secret.SecretName, byKind, v.Secret.Optional != nil && *v.Secret.Optional)
		}
		if v.PersistentVolumeClaim != nil {
			checkRef(rep, src, what, "PersistentVolumeClaim", v.PersistentVolumeClaim.ClaimName, byKind, false)
		}
	}
	all := append(append([]corev1.Container{}, ps.InitContainers...), ps.Containers...)
	if len(ps.Containers) == 0 {
		rep.addf("%s: %s has no containers", src, what)
	}
	for _, c := range all {
		cw := fmt.Sprintf("%s container %q", what, c.Name)
		if c.Image == "" {
			rep.addf("%s: %s has no image", src, cw)
		}
		sc := c.SecurityContext
		switch {
		case sc == nil:
			rep.addf("%s: %s has no securityContext", src, cw)
		default:
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				rep.addf("%s: %s must set allowPrivilegeEscalation: false", src, cw)
			}
			if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				rep.addf("%s: %s must set readOnlyRootFilesystem: true", src, cw)
			}
			if sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
				rep.addf("%s: %s must drop ALL capabilities", src, cw)
			}
		}
		if c.Resources.Requests == nil && c.Resources.Limits == nil {
			rep.addf("%s: %s sets no resources", src, cw)
		}
		for _, m := range c.VolumeMounts {
			if !volumes[m.Name] {
				rep.addf("%s: %s mounts unknown volume %q", src, cw, m.Name)
			}
		}
		for _, e := range c.Env {
			if !envName.MatchString(e.Name) {
				rep.addf("%s: %s env name %q is not a C identifier", src, cw, e.Name)
			}
			if e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil {
				checkRef(rep, src, cw, "ConfigMap", e.ValueFrom.ConfigMapKeyRef.Name, byKind, isTrue(e.ValueFrom.ConfigMapKeyRef.Optional))
			}
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				checkRef(rep, src, cw, "Secret", e.ValueFrom.SecretKeyRef.Name, byKind, isTrue(e.ValueFrom.SecretKeyRef.Optional))
			}
		}
		for _, ef := range c.EnvFrom {
			if ef.ConfigMapRef != nil {
				checkRef(rep, src, cw, "ConfigMap", ef.ConfigMapRef.Name, byKind, isTrue(ef.ConfigMapRef.Optional))
			}
			if ef.SecretRef != nil {
				checkRef(rep, src, cw, "Secret", ef.SecretRef.Name, byKind, isTrue(ef.SecretRef.Optional))
			}
		}
		if workload {
			if c.LivenessProbe == nil || c.ReadinessProbe == nil {
				rep.addf("%s: %s needs liveness and readiness probes", src, cw)
			}
			for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
				if p != nil && p.HTTPGet != nil && p.HTTPGet.Port.StrVal != "" && !containerPortNamed(c, p.HTTPGet.Port.StrVal) {
					rep.addf("%s: %s probe uses port %q which the container does not name", src, cw, p.HTTPGet.Port.StrVal)
				}
			}
		}
	}
}

func isTrue(b *bool) bool { return b != nil && *b }

func containerPortNamed(c corev1.Container, name string) bool {
	for _, p := range c.Ports {
		if p.Name == name {
			return true
		}
	}
	return false
}

// checkRef reports a reference to an object that is not rendered, unless the
// reference may point outside the release (optional, or an existing object).
func checkRef(rep *Report, src, what, kind, name string, byKind map[string]map[string]Document, external bool) {
	if name == "" {
		rep.addf("%s: %s references a %s with no name", src, what, kind)
		return
	}
	if _, ok := byKind[kind][name]; !ok && !external && !rep.external[kind+"/"+name] {
		rep.addf("%s: %s references %s %q which is not rendered", src, what, kind, name)
	}
}
