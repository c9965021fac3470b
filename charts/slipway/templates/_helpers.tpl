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
{{- if or (hasKey $rules "Error") (not (hasKey $rules "watched")) (not (hasKey $rules "own")) (not (hasKey $rules "review")) }}
{{- fail (printf "files/rbac-rules.yaml must hold the lists `watched`, `own` and `review`: %v" (get $rules "Error")) }}
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
{{- $mode := include "slipway.builderMode" . }}
{{- if and (eq $mode "remote") (not $v.builder.remote.address) }}
{{- fail "builder.mode: remote needs builder.remote.address, the shared buildkitd's tcp://HOST:PORT (e.g. --set builder.remote.address=tcp://buildkitd.buildkit.svc:1234)" }}
{{- end }}
{{- if and (eq $mode "remote") (not $v.builder.tls.existingSecret) }}
{{- fail "builder.mode: remote needs builder.tls.existingSecret, a Secret with the client certificate for that buildkitd (keys ca.pem, cert.pem, key.pem)" }}
{{- end }}
{{- if and (eq $mode "dockerTcp") (not $v.local.dockerHost) }}
{{- fail "builder.mode: dockerTcp needs local.dockerHost, the daemon's tcp://HOST:2376 (and local.dockerTLSSecret with its client certificate)" }}
{{- end }}
{{- if and (eq $mode "buildkitdSidecar") $v.builder.sidecar.persistence.enabled (gt (int $v.replicas) 1) }}
{{- fail "builder.sidecar.persistence.enabled needs replicas: 1: buildkitd locks its state directory, so replicas cannot share one volume" }}
{{- end }}
{{- if and (gt (int $v.replicas) 1) (not $v.leaderElection.enabled) }}
{{- fail "replicas > 1 needs leaderElection.enabled: true, or every replica would build every resource" }}
{{- end }}
{{- if and $v.serviceMonitor.enabled (not $v.service.enabled) }}
{{- fail "serviceMonitor.enabled needs service.enabled: the ServiceMonitor scrapes the Service" }}
{{- end }}
{{- end }}

{{/*
The builder of the controller pod: buildkitdSidecar, dockerSocket or remote with
backend: local; "" with backend: mesos (builds run on the agents).
*/}}
{{- define "slipway.builderMode" -}}
{{- if eq .Values.backend "local" }}{{ .Values.builder.mode }}{{ end }}
{{- end }}

{{/* buildkitd's version when builder.sidecar.image.tag is empty. */}}
{{- define "slipway.buildkitVersion" -}}v0.34.2{{- end }}

{{- define "slipway.buildkitImage" -}}
{{- $s := .Values.builder.sidecar }}
{{- $tag := $s.image.tag | default (printf "%s%s" (include "slipway.buildkitVersion" .) (ternary "-rootless" "" $s.rootless)) }}
{{- printf "%s:%s" $s.image.repository $tag }}
{{- end }}

{{/* Where buildkitd keeps its state in the sidecar (the image's own VOLUME). */}}
{{- define "slipway.buildkitRoot" -}}
{{- ternary "/home/user/.local/share/buildkit" "/var/lib/buildkit" .Values.builder.sidecar.rootless }}
{{- end }}

{{/* The Secret with the buildkit certificates: the user's, or the chart's (sidecar). */}}
{{- define "slipway.buildkitTLSSecretName" -}}
{{- .Values.builder.tls.existingSecret | default (printf "%s-buildkit-tls" (include "slipway.fullname" .)) }}
{{- end }}

{{/* The chart-made claim of the sidecar's state, or the user's. */}}
{{- define "slipway.buildkitClaimName" -}}
{{- .Values.builder.sidecar.persistence.existingClaim | default (printf "%s-buildkit" (include "slipway.fullname" .)) }}
{{- end }}

{{/*
The data (base64 PEM) of the chart-made certificate Secret, as JSON: the Secret already
in the cluster if it holds every key (so an upgrade keeps them), else a new CA, a
server certificate for 127.0.0.1 and a client certificate. Made once per render and
kept in .Values (shared by every template of the chart), so the Secret and the pod's
checksum see the same certificates.
*/}}
{{- define "slipway.buildkitGeneratedTLS" -}}
{{- if not (hasKey .Values "slipwayGeneratedBuildkitTLS") }}
{{- $keys := list "ca.pem" "cert.pem" "key.pem" "server.pem" "server-key.pem" }}
{{- $old := (lookup "v1" "Secret" .Release.Namespace (include "slipway.buildkitTLSSecretName" .)).data | default dict }}
{{- $data := dict }}
{{- range $keys }}{{ if hasKey $old . }}{{ $_ := set $data . (get $old .) }}{{ end }}{{ end }}
{{- if ne (len $data) (len $keys) }}
{{- $ca := genCA (printf "%s buildkit CA" (include "slipway.fullname" .)) 3650 }}
{{- $server := genSignedCert "buildkitd" (list "127.0.0.1") (list "localhost") 3650 $ca }}
{{- $client := genSignedCert "slipway-controller" nil nil 3650 $ca }}
{{- $data = dict "ca.pem" (b64enc $ca.Cert) "cert.pem" (b64enc $client.Cert) "key.pem" (b64enc $client.Key) "server.pem" (b64enc $server.Cert) "server-key.pem" (b64enc $server.Key) }}
{{- end }}
{{- $_ := set .Values "slipwayGeneratedBuildkitTLS" $data }}
{{- end }}
{{- toJson (get .Values "slipwayGeneratedBuildkitTLS") }}
{{- end }}

{{/* The chart makes the certificate Secret: the sidecar with no tls.existingSecret. */}}
{{- define "slipway.buildkitGeneratesTLS" -}}
{{- if and (eq (include "slipway.builderMode" .) "buildkitdSidecar") (not .Values.builder.tls.existingSecret) }}true{{ end }}
{{- end }}
