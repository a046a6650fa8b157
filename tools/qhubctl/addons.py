"""The cluster add-on release: what a created cluster needs beside QHub that its cloud does not run for it.

The chart charts/qhub-cluster-addons holds the manifests (upstream images as they are); this module is the one
place that maps the config (plus the cloud facts of `Provider.addon_facts`) to its values, and installs, upgrades
and removes the release, always through qhubctl.helm. Which parts a provider's cluster gets is a fact of its config
block (`cluster_addons`): on EKS cluster-autoscaler, a default encrypted gp3 StorageClass and, with a GPU group,
the NVIDIA device plugin; on AKS the device plugin with a GPU group (AKS installs the driver, not the plugin); GKE,
AKS and DOKS run their own autoscaler and default StorageClass, GKE and DOKS their own device plugin.
Every cloud's cluster also gets Traefik as its ingress controller (with Let's Encrypt's ACME resolver for
`tls: {type: letsencrypt}`); existing and local clusters get it only when `ingress.controller.enabled` asks.

`qhubctl cluster create` installs it (the add-ons belong to the cluster: they need the cloud's facts, they must be
there before QHub's volumes bind, and `deploy` also serves clusters qhubctl does not own); `qhubctl upgrade`
upgrades it to the chart this qhubctl carries; `qhubctl cluster destroy` removes it before the cloud resources
(so cluster-autoscaler does not scale groups that are being deleted), and on a cluster it keeps (existing) it removes
only the release.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from qhubctl import nodegroups as ng
from qhubctl.chart import addons_chart_dir
from qhubctl.config.model import QHubConfig
from qhubctl.config.network import CERT_RESOLVER, INGRESS_CLASS, LetsEncryptTLS
from qhubctl.helm import Deployed, Helm
from qhubctl.providers.base import AddonFacts, Provider

RELEASE = "qhub-cluster-addons"
NAMESPACE = "kube-system"
# cluster-autoscaler's service account; the IAM role qhubctl makes for it trusts exactly this one (IRSA)
AUTOSCALER_ACCOUNT = "cluster-autoscaler"
AUTOSCALER = "cluster-autoscaler"
STORAGE_CLASS = "storage-class"
DEVICE_PLUGIN = "nvidia-device-plugin"
TRAEFIK = "traefik"
PARTS = (AUTOSCALER, STORAGE_CLASS, DEVICE_PLUGIN, TRAEFIK)
# The chart's values section of each part (its `enabled` turns the part on)
VALUES_KEY = {AUTOSCALER: "clusterAutoscaler", STORAGE_CLASS: "storageClass", DEVICE_PLUGIN: "nvidiaDevicePlugin",
              TRAEFIK: "traefik"}
# Traefik's Service in the release namespace: the address the platform's DNS record points at
TRAEFIK_SERVICE = f"{RELEASE}-traefik"

# TLS types whose certificate Traefik itself serves (the others: none, or a load balancer in front ends TLS)
HTTPS_AT_TRAEFIK = ("letsencrypt", "cert-manager", "secret")

Say = Callable[[str], None]


def parts(cfg: QHubConfig) -> list[str]:
    """The add-ons this config's cluster gets: its provider's, the device plugin only with a GPU group, Traefik
    where the ingress controller is on (by default on the clouds; existing and local opt in)."""
    gpu = any(group.gpu for group in cfg.node_groups.values())
    wanted = [p for p in cfg.cluster.cluster_addons if p != DEVICE_PLUGIN or gpu]
    return wanted + [TRAEFIK] if cfg.ingress_controller else wanted


def autoscaler_values(cfg: QHubConfig, facts: AddonFacts) -> dict[str, Any]:
    settings = cfg.cluster.autoscaler  # the AWS block's (the only provider with this part)
    general = cfg.placements()[ng.GENERAL]
    return {
        "enabled": True, "awsRegion": facts.region, "clusterName": facts.cluster_name,
        "serviceAccount": {"name": AUTOSCALER_ACCOUNT, "roleArn": facts.roles.get(AUTOSCALER, "")},
        "expander": settings.expander,
        "scaleDownUnneededTime": f"{settings.scale_down_unneeded_minutes}m",
        "scaleDownDelayAfterAdd": f"{settings.scale_down_delay_after_add_minutes}m",
        "scaleDownUtilizationThreshold": str(settings.scale_down_utilization_threshold),
        "nodeSelector": dict(general.node_selector), "tolerations": general.tolerations(),
    }


def device_plugin_values(cfg: QHubConfig) -> dict[str, Any]:
    """On every GPU group's nodes, tolerating exactly their taints."""
    placements = cfg.placements()
    gpu_groups = [name for name, group in cfg.node_groups.items() if group.gpu]
    tolerations: list[dict[str, str]] = []
    for name in gpu_groups:
        tolerations += [t for t in placements[name].tolerations() if t not in tolerations]
    return {"enabled": True, "nodeGroups": gpu_groups, "tolerations": tolerations}


