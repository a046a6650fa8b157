{{- /*
Checks across subcharts, run on every render (included from ingress.yaml and NOTES.txt): switches that must
agree, and old value names that moved. Each failure names the keys to change.
*/}}

{{- /*
Renamed or removed values: [path, what to do]. The schemas still accept these keys (without a type), so a
user upgrading with old values gets this message instead of a bare schema error.
*/}}
{{- define "qhub.renamedValues" -}}
{{- list
  (list "domain" "moved to global.domain")
  (list "jupyterhub.singleuser.profileList" "renamed to jupyterhub.singleuser.profiles (a map slug: {displayName, nodeGroup, cpu, memory, gpus, groups})")
  (list "jupyterhub.hub.db.url" "removed: store the database URL in a Secret and set jupyterhub.hub.db.type=external and jupyterhub.hub.db.external.existingSecret")
  (list "jupyterhub.proxy.secretToken" "removed: the proxy token is generated once into the <release>-hub Secret (key proxy-token)")
  (list "jupyterhub.auth.github.clientSecret" "removed: put the client secret in a Secret and set jupyterhub.auth.github.existingSecret")
  (list "jupyterhub.auth.genericOAuth.clientSecret" "removed: put the client secret in a Secret and set jupyterhub.auth.genericOAuth.existingSecret")
  (list "jupyterhub.cull.timeoutSeconds" "renamed to jupyterhub.cull.timeout")
  (list "dask-gateway.prefix" "moved to global.services.dask-gateway.path (the umbrella's, shared with the hub and the Ingress)")
  (list "nfs.export.rootSquash" "removed: the NFS server always squashes root on its clients")
  (list "nfs.networkPolicy" "renamed: nfs.networkPolicy.clientCIDRs is nfs.clientCIDRs, the node ranges both the NetworkPolicy and Ganesha's export admit")
  | toJson -}}
{{- end -}}

{{- define "qhub.validate" -}}
{{- $errors := list -}}
{{- range (include "qhub.renamedValues" . | fromJsonArray) -}}
{{- $path := index . 0 -}}
{{- $node := $.Values -}}
{{- $found := true -}}
{{- range (splitList "." $path) -}}
{{- if and $found (kindIs "map" $node) (hasKey $node .) -}}
{{- $node = index $node . -}}
{{- else -}}
{{- $found = false -}}
{{- end -}}
{{- end -}}
{{- if $found -}}
{{- $errors = append $errors (printf "%s is no longer used: %s." $path (index . 1)) -}}
{{- end -}}
{{- end -}}
{{- $hub := .Values.jupyterhub.enabled -}}
{{- $services := dig "hub" "services" dict (.Values.jupyterhub | default dict) -}}
{{- range $name, $_ := $services -}}
{{- $on := dig "enabled" true (index $.Values $name | default dict) -}}
{{- if and $on (not $hub) -}}
{{- $errors = append $errors (printf "%s.enabled is true but jupyterhub.enabled is false: %s logs users in through JupyterHub; enable jupyterhub or disable %s." $name $name $name) -}}
{{- end -}}
{{- $registered := dig $name "enabled" false $services -}}
{{- if and $hub (ne $on $registered) -}}
{{- $errors = append $errors (printf "%s.enabled is %v but jupyterhub.hub.services.%s.enabled is %v: set both the same way." $name $on $name $registered) -}}
{{- end -}}
{{- end -}}
{{- $gateway := dig "enabled" true (index .Values "dask-gateway" | default dict) -}}
{{- if ne $gateway .Values.global.daskClusters.enabled -}}
{{- $errors = append $errors (printf "dask-gateway.enabled is %v but global.daskClusters.enabled is %v: set both the same way (the shared volume is bound in the Dask clusters' namespace only with the gateway)." $gateway .Values.global.daskClusters.enabled) -}}
{{- end -}}
{{- if and (ne .Values.global.tls.mode "none") (not .Values.global.domain) -}}
{{- $errors = append $errors (printf "global.tls.mode is %s but global.domain is empty: a certificate needs a host name; set global.domain or global.tls.mode=none." .Values.global.tls.mode) -}}
{{- end -}}
{{- if and .Values.global.domain (eq .Values.global.tls.mode "none") (not .Values.global.tls.allowPlainHttp) -}}
{{- $errors = append $errors (printf "global.domain is %s but global.tls.mode is none: passwords and API tokens would cross the network in plain HTTP. Set global.tls.mode=traefik-acme when the cluster's Traefik of qhub-cluster-addons gets a Let's Encrypt certificate (traefik.acme.enabled), global.tls.mode=cert-manager with global.tls.certManager.issuer=<a Let's Encrypt ClusterIssuer>, global.tls.mode=secret with global.tls.secretName=<a kubernetes.io/tls Secret>, or global.tls.mode=upstream when a load balancer in front terminates TLS; plain HTTP only with global.tls.allowPlainHttp=true." .Values.global.domain) -}}
{{- end -}}
{{- if $errors -}}
{{- fail (printf "\n\nThese values need changing:\n  - %s\n" (join "\n  - " $errors)) -}}
{{- end -}}
{{- end -}}
