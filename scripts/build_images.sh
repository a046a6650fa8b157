#!/usr/bin/env bash
# Build QHub's platform images (images/<name>/) with `qhubctl images build`; `make images` runs this.
#
#   REGISTRY=host[:port][/namespace]  push each image there as qhub/<name>:$TAG (default: no push; each image is
#                                     written as an OCI layout under $OUT/<name>)
#   TAG=...                           image tag (default: appVersion of charts/qhub/Chart.yaml)
#   IMAGES="jupyterlab dask-worker"   which images (default: all platform images)
#   OUT=build/images                  where OCI layouts go without REGISTRY
#   QHUB_CHANNEL_ALIAS=URL|DIR        where named channels (conda-forge) are read from: a mirror URL or a
#                                     directory with one folder per channel; default https://conda.anaconda.org/
#   QHUBCTL=path                      the qhubctl to run (default: .venv/bin/qhubctl, else qhubctl on PATH)
#
# Specs with an up-to-date environment.lock build from the lock (no solve); others are solved and their lock
# files are written next to them. A channel that cannot be reached stops the build with a message naming it.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

ALL="jupyterhub jupyterlab jupyterlab-gpu dask-worker dask-worker-gpu dask-gateway-server kubessh jitsi-token"
IMAGES=${IMAGES:-$ALL}
OUT=${OUT:-build/images}
if [[ -z "${TAG:-}" ]]; then
  TAG=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' charts/qhub/Chart.yaml)
fi
[[ -n "$TAG" ]] || { echo "build_images: no TAG and no appVersion in charts/qhub/Chart.yaml" >&2; exit 1; }
if [[ -z "${QHUBCTL:-}" ]]; then
  if [[ -x .venv/bin/qhubctl ]]; then QHUBCTL=.venv/bin/qhubctl; else QHUBCTL=qhubctl; fi
fi

failed=()
for name in $IMAGES; do
  [[ -f "images/$name/environment.yaml" ]] || { echo "build_images: images/$name is not an image spec" >&2; exit 1; }
  echo "== qhub/$name:$TAG" >&2
  if [[ -n "${REGISTRY:-}" ]]; then
    args=(--push "$REGISTRY")
  else
    args=(--oci-layout "$OUT/$name")
  fi
  if ! "$QHUBCTL" images build "images/$name" --tag "qhub/$name:$TAG" "${args[@]}"; then
    failed+=("$name")
    # every image reads the same channels: when one is unreachable the others fail the same way
    break
  fi
done

if ((${#failed[@]})); then
  echo "build_images: failed: ${failed[*]} (see the error above)" >&2
  exit 1
fi
