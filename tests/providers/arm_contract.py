"""Azure's contract for AKS as the SDK carries it. Microsoft's OpenAPI documents (azure-rest-api-specs) are not
shipped by any PyPI or npm package reachable here, so this validates requests against the nearest real thing: the
models azure-mgmt-containerservice and azure-mgmt-resource generate from those documents (field names, nesting,
read-only fields, enum values, required fields as the models document them) plus the SDKs' ARM routes and
api-versions. A small stateful ARM answers, so a provider can run create -> plan -> update -> delete against it."""

from __future__ import annotations

import base64
import enum
import inspect
import re
import typing
from typing import Any

from azure.mgmt.containerservice import models as aks_models
from azure.mgmt.containerservice._configuration import ContainerServiceClientConfiguration
from fakeapi import Reply, Request, Violation

AKS_API = ContainerServiceClientConfiguration(credential=object(), subscription_id="x").api_version
SUB = r"/subscriptions/(?P<sub>[^/]+)/resourcegroups/(?P<rg>[^/]+)"
ROUTES = [
    ("group", re.compile(SUB + "$", re.I)),
    ("cluster", re.compile(SUB + r"/providers/Microsoft\.ContainerService/managedClusters/(?P<cluster>[^/]+)$", re.I)),
    ("pools", re.compile(SUB + r"/providers/Microsoft\.ContainerService/managedClusters/(?P<cluster>[^/]+)"
                         r"/agentPools$", re.I)),
    ("pool", re.compile(SUB + r"/providers/Microsoft\.ContainerService/managedClusters/(?P<cluster>[^/]+)"
                        r"/agentPools/(?P<pool>[a-z][a-z0-9]{0,11})$", re.I)),
    ("credentials", re.compile(SUB + r"/providers/Microsoft\.ContainerService/managedClusters/(?P<cluster>[^/]+)"
                               r"/listClusterUserCredential$", re.I)),
]


def _fields(cls: type) -> dict[str, tuple[str, Any]]:
    if "_attr_to_rest_field" not in cls.__dict__:
        cls()  # the SDK computes its field table on first use
    hints = typing.get_type_hints(cls, localns={"_models": aks_models})
    return {rf._rest_name: (attr, rf, hints.get(attr)) for attr, rf in cls._attr_to_rest_field.items()}


def _required(cls: type) -> set[str]:
    doc = inspect.getdoc(cls) or ""
    entries = re.finditer(r":ivar (\w+):(.*?)(?=\n:ivar |\Z)", doc, re.S)
    return {m.group(1) for m in entries if "Required." in m.group(2)}


def check(value: Any, annotation: Any, where: str, *, create: bool) -> None:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Union:
        enums = [a for a in args if isinstance(a, type) and issubclass(a, enum.Enum)]
        rest = [a for a in args if a is not type(None) and a not in enums]
        if enums and isinstance(value, str):
            known = {str(e.value).lower() for e in enums[0]}
            if value.lower() not in known:
                raise Violation(f"{where}: {value!r} is not a known {enums[0].__name__} ({sorted(known)})")
            return
        if len(rest) == 1:
            return check(value, rest[0], where, create=create)
        return
    if origin in (list, typing.List):
        if not isinstance(value, list):
            raise Violation(f"{where}: expected a list")
        for i, item in enumerate(value):
            check(item, args[0], f"{where}[{i}]", create=create)
        return
    if origin in (dict, typing.Dict):
        if not isinstance(value, dict):
            raise Violation(f"{where}: expected a map")
        for key, item in value.items():
            check(item, args[1], f"{where}[{key}]", create=create)
        return
    if isinstance(annotation, type) and hasattr(annotation, "_attr_to_rest_field") or (
            isinstance(annotation, type) and annotation.__module__.startswith("azure.mgmt.containerservice.models")):
        if not isinstance(value, dict):
            raise Violation(f"{where}: expected a {annotation.__name__} object")
        known = _fields(annotation)
        for key, item in value.items():
            if key not in known:
                raise Violation(f"{where}.{key}: no such field in {annotation.__name__}")
            _, rf, hint = known[key]
            if rf._visibility and set(rf._visibility) <= {"read"}:
                raise Violation(f"{where}.{key}: read-only in {annotation.__name__}")
            check(item, hint, f"{where}.{key}", create=create)
        if create:
            rest_of = {attr: rest for rest, (attr, _, _) in known.items()}
            for attr in _required(annotation):
                if attr in rest_of and rest_of[attr] not in value:
                    raise Violation(f"{where}.{rest_of[attr]}: required in {annotation.__name__}")
        return
    simple = {str: str, int: int, float: (int, float), bool: bool}
    if annotation in simple and (not isinstance(value, simple[annotation]) or
                                 (annotation is int and isinstance(value, bool))):
        raise Violation(f"{where}: expected {annotation.__name__}, got {value!r}")


