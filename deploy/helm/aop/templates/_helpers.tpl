{{/*
Names. Every object is named after the release (aop.fullname); a zone's server set is
"<fullname>-<zone name>": its StatefulSet, its headless Service (the StatefulSet's
serviceName) and its pods "<fullname>-<zone name>-<ordinal>". Pod names become DNS labels,
so a set's name stays within 63 characters less the ordinal suffix.
*/}}
{{- define "aop.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "aop.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "aop.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The zone entry named NAME: (list $ NAME). Fails naming the zones there are. */}}
{{- define "aop.zone" -}}
{{- $root := index . 0 -}}
{{- $name := index . 1 -}}
{{- $found := dict -}}
{{- range $root.Values.zones -}}
{{- if eq .name $name -}}{{- $found = . -}}{{- end -}}
{{- end -}}
{{- if not $found -}}
{{- $names := list -}}
{{- range $root.Values.zones -}}{{- $names = append $names .name -}}{{- end -}}
{{- fail (printf "no zone named %q in .Values.zones (there are: %s)" $name (join ", " $names)) -}}
{{- end -}}
{{- toJson $found -}}
{{- end -}}

{{/* "http" or "https": https once TLS is on (docs/protocol.md 8.1). */}}
{{- define "aop.scheme" -}}
{{- if .Values.tls.enabled -}}https{{- else -}}http{{- end -}}
{{- end -}}

{{/* The headless Service's DNS name of a zone's set: (list $ ZONE_NAME). */}}
{{- define "aop.setHost" -}}
{{- $root := index . 0 -}}
{{- printf "%s-%s.%s.svc.%s" (include "aop.fullname" $root) (index . 1) $root.Release.Namespace $root.Values.clusterDomain -}}
{{- end -}}

{{/* The gRPC URL of one pod of a zone's set: (list $ ZONE_NAME ORDINAL). */}}
{{- define "aop.podURL" -}}
{{- $root := index . 0 -}}
{{- $set := printf "%s-%s" (include "aop.fullname" $root) (index . 1) -}}
{{- printf "%s://%s-%d.%s:%d" (include "aop.scheme" $root) $set (int (index . 2)) (include "aop.setHost" (list $root (index . 1))) (int $root.Values.ports.grpc) -}}
{{- end -}}

{{/*
A zone's servers as a TOML inline array, primary (ordinal 0) first, one entry per replica:
(list $ ZONE_NAME). For zone files in values, as `servers = {{ include "aop.servers" (list $
"finance-acme") }}` in the zone's [zone] table and in a parent's [[delegation]].
*/}}
{{- define "aop.servers" -}}
{{- $root := index . 0 -}}
{{- $zone := include "aop.zone" . | fromJson -}}
{{- $entries := list -}}
{{- range $i := until (int $zone.replicas) -}}
{{- $entries = append $entries (printf "{ grpc = %q }" (include "aop.podURL" (list $root $zone.name $i))) -}}
{{- end -}}
[{{ join ", " $entries }}]
{{- end -}}

{{/* Root hints: .Values.roots, else every server of the zone whose origin is ".". */}}
{{- define "aop.roots" -}}
{{- $roots := list -}}
{{- if .Values.roots -}}
{{- $roots = .Values.roots -}}
{{- else -}}
{{- range $zone := .Values.zones -}}
{{- if eq $zone.origin "." -}}
{{- range $i := until (int $zone.replicas) -}}
{{- $roots = append $roots (include "aop.podURL" (list $ $zone.name $i)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson $roots -}}
{{- end -}}

{{/* Pod and container security: non-root, read-only root, no capabilities. */}}
{{- define "aop.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
fsGroup: {{ .Values.securityContext.runAsGroup }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "aop.containerSecurityContext" -}}
runAsNonRoot: true
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/* The MCP endpoint URL of a demo agent of .Values.agents: (list $ NAME). */}}
{{- define "aop.agentURL" -}}
{{- $root := index . 0 -}}
{{- $name := index . 1 -}}
{{- $known := list -}}
{{- range $root.Values.agents -}}{{- $known = append $known .name -}}{{- end -}}
{{- if not (has $name $known) -}}
{{- fail (printf "no agent named %q in .Values.agents (there are: %s)" $name (join ", " $known)) -}}
{{- end -}}
{{- printf "http://%s-agent-%s.%s.svc.%s:%d/mcp" (include "aop.fullname" $root) $name $root.Release.Namespace $root.Values.clusterDomain (int $root.Values.agentPort) -}}
{{- end -}}
