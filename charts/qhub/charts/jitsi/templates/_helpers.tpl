{{- /* jitsi subchart helpers. */}}
{{- define "jitsi.name" -}}{{ include "qhub.componentName" (dict "root" .root "component" (printf "jitsi-%s" .component)) }}{{- end -}}
{{- define "jitsi.secretName" -}}{{ include "qhub.componentName" (dict "root" . "component" "jitsi") }}{{- end -}}
{{- define "jitsi.publicUrl" -}}
{{- $host := required "jitsi.host is required when jitsi is enabled (Jitsi web needs a host name of its own)" .Values.host -}}
{{- if or .Values.web.ingress.tlsSecretName (ne .Values.global.tls.mode "none") }}https{{ else }}http{{ end }}://{{ $host }}
{{- end -}}

{{- /* Pod-level parts every Jitsi pod shares. (dict "root" $ "component" "web") */}}
{{- define "jitsi.podSpecCommon" -}}
automountServiceAccountToken: false
{{- include "qhub.placement" (dict "root" .root "group" .root.Values.nodeGroup) }}
{{- include "qhub.imagePullSecrets" .root }}
{{- end -}}

{{- /* XMPP settings shared by web, prosody, jicofo and jvb (env list items). */}}
{{- define "jitsi.xmppEnv" -}}
{{- $d := .Values.xmppDomain -}}
- {name: XMPP_DOMAIN, value: {{ $d | quote }}}
- {name: XMPP_AUTH_DOMAIN, value: {{ printf "auth.%s" $d | quote }}}
- {name: XMPP_MUC_DOMAIN, value: {{ printf "muc.%s" $d | quote }}}
- {name: XMPP_INTERNAL_MUC_DOMAIN, value: {{ printf "internal-muc.%s" $d | quote }}}
- {name: XMPP_GUEST_DOMAIN, value: {{ printf "guest.%s" $d | quote }}}
- {name: XMPP_SERVER, value: {{ include "jitsi.name" (dict "root" . "component" "prosody") | quote }}}
- {name: XMPP_BOSH_URL_BASE, value: {{ printf "http://%s:5280" (include "jitsi.name" (dict "root" . "component" "prosody")) | quote }}}
- {name: PUBLIC_URL, value: {{ include "jitsi.publicUrl" . | quote }}}
- {name: ENABLE_AUTH, value: "1"}
- {name: AUTH_TYPE, value: jwt}
- {name: ENABLE_GUESTS, value: "0"}
- {name: ENABLE_XMPP_WEBSOCKET, value: "1"}
- {name: TZ, value: UTC}
{{- end -}}

{{- /* A secretKeyRef env var from the generated Jitsi Secret. (dict "root" $ "name" "JVB_AUTH_PASSWORD" "key" "jvb-auth-password") */}}
{{- define "jitsi.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef: {name: {{ include "jitsi.secretName" .root }}, key: {{ .key }}}
{{- end -}}

{{- /* Egress to prosody's client port (list item). */}}
{{- define "jitsi.prosodyEgress" -}}
- to:
    - podSelector:
        matchLabels:
          {{- include "qhub.selectorLabels" (dict "root" . "component" "jitsi-prosody") | nindent 10 }}
  ports:
    - {protocol: TCP, port: 5222}
{{- end -}}
