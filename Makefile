# QHub developer entry points. On a fresh Debian 12 machine:
#   make demo   install everything, start the local test cluster, install charts/qhub on it, show what runs
#   make test   install everything and run every test (unit, chart, cluster, node, images, cloud)
SHELL := /bin/bash
QHUB_CACHE ?= $(HOME)/.cache/qhub
export QHUB_CACHE
export PATH := $(QHUB_CACHE)/bin:$(CURDIR)/.venv/bin:$(PATH)
PY := $(CURDIR)/.venv/bin/python
CLUSTER ?= qhub-local
KUBECONFIG_LOCAL := $(QHUB_CACHE)/clusters/$(CLUSTER)/kubeconfig
CHART_VERSION := $(shell sed -n 's/^version: *//p' charts/qhub/Chart.yaml)
APP_VERSION := $(shell sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$$/\1/p' charts/qhub/Chart.yaml)

.PHONY: setup tools cluster-up cluster-down demo test test-unit test-chart test-cluster test-node test-images \
	test-cloud package chart-push release-check bench images schema schema-check clean

setup:  ## Debian packages, .venv with qhubctl, and the pinned Go toolchain
	@bash ci/setup.sh

tools:  ## build the pinned Go tools into $(QHUB_CACHE)/bin (cached per version)
	@bash ci/tools.sh

cluster-up: setup  ## start the local cluster (control plane, real node, simulated groups; as root)
	@$(PY) -m qhubctl.localcluster up --name $(CLUSTER)

cluster-down:  ## stop and delete the local test cluster
	@$(PY) -m qhubctl.localcluster down --name $(CLUSTER)

# the platform images the demo runs (the others are off in `qhubctl init local`'s config)
DEMO_IMAGES ?= jupyterhub jupyterlab kubessh dask-gateway-server dask-worker traefik
LOCAL_REGISTRY := 127.0.0.1:5001

demo: cluster-up  ## build and push the images, deploy QHub on the local cluster's real node, print URL and login
	@start=$$SECONDS; export KUBECONFIG=$(KUBECONFIG_LOCAL); demo=$(QHUB_CACHE)/demo; \
	REGISTRY=$(LOCAL_REGISTRY) IMAGES="$(DEMO_IMAGES)" bash scripts/build_images.sh && \
	$(PY) -m qhubctl.localcluster refresh-images --name $(CLUSTER) && \
	echo "[demo] images ready in $$((SECONDS - start))s" && \
	rm -rf $$demo && mkdir -p $$demo && \
	qhubctl init local -o $$demo/qhub-config.yaml && \
	qhubctl validate -c $$demo/qhub-config.yaml && \
	qhubctl deploy -c $$demo/qhub-config.yaml --yes && \
	echo "[demo] QHub deployed in $$((SECONDS - start))s" && \
	kubectl get pods -n qhub -o wide && \
	$(PY) scripts/demo_access.py $$demo/qhub-config.yaml && \
	echo "[demo] config: $$demo/qhub-config.yaml  KUBECONFIG=$(KUBECONFIG_LOCAL)  ($$((SECONDS - start))s)"

# One target per test tier (the pytest markers of tests/conftest.py TIERS; README's "Tests" lists what each covers)
test: setup  ## every tier: unit, chart, cluster, node, images, cloud (in sessions side by side)
	@start=$$SECONDS; $(PY) scripts/run_tests.py $(PYTEST_ARGS); rc=$$?; \
	echo "[test] pytest $$((SECONDS - start))s"; exit $$rc

test-unit: setup  ## qhubctl and the chart's files, no tools beyond Python
	@$(PY) -m pytest -m unit $(PYTEST_ARGS)

test-chart: setup  ## helm lint/template over the values matrix, manifests validated against Kubernetes
	@$(PY) -m pytest -m chart $(PYTEST_ARGS)

test-cluster: setup  ## install, upgrade, rollback and qhubctl on the local test cluster; the package builds
	@$(PY) -m pytest -m cluster $(PYTEST_ARGS)

test-node: setup  ## containers on the local cluster's real node
	@$(PY) -m pytest -m node $(PYTEST_ARGS)

test-images: setup  ## image builds end to end (a local conda channel, docker-registry and dockerd; as root)
	@$(PY) -m pytest -m images $(PYTEST_ARGS)

test-cloud: setup  ## cluster providers against local emulators and the cloud APIs' published contracts
	@$(PY) -m pytest -m cloud $(PYTEST_ARGS)

package: setup  ## the chart archive with its subcharts, in dist/
	@mkdir -p dist && helm package charts/qhub --destination dist && ls -l dist/qhub-$(CHART_VERSION).tgz

chart-push:  ## push dist/qhub-<version>.tgz (make package) to CHART_REPO=oci://... (default oci://$(REGISTRY)/charts)
	@bash scripts/push_chart.sh

# A release (.github/workflows/release.yaml, on a tag vX.Y.Z) runs release-check, images, package and chart-push.
release-check:  ## a release's TAG (X.Y.Z of the tag vX.Y.Z) is the chart's version and appVersion; REGISTRY is set
	@test -n "$(TAG)" || { echo "release-check: TAG is empty (X.Y.Z of the release tag vX.Y.Z)" >&2; exit 1; }
	@test "$(TAG)" = "$(CHART_VERSION)" -a "$(TAG)" = "$(APP_VERSION)" || { echo "release-check: TAG $(TAG) is \
	not the chart's version $(CHART_VERSION) and appVersion $(APP_VERSION) (charts/qhub/Chart.yaml): the images \
	would be pushed under another tag than the chart names" >&2; exit 1; }
	@test -n "$(REGISTRY)" || { echo "release-check: REGISTRY is empty (host[:port][/namespace] to push to)" >&2; exit 1; }
	@echo "release-check: $(TAG) pushes images and chart to $(REGISTRY)"

bench: setup  ## print footprint and speed figures
	@for s in scripts/bench_*.py; do echo "== $$s"; $(PY) $$s || exit 1; done

schema:  ## each chart's values.schema.json and README.md from its values.schema.yaml and values.yaml comments
	@$(PY) scripts/gen_values_schema.py

schema-check:  ## fail when a generated schema or README is out of date, or values.yaml and the schema disagree on keys
	@$(PY) scripts/gen_values_schema.py --check

images: setup  ## build the default images (IMAGES=platform|node|gpu or names; REGISTRY=host:port to push)
	@bash scripts/build_images.sh

clean:
	rm -rf dist .pytest_cache
