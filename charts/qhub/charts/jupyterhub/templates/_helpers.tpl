{{- /*
Named templates of the jupyterhub subchart. Names, labels, placement, images and security contexts come from
the umbrella's qhub.* helpers; only what is specific to the hub lives here.
*/}}

{{- /*
Linux gid of every group in .Values.groups, as a JSON object {name: gid}. An explicit gid wins; otherwise
10000 + adler32(name) mod 50000, the same derivation files/qhub_hub_values.py documents. Fails on a clash, so
two groups never share a folder owner. Call with the subchart's root context.
*/}}
{{- define "jupyterhub.groupGids" -}}
{{- $gids := dict -}}
{{- $owners := dict -}}
{{- range $name, $group := .Values.groups -}}
{{- $g := $group | default dict -}}
{{- $gid := 0 -}}
{{- if $g.gid -}}
{{- $gid = int $g.gid -}}
{{- else -}}
{{- $gid = add 10000 (mod (atoi (adler32sum $name)) 50000) -}}
{{- end -}}
{{- $key := toString $gid -}}
{{- if hasKey $owners $key -}}
{{- fail (printf "jupyterhub.groups: groups %q and %q both get gid %s; give one of them an explicit gid" (index $owners $key) $name $key) -}}
{{- end -}}
{{- $_ := set $owners $key $name -}}
{{- $_ := set $gids $name $gid -}}
{{- end -}}
{{- toJson $gids -}}
{{- end -}}

{{- /*
URL and OAuth redirect URI of a registered service when its `url` / `oauthRedirectUri` value is empty: from the
umbrella's global.services for the platform's services on a route of the hub's proxy, none for the others
(kubessh has a Service of its own). (dict "root" $ "name" "dask-gateway")
*/}}
{{- define "jupyterhub.defaultServiceUrl" -}}
{{- if hasKey .root.Values.global.services .name -}}
{{ include "qhub.serviceUrl" (dict "root" .root "service" .name) }}
{{- end -}}
{{- end -}}

{{- define "jupyterhub.defaultServiceRedirect" -}}
{{- if hasKey .root.Values.global.services .name -}}
{{ include "qhub.serviceOauthCallback" (dict "root" .root "service" .name) }}
{{- end -}}
{{- end -}}

