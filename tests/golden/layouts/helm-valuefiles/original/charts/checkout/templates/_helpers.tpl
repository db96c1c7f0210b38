{{- define "checkout.labels" -}}
app.kubernetes.io/name: checkout
app.kubernetes.io/part-of: shop
{{- end }}
