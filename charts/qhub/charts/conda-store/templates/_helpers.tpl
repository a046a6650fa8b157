{{- /* conda-store subchart helpers. Names of this chart's own objects; shared names come from qhub.*. */}}

{{- /* Secret holding the generated passwords and keys of conda-store, its database, Redis and MinIO. */}}
{{- define "conda-store.secretName" -}}{{ include "qhub.condaStoreName" . }}{{- end -}}
{{- define "conda-store.configName" -}}{{ include "qhub.componentName" (dict "root" . "component" "conda-store-config") }}{{- end -}}
{{- define "conda-store.environmentsName" -}}{{ include "qhub.componentName" (dict "root" . "component" "conda-store-environments") }}{{- end -}}
{{- define "conda-store.postgresqlName" -}}{{ include "qhub.componentName" (dict "root" . "component" "conda-store-postgresql") }}{{- end -}}
{{- define "conda-store.redisName" -}}{{ include "qhub.componentName" (dict "root" . "component" "conda-store-redis") }}{{- end -}}
{{- define "conda-store.minioName" -}}{{ include "qhub.componentName" (dict "root" . "component" "conda-store-minio") }}{{- end -}}
{{- define "conda-store.workerName" -}}{{ include "qhub.componentName" (dict "root" . "component" "conda-store-worker") }}{{- end -}}
{{- /* ServiceAccount of the build pods (no RoleBinding), their NetworkPolicy and their pods' name prefix. */}}
{{- define "conda-store.buildName" -}}{{ include "qhub.componentName" (dict "root" . "component" "conda-store-build") }}{{- end -}}
{{- /* ValidatingAdmissionPolicy and its binding: cluster-scoped, so the release's namespace is part of the name. */}}
{{- define "conda-store.buildPolicyName" -}}{{ printf "%s-%s" .Release.Namespace (include "conda-store.buildName" .) }}{{- end -}}

{{- /* "true" when builds run in build pods: QHub's image (lockBackend rattler) carries the code that makes them;
the upstream image (conda-lock) installs in the worker. */}}
{{- define "conda-store.buildPods" -}}{{ if eq .Values.build.lockBackend "rattler" }}true{{ end }}{{- end -}}

{{- /* Where the build pods see the store and its package cache (the worker's paths: packages carry their prefix). */}}
{{- define "conda-store.storeDirectory" -}}/opt/conda-store{{- end -}}
{{- define "conda-store.pkgsDirectory" -}}/opt/conda-store/.pkgs{{- end -}}

{{- /* The build pod the worker creates for each build (qhub_conda_store.buildpod adds the name, the command and
its inputs, and the build's namespace folder read-write). Every field here is one the admission policy
(buildpod/validatingadmissionpolicy.yaml) checks. */}}
{{- define "conda-store.buildPodTemplate" -}}
apiVersion: v1
kind: Pod
metadata:
  labels:
    {{- include "qhub.labels" (dict "root" . "component" "conda-store-build") | nindent 4 }}
