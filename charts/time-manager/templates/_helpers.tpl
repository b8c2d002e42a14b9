{{/*
Names, labels and the pieces every pod template shares. A component is one
of "service", "streams" and "operator"; its app name (tm-service, ...) is its
`app.kubernetes.io/name`, so that a selector on name and instance alone picks
its pods and no other's.
*/}}

{{- define "tm.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The name of a component's objects: (list $ "service"). */}}
{{- define "tm.componentName" -}}
{{- $root := index . 0 -}}
{{- printf "%s-%s" (include "tm.fullname" $root) (index . 1) -}}
{{- end -}}

{{/* The app name of a component; time-manager for what all of them share. */}}
{{- define "tm.appName" -}}
{{- if has . (list "service" "streams" "operator") -}}
{{- printf "tm-%s" . -}}
{{- else -}}
time-manager
{{- end -}}
{{- end -}}

{{/* Labels of an object of a component: (list $ "service"). */}}
{{- define "tm.labels" -}}
{{- $root := index . 0 -}}
{{- $component := index . 1 -}}
helm.sh/chart: {{ printf "%s-%s" $root.Chart.Name $root.Chart.Version | replace "+" "_" }}
{{ include "tm.selectorLabels" . }}
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/component: {{ $component }}
app.kubernetes.io/part-of: time-manager
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
{{- end -}}

{{/* Selector labels: name and instance, nothing else. */}}
{{- define "tm.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "tm.appName" (index . 1) }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
{{- end -}}

{{- define "tm.image" -}}
{{- $image := .Values.image -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository (default .Chart.AppVersion $image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The chart's own Secret, holding the secret values given inline. */}}
{{- define "tm.secretName" -}}
{{- include "tm.fullname" . -}}
{{- end -}}

{{/*
An env entry read from a Secret: (list $ "TM_NAME" existingName existingKey
chartKey). The Secret of yours when named, else the chart's own.
*/}}
{{- define "tm.secretEnv" -}}
{{- $root := index . 0 -}}
{{- $existing := index . 2 -}}
- name: {{ index . 1 }}
  valueFrom:
    secretKeyRef:
      {{- if $existing }}
      name: {{ $existing }}
      key: {{ index . 3 }}
      {{- else }}
      name: {{ include "tm.secretName" $root }}
      key: {{ index . 4 }}
      {{- end }}
{{- end -}}

{{/* Whether Kafka is reached with SASL: "true" or "". */}}
{{- define "tm.kafkaSasl" -}}
{{- if hasPrefix "SASL_" .Values.kafka.securityProtocol -}}true{{- end -}}
{{- end -}}

{{/* Whether Kafka is reached over TLS: "true" or "". */}}
{{- define "tm.kafkaTls" -}}
{{- if hasSuffix "SSL" .Values.kafka.securityProtocol -}}true{{- end -}}
{{- end -}}

{{/*
The ConfigMap data every component shares: the environment, logging, and how
to reach MongoDB and Kafka. Secrets (URIs, passwords) are env entries instead.
*/}}
{{- define "tm.sharedConfig" -}}
TM_ENVIRONMENT: {{ .Values.environment | quote }}
TM_LOG_LEVEL: {{ .Values.log.level | quote }}
TM_LOG_FORMAT: {{ .Values.log.format | quote }}
TM_MONGODB_DATABASE: {{ .Values.mongodb.database | quote }}
TM_MONGODB_TIMEOUT_MS: {{ include "tm.scalar" .Values.mongodb.timeoutMs | quote }}
{{- end -}}

{{/* Kafka's part of a ConfigMap, for the service and the worker. */}}
{{- define "tm.kafkaConfig" -}}
{{- $kafka := .Values.kafka -}}
TM_KAFKA_BOOTSTRAP: {{ $kafka.bootstrap | quote }}
TM_KAFKA_TASK_EVENTS_TOPIC: {{ $kafka.taskEventsTopic | quote }}
TM_STREAMS_APP_ID: {{ $kafka.consumerGroup | quote }}
TM_KAFKA_TASK_EVENTS_PARTITIONS: {{ include "tm.scalar" $kafka.taskEventsPartitions | quote }}
TM_KAFKA_SECURITY_PROTOCOL: {{ $kafka.securityProtocol | quote }}
{{- if include "tm.kafkaSasl" . }}
TM_KAFKA_SASL_MECHANISM: {{ $kafka.sasl.mechanism | quote }}
{{- end }}
{{- if and (include "tm.kafkaTls" .) $kafka.tls.secretName }}
{{- if $kafka.tls.caKey }}
TM_KAFKA_SSL_CA_FILE: {{ printf "/etc/time-manager/tls/kafka/%s" $kafka.tls.caKey | quote }}
{{- end }}
{{- if $kafka.tls.certKey }}
TM_KAFKA_SSL_CERT_FILE: {{ printf "/etc/time-manager/tls/kafka/%s" $kafka.tls.certKey | quote }}
TM_KAFKA_SSL_KEY_FILE: {{ printf "/etc/time-manager/tls/kafka/%s" $kafka.tls.keyKey | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
A component's own TM_ settings, camelCase keys as TM_ names:
outboxRelayIntervalMs becomes TM_OUTBOX_RELAY_INTERVAL_MS.
*/}}
{{- define "tm.settingsConfig" -}}
{{- range $key, $value := . }}
{{ printf "TM_%s" ($key | snakecase | upper) }}: {{ include "tm.scalar" $value | quote }}
{{- end }}
{{- end -}}

{{/*
A value as the text of an environment variable. NB: Helm reads every number
of a values file as a float, which would print 86400000 as 8.64e+07.
*/}}
{{- define "tm.scalar" -}}
{{- if and (kindIs "float64" .) (eq (float64 (int64 .)) .) -}}
{{- int64 . -}}
{{- else -}}
{{- toString . -}}
{{- end -}}
{{- end -}}

{{/* Env entries of the MongoDB URI, for every component. */}}
{{- define "tm.mongodbEnv" -}}
{{- $mongodb := .Values.mongodb -}}
{{ include "tm.secretEnv" (list . "TM_MONGODB_URI" $mongodb.existingSecret.name $mongodb.existingSecret.key "mongodbUri") }}
{{- end -}}

{{/* Env entries of Kafka's SASL credentials, when SASL is on. */}}
{{- define "tm.kafkaEnv" -}}
{{- $sasl := .Values.kafka.sasl -}}
{{- if include "tm.kafkaSasl" . }}
{{ include "tm.secretEnv" (list . "TM_KAFKA_SASL_USERNAME" $sasl.existingSecret.name $sasl.existingSecret.usernameKey "kafkaSaslUsername") }}
{{ include "tm.secretEnv" (list . "TM_KAFKA_SASL_PASSWORD" $sasl.existingSecret.name $sasl.existingSecret.passwordKey "kafkaSaslPassword") }}
{{- end }}
{{- end -}}

{{/*
The restricted Pod Security Standard: the pod's and each container's
security context.
*/}}
{{- define "tm.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "tm.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
Volume mounts of the TLS Secrets a component uses: (list $ "mongodb" "kafka").
*/}}
{{- define "tm.tlsMounts" -}}
{{- $root := index . 0 -}}
{{- range $backend := rest . }}
{{- if (index $root.Values $backend).tls.secretName }}
- name: tls-{{ $backend }}
  mountPath: /etc/time-manager/tls/{{ $backend }}
  readOnly: true
{{- end }}
{{- end }}
{{- end -}}

{{- define "tm.tlsVolumes" -}}
{{- $root := index . 0 -}}
{{- range $backend := rest . }}
{{- with (index $root.Values $backend).tls.secretName }}
- name: tls-{{ $backend }}
  secret:
    secretName: {{ . }}
    defaultMode: 0440
{{- end }}
{{- end }}
{{- end -}}

{{/* Scheduling of a component: its own, else the chart's. */}}
{{- define "tm.scheduling" -}}
{{- $root := index . 0 -}}
{{- $values := index . 1 -}}
{{- with (default $root.Values.nodeSelector $values.nodeSelector) }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with (default $root.Values.tolerations $values.tolerations) }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with (default $root.Values.affinity $values.affinity) }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
An egress rule of NetworkPolicy: (list $target "TCP" ...), with the ports and
peers of a `networkPolicy.egress` entry, each port with each protocol.
*/}}
{{- define "tm.egressRule" -}}
{{- $target := index . 0 -}}
- ports:
    {{- range $port := $target.ports }}
    {{- range $protocol := rest $ }}
    - port: {{ $port }}
      protocol: {{ $protocol }}
    {{- end }}
    {{- end }}
  {{- with $target.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
