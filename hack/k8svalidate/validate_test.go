package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const testLabels = `
  labels:
    helm.sh/chart: otphub-0.1.0
    app.kubernetes.io/name: otphub
    app.kubernetes.io/instance: r
    app.kubernetes.io/version: "0.1.0"
    app.kubernetes.io/managed-by: Helm
    app.kubernetes.io/component: all`

// release is a small, valid release; tests break one thing at a time.
var release = `---
# a comment-only document, as helm emits for empty templates
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: r-otphub` + testLabels + `
automountServiceAccountToken: false
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: r-otphub` + testLabels + `
data:
  OTPHUB_ADDR: "0.0.0.0:8080"
  OTPHUB_DATA_DIR: /tmp
---
apiVersion: v1
kind: Service
metadata:
  name: r-otphub` + testLabels + `
spec:
  ports:
    - name: http
      port: 8080
      targetPort: http
  selector:
    app.kubernetes.io/name: otphub
    app.kubernetes.io/instance: r
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: r-otphub` + testLabels + `
spec:
  replicas: 2
  selector:
    matchLabels:
      app.kubernetes.io/name: otphub
      app.kubernetes.io/instance: r
  template:
    metadata:` + strings.ReplaceAll(testLabels, "\n  ", "\n      ") + `
    spec:
      serviceAccountName: r-otphub
      securityContext:
        runAsNonRoot: true
      containers:
        - name: otphub
          image: otphub:1
          ports:
            - name: http
              containerPort: 8080
          envFrom:
            - configMapRef:
                name: r-otphub
            - secretRef:
                name: external-credentials
          livenessProbe:
            httpGet:
              path: /healthz
              port: http
          readinessProbe:
            httpGet:
              path: /readyz
              port: http
          resources:
            requests:
              cpu: 100m
              memory: 128Mi
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities:
              drop: [ALL]
          volumeMounts:
            - name: tmp
              mountPath: /tmp
      volumes:
        - name: tmp
          emptyDir: {}
---
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: r-otphub` + testLabels + `
spec:
  selector:
    matchLabels:
      app.kubernetes.io/name: otphub
  endpoints:
    - port: http
      path: /metrics
      interval: 30s
`

var external = map[string]bool{"Secret/external-credentials": true}

func validate(t *testing.T, doc string) *Report {
	t.Helper()
	return Validate(map[string]io.Reader{"release.yaml": strings.NewReader(doc)}, external)
}

func TestValidReleasePasses(t *testing.T) {
	rep := validate(t, release)
	if err := rep.Err(); err != nil {
		t.Fatalf("valid release refused:\n%v", err)
	}
	if got := len(rep.Documents); got != 5 {
		t.Fatalf("decoded %d documents, want 5", got)
	}
}

