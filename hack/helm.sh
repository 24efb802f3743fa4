#!/usr/bin/env bash
# `make helm`: lint the otphub chart strictly, render it for every values file
# in charts/otphub/ci, and check the rendered manifests offline against the
# Kubernetes API types (hack/k8svalidate). Also checks that impossible
# settings fail with a clear message and that the schema refuses bad values.
#
# Needs Go (to build the checker and, the first time, helm itself) and
# python3 with PyYAML (schema/README freshness and the PrometheusRule check;
# skipped when absent). No cluster, no network once helm is installed.
set -euo pipefail
cd "$(dirname "$0")/.."

CHART=charts/otphub
HELM_VERSION=v3.22.0
# helm built with `go install` has no default Kubernetes version baked in
# (it assumes v1.20, below the chart's kubeVersion): always say which.
KUBE_VERSION=${KUBE_VERSION:-1.33.0}

find_helm() {
	if [ -n "${HELM:-}" ]; then
		echo "$HELM"
	elif command -v helm >/dev/null 2>&1; then
		command -v helm
	elif [ -x "$(go env GOPATH)/bin/helm" ]; then
		echo "$(go env GOPATH)/bin/helm"
	else
		echo "helm not found: installing helm ${HELM_VERSION} with go install (a few minutes, once)" >&2
		GOFLAGS= go install "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}" >&2
		echo "$(go env GOPATH)/bin/helm"
	fi
}
HELM=$(find_helm)
echo "helm: $HELM ($("$HELM" version --short 2>/dev/null || echo unknown))"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

have_pyyaml() { command -v python3 >/dev/null 2>&1 && python3 -c 'import yaml' 2>/dev/null; }
if have_pyyaml; then
	python3 hack/helm-schema.py --check
	echo "ok: values.schema.json matches hack/helm-schema.py"
	python3 hack/helm-docs.py --check
	echo "ok: charts/otphub/README.md matches values.yaml"
else
	echo "skip: python3 with PyYAML not found, values.schema.json and README freshness not checked"
fi

go build -o "$tmp/k8svalidate" ./hack/k8svalidate

