{{/*
One livelearn workload: (dict "root" $ "component" "learner" "kind" "StatefulSet" "values" .Values.learner
"args" (list "learn") "ports" (list (dict "name" "metrics" "port" 9100)) "probePort" "metrics" "automount" true
"env" (list ...)). Learner and monitor answer metrics and health on the metrics port; serve answers predictions
and health on its HTTP port and metrics on the metrics port.

The learner is a StatefulSet so that its pods' names are known in advance: its Role may patch those pods only
(see rbac.yaml). The others are Deployments.
*/}}
{{- define "livelearn.workload" -}}
{{- $root := .root -}}
{{- $v := .values -}}
{{- $fullname := include "livelearn.fullname" $root -}}
{{- $reload := include "livelearn.referencedSecrets" . -}}
apiVersion: apps/v1
kind: {{ .kind }}
metadata:
  name: {{ $fullname }}-{{ .component }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "livelearn.componentLabels" . | nindent 4 }}
  {{- $annotations := dict }}
  {{- if and $root.Values.reloader.enabled $reload }}
  {{- $_ := set $annotations "secret.reloader.stakater.com/reload" $reload }}
  {{- end }}
  {{- with include "livelearn.annotations" (dict "root" $root "extra" $annotations) }}{{ . | nindent 2 }}{{ end }}
spec:
  {{- if not (and (eq .component "serve") $v.autoscaling.enabled) }}
  replicas: {{ $v.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  {{- if eq .kind "StatefulSet" }}
  serviceName: {{ $fullname }}-{{ .component }}-metrics
  # Standbys start together, not one after the other; a rollout replaces one pod at a time, so with two
  # learners one is always running (the standby takes the lease when the active one stops).
  podManagementPolicy: Parallel
  updateStrategy:
    type: RollingUpdate
  {{- else }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      # A new pod starts before an old one stops.
      maxSurge: 1
      maxUnavailable: 0
  {{- end }}
  selector:
    matchLabels:
      {{- include "livelearn.componentSelector" . | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "livelearn.componentLabels" . | nindent 8 }}
        {{- with $v.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        # A changed setting rolls the pods (the pin ConfigMap is apart: a new pin must not).
        checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
        {{- with $v.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "livelearn.serviceAccountName" . }}
      automountServiceAccountToken: {{ .automount }}
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
      enableServiceLinks: false
      {{- with include "livelearn.scheduling" . | trim }}{{ . | nindent 6 }}{{ end }}
      {{- with $v.initContainers }}
      initContainers:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ .component }}
          image: {{ include "livelearn.image" $root }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          args:
            {{- toYaml (concat .args $v.extraArgs) | nindent 12 }}
          ports:
            {{- range .ports }}
            - name: {{ .name }}
              containerPort: {{ .port }}
              protocol: TCP
            {{- end }}
          envFrom:
            - configMapRef:
                name: {{ $fullname }}-config
            {{- with $v.extraEnvFrom }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          env:
            {{- include "livelearn.commonEnv" $root | nindent 12 }}
            {{- include "livelearn.podEnv" $root | nindent 12 }}
            {{- with .env }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
            {{- with $v.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          startupProbe:
            {{- include "livelearn.probe" (dict "probe" $v.startupProbe "port" .probePort) | nindent 12 }}
          livenessProbe:
            {{- include "livelearn.probe" (dict "probe" $v.livenessProbe "port" .probePort) | nindent 12 }}
          readinessProbe:
            {{- include "livelearn.probe" (dict "probe" $v.readinessProbe "port" .probePort) | nindent 12 }}
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.containerSecurityContext | nindent 12 }}
          volumeMounts:
            {{- include "livelearn.volumeMounts" $root | nindent 12 }}
            {{- with $v.extraVolumeMounts }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
        {{- with $v.sidecars }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      volumes:
        {{- include "livelearn.volumes" $root | nindent 8 }}
        {{- with $v.extraVolumes }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
{{- end -}}
