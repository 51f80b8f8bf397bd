{{/*
Names. Object names start with the release name (at most 40 characters, so that a
StatefulSet pod name stays a valid NODE_ID and DNS label).
*/}}
{{- define "taskgrid.fullname" -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- define "taskgrid.name" -}}
{{- printf "%s-%s" (include "taskgrid.fullname" .root) .app -}}
{{- end -}}

{{/*
The Dapr app ids and each app's two ports, fixed by the code and dapr.yaml (the test
holds them against dapr.yaml). The storekeeper's id is also a constant of its client.
- publicPort (PUBLIC_PORT, on every interface of the pod): the gateway's API and web
  page, /healthz, /readyz, /metrics. The container port "http": what the Services, the
  Ingress, the kubelet's probes and Prometheus use.
- appPort (APP_PORT, on the pod's loopback only): the app channel, which only the
  sidecar calls (actors, invocation, subscriptions); dapr.io/app-port. No container
  port, Service or probe names it.
*/}}
{{- define "taskgrid.publicPort" -}}
{{- $ports := dict "gateway" 8080 "worker" 8081 "storekeeper" 8082 "analytics" 8083 -}}
{{- required (printf "unknown app %q" .) (get $ports .) -}}
{{- end -}}

{{- define "taskgrid.appPort" -}}
{{- $ports := dict "gateway" 8090 "worker" 8091 "storekeeper" 8092 "analytics" 8093 -}}
{{- required (printf "unknown app %q" .) (get $ports .) -}}
{{- end -}}

{{/* The app channel's address: the pod's loopback, where daprd calls the app. */}}
{{- define "taskgrid.appChannelHost" -}}127.0.0.1{{- end -}}

{{/*
The Secrets holding the Dapr API token (app -> sidecar) and the app token (sidecar ->
app), key "token" (the name Dapr's injector reads): dapr.apiTokenSecret and
dapr.appTokenSecret when given (Secrets made beforehand), else the chart's own
("<release>-dapr-api-token", "<release>-dapr-app-token", templates/dapr-tokens.yaml).
*/}}
{{- define "taskgrid.apiTokenSecret" -}}
{{- default (printf "%s-dapr-api-token" (include "taskgrid.fullname" .)) .Values.dapr.apiTokenSecret -}}
{{- end -}}

{{- define "taskgrid.appTokenSecret" -}}
{{- default (printf "%s-dapr-app-token" (include "taskgrid.fullname" .)) .Values.dapr.appTokenSecret -}}
{{- end -}}

{{/* The Dapr Configuration and Resiliency, named as in components/. */}}
{{- define "taskgrid.daprConfigName" -}}taskgrid{{- end -}}

{{- define "taskgrid.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: taskgrid
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
{{ include "taskgrid.selectorLabels" . }}
{{- end -}}

{{- define "taskgrid.selectorLabels" -}}
app.kubernetes.io/name: taskgrid
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .app }}
{{- end -}}

{{- define "taskgrid.image" -}}
{{- $img := .root.Values.image -}}
{{- printf "%s/%s-%s:%s" (required "image.registry is required" $img.registry) $img.prefix .app (default .root.Chart.AppVersion $img.tag) -}}
{{- end -}}

{{/*
Pod annotations of every app: Dapr's sidecar settings, and the prometheus.io/* scrape
annotations of the app's own /metrics (left out when PodMonitors are used). Arguments:
root, app, blockShutdown (seconds the sidecar waits for the app to exit when the pod
stops).
*/}}
{{- define "taskgrid.podAnnotations" -}}
{{- $d := .root.Values.dapr -}}
dapr.io/enabled: "true"
dapr.io/app-id: {{ .app | quote }}
dapr.io/app-port: {{ include "taskgrid.appPort" .app | quote }}
dapr.io/app-channel-address: {{ include "taskgrid.appChannelHost" .root | quote }}
dapr.io/app-protocol: "http"
dapr.io/config: {{ include "taskgrid.daprConfigName" .root | quote }}
dapr.io/enable-app-health-check: "true"
dapr.io/app-health-check-path: "/healthz"
dapr.io/app-health-probe-interval: {{ $d.appHealthProbeIntervalSeconds | quote }}
dapr.io/app-health-threshold: {{ $d.appHealthThreshold | quote }}
dapr.io/max-body-size: {{ $d.maxBodySize | quote }}
dapr.io/enable-metrics: "true"
dapr.io/metrics-port: {{ $d.metricsPort | quote }}
dapr.io/api-token-secret: {{ include "taskgrid.apiTokenSecret" .root | quote }}
dapr.io/app-token-secret: {{ include "taskgrid.appTokenSecret" .root | quote }}
dapr.io/log-level: {{ $d.logLevel | quote }}
dapr.io/log-as-json: {{ $d.logAsJSON | quote }}
dapr.io/sidecar-cpu-request: {{ $d.sidecar.resources.requests.cpu | quote }}
dapr.io/sidecar-cpu-limit: {{ $d.sidecar.resources.limits.cpu | quote }}
dapr.io/sidecar-memory-request: {{ $d.sidecar.resources.requests.memory | quote }}
dapr.io/sidecar-memory-limit: {{ $d.sidecar.resources.limits.memory | quote }}
dapr.io/block-shutdown-duration: {{ printf "%ds" (int .blockShutdown) | quote }}
dapr.io/graceful-shutdown-seconds: {{ $d.gracefulShutdownSeconds | quote }}
dapr.io/disable-builtin-k8s-secret-store: "true"
{{- if not .root.Values.metrics.podMonitor.enabled }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ include "taskgrid.publicPort" .app | quote }}
prometheus.io/path: "/metrics"
{{- end }}
{{- end -}}

