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

{{- /*
Name of the second PersistentVolume on the same export, bound to the claim of the same name in the Dask clusters'
namespace (global.daskClusters): a claim is namespaced, so Dask pods there need their own.
*/}}
{{- define "nfs.daskPvName" -}}
{{- printf "%s-%s" (include "qhub.daskNamespace" .) (include "qhub.sharedPvcName" .) | trunc 253 | trimSuffix "-" -}}
{{- end -}}

{{- /* The shared volumes of the release as (name, claim namespace) pairs: the release's own, and the Dask clusters'. */}}
{{- define "nfs.sharedVolumes" -}}
{{- $volumes := list (list (include "nfs.pvName" .) .Release.Namespace) -}}
{{- if .Values.global.daskClusters.enabled -}}
{{- $volumes = append $volumes (list (include "nfs.daskPvName" .) (include "qhub.daskNamespace" .)) -}}
{{- end -}}
{{- toJson $volumes -}}
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
The NFS server's ClusterIP when it is known at render time, used by both the Service (spec.clusterIP) and the
PersistentVolume: nfs.service.clusterIP if set; else the IP of the existing Service (upgrades keep it); else a free
address in the static band of the ServiceCIDR "kubernetes". "" when there is no cluster to ask (helm template,
--dry-run, GitOps renderers, a cluster older than 1.33): the Service then gets its address from the cluster, and
the volume Job (templates/volume/) makes the PersistentVolume once it has one.
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
{{- if $cidr -}}
{{- $services := lookup "v1" "Service" "" "" | default dict -}}
{{- include "nfs.staticBandIp" (dict "cidr" $cidr "services" $services "seed" (printf "%s/%s" (include "nfs.namespace" .) .Release.Name)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- /*
The shared PersistentVolume's spec, naming the NFS server at (dict "root" $ "server" "<ip>"), reserved for the
shared claim in (optional) "namespace" (default: the release's). The one definition of the volume: shared/pv.yaml
and dask/pv.yaml render it with the address known at render time, the volume Job gets it as JSON with an empty
server and fills in the Service's address.
*/}}
{{- define "nfs.sharedPvSpec" -}}
{{- $v := .root.Values -}}
capacity:
  storage: {{ $v.persistence.size }}
accessModes: [ReadWriteMany]
# Deleting the PV object never touches the data: it lives on the server's backing disk.
persistentVolumeReclaimPolicy: Retain
storageClassName: ""
# nosuid and nodev always: no setuid program or device file on the share takes effect in any pod.
mountOptions:
  {{- toYaml (concat (without $v.mountOptions "suid" "dev" "nosuid" "nodev") (list "nosuid" "nodev")) | nindent 2 }}
# Reserved for the release's shared PVC, so no other claim binds it.
claimRef:
  namespace: {{ .namespace | default .root.Release.Namespace }}
  name: {{ include "qhub.sharedPvcName" .root }}
nfs:
  # By IP: the kubelet mounts from the node, where Service names do not resolve.
  server: {{ .server | default "\"\"" }}
  path: /
{{- end -}}

{{- /* Name of the volume Job's ServiceAccount, ConfigMap and NetworkPolicy (the Job adds a content hash). */}}
{{- define "nfs.volumeName" -}}
{{- include "qhub.componentName" (dict "root" . "component" "nfs-volume") -}}
{{- end -}}

{{- /* Name of the volume Job's ClusterRole and ClusterRoleBinding: cluster-wide, so namespaced by hand. */}}
{{- define "nfs.volumeRbacName" -}}
{{- printf "%s-%s" .Release.Namespace (include "nfs.volumeName" .) | trunc 253 | trimSuffix "-" -}}
{{- end -}}

{{- /*
The PersistentVolumes the volume Job makes, as a JSON list (server still empty): the same names, labels and specs
as shared/pv.yaml and dask/pv.yaml, plus Helm's ownership annotations, so that a later `helm upgrade` that can ask the cluster (and
renders shared/pv.yaml) adopts it into the release instead of refusing an object it does not own, and Argo CD's
(never pruned, not counted as out of sync): with label tracking, Argo CD takes it for one of the application's own
objects (app.kubernetes.io/instance), which the rendered manifest lacks.
*/}}
{{- define "nfs.volumeJobPv" -}}
{{- $volumes := list -}}
{{- range (include "nfs.sharedVolumes" . | fromJsonArray) -}}
{{- $volumes = append $volumes (dict
  "apiVersion" "v1"
  "kind" "PersistentVolume"
  "metadata" (dict
    "name" (index . 0)
    "labels" (include "qhub.labels" (dict "root" $ "component" "shared") | fromYaml)
    "annotations" (dict
      "meta.helm.sh/release-name" $.Release.Name
      "meta.helm.sh/release-namespace" $.Release.Namespace
      "argocd.argoproj.io/sync-options" "Prune=false"
      "argocd.argoproj.io/compare-options" "IgnoreExtraneous"))
  "spec" (include "nfs.sharedPvSpec" (dict "root" $ "server" "" "namespace" (index . 1)) | fromYaml)) -}}
{{- end -}}
{{- toJson $volumes -}}
{{- end -}}

{{- /*
Name of the volume Job: <release>-nfs-volume-<hash of its pod template> (at most 40 + 11 + 9 characters). A Job's
pod template cannot change, so a Job that would run anything else (another volume, program, image, placement) is a
new Job under a new name, which Helm, Argo CD or `kubectl apply` create while the old one is pruned (or left
finished); the same content keeps the same name, so applying the same render again changes nothing.
*/}}
{{- define "nfs.volumeJobName" -}}
{{- printf "%s-%s" (include "nfs.volumeName" .) (include "nfs.volumeJobPod" . | sha256sum | trunc 8) -}}
{{- end -}}

{{- /* The server's Service as its pods resolve it through the cluster's DNS: <name>.<namespace>.svc. */}}
{{- define "nfs.serviceHost" -}}
{{- printf "%s.%s.svc" (include "nfs.serverName" .) (include "nfs.namespace" .) -}}
{{- end -}}
