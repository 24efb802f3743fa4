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

if ! cmp -s deploy/prometheus/otphub-alerts.yaml charts/otphub/files/otphub-alerts.yaml; then
	echo "charts/otphub/files/otphub-alerts.yaml differs from deploy/prometheus/otphub-alerts.yaml:" >&2
	echo "  cp deploy/prometheus/otphub-alerts.yaml charts/otphub/files/" >&2
	exit 1
fi
echo "promtool: all checks passed"
