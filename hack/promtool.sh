#!/usr/bin/env bash
# `make promtool`: check the Prometheus alert rules in deploy/prometheus and
# run their unit tests. Installs promtool from Debian's `prometheus` package
# when it is missing (root and apt needed; about a minute, once).
# Also checks that the chart's copy of the rules (for prometheusRule.enabled)
# is identical to deploy/prometheus/otphub-alerts.yaml.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v promtool >/dev/null 2>&1; then
	if ! command -v apt-get >/dev/null 2>&1; then
		echo "promtool not found and apt-get unavailable: install Prometheus' promtool" >&2
		exit 1
	fi
	echo "promtool not found: installing Debian's prometheus package (provides promtool)" >&2
	SUDO=""
	if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
	$SUDO apt-get update -qq >&2
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >&2
fi
echo "promtool: $(command -v promtool) ($(promtool --version 2>&1 | head -1))"

promtool check rules deploy/prometheus/otphub-alerts.yaml
(cd deploy/prometheus && promtool test rules otphub-alerts.test.yaml)

# Every dashboard query must be valid PromQL: wrap them as recording rules
# (variables replaced by sample values) and let promtool parse them.
if command -v python3 >/dev/null 2>&1; then
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	python3 - deploy/grafana/otphub-dashboard.json "$tmp/dashboard-rules.yaml" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
rules = []
for p in d["panels"]:
    for t in p.get("targets", []):
        e = t["expr"].replace("$namespace", ".*").replace("$job", ".*").replace("$__rate_interval", "5m")
        rules.append({"record": "dashboard:panel_%d_%s" % (p["id"], t["refId"]), "expr": e})
json.dump({"groups": [{"name": "dashboard", "rules": rules}]}, open(sys.argv[2], "w"))
PY
	promtool check rules "$tmp/dashboard-rules.yaml"
else
	echo "skip: python3 not found, dashboard queries not parsed"
fi

if ! cmp -s deploy/prometheus/otphub-alerts.yaml charts/otphub/files/otphub-alerts.yaml; then
	echo "charts/otphub/files/otphub-alerts.yaml differs from deploy/prometheus/otphub-alerts.yaml:" >&2
	echo "  cp deploy/prometheus/otphub-alerts.yaml charts/otphub/files/" >&2
	exit 1
fi
if ! cmp -s deploy/grafana/otphub-dashboard.json charts/otphub/files/otphub-dashboard.json; then
	echo "charts/otphub/files/otphub-dashboard.json differs from deploy/grafana/otphub-dashboard.json:" >&2
	echo "  cp deploy/grafana/otphub-dashboard.json charts/otphub/files/" >&2
	exit 1
fi
echo "promtool: all checks passed"
