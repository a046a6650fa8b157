{{- /* kubessh subchart helpers. */}}
{{- define "kubessh.name" -}}{{ include "qhub.kubesshName" . }}{{- end -}}
{{- define "kubessh.configName" -}}{{ include "qhub.componentName" (dict "root" . "component" "kubessh-config") }}{{- end -}}

{{- /* Settings file of the gateway (qhub_ssh.config.Settings); the service token comes from the environment. */}}
{{- define "kubessh.settings" -}}
{{- toPrettyJson (dict
  "hubApiUrl" (printf "http://%s:8081/hub/api" (include "qhub.hubName" .))
  "proxyUrl" (printf "http://%s:80" (include "qhub.proxyPublicName" .))
  "sshPort" 8022
  "sftpPort" 8023
  "hostKeyPath" "/etc/qhub-ssh/keys/ssh_host_ed25519_key"
  "homeRoot" "/mnt/home"
  "homeUid" 1000
  "homeGid" 100
  "serverStartTimeout" .Values.serverStartTimeout
  "loginTimeout" .Values.loginTimeout) -}}
{{- end -}}
