{{- /*
A helm test Pod that GETs one URL with Python's urllib (the hub image has Python) and checks it answers 200
with a JSON object holding `key`. Tiny, non-root, read-only, no service-account token, on the general group.
(dict "root" $ "name" "hub-api" "url" "http://..." "key" "version" "access" (list "hub"))
*/}}
{{- define "qhub.testProbePod" -}}
{{- $root := .root }}
apiVersion: v1
kind: Pod
metadata:
  name: {{ include "qhub.componentName" (dict "root" $root "component" (printf "test-%s" .name)) }}
  labels:
    {{- include "qhub.labels" (dict "root" $root "component" (printf "test-%s" .name)) | nindent 4 }}
    {{- range .access }}
    qhub.dev/access-{{ . }}: "true"
    {{- end }}
  annotations:
    helm.sh/hook: test
    helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  {{- with include "qhub.imagePullSecrets" $root | trim }}{{ . | nindent 2 }}{{ end }}
  {{- include "qhub.placement" (dict "root" $root "group" "general") | trim | nindent 2 }}
  securityContext:
    {{- include "qhub.podSecurityContext" (dict "root" $root "uid" 65534 "gid" 65534) | nindent 4 }}
  containers:
    - name: probe
      image: {{ include "qhub.image" (dict "root" $root "image" $root.Values.jupyterhub.hub.image) }}
      command:
        - python3
        - -c
        - |
          import json, sys, time, urllib.request
          url, key = sys.argv[1], sys.argv[2]
          for attempt in range(10):
              try:
                  with urllib.request.urlopen(url, timeout=5) as r:
                      body = json.load(r)
                  if r.status == 200 and key in body:
                      print(f"{url} answered: {key}={body[key]}")
                      sys.exit(0)
                  print(f"{url}: unexpected answer {r.status} {body}")
              except Exception as e:
                  print(f"{url}: {e}")
              time.sleep(3)
          sys.exit(1)
        - {{ .url | quote }}
        - {{ .key | quote }}
      env:
        - name: PYTHONDONTWRITEBYTECODE
          value: "1"
      securityContext:
        {{- include "qhub.containerSecurityContext" (dict) | nindent 8 }}
      resources:
        requests: {cpu: 10m, memory: 32Mi}
        limits: {cpu: 200m, memory: 128Mi}
{{- end -}}
