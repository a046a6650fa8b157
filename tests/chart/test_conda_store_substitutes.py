"""conda-store's PostgreSQL and Redis images and its channel mirror, from the config file to the rendered chart:
`conda_store.postgresql_image` / `redis_image` replace the upstream images (as the node tier substitutes the
images built here), `channel_alias` and `mirror_cidrs` open the build worker to a mirror on a private address
and nothing else; the hub's proxy serves conda-store's /conda-store path, with or without an Ingress."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from qhubctl.config import parse_config
from qhubctl.errors import ConfigError
from qhubctl.scaffold import config_text
from qhubctl.values import chart_values

from .addons import get, pod, render

pytestmark = pytest.mark.chart

PUBLIC_ONLY = {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
                                               "169.254.0.0/16"]}


def _values(**conda_store: Any) -> dict[str, Any]:
    data = yaml.safe_load(config_text("local"))
    data["components"]["conda_store"] = True
    data["conda_store"] = conda_store
    return chart_values(parse_config(data))


def _image(docs: list[dict], kind: str, name: str) -> str:
    return str(pod(get(docs, kind, name))["containers"][0]["image"])


def test_substitute_images_replace_postgresql_and_redis() -> None:
    values = _values(postgresql_image="qhub/postgresql:15.20", redis_image="qhub/redis:7.0.15")
    docs = render(values=values)
    assert _image(docs, "StatefulSet", "qhub-conda-store-postgresql") == "127.0.0.1:5001/qhub/postgresql:15.20"
    assert _image(docs, "Deployment", "qhub-conda-store-redis") == "127.0.0.1:5001/qhub/redis:7.0.15"
    # without them the chart's upstream images, behind the same registry
    docs = render(values=_values())
    assert _image(docs, "StatefulSet", "qhub-conda-store-postgresql").startswith("127.0.0.1:5001/postgres:")
    assert _image(docs, "Deployment", "qhub-conda-store-redis").startswith("127.0.0.1:5001/redis:")


def test_a_mirror_opens_the_worker_to_its_range_and_port_only() -> None:
    values = _values(channel_alias="http://conda-mirror.qhub.svc:8080/", mirror_cidrs=["10.244.0.0/16"])
    docs = render(values=values)
    config = get(docs, "ConfigMap", "qhub-conda-store-config")["data"]["settings.json"]
    assert '"channelAlias": "http://conda-mirror.qhub.svc:8080/"' in config
    egress = get(docs, "NetworkPolicy", "qhub-conda-store-worker")["spec"]["egress"]
    assert {"to": [{"ipBlock": {"cidr": "10.244.0.0/16"}}], "ports": [{"protocol": "TCP", "port": 8080}]} in egress
    blocks = [p["ipBlock"] for rule in egress for p in rule.get("to", []) if "ipBlock" in p]
    assert blocks == [PUBLIC_ONLY, {"cidr": "10.244.0.0/16"}], blocks
    # the server gains nothing
    server = get(docs, "NetworkPolicy", "qhub-conda-store")["spec"]["egress"]
    assert not [p for rule in server for p in rule.get("to", []) if "ipBlock" in p]
    # and by default the worker reaches public addresses only
    egress = get(render(values=_values()), "NetworkPolicy", "qhub-conda-store-worker")["spec"]["egress"]
    assert [p["ipBlock"] for rule in egress for p in rule.get("to", []) if "ipBlock" in p] == [PUBLIC_ONLY]


@pytest.mark.parametrize(("settings", "field", "words"), [
    ({"mirror_cidrs": ["10.0.0.0/8"]}, "conda_store.mirror_cidrs", "set channel_alias"),
    ({"channel_alias": "conda-mirror:8080"}, "conda_store.channel_alias", "http(s) URL"),
    ({"channel_alias": "http://m/", "mirror_cidrs": ["10.0.0.1/8"]}, "conda_store.mirror_cidrs", "CIDR"),
])
def test_bad_mirror_settings_name_the_field(settings: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        _values(**settings)
    assert field in str(err.value) and words in str(err.value), str(err.value)
