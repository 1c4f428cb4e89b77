{{/*
One livelearn Deployment: (dict "root" $ "component" "learner" "values" .Values.learner "args" (list "learn")
"port" 9100 "portName" "metrics" "env" (list ...)). Learner and monitor serve metrics and health on the metrics
port; serve answers everything on its HTTP port.
*/}}
{{- define "livelearn.deployment" -}}
{{- $root := .root -}}
{{- $v := .values -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "livelearn.fullname" $root }}-{{ .component }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "livelearn.componentLabels" . | nindent 4 }}
spec:
  {{- if not (and (eq .component "serve") $v.autoscaling.enabled) }}
  replicas: {{ $v.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  strategy:
    type: RollingUpdate
    rollingUpdate:
      # A new pod starts (a new learner as a standby) before an old one stops.
      maxSurge: 1
      maxUnavailable: 0
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
        checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
        {{- with $v.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "livelearn.serviceAccountName" . }}
      automountServiceAccountToken: {{ $root.Values.kubernetes.enabled }}
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
      enableServiceLinks: false
      {{- include "livelearn.scheduling" . | nindent 6 }}
      containers:
        - name: {{ .component }}
          image: {{ include "livelearn.image" $root }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          args:
            {{- toYaml (concat .args $v.extraArgs) | nindent 12 }}
          ports:
            - name: {{ .portName }}
              containerPort: {{ .port }}
              protocol: TCP
          envFrom:
            - configMapRef:
                name: {{ include "livelearn.fullname" $root }}-config
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
            {{- include "livelearn.probe" (dict "probe" $v.startupProbe "port" .portName) | nindent 12 }}
          livenessProbe:
            {{- include "livelearn.probe" (dict "probe" $v.livenessProbe "port" .portName) | nindent 12 }}
          readinessProbe:
            {{- include "livelearn.probe" (dict "probe" $v.readinessProbe "port" .portName) | nindent 12 }}
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.containerSecurityContext | nindent 12 }}
          volumeMounts:
            {{- include "livelearn.volumeMounts" $root | nindent 12 }}
      volumes:
        {{- include "livelearn.volumes" $root | nindent 8 }}
{{- end -}}