{{- define "taskgrid.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.pod.runAsUser }}
runAsGroup: {{ .Values.pod.runAsGroup }}
fsGroup: {{ .Values.pod.fsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "taskgrid.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/* Pod-level settings shared by every app. Arguments: root, app. */}}
{{- define "taskgrid.podCommon" -}}
serviceAccountName: {{ include "taskgrid.fullname" .root }}
automountServiceAccountToken: {{ .root.Values.pod.automountServiceAccountToken }}
securityContext:
  {{- include "taskgrid.podSecurityContext" .root | nindent 2 }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .root.Values.pod.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .root.Values.pod.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if .root.Values.pod.spreadOverNodes }}
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "taskgrid.selectorLabels" . | nindent 8 }}
{{- end }}
{{- end -}}

{{/*
Probes: liveness on /healthz tolerates 30 s of failures, because the gateway answers
/healthz 503 for 5 s on purpose to make its sidecar register its actor types again
(actorhost.SelfCheck); readiness is /readyz (the sidecar and the app's dependencies).

The app container's common part: image, the public port, probes on it, security.
Arguments: root, app.
*/}}
{{- define "taskgrid.appContainer" -}}
name: {{ .app }}
image: {{ include "taskgrid.image" . }}
imagePullPolicy: {{ .root.Values.image.pullPolicy }}
ports:
  - name: http
    containerPort: {{ include "taskgrid.publicPort" .app }}
    protocol: TCP
livenessProbe:
  httpGet:
    path: /healthz
    port: http
  periodSeconds: 10
  timeoutSeconds: 2
  failureThreshold: 3
readinessProbe:
  httpGet:
    path: /readyz
    port: http
  periodSeconds: 5
  timeoutSeconds: 3
  failureThreshold: 2
startupProbe:
  httpGet:
    path: /healthz
    port: http
  periodSeconds: 2
  failureThreshold: 30
securityContext:
  {{- include "taskgrid.containerSecurityContext" .root | nindent 2 }}
{{- end -}}

{{/*
The environment every app reads (internal/platform/appserver, internal/adapters/sidecar):
the public listener on every interface of the pod (PUBLIC_HOST, PUBLIC_PORT: the
container port), the app channel on the pod's loopback (APP_HOST, APP_PORT: what
dapr.io/app-port and dapr.io/app-channel-address tell daprd), and the two tokens from
the Secrets the sidecar's annotations name (the injector gives daprd the same keys):
DAPR_API_TOKEN, which the app sends to its sidecar, and APP_API_TOKEN, which the app
channel requires from it. Arguments: root, app.
*/}}
{{- define "taskgrid.commonEnv" -}}
- name: APP_ID
  value: {{ .app | quote }}
- name: PUBLIC_HOST
  value: "0.0.0.0"
- name: PUBLIC_PORT
  value: {{ include "taskgrid.publicPort" .app | quote }}
- name: APP_HOST
  value: {{ include "taskgrid.appChannelHost" .root | quote }}
- name: APP_PORT
  value: {{ include "taskgrid.appPort" .app | quote }}
- name: LOG_LEVEL
  value: {{ .root.Values.pod.logLevel | quote }}
- name: DAPR_API_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "taskgrid.apiTokenSecret" .root }}
      key: token
- name: APP_API_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "taskgrid.appTokenSecret" .root }}
      key: token
{{- end -}}

{{/* TASK_RETENTION, for the apps that write task records (gateway, worker, storekeeper),
one value for all: an idempotency key must not outlive its task's record. */}}
{{- define "taskgrid.retentionEnv" -}}
{{- if ne (toString .Values.taskRetention) "" }}
- name: TASK_RETENTION
  value: {{ .Values.taskRetention | quote }}
{{- end }}
{{- end -}}

{{/* Kafka: the Strimzi cluster's name and the brokers the pub/sub components use. */}}
{{- define "taskgrid.kafkaName" -}}
{{- default (printf "%s-kafka" (include "taskgrid.fullname" .)) .Values.kafka.clusterName -}}
{{- end -}}

{{- define "taskgrid.kafkaBrokers" -}}
{{- if .Values.kafka.create -}}
{{- printf "%s-kafka-bootstrap.%s.svc:9092" (include "taskgrid.kafkaName" .) .Release.Namespace -}}
{{- else -}}
{{- required "kafka.bootstrapServers is required when kafka.create is false" .Values.kafka.bootstrapServers -}}
{{- end -}}
{{- end -}}

{{/* The worker's drain, and what follows from it. */}}
{{- define "taskgrid.workerBlockShutdown" -}}
{{- add .Values.worker.drainTimeoutSeconds 15 -}}
{{- end -}}

{{- define "taskgrid.workerGracePeriod" -}}
{{- add .Values.worker.drainTimeoutSeconds .Values.worker.terminationMarginSeconds -}}
{{- end -}}

{{/* The PodDisruptionBudget of one app. Arguments: root, app. */}}
{{- define "taskgrid.pdb" -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "taskgrid.name" . }}
  labels:
    {{- include "taskgrid.labels" . | nindent 4 }}
spec:
  maxUnavailable: 1
  selector:
    matchLabels:
      {{- include "taskgrid.selectorLabels" . | nindent 6 }}
{{- end -}}
