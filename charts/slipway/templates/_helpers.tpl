{{/* The chart's name, or nameOverride. */}}
{{- define "slipway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* <release>-slipway (just <release> when it already contains the chart name), or fullnameOverride. */}}
{{- define "slipway.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "slipway.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "slipway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "slipway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "slipway.labels" -}}
helm.sh/chart: {{ include "slipway.chart" . }}
{{ include "slipway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: controller
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "slipway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "slipway.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name: name the existing ServiceAccount to use when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "slipway.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "slipway.leaseName" -}}
{{- default (include "slipway.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{- define "slipway.frameworkIdConfigMap" -}}
{{- default (printf "%s-mesos-framework" (include "slipway.fullname" .)) .Values.mesos.frameworkIdConfigMap }}
{{- end }}

{{/* The Secret with the Mesos principal's secret, or "" when there is none. */}}
{{- define "slipway.mesosSecretName" -}}
{{- if .Values.mesos.secret.existingSecret }}
{{- .Values.mesos.secret.existingSecret }}
{{- else if .Values.mesos.secret.value }}
{{- printf "%s-mesos" (include "slipway.fullname" .) }}
{{- end }}
{{- end }}

{{/* The controller's RBAC rules, from files/rbac-rules.yaml (the one source of them). */}}
{{- define "slipway.rules" -}}
{{- $rules := .Files.Get "files/rbac-rules.yaml" | fromYaml }}
{{- if or (hasKey $rules "Error") (not (hasKey $rules "watched")) (not (hasKey $rules "own")) }}
{{- fail (printf "files/rbac-rules.yaml must hold the lists `watched` and `own`: %v" (get $rules "Error")) }}
{{- end }}
{{- toYaml $rules }}
{{- end }}

{{/*
Checks across values that values.schema.json cannot express with a clear message.
Rendered (to nothing) by the Deployment.
*/}}
{{- define "slipway.validate" -}}
{{- $v := .Values }}
{{- if eq $v.backend "mesos" }}
{{- if empty $v.mesos.masters }}
{{- fail "backend: mesos needs mesos.masters, the masters' host:port (e.g. --set 'mesos.masters={m1:5050,m2:5050}')" }}
{{- end }}
{{- $secret := include "slipway.mesosSecretName" . }}
{{- if and $v.mesos.principal (not $secret) }}
{{- fail "mesos.principal needs its secret: set mesos.secret.existingSecret (a Secret in the release namespace) or mesos.secret.value" }}
{{- end }}
{{- if and $secret (not $v.mesos.principal) }}
{{- fail "mesos.secret is set but mesos.principal is not: the secret authenticates a principal" }}
{{- end }}
{{- if and $v.mesos.secret.existingSecret $v.mesos.secret.value }}
{{- fail "set one of mesos.secret.existingSecret and mesos.secret.value, not both" }}
{{- end }}
{{- $executors := 0 }}
{{- range list $v.mesos.executor.path $v.mesos.executor.uri $v.mesos.executor.image }}
{{- if . }}{{ $executors = add1 $executors }}{{ end }}
{{- end }}
{{- if gt $executors 1 }}
{{- fail "set at most one of mesos.executor.path, mesos.executor.uri and mesos.executor.image" }}
{{- end }}
{{- end }}
{{- if and (gt (int $v.replicas) 1) (not $v.leaderElection.enabled) }}
{{- fail "replicas > 1 needs leaderElection.enabled: true, or every replica would build every resource" }}
{{- end }}
{{- if and $v.serviceMonitor.enabled (not $v.service.enabled) }}
{{- fail "serviceMonitor.enabled needs service.enabled: the ServiceMonitor scrapes the Service" }}
{{- end }}
{{- end }}
