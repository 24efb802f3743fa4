{{/*
Chart name, truncated to the 63 characters a label allows.
*/}}
{{- define "otphub.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: <release>-<chart>, or the release name when it already contains the
chart name. Truncated to 52 so role suffixes ("-dispatcher") still fit 63.
*/}}
{{- define "otphub.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "otphub.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels: stable for the life of the release (a Deployment's selector
is immutable).
*/}}
{{- define "otphub.selectorLabels" -}}
app.kubernetes.io/name: {{ include "otphub.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Common labels of every object.
*/}}
{{- define "otphub.labels" -}}
helm.sh/chart: {{ include "otphub.chart" . }}
{{ include "otphub.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: otphub
{{- end }}

{{/*
Selector labels of one component's pods. Call with (dict "ctx" $ "component" "hub").
Components: "all" (the all-roles Deployment), "authcore", "hub", "dispatcher".
*/}}
{{- define "otphub.componentSelectorLabels" -}}
{{ include "otphub.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
Labels of one component's objects and pods. Pods that serve the HTTP API also
carry otphub.io/api=true, which the API Service selects: a dispatcher-only
process serves only /healthz, /readyz and /metrics.
*/}}
{{- define "otphub.componentLabels" -}}
{{ include "otphub.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- if ne .component "dispatcher" }}
otphub.io/api: "true"
{{- end }}
{{- end }}

{{/*
Name of a component's objects: the full name for "all", else <fullname>-<role>.
*/}}
{{- define "otphub.componentName" -}}
{{- if eq .component "all" }}
{{- include "otphub.fullname" .ctx }}
{{- else }}
{{- printf "%s-%s" (include "otphub.fullname" .ctx) .component }}
{{- end }}
{{- end }}

{{/*
ServiceAccount name.
*/}}
{{- define "otphub.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "otphub.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Name of the Secret the pods read: existingSecret, or the chart's.
*/}}
{{- define "otphub.secretName" -}}
{{- default (include "otphub.fullname" .) .Values.existingSecret }}
{{- end }}

{{/*
Image reference: repository@digest, or repository:tag (tag defaults to appVersion).
*/}}
{{- define "otphub.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
"true" when the release runs in scale-out mode (external PostgreSQL and Kafka),
"" otherwise (embedded store and/or log on /data).
*/}}
{{- define "otphub.scaleOut" -}}
{{- if and .Values.externalDatabase.enabled .Values.externalKafka.enabled }}true{{ end }}
{{- end }}

{{/*
The API Service name.
*/}}
{{- define "otphub.apiServiceName" -}}
{{- include "otphub.fullname" . }}
{{- end }}

{{/*
Public URL: publicURL, else the first ingress host, else the in-cluster Service.
*/}}
{{- define "otphub.publicURL" -}}
{{- if .Values.publicURL }}
{{- .Values.publicURL | trimSuffix "/" }}
{{- else if and .Values.ingress.enabled .Values.ingress.hosts }}
{{- $host := (first .Values.ingress.hosts).host }}
{{- $tls := false }}
{{- range .Values.ingress.tls }}
{{- if has $host (.hosts | default list) }}{{ $tls = true }}{{ end }}
{{- end }}
{{- printf "%s://%s" (ternary "https" "http" $tls) $host }}
{{- else }}
{{- printf "http://%s.%s.svc:%v" (include "otphub.apiServiceName" .) .Release.Namespace .Values.service.port }}
{{- end }}
{{- end }}

{{/*
The Deployments to render, as a list of dicts: component, roles (the --roles
value, "" for all), replicas, resources, autoscaling.
*/}}
{{- define "otphub.components" -}}
{{- $out := list }}
{{- if .Values.roles.split }}
{{- range $role := list "authcore" "hub" "dispatcher" }}
{{- $r := index $.Values.roles $role }}
{{- $out = append $out (dict "component" $role "roles" $role "replicas" $r.replicaCount "resources" ($r.resources | default $.Values.resources) "autoscaling" $r.autoscaling) }}
{{- end }}
{{- else }}
{{- $out = append $out (dict "component" "all" "roles" "" "replicas" .Values.replicaCount "resources" .Values.resources "autoscaling" .Values.autoscaling) }}
{{- end }}
{{- toJson $out }}
{{- end }}

{{/*
Refuse combinations that cannot work, with a message that says what to change.
Included by every template that renders workloads.
*/}}
{{- define "otphub.validate" -}}
{{- $scaleOut := include "otphub.scaleOut" . }}
{{- if not $scaleOut }}
{{- $why := "" }}
{{- if .Values.roles.split }}{{ $why = "roles.split=true" }}
{{- else if gt (int .Values.replicaCount) 1 }}{{ $why = printf "replicaCount=%v" .Values.replicaCount }}
{{- else if .Values.autoscaling.enabled }}{{ $why = "autoscaling.enabled=true" }}
{{- end }}
{{- if $why }}
{{- fail (printf "otphub: %s needs more than one replica, which needs external PostgreSQL and Kafka: set externalDatabase.enabled=true (with externalDatabase.url or host) and externalKafka.enabled=true (with externalKafka.brokers). The embedded store and log support exactly one replica." $why) }}
{{- end }}
{{- if not .Values.persistence.enabled }}
{{- fail "otphub: embedded mode (no externalDatabase and externalKafka) keeps its store and log under /data and needs persistence.enabled=true; without a volume every restart loses all data." }}
{{- end }}
{{- end }}
{{- if .Values.externalDatabase.enabled }}
{{- if and (not .Values.existingSecret) (not .Values.externalDatabase.url) (not .Values.externalDatabase.host) }}
{{- fail "otphub: externalDatabase.enabled=true needs externalDatabase.url, externalDatabase.host, or an existingSecret holding OTPHUB_DATABASE_URL." }}
{{- end }}
{{- end }}
{{- if .Values.externalKafka.enabled }}
{{- if not .Values.externalKafka.brokers }}
{{- fail "otphub: externalKafka.enabled=true needs externalKafka.brokers (a list of host:port)." }}
{{- end }}
{{- if and .Values.externalKafka.sasl.enabled (not .Values.existingSecret) (or (not .Values.externalKafka.sasl.username) (not .Values.externalKafka.sasl.password)) }}
{{- fail "otphub: externalKafka.sasl.enabled=true needs externalKafka.sasl.username and password, or an existingSecret holding OTPHUB_KAFKA_SASL_USERNAME and OTPHUB_KAFKA_SASL_PASSWORD." }}
{{- end }}
{{- end }}
{{- if and .Values.secrets.adminClientSecret (lt (len .Values.secrets.adminClientSecret) 32) }}
{{- fail "otphub: secrets.adminClientSecret must be at least 32 characters." }}
{{- end }}
{{- if and .Values.ingress.enabled (not .Values.ingress.hosts) }}
{{- fail "otphub: ingress.enabled=true needs at least one entry in ingress.hosts." }}
{{- end }}
{{- end }}
