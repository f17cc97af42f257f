{{/*
Names, labels and the small decisions shared by several templates.
*/}}

{{- define "gatekeeper.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-scoped name; trimmed so "<fullname>-worker" etc. stay within 63 characters. */}}
{{- define "gatekeeper.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "gatekeeper.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "gatekeeper.labels" -}}
helm.sh/chart: {{ include "gatekeeper.chart" . }}
{{ include "gatekeeper.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: gatekeeper
{{- end }}

{{- define "gatekeeper.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gatekeeper.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Selector of one component: include "gatekeeper.componentSelector" (list . "serve") */}}
{{- define "gatekeeper.componentSelector" -}}
{{ include "gatekeeper.selectorLabels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "gatekeeper.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "gatekeeper.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "gatekeeper.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "gatekeeper.secretName" -}}
{{- default (include "gatekeeper.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/* "true" when the chart renders its own Secret (some credential was given inline). */}}
{{- define "gatekeeper.createSecret" -}}
{{- if and (not .Values.secrets.existingSecret) (or .Values.redis.url .Values.billing.dsn .Values.secretEnv) }}true{{- end }}
{{- end }}

{{/* "true" when the pods reach a shared Redis (else: evaluation mode, embedded Redis). */}}
{{- define "gatekeeper.redisConfigured" -}}
{{- if .Values.redis.bundled.enabled }}true
{{- else if .Values.secrets.existingSecret }}{{ if .Values.secrets.existingSecretHasRedisUrl }}true{{ end }}
{{- else if .Values.redis.url }}true
{{- end }}
{{- end }}

{{/* "true" when the worker has a PostgreSQL DSN (else: SQLite under /var/lib/gatekeeper). */}}
{{- define "gatekeeper.billingDsnConfigured" -}}
{{- if .Values.secrets.existingSecret }}{{ if .Values.secrets.existingSecretHasBillingDsn }}true{{ end }}
{{- else if .Values.billing.dsn }}true
{{- end }}
{{- end }}

{{- define "gatekeeper.workerEnabled" -}}
{{- if and .Values.worker.enabled (include "gatekeeper.redisConfigured" .) }}true{{- end }}
{{- end }}

{{- define "gatekeeper.serviceFQDN" -}}
{{- printf "%s.%s.svc.%s" (include "gatekeeper.fullname" .) .Release.Namespace .Values.clusterDomain }}
{{- end }}

{{/*
Refuse combinations that would install something silently wrong. Included by the serve
Deployment, so `helm template` and `helm install` fail with the reason.
*/}}
{{- define "gatekeeper.validate" -}}
{{- if not (include "gatekeeper.redisConfigured" .) }}
{{- if .Values.serve.autoscaling.enabled }}
{{- fail "serve.autoscaling.enabled needs a shared Redis: set redis.url, secrets.existingSecret or redis.bundled.enabled (each pod would count on its own embedded Redis)" }}
{{- end }}
{{- end }}
{{- if and (include "gatekeeper.workerEnabled" .) (not (include "gatekeeper.billingDsnConfigured" .)) (gt (int .Values.worker.replicaCount) 1) }}
{{- fail "worker.replicaCount > 1 needs a PostgreSQL billing store (billing.dsn or secrets.existingSecret): SQLite is one file per pod" }}
{{- end }}
{{- if and .Values.redis.url .Values.redis.bundled.enabled }}
{{- fail "set either redis.url or redis.bundled.enabled, not both" }}
{{- end }}
{{- if and .Values.istio.enabled (not .Values.istio.workloadSelector) }}
{{- fail "istio.enabled needs istio.workloadSelector: the labels of the workloads gatekeeper guards (e.g. {app: my-api} or {istio: ingressgateway})" }}
{{- end }}
{{- if and .Values.sidecar.enabled .Values.istio.enabled }}
{{- fail "sidecar.enabled and istio.enabled are alternatives: with a mesh, Istio's own Envoy calls gatekeeper" }}
{{- end }}
{{- end }}

{{/* Environment shared by serve and worker. */}}
{{- define "gatekeeper.env" -}}
- name: GATEKEEPER_CONFIG
  value: /etc/gatekeeper/policy.yaml
{{- if .Values.ratelimit.enabled }}
- name: GATEKEEPER_RATELIMIT_CONFIG
  value: /etc/gatekeeper/ratelimit
{{- end }}
{{- if .Values.redis.bundled.enabled }}
# the bundled Redis is not a secret; env wins over the Secret's envFrom keys
- name: GATEKEEPER_REDIS_URL
  value: {{ printf "redis://%s-redis:6379/0" (include "gatekeeper.fullname" .) | quote }}
{{- end }}
{{- range $name, $value := .Values.env }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
- name: TMPDIR
  value: /tmp
{{- end }}

{{- define "gatekeeper.envFrom" -}}
{{- if or .Values.secrets.existingSecret (include "gatekeeper.createSecret" .) }}
envFrom:
  - secretRef:
      name: {{ include "gatekeeper.secretName" . }}
{{- end }}
{{- end }}

{{/* Pod annotations that roll the pods when the policy, rate limit config or Secret change. */}}
{{- define "gatekeeper.checksums" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- if include "gatekeeper.createSecret" . }}
checksum/secret: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end }}
{{- end }}
