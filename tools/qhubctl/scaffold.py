"""Files `qhubctl init` writes: a minimal commented config per provider, and CI workflows for GitOps."""

from __future__ import annotations

from qhubctl import __version__
from qhubctl import nodegroups as ng
from qhubctl.config.base import DEFAULT_K8S
from qhubctl.config.loader import SCHEMA_FILE
from qhubctl.config.model import CLUSTER_BLOCKS, SCHEMA_VERSION

# The local cluster's image registry (qhubctl.realnode.REGISTRY).
LOCAL_REGISTRY = "127.0.0.1:5001"

# The default groups with their default counts (qhubctl.nodegroups.DEFAULT_SCALE), one line each.
_SCALES = "".join(f"  {name}: {{min_nodes: {ng.DEFAULT_SCALE[name][0]}, max_nodes: {ng.DEFAULT_SCALE[name][1]}}}\n"
                  for name in ng.DEFAULT_GROUPS)
_GROUPS_CLOUD = """\
# Node groups: every node carries qhub.dev/node-group=<name>; all groups but general are tainted so only QHub
# places pods there. instance_type defaults per provider; min 0 lets user and worker scale to zero.
node_groups:
""" + _SCALES
_GROUPS_LOCAL = """\
# Node groups: with real_node, every group's pods run on the local cluster's real node; the counts size the
# simulated (kwok) groups beside it, which `qhubctl cost --simulate` uses.
node_groups:
""" + _SCALES
_GROUPS_EXISTING = """\
# Node groups: point each group at labels your nodes already carry (default qhub.dev/node-group=<name>).
node_groups:
  general: {}
  user: {}
  worker: {}
  # user:
  #   node_selector: {node.kubernetes.io/instance-type: m6i.2xlarge}
"""


def config_text(provider: str, *, project_name: str = "", region: str | None = None,
                domain: str | None = None, admin: str = "admin", gcp_project: str = "my-gcp-project",
                email: str | None = None) -> str:
    """A minimal, commented, valid qhub-config.yaml for `provider`. With a domain: Let's Encrypt through QHub's
    Traefik where the provider runs it and an `email` is given, else through cert-manager."""
    if provider not in CLUSTER_BLOCKS:
        raise ValueError(provider)
    block = CLUSTER_BLOCKS[provider]
    name = project_name or f"qhub-{provider}"[:32]
    cluster = block.init_block.format(region=region or block.default_region(), k8s=DEFAULT_K8S, project=gcp_project)
    tls = _TLS_TRAEFIK.format(email=email) if email and block.ingress_controller else _TLS_LETSENCRYPT
    domain_line = (f"domain: {domain}\n{tls}" if domain else
                   "# domain: qhub.example.org\n# tls: {type: cert-manager, issuer: letsencrypt}  "
                   "# a domain needs HTTPS (docs/security.md)\n")
    groups = {"cloud": _GROUPS_CLOUD, "existing": _GROUPS_EXISTING, "local": _GROUPS_LOCAL}[block.init_layout]
    rest = _REST_LOCAL.format(registry=LOCAL_REGISTRY) if block.init_layout == "local" else _REST.format(admin=admin)
    return f"""\
# yaml-language-server: $schema={SCHEMA_FILE}
# QHub deployment. Every key is described in docs/config-reference.md; `qhubctl validate` checks this file
# offline, `qhubctl render` shows the Helm values it becomes, `qhubctl deploy` applies it.
# Secrets never go here: set QHUB_SECRET__<path> variables or reference Secrets with {{secretRef: {{name, key}}}}.
schema_version: {SCHEMA_VERSION}
# Name of this deployment (immutable after the first deploy).
project_name: {name}
# Where the platform runs (the provider is immutable).
cluster:
{cluster}# Public host name with a DNS record pointing at your ingress controller; without one, use port-forward.
{domain_line}{groups}{rest}"""


# A domain is served over HTTPS (plain HTTP on a domain is refused; docs/security.md lists the other ways).
_TLS_LETSENCRYPT = """\
# HTTPS with a Let's Encrypt certificate through cert-manager (install it and a ClusterIssuer named letsencrypt);
# or tls: {type: secret, secret_name: <TLS Secret>}, or {type: upstream} when a load balancer terminates TLS.
tls: {type: cert-manager, issuer: letsencrypt}
"""
_TLS_TRAEFIK = """\
# HTTPS with a Let's Encrypt certificate that QHub's Traefik gets itself (HTTP-01; `qhubctl deploy` prints the DNS
# record to create); or tls: {{type: cert-manager, issuer: <ClusterIssuer>}}, {{type: secret, secret_name: <TLS
# Secret>}}, or {{type: upstream}} when a load balancer terminates TLS.
tls: {{type: letsencrypt, email: {email}}}
"""
_REST = """\
# Login: native = users sign up, an admin approves them at /hub/authorize. The admin's password is generated at
# the first deploy into the cluster (`qhubctl deploy` shows it once), never written here. Also: github, oidc
# (name users, organisations or groups; `allow_all: true` admits everyone), dummy (tests only).
auth:
  type: native
  users:
    {admin}: {{}}
  admins: [{admin}]
# Shared filesystem for homes and group folders: an in-cluster NFS server (the type is immutable).
storage:
  type: nfs
  size: 100Gi
  # The NFS server runs as root with extra capabilities: in a namespace of its own (immutable; use
  # <namespace>-nfs), the deployment's namespace enforces Pod Security "restricted".
  server_namespace: qhub-nfs
"""
# The local cluster: images from its registry on loopback, volumes of the real node's local-path class, and a
# generated shared password (kept in the hub Secret; `make demo` prints it) instead of sign-up.
_REST_LOCAL = """\
# Images come from the local cluster's registry (`make demo` builds and pushes them there).
image_registry: "{registry}"
# Login with a generated shared password (kept in the hub Secret; `qhubctl status` tells how to read it).
auth:
  type: dummy
  users:
    demo: {{}}
    admin: {{}}
  admins: [admin]
# Homes and group folders on the real node's local-path class (this machine's kernel has no NFS client).
storage:
  type: existing
  storage_class: local-path
  size: 10Gi
# Sizes for one small machine (the real node): the cloud defaults reserve 1 core per server and per worker.
profiles:
  jupyterlab:
    - name: small
      display_name: Small (0.25-1 CPU, 1-2 GiB)
      default: true
      cpu: {{guarantee: 0.25, limit: 1}}
      memory: {{guarantee: 1Gi, limit: 2Gi}}
  dask_worker:
    - name: small
      display_name: 0.25 core, 1 GiB
      default: true
      cores: 0.25
      memory: 1Gi
# Parts whose images cannot be built on this machine yet stay off (docs/images.md says why).
components:
  conda_store: false
  jitsi: false
"""


