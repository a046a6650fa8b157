{{- /* Names and the server address of the nfs subchart. */}}

{{- /* Namespace of the server side (Service, StatefulSet, backing PVC). */}}
{{- define "nfs.namespace" -}}
{{- .Values.server.namespace | default .Release.Namespace -}}
{{- end -}}

{{- /* Name of the server's Service, StatefulSet and ConfigMap. */}}
{{- define "nfs.serverName" -}}
{{- include "qhub.componentName" (dict "root" . "component" "nfs") -}}
{{- end -}}

{{- /* Name of the backing ReadWriteOnce PVC. */}}
{{- define "nfs.dataPvcName" -}}
{{- include "qhub.componentName" (dict "root" . "component" "nfs-data") -}}
{{- end -}}

{{- /* Name of the cluster-scoped PersistentVolume: namespaced by hand, since PV names are cluster-wide. */}}
{{- define "nfs.pvName" -}}
{{- printf "%s-%s" .Release.Namespace (include "qhub.sharedPvcName" .) | trunc 253 | trimSuffix "-" -}}
{{- end -}}

{{- /* 32-bit integer of a dotted IPv4 address. */}}
{{- define "nfs.ipToInt" -}}
{{- $o := splitList "." . -}}
{{- add (mul (atoi (index $o 0)) 16777216) (mul (atoi (index $o 1)) 65536) (mul (atoi (index $o 2)) 256) (atoi (index $o 3)) -}}
{{- end -}}

{{- /* Dotted IPv4 address of a 32-bit integer. */}}
{{- define "nfs.intToIp" -}}
{{- $n := int64 . -}}
{{- printf "%d.%d.%d.%d" (div $n 16777216) (mod (div $n 65536) 256) (mod (div $n 256) 256) (mod $n 256) -}}
{{- end -}}

{{- /*
An unused address in the static band of the IPv4 Service CIDR (the low addresses the API server never hands out
on its own: min(max(16, size/16), 256) of them). The first candidate is derived from namespace and release, so
renders are repeatable; offsets 0 (network), 1 (kubernetes.default) and 10 (cluster DNS by convention) and
addresses other Services hold are skipped.
*/}}
{{- define "nfs.staticBandIp" -}}
{{- $cidrs := dig "spec" "cidrs" list .cidr -}}
{{- $v4 := "" -}}
{{- range $cidrs }}{{ if and (not $v4) (not (contains ":" .)) }}{{ $v4 = . }}{{ end }}{{ end -}}
{{- if not $v4 -}}
{{- fail "nfs: the cluster's ServiceCIDR \"kubernetes\" has no IPv4 range; set nfs.service.clusterIP to a free address of your Service CIDR" -}}
{{- end -}}
{{- $parts := splitList "/" $v4 -}}
{{- $base := include "nfs.ipToInt" (index $parts 0) | atoi -}}
{{- $size := 1 -}}
{{- range until (sub 32 (atoi (index $parts 1)) | int) }}{{ $size = mul $size 2 }}{{ end -}}
{{- $band := min (max 16 (div $size 16)) 256 -}}
{{- $used := dict -}}
{{- range (dig "items" list .services) }}{{ $_ := set $used (dig "spec" "clusterIP" "" .) true }}{{ end -}}
{{- $start := mod (atoi (adler32sum .seed)) (sub $band 2) -}}
{{- $chosen := "" -}}
{{- range $i := until (int (sub $band 2)) -}}
{{- $off := add 2 (mod (add $start $i) (sub $band 2)) -}}
{{- $ip := include "nfs.intToIp" (add $base $off) -}}
{{- if and (not $chosen) (ne (int $off) 10) (not (hasKey $used $ip)) }}{{ $chosen = $ip }}{{ end -}}
{{- end -}}
{{- if not $chosen -}}
{{- fail (printf "nfs: every address of the static band of %s is taken; set nfs.service.clusterIP" $v4) -}}
{{- end -}}
{{- $chosen -}}
{{- end -}}

{{- /*
The NFS server's ClusterIP, used by both the Service (spec.clusterIP) and the PersistentVolume:
nfs.service.clusterIP if set; else the IP of the existing Service (upgrades keep it); else a free address in the
static band of the ServiceCIDR "kubernetes"; else (no cluster to ask, e.g. helm template) fail.
*/}}
{{- define "nfs.serverIP" -}}
{{- if .Values.service.clusterIP -}}
{{- .Values.service.clusterIP -}}
{{- else -}}
{{- $svc := lookup "v1" "Service" (include "nfs.namespace" .) (include "nfs.serverName" .) | default dict -}}
{{- $ip := dig "spec" "clusterIP" "" $svc -}}
{{- if and $ip (ne $ip "None") -}}
{{- $ip -}}
{{- else -}}
{{- $cidr := lookup "networking.k8s.io/v1" "ServiceCIDR" "" "kubernetes" | default dict -}}
{{- if not $cidr -}}
{{- fail "nfs: cannot choose the NFS server's ClusterIP without a cluster to ask (helm template, --dry-run, or a cluster older than 1.33 without the ServiceCIDR \"kubernetes\"). Set nfs.service.clusterIP to a free address of your Service CIDR, or disable the in-cluster server (nfs.enabled=false) and set sharedStorage.existingStorageClass." -}}
{{- end -}}
{{- $services := lookup "v1" "Service" "" "" | default dict -}}
{{- include "nfs.staticBandIp" (dict "cidr" $cidr "services" $services "seed" (printf "%s/%s" (include "nfs.namespace" .) .Release.Name)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