fail=0
for values in "$CHART"/ci/*.yaml; do
	name=$(basename "$values" .yaml)
	echo "== $name"
	if ! "$HELM" lint --strict --kube-version "$KUBE_VERSION" "$CHART" -f "$values" >"$tmp/$name.lint" 2>&1; then
		cat "$tmp/$name.lint"
		fail=1
		continue
	fi
	if ! "$HELM" template "otphub-ci" "$CHART" --namespace otphub --kube-version "$KUBE_VERSION" \
		-f "$values" >"$tmp/$name.yaml" 2>"$tmp/$name.err"; then
		cat "$tmp/$name.err"
		fail=1
		continue
	fi
	# Objects a values file names as living outside the release:
	#   # k8svalidate-external: Secret/name ServiceAccount/name
	external=()
	for ref in $(sed -n 's/^# k8svalidate-external://p' "$values"); do
		external+=(-external "$ref")
	done
	if ! "$tmp/k8svalidate" "${external[@]}" "$tmp/$name.yaml"; then
		fail=1
	fi
done

# expect_failure DESCRIPTION MESSAGE-FRAGMENT helm-template-args...
# Rendering must fail, and say why.
expect_failure() {
	local what=$1 want=$2
	shift 2
	if "$HELM" template otphub-ci "$CHART" --kube-version "$KUBE_VERSION" "$@" >"$tmp/neg.out" 2>&1; then
		echo "FAIL: $what: rendering succeeded, want an error containing: $want"
		fail=1
	elif ! grep -qF -- "$want" "$tmp/neg.out"; then
		echo "FAIL: $what: error does not contain: $want"
		cat "$tmp/neg.out"
		fail=1
	else
		echo "ok: refuses $what"
	fi
}
echo "== refusals"
expect_failure "replicas > 1 in embedded mode" "needs external PostgreSQL and Kafka" --set replicaCount=2
expect_failure "split roles in embedded mode" "roles.split=true needs more than one replica" --set roles.split=true
expect_failure "split roles with only PostgreSQL" "needs external PostgreSQL and Kafka" \
	--set roles.split=true --set externalDatabase.enabled=true --set externalDatabase.host=db
expect_failure "autoscaling in embedded mode" "autoscaling.enabled=true" --set autoscaling.enabled=true
expect_failure "embedded mode without a volume" "needs persistence.enabled=true" --set persistence.enabled=false
expect_failure "Kafka without brokers" "needs externalKafka.brokers" \
	--set externalKafka.enabled=true --set externalDatabase.enabled=true --set externalDatabase.host=db
expect_failure "PostgreSQL without a URL or host" "needs externalDatabase.url, externalDatabase.host" \
	--set externalDatabase.enabled=true
expect_failure "SASL without credentials" "needs externalKafka.sasl.username and password" \
	--set externalKafka.enabled=true --set 'externalKafka.brokers={k:9092}' --set externalKafka.sasl.enabled=true
expect_failure "a short admin secret" "at least 32 characters" --set secrets.adminClientSecret=short
expect_failure "HPA without a target" "needs targetCPUUtilizationPercentage" \
	-f "$CHART/ci/split-roles-values.yaml" --set roles.hub.autoscaling.targetCPUUtilizationPercentage=null \
	--set roles.hub.autoscaling.targetMemoryUtilizationPercentage=null
expect_failure "an unknown top-level value" "additional properties 'replicas' not allowed" --set replicas=3
expect_failure "a misspelt nested value" "additional properties 'brokerz' not allowed" --set 'externalKafka.brokerz={k:9092}'
expect_failure "an unknown log level" "/config/logLevel" --set config.logLevel=verbose
expect_failure "a broker without a port" "/externalKafka/brokers/0" --set 'externalKafka.brokers={kafka}'
expect_failure "a wrong-size encryption key" "/secrets/encryptionKey" --set secrets.encryptionKey=c2hvcnQ=
expect_failure "an unknown SASL mechanism" "/externalKafka/sasl/mechanism" --set externalKafka.sasl.mechanism=gssapi
expect_failure "an OTP send limit without a window" "/config/otpLimitPerIP" --set config.otpLimitPerIP=500

# Renders that helm accepts but the offline checks must refuse: proof that
# the checker looks at the chart's output and at otphub's own parser.
expect_invalid() {
	local what=$1 want=$2
	shift 2
	"$HELM" template otphub-ci "$CHART" --kube-version "$KUBE_VERSION" "$@" >"$tmp/inv.yaml"
	if "$tmp/k8svalidate" "$tmp/inv.yaml" >"$tmp/inv.out" 2>&1; then
		echo "FAIL: $what: accepted by k8svalidate, want an error containing: $want"
		fail=1
	elif ! grep -qF -- "$want" "$tmp/inv.out"; then
		echo "FAIL: $what: k8svalidate error does not contain: $want"
		cat "$tmp/inv.out"
		fail=1
	else
		echo "ok: k8svalidate refuses $what"
	fi
}
expect_invalid "an OTPHUB_ variable otphub does not read" "sets OTPHUB_TYPO, which otphub does not read" \
	--set 'extraEnv[0].name=OTPHUB_TYPO' --set 'extraEnv[0].value=x'
expect_invalid "a flag value otphub refuses" "otphub would refuse its configuration: invalid --delivery-timeout" \
	--set 'extraArgs[0]=--delivery-timeout=forever'
expect_invalid "a misspelt field in a pass-through structure" 'unknown field "spec.template.spec.tolerations[0].efect"' \
	--set 'tolerations[0].key=a' --set 'tolerations[0].efect=NoSchedule'

# The PrometheusRule must hold rules Prometheus accepts, with the job
# label the values ask for.
if command -v promtool >/dev/null 2>&1 && have_pyyaml; then
	"$HELM" template otphub-ci "$CHART" --kube-version "$KUBE_VERSION" --show-only templates/prometheusrule.yaml \
		--set prometheusRule.enabled=true --set prometheusRule.job=otphub-prod >"$tmp/rule.yaml"
	python3 -c 'import sys, yaml; d = yaml.safe_load(open(sys.argv[1])); yaml.safe_dump({"groups": d["spec"]["groups"]}, open(sys.argv[2], "w"))' \
		"$tmp/rule.yaml" "$tmp/rule-groups.yaml"
	if promtool check rules "$tmp/rule-groups.yaml" >"$tmp/rule.out" 2>&1 && grep -q 'job="otphub-prod"' "$tmp/rule-groups.yaml" &&
		! grep -q 'job="otphub"' "$tmp/rule-groups.yaml"; then
		echo "ok: PrometheusRule passes promtool check rules"
	else
		cat "$tmp/rule.out"
		echo "FAIL: PrometheusRule rules are invalid or keep the default job label"
		fail=1
	fi
else
	echo "skip: promtool or python3/PyYAML missing, PrometheusRule contents not checked (make promtool installs promtool)"
fi

# The dashboard ConfigMap must carry the dashboard byte for byte.
if have_pyyaml; then
	"$HELM" template otphub-ci "$CHART" --kube-version "$KUBE_VERSION" --show-only templates/grafana-dashboard.yaml \
		--set grafanaDashboard.enabled=true >"$tmp/dashboard.yaml"
	if python3 -c 'import sys, yaml; d = yaml.safe_load(open(sys.argv[1])); sys.exit(d["data"]["otphub-dashboard.json"] + "\n" != open(sys.argv[2]).read() or d["metadata"]["labels"].get("grafana_dashboard") != "1")' \
		"$tmp/dashboard.yaml" deploy/grafana/otphub-dashboard.json; then
		echo "ok: the dashboard ConfigMap carries deploy/grafana/otphub-dashboard.json"
	else
		echo "FAIL: the dashboard ConfigMap differs from deploy/grafana/otphub-dashboard.json or lacks grafana_dashboard"
		fail=1
	fi
fi

"$HELM" package "$CHART" --destination "$tmp" >/dev/null
echo "ok: helm package"

if [ "$fail" -ne 0 ]; then
	echo "helm: FAILED"
	exit 1
fi
echo "helm: all checks passed"