def traefik_values(cfg: QHubConfig) -> dict[str, Any]:
    """Traefik on the general group behind a LoadBalancer (a NodePort where the provider has no load balancers),
    redirecting HTTP to HTTPS when the platform is served over HTTPS by it, and with the config's ACME CA."""
    ctl = cfg.ingress.controller
    general = cfg.placements()[ng.GENERAL]
    annotations = cfg.cluster.ingress_service_annotations if ctl.service_annotations is None \
        else ctl.service_annotations
    out: dict[str, Any] = {
        "enabled": True, "ingressClass": {"name": INGRESS_CLASS},
        "redirectToHttps": bool(cfg.domain) and cfg.tls.type in HTTPS_AT_TRAEFIK,
        "service": {"type": "NodePort" if cfg.cluster.node_ports else "LoadBalancer",
                    "annotations": dict(annotations),
                    "loadBalancerSourceRanges": list(ctl.load_balancer_source_ranges)},
        # Helm merges maps with the chart's default selector (the general group's label): "" drops that key
        "nodeSelector": {ng.LABEL: "", **general.node_selector}, "tolerations": general.tolerations(),
    }
    if cfg.image_registry:
        out["image"] = {"registry": cfg.image_registry}
    if isinstance(cfg.tls, LetsEncryptTLS):
        out["acme"] = {"enabled": True, "resolver": CERT_RESOLVER, "email": cfg.tls.email,
                       "server": cfg.tls.directory, "caBundle": cfg.tls.server_ca or ""}
    return out


def values(cfg: QHubConfig, facts: AddonFacts) -> dict[str, Any]:
    """The add-on chart's values for this config; empty when its cluster needs none."""
    wanted = parts(cfg)
    out: dict[str, Any] = {}
    if wanted:
        out["nodeGroupLabel"] = ng.LABEL
    if AUTOSCALER in wanted:
        out[VALUES_KEY[AUTOSCALER]] = autoscaler_values(cfg, facts)
    if STORAGE_CLASS in wanted:
        out[VALUES_KEY[STORAGE_CLASS]] = {"enabled": True}
    if DEVICE_PLUGIN in wanted:
        out[VALUES_KEY[DEVICE_PLUGIN]] = device_plugin_values(cfg)
    if TRAEFIK in wanted:
        out[VALUES_KEY[TRAEFIK]] = traefik_values(cfg)
    return out


def helm_for(kubeconfig: str | None, context: str | None) -> Helm:
    return Helm(kubeconfig, context, chart_dir=addons_chart_dir())


@dataclass(frozen=True)
class AddonPlan:
    values: dict[str, Any]
    chart_version: str
    deployed: Deployed | None

    @property
    def changed(self) -> bool:
        have = self.deployed
        return have is None or have.status != "deployed" or have.chart_version != self.chart_version \
            or have.values != self.values


def ensure(cfg: QHubConfig, facts: AddonFacts, helm: Helm, say: Say, *, timeout: str = "10m") -> bool:
    """Install or upgrade the release when it differs from what this config and chart want; True if it changed
    anything. A config whose cluster needs no add-on installs nothing."""
    wanted = values(cfg, facts)
    if not wanted:
        return False
    plan = AddonPlan(wanted, helm.chart_version, asyncio.run(helm.deployed(RELEASE, NAMESPACE)))
    what = ", ".join(parts(cfg))
    if not plan.changed:
        say(f"cluster add-ons ({what}): release {RELEASE} in {NAMESPACE} is up to date (chart {plan.chart_version})")
        return False
    verb = "installing" if plan.deployed is None else "upgrading"
    say(f"cluster add-ons: {verb} release {RELEASE} in {NAMESPACE} (chart {plan.chart_version}): {what}")
    revision = asyncio.run(helm.upgrade(RELEASE, NAMESPACE, wanted, timeout=timeout, description="qhubctl addons"))
    say(f"cluster add-ons: release {RELEASE} revision {revision} deployed")
    return True


def ensure_for(provider: Provider, kubeconfig: str | None, context: str | None, say: Say) -> bool:
    """`ensure` for the provider's cluster: its cloud facts (cloud credentials needed only where a part needs one)
    and the kubeconfig that reaches it. Nothing at all (no cloud call) where its cluster gets no add-on."""
    if not parts(provider.cfg):
        return False
    return ensure(provider.cfg, provider.addon_facts(), helm_for(kubeconfig, context), say)


def installed(helm: Helm) -> list[str] | None:
    """The parts the release holds as installed (from its values, whatever config installed it); None when the
    release is not there."""
    release = asyncio.run(helm.deployed(RELEASE, NAMESPACE))
    if release is None:
        return None
    return [part for part in PARTS if (release.values.get(VALUES_KEY[part]) or {}).get("enabled")]


def remove(helm: Helm) -> list[str] | None:
    """Uninstall the release if it is there: the parts it held; None when it was not there."""
    held = installed(helm)
    if held is not None:
        asyncio.run(helm.uninstall(RELEASE, NAMESPACE))
    return held


def describe(cfg: QHubConfig, helm: Helm | None) -> list[str]:
    """`qhubctl status` lines: what autoscales the node groups and, where qhubctl installs add-ons, their release."""
    lines = [f"autoscaler: {cfg.cluster.autoscaled_by}"]
    if not parts(cfg) or helm is None:
        return lines
    release = asyncio.run(helm.deployed(RELEASE, NAMESPACE))
    if release is None:
        lines.append(f"cluster add-ons: release {RELEASE} is not installed in {NAMESPACE} (run `qhubctl cluster "
                     "create`)")
    else:
        lines.append(f"cluster add-ons: release {RELEASE} revision {release.revision}, {release.status}, chart "
                     f"{release.chart_version}: {', '.join(parts(cfg))}")
    return lines