spec:
  serviceAccountName: {{ include "conda-store.buildName" . }}
  automountServiceAccountToken: false
  enableServiceLinks: false
  restartPolicy: Never
  activeDeadlineSeconds: {{ .Values.build.pod.timeoutSeconds }}
  securityContext:
    runAsNonRoot: true
    runAsUser: 1000
    runAsGroup: 100
    seccompProfile: {type: RuntimeDefault}
  {{- include "qhub.placement" (dict "root" . "group" .Values.worker.nodeGroup) | nindent 2 }}
  {{- include "qhub.imagePullSecrets" . | nindent 2 }}
  containers:
    - name: build
      image: {{ include "qhub.image" (dict "root" . "image" .Values.image) }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      command: [python3, -m, qhub_conda_store.buildpod]
      env:
        - {name: HOME, value: /tmp}
        - {name: CONDA_PKGS_DIRS, value: {{ include "conda-store.pkgsDirectory" . }}}
        - {name: PIP_NO_INDEX, value: "1"}
        - {name: PIP_NO_CACHE_DIR, value: "1"}
        - {name: PIP_DISABLE_PIP_VERSION_CHECK, value: "1"}
      securityContext:
        {{- include "qhub.containerSecurityContext" dict | nindent 8 }}
      resources:
        {{- toYaml .Values.build.pod.resources | nindent 8 }}
      volumeMounts:
        - {name: store, mountPath: {{ include "conda-store.pkgsDirectory" . }}, subPath: conda-store/.pkgs, readOnly: true}
        - {name: tmp, mountPath: /tmp}
  volumes:
    - name: store
      persistentVolumeClaim:
        claimName: {{ include "qhub.sharedPvcName" . }}
    - name: tmp
      emptyDir: {}
{{- end -}}

{{- /* Policy handed to conda_store_config.py as settings.json (no secrets, no addresses). */}}
{{- define "conda-store.settings" -}}
{{- $s := .Values.storage -}}
{{- $storage := dict "type" $s.type -}}
{{- if eq $s.type "minio" -}}
{{- $storage = dict "type" "minio" "endpoint" (printf "%s:9000" (include "conda-store.minioName" .)) "secure" false "bucket" "conda-store" "region" "us-east-1" -}}
{{- else if eq $s.type "s3" -}}
{{- $storage = dict "type" "s3" "endpoint" (required "conda-store.storage.s3.endpoint is required with storage.type s3" $s.s3.endpoint) "secure" $s.s3.secure "bucket" $s.s3.bucket "region" $s.s3.region -}}
{{- end -}}
{{- $settings := dict
  "urlPrefix" (index .Values.global.services "conda-store" "path")
  "port" 8080
  "permissions" .Values.permissions
  "build" .Values.build
  "storage" $storage
  "worker" (dict "concurrency" .Values.worker.concurrency)
  "buildPod" (dict "enabled" (include "conda-store.buildPods" . | eq "true") "timeoutSeconds" .Values.build.pod.timeoutSeconds "storeDirectory" (include "conda-store.storeDirectory" .) "pkgsDirectory" (include "conda-store.pkgsDirectory" .) "volume" "store" "subPath" "conda-store" "namePrefix" (include "conda-store.buildName" .) "podTemplate" (include "conda-store.buildPodTemplate" . | fromYaml))
  "hub" (dict "clientId" "service-conda-store" "authorizeUrl" (printf "%s/hub/api/oauth2/authorize" (include "qhub.publicUrl" .)) "oauthCallbackUrl" (include "qhub.serviceOauthCallback" (dict "root" . "service" "conda-store")))
-}}
{{- toPrettyJson $settings -}}
{{- end -}}

{{- /* Environment of the server and worker containers: addresses and secrets (never in the ConfigMap). */}}
{{- define "conda-store.env" -}}
- name: JUPYTERHUB_API_URL
  value: {{ include "qhub.hubApiUrl" . | quote }}
- name: JUPYTERHUB_API_TOKEN
  valueFrom:
    secretKeyRef: {name: {{ include "qhub.hubSecretName" . }}, key: token-conda-store}
- name: CONDA_STORE_TOKEN_SECRET
  valueFrom:
    secretKeyRef: {name: {{ include "conda-store.secretName" . }}, key: token-secret}
- name: HOME
  value: /home/conda
- name: CONDA_STORE_DIRECTORY
  value: /opt/conda-store
- name: CONDA_STORE_ENVIRONMENTS
  value: /opt/environments
{{- /* The package cache on the store's volume: build pods read it (read-only) after the worker downloaded. */}}
- name: CONDA_PKGS_DIRS
  value: {{ include "conda-store.pkgsDirectory" . }}
{{- if .Values.postgresql.internal }}
- name: POSTGRES_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ include "conda-store.secretName" . }}, key: postgresql-password}
- name: CONDA_STORE_DATABASE_URL
  value: {{ printf "postgresql+psycopg2://conda-store:$(POSTGRES_PASSWORD)@%s:5432/conda-store" (include "conda-store.postgresqlName" .) | quote }}
{{- else }}
- name: CONDA_STORE_DATABASE_URL
  valueFrom:
    secretKeyRef: {name: {{ required "conda-store.postgresql.externalSecret.name is required when postgresql.internal is false" .Values.postgresql.externalSecret.name }}, key: {{ .Values.postgresql.externalSecret.key }}}
{{- end }}
{{- if .Values.redis.internal }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ include "conda-store.secretName" . }}, key: redis-password}
- name: CONDA_STORE_REDIS_URL
  value: {{ printf "redis://:$(REDIS_PASSWORD)@%s:6379/0" (include "conda-store.redisName" .) | quote }}
{{- else }}
- name: CONDA_STORE_REDIS_URL
  valueFrom:
    secretKeyRef: {name: {{ required "conda-store.redis.externalSecret.name is required when redis.internal is false" .Values.redis.externalSecret.name }}, key: {{ .Values.redis.externalSecret.key }}}
{{- end }}
{{- if eq .Values.storage.type "minio" }}
- name: CONDA_STORE_S3_ACCESS_KEY
  valueFrom:
    secretKeyRef: {name: {{ include "conda-store.secretName" . }}, key: minio-user}
- name: CONDA_STORE_S3_SECRET_KEY
  valueFrom:
    secretKeyRef: {name: {{ include "conda-store.secretName" . }}, key: minio-password}
{{- else if eq .Values.storage.type "s3" }}
- name: CONDA_STORE_S3_ACCESS_KEY
  valueFrom:
    secretKeyRef: {name: {{ required "conda-store.storage.s3.existingSecret is required with storage.type s3" .Values.storage.s3.existingSecret }}, key: access-key}
- name: CONDA_STORE_S3_SECRET_KEY
  valueFrom:
    secretKeyRef: {name: {{ .Values.storage.s3.existingSecret }}, key: secret-key}
{{- end }}
{{- end -}}

