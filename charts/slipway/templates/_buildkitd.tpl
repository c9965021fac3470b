{{/*
The buildkitd sidecar (builder.mode: buildkitdSidecar), a container of the controller
pod. It listens on the pod's 127.0.0.1 only: over TCP with mutual TLS for the
controller, and on a unix socket in its own emptyDir for its readiness probe.
tests/helm.rs runs these exact arguments with the real buildkitd.
*/}}
{{- define "slipway.buildkitdContainer" -}}
{{- $bk := .Values.builder.sidecar }}
{{- $gc := $bk.gc -}}
- name: buildkitd
  image: {{ include "slipway.buildkitImage" . | quote }}
  imagePullPolicy: {{ $bk.image.pullPolicy }}
  args:
    - --addr=unix:///run/buildkit/buildkitd.sock
    - --addr=tcp://127.0.0.1:{{ $bk.port }}
    # beside the socket: buildkitd's default is the same path for every instance
    - --otel-socket-path=/run/buildkit/otel-grpc.sock
    - --tlscacert=/certs/ca.pem
    - --tlscert=/certs/server.pem
    - --tlskey=/certs/server-key.pem
    - --root={{ include "slipway.buildkitRoot" . }}
    - --oci-worker=true
    - --containerd-worker=false
    # build steps share the pod's network (the image ships no CNI configuration)
    - --oci-worker-net=host
    {{- if $bk.rootless }}
    # no PID namespace of their own for build steps: an unprivileged container cannot
    # mount a fresh /proc
    - --oci-worker-no-process-sandbox
    {{- end }}
    {{- if $gc.enabled }}
    - --oci-worker-gc=true
    - --oci-worker-gc-keepstorage={{ int $gc.reservedMB }},{{ int $gc.minFreeMB }},{{ int $gc.maxUsedMB }}
    {{- else }}
    - --oci-worker-gc=false
    {{- end }}
    {{- range $bk.extraArgs }}
    - {{ . | quote }}
    {{- end }}
  readinessProbe:
    exec:
      command: [buildctl, --addr=unix:///run/buildkit/buildkitd.sock, debug, workers]
    periodSeconds: 5
    timeoutSeconds: 5
    failureThreshold: 3
  {{- with $bk.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- if $bk.rootless }}
    runAsNonRoot: true
    # the rootless image's user; another one needs another image
    runAsUser: 1000
    runAsGroup: 1000
    # rootlesskit creates a user namespace and mounts in it
    seccompProfile:
      type: Unconfined
    appArmorProfile:
      type: Unconfined
    {{- else }}
    # the OCI worker creates build containers (namespaces, mounts, cgroups)
    privileged: true
    runAsNonRoot: false
    runAsUser: 0
    runAsGroup: 0
    {{- end }}
  volumeMounts:
    - name: buildkit-server-tls
      mountPath: /certs
      readOnly: true
    - name: buildkit-run
      mountPath: /run/buildkit
    - name: buildkit-state
      mountPath: {{ include "slipway.buildkitRoot" . }}
{{- end }}
