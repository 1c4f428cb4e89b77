{{/* Names and labels. */}}
{{- define "livelearn.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The objects' base name: 44 characters at most, so `<fullname>-learner` leaves a StatefulSet's pods room for their
controller-revision-hash label (52 + 11 <= 63) and `<fullname>-learner-metrics` stays a Service name (<= 63); a dot
of a release name (Helm takes them) is a dash (a Service name is a DNS label).
*/}}
{{- define "livelearn.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- regexReplaceAll "-+$" (.Values.fullnameOverride | replace "." "-" | trunc 44) "" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- regexReplaceAll "-+$" (.Release.Name | replace "." "-" | trunc 44) "" -}}
{{- else -}}
{{- regexReplaceAll "-+$" (printf "%s-%s" .Release.Name $name | replace "." "-" | trunc 44) "" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The labels of every object: the chart's own, then commonLabels (a common label never replaces the chart's). */}}
{{- define "livelearn.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "livelearn.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: livelearn
livelearn.io/model: {{ include "livelearn.modelLabel" . | quote }}
{{- range $key, $value := .Values.commonLabels }}
{{- if not (or (hasPrefix "app.kubernetes.io/" $key) (hasPrefix "helm.sh/" $key) (eq $key "livelearn.io/model")) }}
{{ $key }}: {{ $value | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
An object's metadata annotations: (dict "root" $ "extra" (dict ...)), the extra ones (hooks, a Service's own)
winning over commonAnnotations; nothing when both are empty.
*/}}
{{- define "livelearn.annotations" -}}
{{- $all := merge (deepCopy (default (dict) .extra)) (default (dict) .root.Values.commonAnnotations) -}}
{{- with $all -}}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end -}}
{{- end -}}

