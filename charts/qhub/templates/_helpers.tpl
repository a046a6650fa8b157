{{- /*
Shared named templates for the umbrella chart and every subchart under charts/.

Helm loads the templates of a chart and all its subcharts into one set, so a subchart rendered as part of
qhub can include any template defined here. Subcharts are not meant to be installed on their own: they rely on
these helpers and on the `global` block of the umbrella's values.

Conventions:
- Object names are "<release>-<component>" (qhub.componentName), the same whichever chart renders them, so
  one subchart can point at another's Service or Secret by name.
- Labels are the recommended app.kubernetes.io set; selectors use only name, instance and component, which
  never change across upgrades.
- Layout, the same in every chart: one object per template file, in a folder per component, named after its
  kind in lower case (deployment.yaml, pvc.yaml, pv.yaml, role.yaml, rolebinding.yaml, networkpolicy.yaml...,
  with -<qualifier> when a folder holds two of a kind); named templates in templates/_helpers.tpl, prefixed
  with the chart's name (qhub.* here). tests/unit/test_chart_layout.py checks it.
*/}}

{{- /* Base of every object name: the release name, cut to leave room for a component suffix. */}}
{{- define "qhub.fullname" -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- /* Name of one component's objects. Call with (dict "root" $ "component" "hub"). */}}
{{- define "qhub.componentName" -}}
{{- printf "%s-%s" (include "qhub.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- /* Selector labels: immutable, so Deployments and Services keep matching across upgrades. (dict "root" $ "component" "hub") */}}
{{- define "qhub.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- /* Full label set for any object. (dict "root" $ "component" "hub") */}}
{{- define "qhub.labels" -}}
{{ include "qhub.selectorLabels" . }}
app.kubernetes.io/part-of: qhub
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{- /*
Image reference. (dict "root" $ "image" .Values.hub.image) where image has repository, tag and optional
registry; global.imageRegistry replaces the registry of every image when set.
*/}}
{{- define "qhub.image" -}}
{{- $registry := .root.Values.global.imageRegistry | default .image.registry | default "" -}}
{{- $tag := .image.tag | default .root.Chart.AppVersion -}}
{{- if $registry -}}
{{- printf "%s/%s:%s" $registry .image.repository $tag -}}
{{- else -}}
{{- printf "%s:%s" .image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- /* imagePullSecrets block from global.imagePullSecrets (a list of Secret names). Indent with nindent. */}}
{{- define "qhub.imagePullSecrets" -}}
{{- with .Values.global.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{- /*
Placement on a node group: nodeSelector and tolerations from global.nodeGroups.<group>.
(dict "root" $ "group" "user"). Emits the two pod-spec keys; indent with nindent at pod-spec level.
*/}}
{{- define "qhub.placement" -}}
{{- $groups := .root.Values.global.nodeGroups -}}
{{- $g := index $groups .group | default dict -}}
{{- if not (hasKey $groups .group) -}}
{{- fail (printf "global.nodeGroups.%s is not defined; add it (nodeSelector and tolerations) or pick one of: %s" .group (keys $groups | sortAlpha | join ", ")) -}}
{{- end -}}
{{- with include "qhub.nodeSelector" $g | fromJson }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $g.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- /* The same placement as a dict, for config files that hand it to a spawner (KubeSpawner, dask-gateway). (dict "root" $ "group" "user") */}}
{{- define "qhub.placementJson" -}}
{{- $g := index .root.Values.global.nodeGroups .group | default dict -}}
{{- dict "nodeSelector" (include "qhub.nodeSelector" $g | fromJson) "tolerations" ($g.tolerations | default list) | toJson -}}
{{- end -}}

{{- /* A node group's nodeSelector as JSON, without the labels set to "" (Helm merges maps with the defaults, so
an empty value is how values drop a default label, e.g. qhub.dev/node-group on an existing cluster). */}}
{{- define "qhub.nodeSelector" -}}
{{- $out := dict -}}
{{- range $k, $v := .nodeSelector | default dict -}}
{{- if $v }}{{ $_ := set $out $k $v }}{{ end -}}
{{- end -}}
{{- $out | toJson -}}
{{- end -}}

{{- /* Pod securityContext for non-root workloads. Optional (dict "root" $ "uid" 1000 "gid" 1000). */}}
{{- define "qhub.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid | default 1000 }}
runAsGroup: {{ .gid | default 1000 }}
fsGroup: {{ .gid | default 1000 }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- /* Container securityContext: no privilege escalation, no capabilities, read-only root unless (dict "writableRoot" true). */}}
{{- define "qhub.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: {{ not .writableRoot }}
capabilities:
  drop: [ALL]
{{- end -}}

{{- /*
A generated secret value that survives upgrades: the value already stored in the Secret if there is one (and it
has the right form), else a new random one. (dict "root" $ "secret" "<name>" "key" "<key>" "length" 64) gives
`length` random letters and digits. (dict ... "format" "hex32") gives a 32-byte key as 64 lower-case hex
characters - what JupyterHub expects of a cookie secret; a stored value of another form (from an older chart) is
replaced. Use it in exactly one template per value (the Secret that owns it); everyone else reads it with
secretKeyRef.
*/}}
{{- define "qhub.generatedSecret" -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace .secret -}}
{{- $data := dig "data" dict ($existing | default dict) -}}
{{- $stored := "" -}}
{{- if hasKey $data .key -}}
{{- $stored = index $data .key | b64dec -}}
{{- end -}}
{{- if eq (.format | default "alnum") "hex32" -}}
{{- if regexMatch "^[0-9a-f]{64}$" $stored -}}
{{- $stored -}}
{{- else -}}
{{- /* sha256 of ~380 random bits: 32 uniformly random bytes, hex-encoded (sprig has no hex encoder) */ -}}
{{- randAlphaNum 64 | sha256sum -}}
{{- end -}}
{{- else if $stored -}}
{{- $stored -}}
{{- else -}}
{{- randAlphaNum (.length | default 64) -}}
{{- end -}}
{{- end -}}

{{- /*
The egress rule every NetworkPolicy of the chart starts with: DNS (UDP and TCP 53) to the cluster's DNS pods only
(label k8s-app=kube-dns in any namespace, which CoreDNS keeps too), not port 53 anywhere. A list item: include
under `egress:` with nindent.
*/}}
{{- define "qhub.dnsEgress" -}}
- to:
    - namespaceSelector: {}
      podSelector:
        matchLabels:
          k8s-app: kube-dns
  ports:
    - {protocol: UDP, port: 53}
    - {protocol: TCP, port: 53}
{{- end -}}

{{- /* Public URL prefix of the platform: https://<domain> or http://<domain>, or "" without a domain. */}}
{{- define "qhub.publicUrl" -}}
{{- with .Values.global.domain -}}
{{- if eq $.Values.global.tls.mode "none" }}http{{ else }}https{{ end }}://{{ . }}
{{- end -}}
{{- end -}}

{{- /* Well-known names shared across subcharts, so one points at another without seeing its values. */}}
{{- /* Port of the hub Service <release>-hub: its REST API (/hub/api) and pages. */}}
{{- define "qhub.hubPort" -}}8081{{- end -}}
{{- /* Port user servers listen on: KubeSpawner's port (PORT in charts/jupyterhub/files/qhub_hub_spawner.py, which
tests/chart/test_network_reach.py holds to this). */}}
{{- define "qhub.singleuserPort" -}}8888{{- end -}}
{{- /* The hub's REST API as the platform's other pods call it, through the hub Service. Call with the root context. */}}
{{- define "qhub.hubApiUrl" -}}http://{{ include "qhub.hubName" . }}:{{ include "qhub.hubPort" . }}/hub/api{{- end -}}
{{- define "qhub.hubName" -}}{{ include "qhub.componentName" (dict "root" . "component" "hub") }}{{- end -}}
{{- define "qhub.hubSecretName" -}}{{ include "qhub.componentName" (dict "root" . "component" "hub") }}{{- end -}}
{{- define "qhub.proxyApiName" -}}{{ include "qhub.componentName" (dict "root" . "component" "proxy-api") }}{{- end -}}
{{- define "qhub.proxyPublicName" -}}{{ include "qhub.serviceHost" (dict "root" . "service" "jupyterhub") }}{{- end -}}
{{- define "qhub.gatewayApiName" -}}{{ include "qhub.componentName" (dict "root" . "component" "dask-gateway-api") }}{{- end -}}
{{- define "qhub.gatewayProxyName" -}}{{ include "qhub.serviceHost" (dict "root" . "service" "dask-gateway") }}{{- end -}}
{{- define "qhub.sharedPvcName" -}}{{ include "qhub.componentName" (dict "root" . "component" "shared") }}{{- end -}}

{{- /* Namespace of users' Dask clusters: global.daskClusters.namespace, else "<release namespace>-dask" (a namespace
name has at most 63 characters; never the release namespace, whose Secrets the gateway must not reach). */}}
{{- define "qhub.daskNamespace" -}}
{{- $ns := .Values.global.daskClusters.namespace | default (printf "%s-dask" .Release.Namespace) -}}
{{- if gt (len $ns) 63 -}}
{{- fail (printf "global.daskClusters.namespace: %q is longer than the 63 characters a namespace name may have; set global.daskClusters.namespace to a shorter name" $ns) -}}
{{- end -}}
{{- if eq $ns .Release.Namespace -}}
{{- fail (printf "global.daskClusters.namespace: %q is the release namespace; Dask clusters need a namespace of their own (the gateway may not read the release's Secrets): pick another name or leave it empty for %s-dask" $ns .Release.Namespace) -}}
{{- end -}}
{{- $ns -}}
{{- end -}}
{{- define "qhub.condaStoreName" -}}{{ include "qhub.serviceHost" (dict "root" . "service" "conda-store") }}{{- end -}}
{{- define "qhub.condaEnvsPvcName" -}}{{ include "qhub.componentName" (dict "root" . "component" "conda-envs") }}{{- end -}}
{{- define "qhub.kubesshName" -}}{{ include "qhub.componentName" (dict "root" . "component" "kubessh") }}{{- end -}}
{{- define "qhub.jitsiTokenName" -}}{{ include "qhub.serviceHost" (dict "root" . "service" "jitsi") }}{{- end -}}

{{- /*
The platform's services of global.services (port, path, oauthCallback), by name - jupyterhub, dask-gateway,
conda-store, jitsi. Each helper takes (dict "root" $ "service" "<name>").
*/}}
{{- /* Name of the Service a platform service is reached through. */}}
{{- define "qhub.serviceHost" -}}
{{- $components := dict "jupyterhub" "proxy-public" "dask-gateway" "dask-gateway-proxy" "conda-store" "conda-store" "jitsi" "jitsi-token" -}}
{{- include "qhub.componentName" (dict "root" .root "component" (get $components .service | required (printf "no platform service %q" .service))) -}}
{{- end -}}

{{- /*
The address ranges no pod users control may reach outside the cluster's pods (a flow list, for an ipBlock's
`except`): the private ranges (which hold the cluster's pods and nodes, and so the NFS server that admits the node
ranges), shared address space (100.64.0.0/10: EKS custom networking, carrier-grade NAT) and link-local, where the
cloud metadata service answers. dask-gateway.clusters.egress and nfs.clientCIDRs default to the same ranges
(tests/chart/test_network_reach.py keeps them equal).
*/}}
{{- define "qhub.privateRanges" -}}
[10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10, 169.254.0.0/16]
{{- end -}}

{{- /*
Port the pods behind a platform service's Service listen on: where that Service sends (its targetPort), and so the
port a NetworkPolicy names, since policies see pod ports, never a Service's port (global.services.<name>.port,
which callers use: the gateway's proxy Service takes 80 and sends to 8000). The pods' containerPorts match it;
tests/chart/test_network_reach.py resolves every Service's targetPort to check.
*/}}
{{- define "qhub.servicePodPort" -}}
{{- $ports := dict "jupyterhub" 8000 "dask-gateway" 8000 "conda-store" 8080 "jitsi" 8000 -}}
{{- get $ports .service | required (printf "no platform service %q" .service) -}}
{{- end -}}

{{- /* A platform service's settings from global.services. */}}
{{- define "qhub.serviceSpec" -}}
{{- index .root.Values.global.services .service | required (printf "global.services.%s is not set" .service) | toJson -}}
{{- end -}}

{{- /*
The URL the hub registers for a service, in the cluster: http://<Service>:<port>. The hub's proxy routes
/services/<name>/ there with the path kept; a service that answers on a path of its own (conda-store) has that
path in its URL.
*/}}
{{- define "qhub.serviceUrl" -}}
{{- $s := include "qhub.serviceSpec" . | fromJson -}}
http://{{ include "qhub.serviceHost" . }}:{{ $s.port }}{{ if ne $s.path (printf "/services/%s" .service) }}{{ $s.path }}{{ end }}
{{- end -}}

{{- /* The OAuth callback URL a service registers with the hub (public URL, path, oauthCallback); "" without one. */}}
{{- define "qhub.serviceOauthCallback" -}}
{{- $s := include "qhub.serviceSpec" . | fromJson -}}
{{- with $s.oauthCallback -}}{{ include "qhub.publicUrl" $.root }}{{ $s.path }}/{{ . }}{{- end -}}
{{- end -}}
{{- define "qhub.jitsiWebName" -}}{{ include "qhub.componentName" (dict "root" . "component" "jitsi-web") }}{{- end -}}
{{- define "qhub.identitiesName" -}}{{ include "qhub.componentName" (dict "root" . "component" "identities") }}{{- end -}}

{{- /*
The init container that makes a user's home before any other container of the pod mounts it: it runs as the user
(runAsUser/runAsGroup set by whoever adds it - the hub for JupyterLab, Dask-Gateway for schedulers and workers -,
together with the image and QHUB_HOME_NAME), mounts home/ of the shared volume at /mnt/home and creates
home/<user> 0700, so the folder belongs to the user's uid without any root. A home that exists but belongs to
another uid stops the pod with a message saying why (e.g. one from before per-user uids, owned by uid 1000, which
`qhubctl upgrade --homes` hands over). home/ itself is 1733 (anyone may add a folder, nobody may list or remove
another's), made by the hub. As JSON, without image, user and volume name. Call with the root context.
*/}}
{{- define "qhub.homeInitContainer" -}}
{{- $script := `import os, stat, sys
name = os.environ["QHUB_HOME_NAME"]
if not name or "/" in name or name in (".", ".."):
    sys.exit(f"{name!r} cannot be a home folder name")
home, me = os.path.join("/mnt/home", name), os.getuid()
try:
    os.mkdir(home, 0o700)
except FileExistsError:
    pass
st = os.lstat(home)
if not stat.S_ISDIR(st.st_mode):
    sys.exit(f"home/{name} on the shared volume is not a folder; an admin has to look at it")
if st.st_uid != me:
    why = (" (the uid every user had before per-user uids): an admin runs qhubctl upgrade --homes once"
           if st.st_uid == 1000 else ": an admin has to look at it")
    sys.exit(f"home/{name} belongs to uid {st.st_uid}, not to you (uid {me}){why}")
os.chmod(home, 0o700)
print(f"home/{name}: uid {me}, mode 0700")` -}}
{{- dict
  "name" "home"
  "command" (list "python3" "-c" $script)
  "securityContext" (include "qhub.containerSecurityContext" dict | fromYaml | merge (dict "runAsNonRoot" true))
  "resources" (dict "requests" (dict "cpu" "10m" "memory" "32Mi") "limits" (dict "cpu" "200m" "memory" "64Mi"))
  "terminationMessagePolicy" "FallbackToLogsOnError"
  "volumeMounts" (list (dict "mountPath" "/mnt/home" "subPath" "home"))
  | toJson -}}
{{- end -}}
