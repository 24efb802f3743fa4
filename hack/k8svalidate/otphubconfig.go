package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/otphub/otphub/config"
)

// placeholders stand in for the keys of a Secret that lives outside the
// release (existingSecret): the chart documents these keys, the operator
// fills them, and this check assumes well-formed values.
var placeholders = map[string]string{
	"OTPHUB_DATABASE_URL":        "postgres://otphub:secret@postgres:5432/otphub?sslmode=require",
	"OTPHUB_KAFKA_SASL_USERNAME": "otphub",
	"OTPHUB_KAFKA_SASL_PASSWORD": "secret",
	"OTPHUB_ADMIN_CLIENT_ID":     "otphub-admin",
	"OTPHUB_ADMIN_CLIENT_SECRET": "0123456789abcdef0123456789abcdef",
	"OTPHUB_ENCRYPTION_KEY":      "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
}

var flagLine = regexp.MustCompile(`(?m)^\s+-([a-z0-9-]+)`)

// knownEnv returns the environment variables `otphub serve` reads: the twin
// of every flag its --help lists.
func knownEnv() (map[string]bool, error) {
	var help bytes.Buffer
	if _, err := config.Parse([]string{"-h"}, func(string) string { return "" }, &help); !errors.Is(err, config.ErrHelp) {
		return nil, fmt.Errorf("otphub serve -h: %v", err)
	}
	known := map[string]bool{}
	for _, m := range flagLine.FindAllStringSubmatch(help.String(), -1) {
		known[config.Env(m[1])] = true
	}
	if len(known) == 0 {
		return nil, errors.New("otphub serve -h lists no flags")
	}
	return known, nil
}

// checkOtphubConfig runs the configuration every otphub container would see
// — its ConfigMap and Secret through envFrom, its env and its args — through
// otphub's own parser (config.Parse), so a misspelt variable, a malformed
// value or a combination the binary refuses fails here, not at start-up in a
// cluster. Containers not named "otphub" are skipped.
func checkOtphubConfig(rep *Report, byKind map[string]map[string]Document) {
	known, err := knownEnv()
	if err != nil {
		rep.addf("otphub config: %v", err)
		return
	}
	for _, d := range sortedDocs(byKind["Deployment"]) {
		dep := d.Object.(*appsv1.Deployment)
		for _, c := range dep.Spec.Template.Spec.Containers {
			if c.Name != "otphub" {
				continue
			}
			checkContainerConfig(rep, d.Source, fmt.Sprintf("Deployment %s container %s", d.Name, c.Name), c, byKind, known)
		}
	}
}

func checkContainerConfig(rep *Report, src, what string, c corev1.Container, byKind map[string]map[string]Document, known map[string]bool) {
	env := map[string]string{}
	var external []string // envFrom prefixes of Secrets not in the release
	set := func(k, v string) {
		if strings.HasPrefix(k, "OTPHUB_") && !known[k] {
			rep.addf("%s: %s sets %s, which otphub does not read (a typo?)", src, what, k)
		}
		env[k] = v
	}
	for _, ef := range c.EnvFrom {
		switch {
		case ef.ConfigMapRef != nil:
			doc, ok := byKind["ConfigMap"][ef.ConfigMapRef.Name]
			if !ok {
				continue // reported by checkPodSpec
			}
			cm := doc.Object.(*corev1.ConfigMap)
			for k, v := range cm.Data {
				set(ef.Prefix+k, v)
			}
		case ef.SecretRef != nil:
			doc, ok := byKind["Secret"][ef.SecretRef.Name]
			if !ok {
				external = append(external, ef.Prefix)
				continue
			}
			s := doc.Object.(*corev1.Secret)
			for k, v := range s.Data {
				set(ef.Prefix+k, string(v))
			}
			for k, v := range s.StringData {
				set(ef.Prefix+k, v)
			}
		}
	}
	// A Secret from outside the release holds the keys the chart documents;
	// which ones depends on the mode the ConfigMap selects.
	for _, prefix := range external {
		for k, v := range placeholders {
			switch {
			case k == "OTPHUB_DATABASE_URL" && env["OTPHUB_KAFKA_BROKERS"] == "",
				strings.HasPrefix(k, "OTPHUB_KAFKA_SASL_") && env["OTPHUB_KAFKA_SASL_MECHANISM"] == "":
				continue
			}
			env[prefix+k] = v
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom != nil {
			if strings.HasPrefix(e.Name, "OTPHUB_") && !known[e.Name] {
				rep.addf("%s: %s sets %s, which otphub does not read (a typo?)", src, what, e.Name)
			}
			delete(env, e.Name) // unknowable here; the default applies
			continue
		}
		set(e.Name, e.Value)
	}

	// Files the configuration names must exist: map paths under the
	// container's mounts to a scratch file.
	scratch, err := os.CreateTemp("", "k8svalidate-mounted-file")
	if err != nil {
		rep.addf("%s: %v", src, err)
		return
	}
	scratch.Close()
	defer os.Remove(scratch.Name())
	getenv := func(k string) string {
		v := env[k]
		for _, m := range c.VolumeMounts {
			if v != "" && strings.HasPrefix(filepath.Clean(v), filepath.Clean(m.MountPath)+"/") {
				return scratch.Name()
			}
		}
		return v
	}

	cfg, err := config.Parse(c.Args, getenv, &bytes.Buffer{})
	if err != nil {
		rep.addf("%s: %s: otphub would refuse its configuration: %v", src, what, err)
		return
	}
	_, port, err := net.SplitHostPort(cfg.Addr)
	if host, _, _ := net.SplitHostPort(cfg.Addr); err != nil || (host != "0.0.0.0" && host != "" && host != "::") {
		rep.addf("%s: %s listens on %q, not on every interface: probes and the Service cannot reach it", src, what, cfg.Addr)
	}
	if p, _ := strconv.Atoi(port); !containerPortIs(c, int32(p)) {
		rep.addf("%s: %s listens on port %s, which is not a container port", src, what, port)
	}
	if !cfg.Embedded() && len(cfg.KafkaBrokers) > 0 {
		return
	}
	// Embedded store or log: the data directory must be a mounted volume,
	// or every restart loses everything.
	mounted := false
	for _, m := range c.VolumeMounts {
		if filepath.Clean(m.MountPath) == filepath.Clean(cfg.DataDir) && !m.ReadOnly {
			mounted = true
		}
	}
	if !mounted {
		rep.addf("%s: %s runs embedded with data dir %q, which is not a writable volume mount", src, what, cfg.DataDir)
	}
}

func containerPortIs(c corev1.Container, port int32) bool {
	for _, p := range c.Ports {
		if p.ContainerPort == port {
			return true
		}
	}
	return false
}
