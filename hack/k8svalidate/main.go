// Command k8svalidate checks rendered Kubernetes manifests offline against the
// Kubernetes API types: every document is decoded strictly (unknown fields,
// duplicate keys and wrong types fail) into its k8s.io/api type, and the set
// is then checked as a release: names and labels, selectors that select the
// release's pods, references to ConfigMaps, Secrets, ServiceAccounts and
// Services that are rendered, and the pod hardening the chart promises.
//
// hack/helm.sh runs it on the output of `helm template` for every values file
// in charts/otphub/ci. Usage:
//
//	k8svalidate [-external Secret/name]... file.yaml...
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("k8svalidate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var external listFlag
	fs.Var(&external, "external", "Kind/name of an object that exists outside the release (repeatable)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "usage: k8svalidate [-external Kind/name]... file.yaml...")
		return 2
	}
	ext := map[string]bool{}
	for _, e := range external {
		ext[e] = true
	}
	streams := map[string]io.Reader{}
	for _, name := range fs.Args() {
		f, err := os.Open(name)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		defer f.Close()
		streams[name] = f
	}
	rep := Validate(streams, ext)
	if err := rep.Err(); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if len(rep.Documents) == 0 {
		fmt.Fprintln(stderr, "no Kubernetes objects found")
		return 1
	}
	counts := map[string]int{}
	for _, d := range rep.Documents {
		counts[d.Key[strings.LastIndex(d.Key, "/")+1:]]++
	}
	var parts []string
	for _, k := range sortedKeys(counts) {
		parts = append(parts, fmt.Sprintf("%d %s", counts[k], k))
	}
	fmt.Fprintf(stdout, "ok: %s\n", strings.Join(parts, ", "))
	return 0
}

func sortedKeys(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}
