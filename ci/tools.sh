#!/usr/bin/env bash
# Build QHub's pinned Go toolchain from Go modules into $QHUB_CACHE/bin.
#
#   ci/tools.sh            build every tool that is missing or at another version
#   ci/tools.sh helm kwok  build only these
#
# Each tool is built once per version: the binary lands as $QHUB_CACHE/bin/<name>, with a stamp file
# $QHUB_CACHE/bin/.<tool>.version holding the version it was built from. Nothing is downloaded from
# release pages: only the Go module proxy is used. Versions come from ci/versions.env.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=ci/versions.env
source "$here/versions.env"

QHUB_CACHE=${QHUB_CACHE:-$HOME/.cache/qhub}
BIN=$QHUB_CACHE/bin
SRC=$QHUB_CACHE/src
mkdir -p "$BIN" "$SRC"
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-buildvcs=false

log() { printf '[tools] %s\n' "$*" >&2; }

# first_line CMD...: the first line of a command's output (no `| head`: with pipefail, the writer's SIGPIPE
# would fail the build).
first_line() {
  local out
  out=$("$@")
  printf '%s\n' "${out%%$'\n'*}"
}

# up_to_date TOOL VERSION: true when the stamp says TOOL was built at VERSION.
up_to_date() {
  [[ -f "$BIN/.$1.version" && "$(cat "$BIN/.$1.version")" == "$2" ]]
}

# wrapper_module DIR NAME: a fresh Go module in $SRC/DIR to build from.
wrapper_module() {
  rm -rf "${SRC:?}/$1"
  mkdir -p "$SRC/$1"
  printf 'module qhub.local/%s\n\ngo 1.26.0\n' "$2" >"$SRC/$1/go.mod"
}

# gomod_path MODULE@VERSION: local path of that module's go.mod file.
gomod_path() {
  (cd "$SRC" && go mod download -json "$1") | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])'
}

build_helm() {
  GOBIN="$BIN" go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION -X helm.sh/helm/v4/internal/version.gitTreeState=clean" \
    "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
  "$BIN/helm" version --short
}

build_kube() {
  local minor=${KUBE_VERSION#v1.}
  minor=${minor%%.*}
  local staging="v0.${KUBE_VERSION#v1.}"
  local kmod
  kmod=$(gomod_path "k8s.io/kubernetes@$KUBE_VERSION")
  wrapper_module k8s k8sbins
  # k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with ./staging paths;
  # point every such module at its published release instead.
  local m
  for m in $(go mod edit -json "$kmod" | python3 -c '
import json, sys
for r in json.load(sys.stdin).get("Replace") or []:
    if r["New"]["Path"].startswith("./staging/"):
        print(r["Old"]["Path"])'); do
    (cd "$SRC/k8s" && go mod edit -replace "$m=$m@$staging")
  done
  local cmds=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy)
  local pkgs=() c
  for c in "${cmds[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  (cd "$SRC/k8s" && go get -tool "${pkgs[@]/%/@$KUBE_VERSION}")
  local ldf="-s -w" p
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldf="$ldf -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  (cd "$SRC/k8s" && go build -mod=mod -trimpath -ldflags "$ldf" -o "$BIN/" "${pkgs[@]}")
  "$BIN/kube-apiserver" --version
}

build_etcd() {
  wrapper_module etcd etcdbins
  (cd "$SRC/etcd" && go get -tool "go.etcd.io/etcd/server/v3@$ETCD_VERSION" "go.etcd.io/etcd/etcdctl/v3@$ETCD_VERSION")
  (cd "$SRC/etcd" && go build -mod=mod -trimpath -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3 &&
    go build -mod=mod -trimpath -ldflags "-s -w" -o "$BIN/etcdctl" go.etcd.io/etcd/etcdctl/v3)
  first_line "$BIN/etcd" --version
}

build_kwok() {
  GOBIN="$BIN" go install -trimpath -ldflags "-s -w" \
    "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwokctl@$KWOK_VERSION"
  "$BIN/kwokctl" --version
}

build_crictl() {
  # the CRI client: lists and removes the real node's pod sandboxes (cluster-down tears them down through CRI so
  # that the CNI plugins release their addresses and iptables rules).
  wrapper_module crictl crictlbins
  (cd "$SRC/crictl" && go get -tool "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION" &&
    go build -mod=mod -trimpath -o "$BIN/crictl" \
      -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION" sigs.k8s.io/cri-tools/cmd/crictl)
  "$BIN/crictl" --version
}

build_ct() {
  # `go install ct@version` asks the proxy for ct's version list (deprecation check), which it refuses;
  # a wrapper module pinned to the exact version avoids that query.
  wrapper_module ct ctbins
  (cd "$SRC/ct" && go get -tool "github.com/helm/chart-testing/v3/ct@$CHART_TESTING_VERSION" &&
    go build -mod=mod -trimpath -o "$BIN/ct" \
      -ldflags "-s -w -X github.com/helm/chart-testing/v3/ct/cmd.Version=$CHART_TESTING_VERSION" \
      github.com/helm/chart-testing/v3/ct)
  # ct looks for lintconf.yaml and chart_schema.yaml in ./, .ct/, ~/.ct and /etc/ct; they ship in its module.
  local etc
  etc="$(go env GOMODCACHE)/github.com/helm/chart-testing/v3@$CHART_TESTING_VERSION/etc"
  mkdir -p "$QHUB_CACHE/ct"
  cp "$etc/lintconf.yaml" "$etc/chart_schema.yaml" "$QHUB_CACHE/ct/"
  chmod u+w "$QHUB_CACHE/ct/"*
  first_line "$BIN/ct" version
}

version_of() {
  case $1 in
    helm) echo "$HELM_VERSION" ;;
    # the suffix names the recipe: a cache built before the node binaries joined the list is rebuilt
    kube) echo "$KUBE_VERSION+node" ;;
    etcd) echo "$ETCD_VERSION" ;;
    kwok) echo "$KWOK_VERSION" ;;
    ct) echo "$CHART_TESTING_VERSION" ;;
    crictl) echo "$CRICTL_VERSION" ;;
    *) log "unknown tool '$1' (known: helm kube etcd kwok ct crictl)"; exit 2 ;;
  esac
}

tools=("$@")
[[ ${#tools[@]} -gt 0 ]] || tools=(helm kube etcd kwok ct crictl)
total_start=$SECONDS
for t in "${tools[@]}"; do
  t=${t//-/_}
  v=$(version_of "$t")
  if up_to_date "$t" "$v"; then
    log "$t $v: cached"
    continue
  fi
  log "$t $v: building"
  start=$SECONDS
  "build_$t"
  echo "$v" >"$BIN/.$t.version"
  log "$t $v: built in $((SECONDS - start))s"
done
log "toolchain ready in $BIN ($((SECONDS - total_start))s)"
