#!/usr/bin/env bash
# Push the packaged chart to an OCI registry; `make chart-push` runs this after `make package`.
#
#   CHART_REPO=oci://host[:port]/path   where the chart goes: oci://host[:port]/path/qhub:<chart version>
#                                       (default: oci://$REGISTRY/charts, next to the images `make images` pushes)
#   REGISTRY=host[:port][/namespace]    the images' registry, for the default CHART_REPO
#   DIST=dist                           where `make package` wrote qhub-<chart version>.tgz
#   QHUB_REGISTRY_USERNAME, QHUB_REGISTRY_PASSWORD
#                                       log in first (the credentials `make images` pushes with); the login goes to a
#                                       temporary Helm registry config, removed afterwards, never to the user's own
#
# Loopback registries (127.0.0.1, localhost) are spoken to over plain HTTP, others over HTTPS.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
fail() { echo "push_chart: $*" >&2; exit 1; }

version=$(sed -n 's/^version: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' charts/qhub/Chart.yaml)
[[ -n $version ]] || fail "no version in charts/qhub/Chart.yaml"
archive=${DIST:-dist}/qhub-$version.tgz
[[ -f $archive ]] || fail "$archive is missing: run \`make package\` first"

repo=${CHART_REPO:-}
if [[ -z $repo ]]; then
  [[ -n ${REGISTRY:-} ]] ||
    fail "set CHART_REPO=oci://<registry>/<path> (or REGISTRY=<registry>, for oci://<registry>/charts)"
  repo=oci://${REGISTRY%/}/charts
fi
[[ $repo == oci://?* ]] || fail "CHART_REPO=$repo is not an oci:// reference (write oci://<registry>/<path>)"
host=${repo#oci://}
host=${host%%/*}

plain=()
case $host in
  127.0.0.1 | 127.0.0.1:* | localhost | localhost:*) plain=(--plain-http) ;;
esac

config=$(mktemp)
trap 'rm -f "$config"' EXIT
if [[ -n ${QHUB_REGISTRY_USERNAME:-} ]]; then
  [[ -n ${QHUB_REGISTRY_PASSWORD:-} ]] || fail "QHUB_REGISTRY_USERNAME is set but QHUB_REGISTRY_PASSWORD is empty"
  printf '%s' "$QHUB_REGISTRY_PASSWORD" |
    helm registry login "$host" --registry-config "$config" --username "$QHUB_REGISTRY_USERNAME" \
      --password-stdin "${plain[@]}"
fi
helm push "$archive" "$repo" --registry-config "$config" "${plain[@]}"