{{- define "livelearn.selectorLabels" -}}
app.kubernetes.io/name: {{ include "livelearn.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Component labels: call with (dict "root" $ "component" "learner"). */}}
{{- define "livelearn.componentLabels" -}}
{{ include "livelearn.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "livelearn.componentSelector" -}}
{{ include "livelearn.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "livelearn.model" -}}
{{- default "default" .Values.config.model_name -}}
{{- end -}}

{{/* The model name as a label value: 63 characters at most, alphanumeric at both ends (a model name may be 64 long
and start or end with `_`, `.` or `-`). */}}
{{- define "livelearn.modelLabel" -}}
{{- $trimmed := regexReplaceAll "^[^A-Za-z0-9]+" (include "livelearn.model" . | trunc 63) "" -}}
{{- regexReplaceAll "[^A-Za-z0-9]+$" $trimmed "" -}}
{{- end -}}

{{/* The image: [registry/]repository then @digest or :tag; global.imageRegistry wins over image.registry. */}}
{{- define "livelearn.image" -}}
{{- $registry := default .Values.image.registry ((.Values.global).imageRegistry) -}}
{{- $repository := .Values.image.repository -}}
{{- if $registry -}}
{{- $repository = printf "%s/%s" (trimSuffix "/" $registry) $repository -}}
{{- end -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* A workload's ServiceAccount: its own (create), else the one named, else the namespace's default. */}}
{{- define "livelearn.serviceAccountName" -}}
{{- if .root.Values.serviceAccount.create -}}
{{- printf "%s-%s" (include "livelearn.fullname" .root) .component -}}
{{- else -}}
{{- default "default" .root.Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
Whether Roles are made: with the Kubernetes integration, for accounts this chart makes or names (never for the
namespace's default account, which every other pod of the namespace runs as too).
*/}}
{{- define "livelearn.rbac" -}}
{{- if and .Values.rbac.create .Values.kubernetes.enabled (or .Values.serviceAccount.create .Values.serviceAccount.name) -}}
true
{{- end -}}
{{- end -}}

{{/* The learner pods' names (a StatefulSet's: <fullname>-learner-0 ...), comma-separated. */}}
{{- define "livelearn.learnerPods" -}}
{{- $names := list -}}
{{- range $i := until (int .Values.learner.replicas) -}}
{{- $names = append $names (printf "%s-learner-%d" (include "livelearn.fullname" $) $i) -}}
{{- end -}}
{{- join "," $names -}}
{{- end -}}

{{/* The Secrets a component references (settings, CA certificates), sorted, comma-separated. */}}
{{- define "livelearn.referencedSecrets" -}}
{{- $v := .root.Values -}}
{{- $refs := list $v.secrets.kafkaSaslPassword $v.secrets.kafkaSslKeyPassword $v.secrets.redisPassword $v.tls.redisCA $v.tls.kafkaCA -}}
{{- if eq .component "serve" -}}
{{- $refs = append $refs $v.secrets.apiToken -}}
{{- end -}}
{{- $names := list -}}
{{- range $refs -}}
{{- if .existingSecret -}}
{{- $names = append $names .existingSecret -}}
{{- end -}}
{{- end -}}
{{- $names | uniq | sortAlpha | join "," -}}
{{- end -}}

{{- define "livelearn.pinConfigMap" -}}
{{- default (printf "%s-pin" (include "livelearn.fullname" .)) .Values.kubernetes.pinConfigMap.name -}}
{{- end -}}

{{/* A setting's value as the string pydantic-settings parses: lists as JSON, whole floats as integers. */}}
{{- define "livelearn.settingValue" -}}
{{- $v := . -}}
{{- if kindIs "slice" $v -}}
{{- toJson $v -}}
{{- else if kindIs "float64" $v -}}
{{- if eq $v (float64 (int64 $v)) -}}{{- int64 $v -}}{{- else -}}{{- $v -}}{{- end -}}
{{- else -}}
{{- $v -}}
{{- end -}}
{{- end -}}

{{/* The settings as env entries (name/value), for the hook Job that runs before the ConfigMap exists. */}}
{{- define "livelearn.settingsEnv" -}}
{{- range $key, $value := .Values.config }}
{{- if not (kindIs "invalid" $value) }}
- name: {{ printf "LIVELEARN_%s" (upper $key) }}
  value: {{ include "livelearn.settingValue" $value | quote }}
{{- end }}
{{- end }}
- name: LIVELEARN_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
{{- end -}}

{{/* A secret setting from an existing Secret: (dict "env" NAME "ref" .Values.secrets.x). */}}
{{- define "livelearn.secretEnv" -}}
{{- if .ref.existingSecret }}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ .ref.existingSecret }}
      key: {{ .ref.key }}
{{- end }}
{{- end -}}

{{/* Env shared by every livelearn container: secrets, the Kafka CA, the writable HOME. */}}
{{- define "livelearn.commonEnv" -}}
- name: HOME
  value: /tmp
- name: MPLCONFIGDIR
  value: /tmp/matplotlib
{{- if .Values.tls.kafkaCA.existingSecret }}
- name: LIVELEARN_KAFKA_SSL_CAFILE
  value: /etc/livelearn/tls/kafka/ca.crt
{{- end }}
{{- include "livelearn.secretEnv" (dict "env" "LIVELEARN_KAFKA_SASL_PASSWORD" "ref" .Values.secrets.kafkaSaslPassword) }}
{{- include "livelearn.secretEnv" (dict "env" "LIVELEARN_KAFKA_SSL_KEY_PASSWORD" "ref" .Values.secrets.kafkaSslKeyPassword) }}
{{- include "livelearn.secretEnv" (dict "env" "LIVELEARN_REDIS_PASSWORD" "ref" .Values.secrets.redisPassword) }}
{{- end -}}

{{/* Downward API: who this pod is, for Events and the role label. */}}
{{- define "livelearn.podEnv" -}}
- name: POD_NAME
  valueFrom: {fieldRef: {fieldPath: metadata.name}}
- name: POD_NAMESPACE
  valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
- name: POD_UID
  valueFrom: {fieldRef: {fieldPath: metadata.uid}}
{{- end -}}

{{- define "livelearn.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if .Values.tls.redisCA.existingSecret }}
- name: redis-ca
  mountPath: /etc/livelearn/tls/redis
  readOnly: true
{{- end }}
{{- if .Values.tls.kafkaCA.existingSecret }}
- name: kafka-ca
  mountPath: /etc/livelearn/tls/kafka
  readOnly: true
{{- end }}
{{- end -}}

{{- define "livelearn.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpVolume.sizeLimit }}
{{- if .Values.tls.redisCA.existingSecret }}
- name: redis-ca
  secret:
    secretName: {{ .Values.tls.redisCA.existingSecret }}
    items:
      - key: {{ .Values.tls.redisCA.key }}
        path: ca.crt
{{- end }}
{{- if .Values.tls.kafkaCA.existingSecret }}
- name: kafka-ca
  secret:
    secretName: {{ .Values.tls.kafkaCA.existingSecret }}
    items:
      - key: {{ .Values.tls.kafkaCA.key }}
        path: ca.crt
{{- end }}
{{- end -}}

{{/* An HTTP probe: (dict "probe" .Values.learner.livenessProbe "port" "metrics"). */}}
{{- define "livelearn.probe" -}}
httpGet:
  path: {{ .probe.path }}
  port: {{ .port }}
periodSeconds: {{ .probe.periodSeconds }}
timeoutSeconds: {{ .probe.timeoutSeconds }}
failureThreshold: {{ .probe.failureThreshold }}
{{- end -}}

{{/* Scheduling of a component: (dict "root" $ "component" "learner" "values" .Values.learner). */}}
{{- define "livelearn.scheduling" -}}
{{- with .values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- $selector := dict "matchLabels" (include "livelearn.componentSelector" (dict "root" .root "component" .component) | fromYaml) }}
{{- if .values.topologySpreadConstraints }}
{{- /* The full list, as given; a constraint without a labelSelector counts this component's pods. */}}
topologySpreadConstraints:
{{- range .values.topologySpreadConstraints }}
{{- $constraint := deepCopy . }}
{{- if not (hasKey $constraint "labelSelector") }}
{{- $_ := set $constraint "labelSelector" $selector }}
{{- end }}
  - {{- toYaml $constraint | nindent 4 }}
{{- end }}
{{- else if .values.topologySpread.enabled }}
topologySpreadConstraints:
  - maxSkew: {{ .values.topologySpread.maxSkew }}
    topologyKey: {{ .values.topologySpread.topologyKey }}
    whenUnsatisfiable: {{ .values.topologySpread.whenUnsatisfiable }}
    labelSelector:
      {{- toYaml $selector | nindent 6 }}
{{- end }}
{{- end -}}

{{/* The PromQL label selector of this release's series. */}}
{{- define "livelearn.promSelector" -}}
model="{{ include "livelearn.model" . }}",namespace="{{ .Release.Namespace }}"
{{- end -}}