def github_workflow(config_path: str = "qhub-config.yaml", secret_paths: list[str] | None = None,
                    branch: str = "main") -> str:
    """GitHub Actions: validate + plan on pull requests, deploy on push to `branch`. Secrets from the repo store."""
    envs = "".join(f"      {p}: ${{{{ secrets.{p.upper()} }}}}\n" for p in _secret_envs(secret_paths))
    envs = envs or '      QHUB_NO_SECRETS: "1"\n'
    # the steps both jobs start with: the repository, Python, Helm and this qhubctl release
    setup = f"""\
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with:
          python-version: "3.12"
      - uses: azure/setup-helm@v4
        with:
          version: v4.3.1
      - run: pip install "qhubctl=={__version__}"
"""
    return f"""\
# Generated by `qhubctl init --ci github-actions`. Needs the repository secret QHUB_KUBECONFIG (a kubeconfig
# for the cluster) and one secret per QHUB_SECRET__ variable listed under env.
name: qhub
on:
  pull_request:
    paths: ["{config_path}"]
  push:
    branches: [{branch}]
    paths: ["{config_path}"]
permissions:
  contents: read
concurrency:
  group: qhub-${{{{ github.ref }}}}
  cancel-in-progress: false
env:
  QHUB_CONFIG: "{config_path}"
jobs:
  plan:
    if: github.event_name == 'pull_request'
    runs-on: ubuntu-latest
    env:
{envs}{setup}      - name: Validate
        run: qhubctl validate -c "$QHUB_CONFIG"
      - name: Plan
        env:
          QHUB_KUBECONFIG: ${{{{ secrets.QHUB_KUBECONFIG }}}}
        run: |
          printf '%s' "$QHUB_KUBECONFIG" > "$RUNNER_TEMP/kubeconfig"
          KUBECONFIG="$RUNNER_TEMP/kubeconfig" qhubctl deploy --dry-run -c "$QHUB_CONFIG"
  deploy:
    if: github.event_name == 'push'
    runs-on: ubuntu-latest
    environment: qhub
    env:
{envs}{setup}      - name: Deploy
        env:
          QHUB_KUBECONFIG: ${{{{ secrets.QHUB_KUBECONFIG }}}}
        run: |
          printf '%s' "$QHUB_KUBECONFIG" > "$RUNNER_TEMP/kubeconfig"
          KUBECONFIG="$RUNNER_TEMP/kubeconfig" qhubctl deploy --yes -c "$QHUB_CONFIG"
"""


def gitlab_ci(config_path: str = "qhub-config.yaml", secret_paths: list[str] | None = None,
              branch: str = "main") -> str:
    """GitLab CI: validate + plan on merge requests, deploy on the default branch. Secrets are CI/CD variables."""
    names = ", ".join(_secret_envs(secret_paths)) or "none"
    return f"""\
# Generated by `qhubctl init --ci gitlab-ci`. Define the CI/CD variables QHUB_KUBECONFIG (type File, protected)
# and these masked variables: {names}.
stages: [validate, plan, deploy]
default:
  image: python:3.12
  before_script:
    - pip install "qhubctl=={__version__}"
    - curl -fsSL https://get.helm.sh/helm-v4.3.1-linux-amd64.tar.gz | tar -xz -C /usr/local/bin --strip-components=1 linux-amd64/helm
variables:
  QHUB_CONFIG: "{config_path}"
validate:
  stage: validate
  rules:
    - if: $CI_PIPELINE_SOURCE == "merge_request_event"
    - if: $CI_COMMIT_BRANCH == "{branch}"
  script:
    - qhubctl validate -c "$QHUB_CONFIG"
plan:
  stage: plan
  rules:
    - if: $CI_PIPELINE_SOURCE == "merge_request_event"
  script:
    - KUBECONFIG="$QHUB_KUBECONFIG" qhubctl deploy --dry-run -c "$QHUB_CONFIG"
deploy:
  stage: deploy
  resource_group: qhub
  rules:
    - if: $CI_COMMIT_BRANCH == "{branch}"
  script:
    - KUBECONFIG="$QHUB_KUBECONFIG" qhubctl deploy --yes -c "$QHUB_CONFIG"
"""


def _secret_envs(paths: list[str] | None) -> list[str]:
    return sorted({"QHUB_SECRET__" + p.replace(".", "__") for p in paths or []})


CI_FILES = {"github-actions": ".github/workflows/qhub.yaml", "gitlab-ci": ".gitlab-ci.yml"}
