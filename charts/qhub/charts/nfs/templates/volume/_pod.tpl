{{- /*
The volume Job's pod template: waits until the NFS server's Service has its ClusterIP and makes the shared
PersistentVolume name it (files/nfs_volume.py). Pod Security "restricted", in the NFS server's own image (its
Debian Python 3 is all the program needs), on the general node group. Its name hashes this template
(nfs.volumeJobName), so it lives in a partial the Job and the hash both include.
*/}}
{{- define "nfs.volumeJobPod" -}}
metadata:
  labels:
    {{- include "qhub.labels" (dict "root" $ "component" "nfs-volume") | nindent 4 }}
  annotations:
    checksum/program: {{ .Files.Get "files/nfs_volume.py" | sha256sum }}
spec:
  serviceAccountName: {{ include "nfs.volumeName" . }}
  # The one pod of the chart that talks to the API server as this ServiceAccount.
  automountServiceAccountToken: true
  restartPolicy: Never
  {{- include "qhub.imagePullSecrets" . | nindent 2 }}
  {{- include "qhub.placement" (dict "root" $ "group" "general") | nindent 2 }}
  securityContext:
    {{- include "qhub.podSecurityContext" (dict "uid" 65532 "gid" 65532) | nindent 4 }}
  containers:
    - name: nfs-volume
      image: {{ include "qhub.image" (dict "root" $ "image" .Values.image) }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      command: [python3, -I, -B, /opt/qhub/nfs_volume.py]
      env:
        - name: QHUB_NFS_SERVICE
          value: {{ include "nfs.serviceHost" . }}
        # The volumes to make, a JSON list (the release's shared volume, and the Dask clusters' one).
        - name: QHUB_NFS_PV
          value: {{ include "nfs.volumeJobPv" . | quote }}
        # Seconds the program waits for the Service's address and the API server, within the Job's deadline.
        - name: QHUB_NFS_TIMEOUT
          value: "240"
      securityContext:
        {{- include "qhub.containerSecurityContext" dict | nindent 8 }}
      resources:
        requests:
          cpu: 10m
          memory: 32Mi
        limits:
          cpu: 200m
          memory: 96Mi
      terminationMessagePolicy: FallbackToLogsOnError
      volumeMounts:
        - name: program
          mountPath: /opt/qhub
          readOnly: true
  volumes:
    - name: program
      configMap:
        name: {{ include "nfs.volumeName" . }}
{{- end -}}
