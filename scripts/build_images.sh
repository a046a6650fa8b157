#!/usr/bin/env bash
# Build QHub's images (images/<name>/) with `qhubctl images build`; `make images` runs this.
#
#   REGISTRY=host[:port][/namespace]  push each image there as qhub/<name>:<tag> (default: no push; each image is
#                                     written as an OCI layout under $OUT/<name>)
#   TAG=...                           tag of the platform images (default: appVersion of charts/qhub/Chart.yaml);
#                                     specs with a `version:` in image.yaml (node images, upstream programs) keep
#                                     theirs (`qhubctl images tag images/<name> --app-version $TAG` decides)
#   IMAGES="jupyterlab dask-worker"   which images; the words `platform`, `gpu` and `node` stand for the sets
#                                     below (default: platform gpu, every image the chart names)
#   OUT=build/images                  where OCI layouts go without REGISTRY
#   QHUB_CHANNEL_ALIAS=URL|DIR        where named channels (conda-forge) are read from: a mirror URL or a
#                                     directory with one folder per channel; default https://conda.anaconda.org/
#   QHUBCTL=path                      the qhubctl to run (default: .venv/bin/qhubctl, else qhubctl on PATH)
#
# Every image here is a system spec (image.yaml with `kind: system`): built from Debian packages, PyPI and npm lock
# files and Go modules, pinned in the spec directory and its system.lock.json. A conda spec (environment.yaml, a
# user environment's image) is built from conda channels, solved or from its environment.lock. Each image's build
# time, size and digest are printed at the end.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

# The images the chart's values name by default: the platform, and the GPU profiles' variants of the user and worker
# images (CUDA 12 from PyPI; about 1 GB each compressed, most of it cuBLAS, docs/images.md).
PLATFORM_IMAGES="jupyterhub jupyterlab dask-worker dask-gateway-server traefik kubessh jitsi-token conda-store nfs-server backup"
GPU_IMAGES="jupyterlab-gpu dask-worker-gpu"
# What a real Kubernetes node needs besides the platform: the pod sandbox, cluster DNS, local volumes and the
# volume helper.
NODE_IMAGES="pause coredns local-path-provisioner busybox"
words=${IMAGES:-platform gpu}
IMAGES=""
for word in $words; do
  case $word in
    platform) IMAGES+=" $PLATFORM_IMAGES" ;;
    node) IMAGES+=" $NODE_IMAGES" ;;
    gpu) IMAGES+=" $GPU_IMAGES" ;;
    *) IMAGES+=" $word" ;;
  esac
done
OUT=${OUT:-build/images}
if [[ -z "${TAG:-}" ]]; then
  TAG=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' charts/qhub/Chart.yaml)
fi
[[ -n "$TAG" ]] || { echo "build_images: no TAG and no appVersion in charts/qhub/Chart.yaml" >&2; exit 1; }
if [[ -z "${QHUBCTL:-}" ]]; then
  if [[ -x .venv/bin/qhubctl ]]; then QHUBCTL=.venv/bin/qhubctl; else QHUBCTL=qhubctl; fi
fi

is_system() {
  [[ ! -f "images/$1/environment.yaml" && -f "images/$1/image.yaml" ]] &&
    grep -Eq '^kind: *"?system"?[[:space:]]*(#.*)?$' "images/$1/image.yaml"
}

log=$(mktemp)
trap 'rm -f "$log"' EXIT
failed=()
summary=()
for name in $IMAGES; do
  if is_system "$name"; then
    ref=$("$QHUBCTL" images tag "images/$name" --app-version "$TAG")
  elif [[ -f "images/$name/environment.yaml" ]]; then
    ref="qhub/$name:$TAG"
  else
    echo "build_images: images/$name is not an image spec" >&2
    exit 1
  fi
  echo "== $ref" >&2
  if [[ -n "${REGISTRY:-}" ]]; then
    args=(--push "$REGISTRY")
  else
    args=(--oci-layout "$OUT/$name")
  fi
  start=$(date +%s%N)
  # stderr (progress and the "built" line) goes to the terminal and to $log; stdout stays stdout
  if ! { "$QHUBCTL" images build "images/$name" --tag "$ref" "${args[@]}" 2>&1 1>&3 | tee "$log" >&2; } 3>&1; then
    failed+=("$name")
    # conda images all read the same channels: when one is unreachable the others fail the same way
    is_system "$name" || break
    continue
  fi
  ms=$((($(date +%s%N) - start) / 1000000))
  # qhubctl reports "built <ref> <digest> (<n> layers, <bytes> bytes, <s>s)" on standard error
  bytes=$(sed -n 's/^built .*, \([0-9]*\) bytes, .*/\1/p' "$log" | tail -1)
  digest=$(sed -n 's/^built [^ ]* \(sha256:[0-9a-f]*\) .*/\1/p' "$log" | tail -1)
  summary+=("$(awk -v r="$ref" -v ms="$ms" -v b="${bytes:-0}" -v d="${digest:0:19}" \
    'BEGIN { printf "%-40s %8.1f s %9.1f MB  %s", r, ms / 1000, b / 1000000, d }')")
done

if ((${#summary[@]})); then
  echo "== built (wall time, compressed size, manifest digest)" >&2
  printf '%s\n' "${summary[@]}" >&2
fi
if ((${#failed[@]})); then
  echo "build_images: failed: ${failed[*]} (see the error above)" >&2
  exit 1
fi
