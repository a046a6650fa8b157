{{- /* kubessh subchart helpers. */}}
{{- /* Deployment, Service, ServiceAccount, Role, RoleBinding and NetworkPolicy of the gateway */}}
{{- define "kubessh.name" -}}{{ include "qhub.kubesshName" . }}{{- end -}}
{{- /* ConfigMap with the gateway's settings */}}
{{- define "kubessh.configName" -}}{{ include "qhub.componentName" (dict "root" . "component" "kubessh-config") }}{{- end -}}
{{- /* Secret that keeps the SSH host key (filled by the gateway, never by the chart) */}}
{{- define "kubessh.hostKeySecretName" -}}{{ include "qhub.componentName" (dict "root" . "component" "kubessh-host-key") }}{{- end -}}

{{- /* Settings file of the gateway (qhub_ssh.config.Settings); the service token comes from the environment. */}}
{{- define "kubessh.settings" -}}
{{- toPrettyJson (dict
  "hubApiUrl" (include "qhub.hubApiUrl" .)
  "proxyUrl" (printf "http://%s:%v" (include "qhub.proxyPublicName" .) .Values.global.services.jupyterhub.port)
  "sshPort" 8022
  "sftpPort" 8023
  "hostKeySecret" (include "kubessh.hostKeySecretName" .)
  "serverStartTimeout" .Values.serverStartTimeout
  "loginTimeout" .Values.loginTimeout
  "failedLoginWindow" .Values.failedLogins.windowSeconds
  "maxFailedLoginsPerSource" .Values.failedLogins.perSource
  "maxFailedLoginsPerUser" .Values.failedLogins.perUser) -}}
{{- end -}}