{{- /*
The hub's configuration as YAML: the values jupyterhub_config.py reads (stored in the hub Secret as
values.yaml) plus what only the chart knows - object names, namespace, public URL, node-group placement and
group gids. Secrets are never part of it: they are separate keys of the hub Secret or secretKeyRefs.
*/}}
{{- define "jupyterhub.hubConfig" -}}
{{- $ns := .Release.Namespace -}}
{{- $services := dict -}}
{{- range $name, $svc := .Values.hub.services -}}
{{- $url := $svc.url | default (include "jupyterhub.defaultServiceUrl" (dict "root" $ "name" $name)) -}}
{{- $redirect := $svc.oauthRedirectUri | default (include "jupyterhub.defaultServiceRedirect" (dict "root" $ "name" $name)) -}}
{{- $_ := set $services $name (dict "enabled" $svc.enabled "url" $url "oauthRedirectUri" $redirect "scopes" $svc.scopes) -}}
{{- end -}}
{{- $placement := dict -}}
{{- range $group, $_ := .Values.global.nodeGroups -}}
{{- $_ := set $placement $group (include "qhub.placementJson" (dict "root" $ "group" $group) | fromJson) -}}
{{- end -}}
{{- $profiles := dict -}}
{{- range $slug, $p := .Values.singleuser.profiles -}}
{{- if $p.enabled -}}
{{- if not (hasKey $.Values.global.nodeGroups $p.nodeGroup) -}}
{{- fail (printf "jupyterhub.singleuser.profiles.%s runs on node group %q, which global.nodeGroups does not define; add the group or set jupyterhub.singleuser.profiles.%s.enabled=false" $slug $p.nodeGroup $slug) -}}
{{- end -}}
{{- if and $p.allowAll $p.groups -}}
{{- fail (printf "jupyterhub.singleuser.profiles.%s sets both allowAll (every user) and groups (only their members); remove one of them" $slug) -}}
{{- end -}}
{{- $image := include "qhub.image" (dict "root" $ "image" $.Values.singleuser.image) -}}
{{- if $p.image.repository -}}
{{- $image = include "qhub.image" (dict "root" $ "image" $p.image) -}}
{{- end -}}
{{- $_ := set $profiles $slug (merge (dict "image" $image) (omit $p "image" "enabled")) -}}
{{- end -}}
{{- end -}}
{{- $names := dict
  "namespace" $ns
  "release" .Release.Name
  "hub" (include "qhub.hubName" .)
  "hubPort" (include "qhub.hubPort" .)
  "proxyApi" (include "qhub.proxyApiName" .)
  "proxyPublic" (include "qhub.proxyPublicName" .)
  "gatewayProxy" (include "qhub.gatewayProxyName" .)
  "condaStore" (include "qhub.condaStoreName" .)
  "sharedPvc" (include "qhub.sharedPvcName" .)
  "identities" (include "qhub.identitiesName" .)
  "publicUrl" (include "qhub.publicUrl" .)
-}}
{{- $cfg := dict
  "names" $names
  "hub" (dict "logLevel" .Values.hub.logLevel "dbType" .Values.hub.db.type "services" $services "config" .Values.hub.config)
  "auth" .Values.auth
  "groups" (include "jupyterhub.groupGids" . | fromJson)
  "groupMembers" .Values.groups
  "singleuser" (dict
    "image" (include "qhub.image" (dict "root" . "image" .Values.singleuser.image))
    "imagePullSecrets" (.Values.global.imagePullSecrets | default list)
    "defaultUrl" .Values.singleuser.defaultUrl
    "startTimeout" .Values.singleuser.startTimeout
    "httpTimeout" .Values.singleuser.httpTimeout
    "extraEnv" .Values.singleuser.extraEnv
    "storage" .Values.singleuser.storage
    "gpuGroup" .Values.singleuser.gpuGroup
    "profiles" $profiles)
  "placement" $placement
  "homeInit" (include "qhub.homeInitContainer" . | fromJson)
  "cull" .Values.cull
  "platformServices" .Values.global.services
-}}
{{- toYaml $cfg -}}
{{- end -}}

{{- /* Labels that let a pod through the NetworkPolicies of the services it calls. (list "hub" "proxy") */}}
{{- define "jupyterhub.accessLabels" -}}
{{- range $i, $name := . }}{{ if $i }}{{ "\n" }}{{ end }}qhub.dev/access-{{ $name }}: "true"{{ end -}}
{{- end -}}

{{- /*
The passwords of auth.type native's admins as JSON {name: password}: the one stored in the hub Secret for an admin
who had one (32+ letters and digits), else a new random one. Admins no longer listed are dropped. Fails when
native has no admin to authorize sign-ups (unless open sign-up) or an admin name could never log in.
(dict "root" $ "secret" <hub Secret name>)
*/}}
{{- define "jupyterhub.nativeAdminPasswords" -}}
{{- $auth := .root.Values.auth -}}
{{- if and (not $auth.adminUsers) (not $auth.native.openSignup) -}}
{{- fail "jupyterhub.auth.adminUsers is empty: with auth.type native an admin authorizes every sign-up. List one (its password is generated into the hub Secret) or set jupyterhub.auth.native.openSignup=true to let anyone in." -}}
{{- end -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace .secret | default dict -}}
{{- $raw := dig "data" "native-admin-passwords" "" $existing -}}
{{- $stored := dict -}}
{{- if $raw -}}
{{- $stored = $raw | b64dec | fromJson -}}
{{- end -}}
{{- $out := dict -}}
{{- range $name := $auth.adminUsers -}}
{{- if regexMatch "[, /]" $name -}}
{{- fail (printf "jupyterhub.auth.adminUsers: %q cannot be a native account name (no spaces, commas or slashes)" $name) -}}
{{- end -}}
{{- $password := get $stored $name -}}
{{- if not (and (kindIs "string" $password) (regexMatch "^[A-Za-z0-9]{32,}$" $password)) -}}
{{- $password = randAlphaNum 32 -}}
{{- end -}}
{{- $_ := set $out $name $password -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}