{{- /* Egress from server and worker to the backing services of the chart (list items). */}}
{{- define "conda-store.backendEgress" -}}
{{- if .Values.postgresql.internal }}
- to:
    - podSelector:
        matchLabels:
          {{- include "qhub.selectorLabels" (dict "root" . "component" "conda-store-postgresql") | nindent 10 }}
  ports:
    - {protocol: TCP, port: 5432}
{{- end }}
{{- if .Values.redis.internal }}
- to:
    - podSelector:
        matchLabels:
          {{- include "qhub.selectorLabels" (dict "root" . "component" "conda-store-redis") | nindent 10 }}
  ports:
    - {protocol: TCP, port: 6379}
{{- end }}
{{- if eq .Values.storage.type "minio" }}
- to:
    - podSelector:
        matchLabels:
          {{- include "qhub.selectorLabels" (dict "root" . "component" "conda-store-minio") | nindent 10 }}
  ports:
    - {protocol: TCP, port: 9000}
{{- end }}
{{- if or (not .Values.postgresql.internal) (not .Values.redis.internal) (eq .Values.storage.type "s3") }}
{{- /* External database, Redis or bucket: their addresses are only known at run time. */}}
- to:
    - ipBlock: {cidr: 0.0.0.0/0, except: [169.254.169.254/32]}
  ports:
    - {protocol: TCP, port: 5432}
    - {protocol: TCP, port: 6379}
    - {protocol: TCP, port: 443}
    - {protocol: TCP, port: 9000}
{{- end }}
{{- end -}}

{{- /* Volumes shared by server and worker. */}}
{{- define "conda-store.volumes" -}}
- name: config
  configMap:
    name: {{ include "conda-store.configName" . }}
- name: environments
  configMap:
    name: {{ include "conda-store.environmentsName" . }}
- name: store
  persistentVolumeClaim:
    claimName: {{ include "qhub.sharedPvcName" . }}
- name: tmp
  emptyDir: {}
- name: home
  emptyDir: {}
{{- end -}}

{{- define "conda-store.volumeMounts" -}}
- {name: config, mountPath: /etc/conda-store, readOnly: true}
- {name: environments, mountPath: /opt/environments, readOnly: true}
- {name: store, mountPath: /opt/conda-store, subPath: conda-store}
- {name: tmp, mountPath: /tmp}
- {name: home, mountPath: /home/conda}
{{- end -}}

{{- /*
Probe command of the worker (a JSON list): Celery's remote-control ping, sent through the Redis broker
(CONDA_STORE_REDIS_URL, set on the container) to this pod's worker node celery@<hostname>. Succeeds only when the
worker process is consuming from the broker.
*/}}
{{- define "conda-store.workerPing" -}}
{{- $script := "import os, socket, sys; from celery import Celery; app = Celery(broker=os.environ['CONDA_STORE_REDIS_URL']); sys.exit(0 if app.control.ping(destination=['celery@' + socket.gethostname()], timeout=10) else 1)" -}}
{{- list "python" "-c" $script | toJson -}}
{{- end -}}

{{- /* Python run in an init container, 10 minutes at most: wait until the database answers and, when `table`
is given, until the server has created conda-store's tables (the last of them is `worker`). The server waits for
the database alone: started before PostgreSQL accepts connections it exits and counts a restart. */}}
{{- define "conda-store.waitForDatabase" -}}
import os, sys, time
import sqlalchemy as sa
table = {{ .table | default "" | quote }}
engine = sa.create_engine(os.environ["CONDA_STORE_DATABASE_URL"])
deadline = time.monotonic() + 600
while True:
    try:
        with engine.connect() as conn:
            if not table or sa.inspect(conn).has_table(table):
                break
            print("waiting for the conda-store server to create its tables", flush=True)
    except Exception as exc:
        print(f"waiting for the database: {exc.__class__.__name__}", flush=True)
    if time.monotonic() > deadline:
        sys.exit("the database was not ready within 10 minutes: see the logs of PostgreSQL and the conda-store server")
    time.sleep(2)
{{- end -}}

{{- /* The init container that runs conda-store.waitForDatabase; dict: root, name, table (optional). */}}
{{- define "conda-store.waitContainer" -}}
- name: {{ .name }}
  image: {{ include "qhub.image" (dict "root" .root "image" .root.Values.image) }}
  imagePullPolicy: {{ .root.Values.image.pullPolicy }}
  command: [python, -c, {{ include "conda-store.waitForDatabase" . | quote }}]
  env:
    {{- include "conda-store.env" .root | nindent 4 }}
  securityContext:
    {{- include "qhub.containerSecurityContext" dict | nindent 4 }}
  resources:
    requests: {cpu: 10m, memory: 64Mi}
    limits: {cpu: 200m, memory: 256Mi}
{{- end -}}