func TestRefusals(t *testing.T) {
	cases := []struct {
		name     string
		old, new string
		want     string
	}{
		{"misspelt field", "  replicas: 2", "  replicaz: 2", `unknown field "spec.replicaz"`},
		{"misspelt nested field", "readOnlyRootFilesystem: true", "readOnlyRootFileSystem: true", `unknown field "spec.template.spec.containers[0].securityContext.readOnlyRootFileSystem"`},
		{"wrong type", "containerPort: 8080", `containerPort: "8080"`, "cannot unmarshal string"},
		{"bad quantity", "cpu: 100m", "cpu: lots", "quantities must match"},
		{"duplicate key", "  replicas: 2", "  replicas: 2\n  replicas: 3", "already set"},
		{"unknown kind", "kind: ConfigMap", "kind: ConfigMapp", "not a kind this check knows"},
		{"selector mismatch", "      app.kubernetes.io/instance: r\n  template", "      app.kubernetes.io/instance: other\n  template", "selector does not match"},
		{"privilege escalation", "allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true", "allowPrivilegeEscalation: false"},
		{"root", "runAsNonRoot: true", "runAsNonRoot: false", "runAsNonRoot: true"},
		{"missing ConfigMap", "                name: r-otphub\n            - secretRef", "                name: nope\n            - secretRef", `ConfigMap "nope" which is not rendered`},
		{"unknown volume", "- name: tmp\n              mountPath", "- name: scratch\n              mountPath", `unknown volume "scratch"`},
		{"probe port", "              port: http\n          readinessProbe", "              port: metrics\n          readinessProbe", `port "metrics"`},
		{"service selects nothing", "    app.kubernetes.io/instance: r\n---\napiVersion: apps/v1", "    app.kubernetes.io/instance: x\n---\napiVersion: apps/v1", "selects no pod"},
		{"missing label", "    app.kubernetes.io/managed-by: Helm\n    app.kubernetes.io/component: all\ndata", "    app.kubernetes.io/component: all\ndata", "lacks label app.kubernetes.io/managed-by"},
		{"bad name", "  name: r-otphub" + testLabels + "\ndata", "  name: R_otphub" + testLabels + "\ndata", "name \"R_otphub\""},
		{"unknown otphub variable", "  OTPHUB_DATA_DIR: /tmp", "  OTPHUB_DATA_DIR: /tmp\n  OTPHUB_ADRR: x", "sets OTPHUB_ADRR, which otphub does not read"},
		{"value otphub refuses", "  OTPHUB_DATA_DIR: /tmp", "  OTPHUB_DATA_DIR: /tmp\n  OTPHUB_ROLES: hub,mailer", `otphub would refuse its configuration: invalid OTPHUB_ROLES`},
		{"loopback listener", `OTPHUB_ADDR: "0.0.0.0:8080"`, `OTPHUB_ADDR: "127.0.0.1:8080"`, "not on every interface"},
		{"wrong port", `OTPHUB_ADDR: "0.0.0.0:8080"`, `OTPHUB_ADDR: "0.0.0.0:9090"`, "port 9090, which is not a container port"},
		{"embedded without a volume", "  OTPHUB_DATA_DIR: /tmp", "  OTPHUB_DATA_DIR: /var/lib/otphub", `data dir "/var/lib/otphub", which is not a writable volume mount`},
		{"unknown flag", "          ports:\n            - name: http", "          args: [--rolez=hub]\n          ports:\n            - name: http", "flag provided but not defined: -rolez"},
		{"ServiceMonitor typo", "      path: /metrics", "      pathh: /metrics", `unknown field "spec.endpoints[0].pathh"`},
		{"ServiceMonitor duration", "interval: 30s", "interval: 30 seconds", "not a Prometheus duration"},
		{"ServiceMonitor port", "    - port: http\n      path", "    - port: web\n      path", `port "web" is not a port`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(release, c.old) {
				t.Fatalf("test bug: %q not in the release", c.old)
			}
			rep := validate(t, strings.Replace(release, c.old, c.new, 1))
			err := rep.Err()
			if err == nil {
				t.Fatalf("accepted, want an error containing %q", c.want)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not contain %q", err, c.want)
			}
		})
	}
}

func TestExternalReferencesMustBeDeclared(t *testing.T) {
	rep := Validate(map[string]io.Reader{"r.yaml": strings.NewReader(release)}, nil)
	if err := rep.Err(); err == nil || !strings.Contains(err.Error(), `Secret "external-credentials" which is not rendered`) {
		t.Fatalf("undeclared external Secret: got %v", err)
	}
}

func TestRun(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	empty := filepath.Join(dir, "empty.yaml")
	for name, body := range map[string]string{good: release, bad: strings.Replace(release, "replicas:", "replicaz:", 1), empty: "# nothing\n"} {
		if err := os.WriteFile(name, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		args   []string
		code   int
		output string
	}{
		{[]string{"-external", "Secret/external-credentials", good}, 0, "ok: 1 ConfigMap, 1 Deployment, 1 Service, 1 ServiceAccount, 1 ServiceMonitor"},
		{[]string{good}, 1, "not rendered"},
		{[]string{"-external", "Secret/external-credentials", bad}, 1, `unknown field "spec.replicaz"`},
		{[]string{empty}, 1, "no Kubernetes objects"},
		{[]string{filepath.Join(dir, "missing.yaml")}, 1, "no such file"},
		{nil, 2, "usage"},
	}
	for _, c := range cases {
		var out, errb bytes.Buffer
		code := run(c.args, &out, &errb)
		if code != c.code || !strings.Contains(out.String()+errb.String(), c.output) {
			t.Errorf("run(%q) = %d, %q%q; want %d and %q", c.args, code, out.String(), errb.String(), c.code, c.output)
		}
	}
}
