{{- /* Names and shared pieces of the dask-gateway subchart. */}}

{{- /* Gateway instance id: labels every DaskCluster and Dask pod of this release (gateway.dask.org/instance). */}}
{{- define "dask-gateway.instance" -}}
{{- include "qhub.componentName" (dict "root" . "component" "dask-gateway") -}}
{{- end -}}

{{- /* Name of the ConfigMap with dask_gateway_config.py and gateway.json. */}}
{{- define "dask-gateway.configName" -}}
{{- include "qhub.componentName" (dict "root" . "component" "dask-gateway-config") -}}
{{- end -}}

{{- /* Name of the controller's Deployment and ServiceAccount. */}}
{{- define "dask-gateway.controllerName" -}}
{{- include "qhub.componentName" (dict "root" . "component" "dask-gateway-controller") -}}
{{- end -}}

{{- /* Name of the file-provider middleware that strips /<prefix>/clusters/<name> from dashboard requests. */}}
{{- define "dask-gateway.dashboardMiddleware" -}}qhub-dashboard-prefix@file{{- end -}}

{{- /* Egress rule allowing the Kubernetes API (networkPolicy.kubeApi). */}}
{{- define "dask-gateway.kubeApiEgress" -}}
- ports:
    {{- range .Values.networkPolicy.kubeApi.ports }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
  {{- with .Values.networkPolicy.kubeApi.cidrs }}
  to:
    {{- range . }}
    - ipBlock:
        cidr: {{ . }}
    {{- end }}
  {{- end }}
{{- end -}}

{{- /* Pod selector of this release's Dask pods (schedulers and workers), optionally one component. (dict "root" $ "component" "dask-scheduler") */}}
{{- define "dask-gateway.daskPodLabels" -}}
gateway.dask.org/instance: {{ include "dask-gateway.instance" .root }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end -}}

{{- /* gateway.json: every setting files/dask_gateway_config.py reads (no secrets). Fails on inconsistent profiles. */}}
{{- define "dask-gateway.gatewayJson" -}}
{{- $root := . -}}
{{- $c := .Values.clusters -}}
{{- $groups := .Values.global.nodeGroups -}}
{{- $profiles := list -}}
{{- $names := list -}}
{{- range $c.profiles -}}
{{- if not (hasKey $groups .nodeGroup) -}}
{{- fail (printf "dask-gateway.clusters.profiles[%s].nodeGroup: %q is not a key of global.nodeGroups (%s)" .name .nodeGroup (keys $groups | sortAlpha | join ", ")) -}}
{{- end -}}
{{- if has .name $names -}}
{{- fail (printf "dask-gateway.clusters.profiles: the name %q is used twice" .name) -}}
{{- end -}}
{{- $names = append $names .name -}}
{{- $p := dict "name" .name "displayName" .displayName "cores" .cores "memory" .memory "threads" (int .threads) "gpus" (int .gpus) "groups" (.groups | default list) "placement" (include "qhub.placementJson" (dict "root" $root "group" .nodeGroup) | fromJson) -}}
{{- $profiles = append $profiles $p -}}
{{- end -}}
{{- if and $c.profiles (not (has $c.defaultProfile $names)) -}}
{{- fail (printf "dask-gateway.clusters.defaultProfile: %q is not the name of a profile (%s)" $c.defaultProfile (join ", " $names)) -}}
{{- end -}}
{{- $sched := dict "cores" $c.scheduler.cores "memory" $c.scheduler.memory "placement" (include "qhub.placementJson" (dict "root" $root "group" $c.scheduler.nodeGroup) | fromJson) -}}
{{- $sharedPvc := "" -}}
{{- if or $c.homeMount $c.condaStore.enabled }}{{ $sharedPvc = include "qhub.sharedPvcName" . }}{{ end -}}
{{- $podLabels := dict "app.kubernetes.io/part-of" "qhub" -}}
{{- $clusters := dict
  "image" (include "qhub.image" (dict "root" . "image" $c.image))
  "gpuImage" (include "qhub.image" (dict "root" . "image" $c.gpuImage))
  "imagePullPolicy" $c.imagePullPolicy
  "imagePullSecrets" (.Values.global.imagePullSecrets | default list)
  "scheduler" $sched
  "profiles" $profiles
  "defaultProfile" $c.defaultProfile
  "environments" $c.environments
  "idleTimeout" $c.idleTimeout
  "adaptivePeriod" $c.adaptivePeriod
  "limits" $c.limits
  "homeMount" $c.homeMount
  "condaStore" $c.condaStore
  "sharedPvc" $sharedPvc
  "tmpSize" $c.tmpSize
  "homeInit" (include "qhub.homeInitContainer" . | fromJson)
  "podLabels" $podLabels -}}
{{- $cfg := dict
  "namespace" (include "qhub.daskNamespace" .)
  "releaseNamespace" .Release.Namespace
  "instance" (include "dask-gateway.instance" .)
  "prefix" (index .Values.global.services "dask-gateway" "path")
  "logLevel" .Values.logLevel
  "apiUrl" (printf "http://%s.%s:8000/api" (include "qhub.gatewayApiName" .) .Release.Namespace)
  "hub" (dict "apiUrl" (printf "http://%s.%s:%s/hub/api" (include "qhub.hubName" .) .Release.Namespace (include "qhub.hubPort" .)) "serviceName" .Values.auth.serviceName)
  "proxy" (dict "dashboardMiddleware" (include "dask-gateway.dashboardMiddleware" .))
  "controller" (dict "completedClusterMaxAge" .Values.controller.completedClusterMaxAge "completedClusterCleanupPeriod" .Values.controller.completedClusterCleanupPeriod)
  "commonLabels" (dict "app.kubernetes.io/name" "dask-gateway" "app.kubernetes.io/part-of" "qhub" "app.kubernetes.io/managed-by" "dask-gateway" "app.kubernetes.io/instance" .Release.Name)
  "identities" (dict "configMap" (include "qhub.identitiesName" .) "key" "identities.json")
  "podSecurityContext" (include "qhub.podSecurityContext" (dict "root" . "uid" 1000 "gid" 100) | fromYaml)
  "containerSecurityContext" (include "qhub.containerSecurityContext" dict | fromYaml)
  "clusters" $clusters -}}
{{- toPrettyJson $cfg -}}
{{- end -}}
