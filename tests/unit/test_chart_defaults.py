"""qhubctl's defaults and the chart's agree: the values qhubctl writes for a config that sets nothing (beyond the
cluster and the components) equal the chart's own defaults (values.yaml of the umbrella over each subchart's),
except where qhubctl supplies content of its own by design, listed in OWN_CONTENT. A default changed on one side
only (e.g. max_workers_per_cluster 20 in the config model, 16 in dask-gateway/values.yaml) fails here; the config
model's value is the product's default."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from qhubctl.config import SCHEMA_VERSION, parse_config
from qhubctl.values import chart_values

pytestmark = pytest.mark.unit
CHART = Path(__file__).resolve().parents[2] / "charts" / "qhub"
# Values qhubctl fills from the config's own lists rather than the chart's examples: the config's server and worker
# profiles and prebuilt environments (also the Dask clusters' environment choices), and its admin (who is also an
# allowed user). And the Dask clusters' namespace, which qhubctl names itself (daskclusters.namespace: it binds the
# shared storage and stops old clusters there) where the chart derives the same name at render time.
OWN_CONTENT = (
    ("global", "daskClusters", "namespace"),
    ("jupyterhub", "singleuser", "profiles"),
    ("dask-gateway", "clusters", "profiles"),
    ("dask-gateway", "clusters", "environments"),
    ("conda-store", "environments"),
    ("jupyterhub", "auth", "allowedUsers"),
)


def merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def chart_defaults() -> dict[str, Any]:
    """What Helm starts from: each subchart's values.yaml under its name, the umbrella's values.yaml over them."""
    subcharts = {p.name: yaml.safe_load((p / "values.yaml").read_text()) for p in (CHART / "charts").iterdir()
                 if (p / "values.yaml").exists()}
    return merged(subcharts, yaml.safe_load((CHART / "values.yaml").read_text()))


def leaves(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from leaves(value, (*path, key))
    else:
        yield path, node


def lookup(node: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return "<not in the chart's values>"
        node = node[key]
    return node


@pytest.mark.parametrize("provider", ["aws", "local"])
def test_qhubctl_writes_the_charts_defaults_for_what_the_config_leaves_unset(provider: str) -> None:
    cfg = parse_config({"schema_version": SCHEMA_VERSION, "project_name": "defaults", "cluster": {"provider": provider},
                        "components": {"dask_gateway": True, "conda_store": True, "kubessh": True}}, environ={})
    ours, theirs = chart_values(cfg), chart_defaults()
    compared = [(p, v) for p, v in leaves(ours) if p[:3] not in OWN_CONTENT and p[:2] not in OWN_CONTENT]
    differ = {".".join(p): (v, lookup(theirs, p)) for p, v in compared if lookup(theirs, p) != v}
    # set per provider, not defaults: the local cluster exposes the proxy and SSH on node ports (no load balancer)
    per_provider = {"kubessh.service.type", "jupyterhub.proxy.service.type"} if provider == "local" else set()
    # the clouds' Ingress uses QHub's Traefik (the add-on release's IngressClass); the chart alone cannot know it
    per_provider |= {"ingress.className"} if provider == "aws" else set()
    differ = {k: v for k, v in differ.items() if k not in per_provider}
    assert not differ, f"config default (qhubctl) vs chart default (values.yaml): {differ}"
    assert len(compared) > 20, "the walk compared the mapped values"
    assert ("dask-gateway", "clusters", "limits", "maxWorkers") in dict(compared)
