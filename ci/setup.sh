#!/usr/bin/env bash
# Install everything QHub's tests and demo need on a fresh Debian 12 machine, skipping what is already there:
# Debian packages (ci/apt-packages.txt), the Python virtualenv .venv with qhubctl and its test extras, and the
# pinned Go toolchain (ci/tools.sh). Prints the time each phase took.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

phase() { printf '[setup] %-10s %4ss\n' "$1" "$2" >&2; }

start=$SECONDS
mapfile -t wanted < <(grep -v '^\s*#' ci/apt-packages.txt | grep -v '^\s*$')
missing=()
for p in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "[setup] installing Debian packages: ${missing[*]}" >&2
  SUDO=; [[ $(id -u) -eq 0 ]] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts the packaged services; QHub's tests start their own instances on loopback.
  for svc in docker-registry postgresql redis-server; do
    $SUDO service "$svc" stop >/dev/null 2>&1 || true
  done
fi
phase apt $((SECONDS - start))

start=$SECONDS
# The virtualenv lives in the cache, one per set of dependencies in pyproject.toml, and .venv links to it: a fresh clone on
# a machine that ran the tests before reuses it (only the editable link to this checkout is renewed).
PYTHON=${PYTHON:-python3}
QHUB_CACHE=${QHUB_CACHE:-$HOME/.cache/qhub}
# keyed by what decides the venv's content (Python, build system, dependencies), not by pytest or lint settings
key=$({ "$PYTHON" --version; "$PYTHON" -c '
import json, tomllib
data = tomllib.load(open("pyproject.toml", "rb"))
project = data.get("project", {})
print(json.dumps([data.get("build-system"), project.get("dependencies"), project.get("optional-dependencies")],
                 sort_keys=True))'; } | sha256sum | cut -c1-16)
venv=${QHUB_VENV:-$QHUB_CACHE/venvs/qhub-$key}
if [[ ! -f $venv/.qhub-complete ]]; then
  echo "[setup] creating $venv (pip install -e '.[test]')" >&2
  rm -rf "$venv"
  "$PYTHON" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip >/dev/null
  "$venv/bin/pip" install -q -e '.[test]'
  touch "$venv/.qhub-complete"
fi
if [[ -L .venv || ! -e .venv ]]; then
  ln -sfn "$venv" .venv
fi
# point the venv's qhubctl at this checkout (fast: every dependency is already there)
.venv/bin/pip install -q --no-deps -e . >/dev/null
phase python $((SECONDS - start))

start=$SECONDS
# shellcheck source=ci/versions.env
source ci/versions.env
QHUB_CACHE=${QHUB_CACHE:-$HOME/.cache/qhub}
mkdir -p "$QHUB_CACHE/node"
for pkg in $NPM_PACKAGES; do
  name=${pkg%@*}; version=${pkg##*@}
  have=$(node -p "try{require('$QHUB_CACHE/node/node_modules/$name/package.json').version}catch(e){''}" 2>/dev/null || true)
  if [[ $have != "$version" ]]; then
    echo "[setup] npm install $pkg" >&2
    npm install --silent --no-audit --no-fund --prefix "$QHUB_CACHE/node" "$pkg" >/dev/null
  fi
done
# playwright-core for the browser journey, from its lock file into a folder keyed by that file's hash; it drives
# Debian's chromium and downloads no browser of its own
lock=tests/node/browser/package-lock.json
browser=$QHUB_CACHE/browser/$(sha256sum "$lock" | cut -c1-16)
if [[ ! -f $browser/.qhub-complete ]]; then
  echo "[setup] npm ci $lock into $browser" >&2
  rm -rf "$browser" && mkdir -p "$browser"
  cp tests/node/browser/package.json "$lock" "$browser/"
  npm ci --silent --no-audit --no-fund --prefix "$browser" >/dev/null
  touch "$browser/.qhub-complete"
fi
phase npm $((SECONDS - start))

start=$SECONDS
bash ci/tools.sh
phase tools $((SECONDS - start))
