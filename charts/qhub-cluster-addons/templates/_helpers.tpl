{{- /* qhub-cluster-addons helpers: names and labels. Namespaced objects live in the release namespace
(kube-system when qhubctl installs it); cluster-scoped ones (ClusterRole, ClusterRoleBinding) carry the release
name, so two releases never share one. The StorageClass is named by storageClass.name. */}}

{{- /* cluster-autoscaler Deployment, ClusterRole, ClusterRoleBinding, Role and RoleBinding */}}
{{- define "qhub-cluster-addons.autoscalerName" -}}
{{- printf "%s-cluster-autoscaler" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- /* NVIDIA device plugin DaemonSet */}}
{{- define "qhub-cluster-addons.devicePluginName" -}}
{{- printf "%s-nvidia-device-plugin" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- /* Traefik Deployment, Service, ServiceAccount, ClusterRole and ClusterRoleBinding */}}
{{- define "qhub-cluster-addons.traefikName" -}}
{{- printf "%s-traefik" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- /* Traefik's ACME volume claim (acme.json); 58 = 63 minus "-acme" */}}
{{- define "qhub-cluster-addons.traefikAcmeName" -}}
{{- printf "%s-acme" (include "qhub-cluster-addons.traefikName" . | trunc 58 | trimSuffix "-") -}}
{{- end -}}

{{- /* ConfigMap of the CAs Traefik trusts for a private ACME server; 55 = 63 minus "-acme-ca" */}}
{{- define "qhub-cluster-addons.traefikCaName" -}}
{{- printf "%s-acme-ca" (include "qhub-cluster-addons.traefikName" . | trunc 55 | trimSuffix "-") -}}
{{- end -}}

{{- /* Traefik's image reference: [registry/]repository:tag */}}
{{- define "qhub-cluster-addons.traefikImage" -}}
{{- $image := .Values.traefik.image -}}
{{- if $image.registry -}}
{{- printf "%s/%s:%s" $image.registry $image.repository $image.tag -}}
{{- else -}}
{{- printf "%s:%s" $image.repository $image.tag -}}
{{- end -}}
{{- end -}}

{{- /* Labels of every object; `component` names the add-on (the template's folder). */}}
{{- define "qhub-cluster-addons.labels" -}}
{{ include "qhub-cluster-addons.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{- /* The labels a workload selects its pods by: stable across upgrades. */}}
{{- define "qhub-cluster-addons.selectorLabels" -}}
app.kubernetes.io/name: {{ .component }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/part-of: qhub
{{- end -}}

{{- /* cluster-autoscaler's image tag: clusterAutoscaler.image.tag, else the pinned release for the cluster's
Kubernetes minor version (helm template: --kube-version). */}}
{{- define "qhub-cluster-addons.autoscalerTag" -}}
{{- $ca := .Values.clusterAutoscaler -}}
{{- if $ca.image.tag -}}
{{- $ca.image.tag -}}
{{- else -}}
{{- $minor := printf "%s.%s" .Capabilities.KubeVersion.Major (.Capabilities.KubeVersion.Minor | trimSuffix "+") -}}
{{- $tag := get $ca.image.tags $minor -}}
{{- if not $tag -}}
{{- fail (printf "clusterAutoscaler.image.tags has no cluster-autoscaler release for Kubernetes %s (it has %s): add one or set clusterAutoscaler.image.tag" $minor (keys $ca.image.tags | sortAlpha | join ", ")) -}}
{{- end -}}
{{- $tag -}}
{{- end -}}
{{- end -}}