class FakeARM:
    def __init__(self) -> None:
        self.groups: dict[str, dict[str, Any]] = {}
        self.clusters: dict[str, dict[str, Any]] = {}
        self.pools: dict[str, dict[str, dict[str, Any]]] = {}
        self.calls: list[tuple[str, str]] = []

    def route(self, request: Request) -> tuple[str, dict[str, str]]:
        for name, pattern in ROUTES:
            found = pattern.match(request.path)
            if found:
                return name, found.groupdict()
        raise Violation("not an ARM route of Microsoft.Resources or Microsoft.ContainerService")

    def __call__(self, request: Request) -> Reply:
        kind, ids = self.route(request)
        version = request.query.get("api-version", [""])[0]
        if kind != "group" and version != AKS_API:
            raise Violation(f"api-version {version!r}, the SDK's contract is {AKS_API}")
        if not version:
            raise Violation("no api-version")
        self.calls.append((request.method, kind))
        body = request.body
        if kind == "group":
            name = ids["rg"]
            if request.method == "HEAD":
                return (204 if name in self.groups else 404), None
            if request.method == "PUT":
                if not isinstance(body, dict) or "location" not in body:
                    raise Violation("a resource group needs a location")
                self.groups[name] = {"id": request.path, "name": name, "location": body["location"],
                                     "tags": body.get("tags", {}), "properties": {"provisioningState": "Succeeded"}}
                return 201, self.groups[name]
            if request.method == "GET":
                return (200, self.groups[name]) if name in self.groups else (404, _missing("ResourceGroupNotFound"))
            if request.method == "DELETE":
                self.groups.pop(name, None)
                return 200, None
        cluster_name = ids.get("cluster", "")
        if kind == "cluster":
            if request.method == "PUT":  # create, or update with the whole resource (ARM's PUT)
                check(body, aks_models.ManagedCluster, "ManagedCluster", create=cluster_name not in self.clusters)
                props = dict(body["properties"])
                profiles = props.pop("agentPoolProfiles")
                self.pools[cluster_name] = {p["name"]: {k: v for k, v in p.items() if k != "name"} for p in profiles}
                version = props["kubernetesVersion"]  # a minor gets the patch AKS picks; a full version stays
                props.update(provisioningState="Succeeded", nodeResourceGroup=f"MC_{ids['rg']}_{cluster_name}",
                             kubernetesVersion=version + ".2" if version.count(".") == 1 else version,
                             fqdn=f"{cluster_name}.example")
                self.clusters[cluster_name] = {**body, "id": request.path, "name": cluster_name, "properties": props}
                return 200, self._cluster(cluster_name)
            if cluster_name not in self.clusters:
                return 404, _missing("ResourceNotFound")
            if request.method == "GET":
                return 200, self._cluster(cluster_name)
            if request.method == "DELETE":
                del self.clusters[cluster_name]
                self.pools.pop(cluster_name, None)
                return 204, None  # the SDK's contract for a finished delete: 202 (accepted) or 204
        if cluster_name not in self.clusters:
            return 404, _missing("ResourceNotFound")
        pools = self.pools[cluster_name]
        if kind == "pools":
            return 200, {"value": [self._pool(cluster_name, n) for n in pools]}
        if kind == "credentials":
            config = f"apiVersion: v1\nkind: Config\nclusters:\n- name: {cluster_name}\n"
            return 200, {"kubeconfigs": [{"name": "clusterUser", "value": base64.b64encode(config.encode()).decode()}]}
        pool = ids["pool"]
        if request.method == "PUT":
            check(body, aks_models.AgentPool, "AgentPool", create=pool not in pools)
            pools[pool] = dict(body["properties"])
            return 200, self._pool(cluster_name, pool)
        if request.method == "DELETE":
            pools.pop(pool, None)
            return 204, None
        return (200, self._pool(cluster_name, pool)) if pool in pools else (404, _missing("NotFound"))

    def _cluster(self, name: str) -> dict[str, Any]:
        cluster = dict(self.clusters[name])
        cluster["properties"] = {**cluster["properties"], "agentPoolProfiles": [
            {"name": n, **p} for n, p in self.pools[name].items()]}
        return cluster

    def _pool(self, cluster: str, name: str) -> dict[str, Any]:
        return {"id": f"/x/agentPools/{name}", "name": name,
                "properties": {**self.pools[cluster][name], "provisioningState": "Succeeded"}}


def _missing(code: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": "not found"}}
