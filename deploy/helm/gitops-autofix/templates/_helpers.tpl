{{- define "gitops-autofix.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "gitops-autofix.fullname" -}}
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

{{- define "gitops-autofix.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gitops-autofix.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "gitops-autofix.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "gitops-autofix.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
The name of the ConfigMap of policy files mounted at AUTOFIX_POLICY_DIR, or "" when the image's built-in
policies/ are used.
*/}}
{{- define "gitops-autofix.policiesConfigMap" -}}
{{- if .Values.policies.existingConfigMap }}
{{- .Values.policies.existingConfigMap }}
{{- else if .Values.policies.files }}
{{- printf "%s-policies" (include "gitops-autofix.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "gitops-autofix.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "gitops-autofix.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The read-only rules: get and list (the bot never watches) on the kinds of app/adapters/snapshot.py RESOURCES,
and pod logs. pods/log: the previous container's last lines are the crash evidence. configmaps: key names
only (the adapter drops the values), to tell a typo in a reference from a missing object. With
clusterScoped=false (a Role) nodes and StorageClasses cannot be granted; namespaces stays: a RoleBinding
lets the bot get its own Namespace object.
*/}}
{{- define "gitops-autofix.readRules" -}}
- apiGroups: ['']
  resources: [pods, events{{ if .clusterScoped }}, nodes{{ end }}, namespaces, configmaps, persistentvolumeclaims, resourcequotas, services]
  verbs: [get, list]
- apiGroups: ['']
  resources: [pods/log]
  verbs: [get]
- apiGroups: [apps]
  resources: [deployments, replicasets, statefulsets, daemonsets]
  verbs: [get, list]
- apiGroups: [batch]
  resources: [jobs, cronjobs]
  verbs: [get, list]
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [get, list]
{{- if .clusterScoped }}
- apiGroups: [storage.k8s.io]
  resources: [storageclasses]
  verbs: [get, list]
{{- end }}
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, list]
- apiGroups: [argoproj.io]
  resources: [applications]
  verbs: [get, list]
- apiGroups: [kustomize.toolkit.fluxcd.io]
  resources: [kustomizations]
  verbs: [get, list]
- apiGroups: [source.toolkit.fluxcd.io]
  resources: [gitrepositories]
  verbs: [get, list]
- apiGroups: [helm.toolkit.fluxcd.io]
  resources: [helmreleases]
  verbs: [get, list]
{{- end }}

{{/* Labels of the `helm test` pod: not the selector labels, so the Service never routes to it. */}}
{{- define "gitops-autofix.testLabels" -}}
app.kubernetes.io/name: {{ include "gitops-autofix.name" . }}-test
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: helm-test
{{- end }}
