"""Google's published contract for the GKE API: the container v1 discovery document that google-api-python-client
ships (googleapiclient/discovery_cache/documents/container.v1.json), turned into a request validator, and a small
stateful GKE behind it so a provider can run create -> plan -> update -> delete against it."""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

from fakeapi import Reply, Request, Violation

DOC = json.loads(resources.files("googleapiclient").joinpath(
    "discovery_cache/documents/container.v1.json").read_text())


def _methods(resource: dict[str, Any], prefix: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(f"{prefix}{name}", m) for name, m in resource.get("methods", {}).items()]
    for name, sub in resource.get("resources", {}).items():
        found += _methods(sub, f"{prefix}{name}.")
    return found


METHODS = [(mid, m, re.compile("^/" + re.sub(r"\{[^}]+\}", r"([^/:]+)", re.escape(m["flatPath"])
                                              .replace(r"\{", "{").replace(r"\}", "}")) + "$"))
           for mid, m in _methods(DOC)]


def match(method: str, path: str) -> tuple[str, dict[str, Any], tuple[str, ...]]:
    for mid, spec, pattern in METHODS:
        found = pattern.match(path)
        if found and spec["httpMethod"] == method:
            return mid, spec, found.groups()
    raise Violation(f"no method of container v1 is {method} {path}")


def check(value: Any, schema: dict[str, Any], where: str, int_enums: bool) -> None:
    """Raise Violation where `value` does not fit the discovery schema."""
    if "$ref" in schema:
        schema = DOC["schemas"][schema["$ref"]]
    kind = schema.get("type")
    if kind == "object" and "properties" in schema:
        if not isinstance(value, dict):
            raise Violation(f"{where}: expected an object")
        for key, item in value.items():
            if key not in schema["properties"]:
                raise Violation(f"{where}.{key}: no such field in {schema.get('id', 'object')}")
            prop = schema["properties"][key]
            if prop.get("readOnly"):
                raise Violation(f"{where}.{key}: output only")
            check(item, prop, f"{where}.{key}", int_enums)
    elif kind == "object":  # a map
        if not isinstance(value, dict):
            raise Violation(f"{where}: expected a map")
        for key, item in value.items():
            check(item, schema.get("additionalProperties", {}), f"{where}[{key}]", int_enums)
    elif kind == "array":
        if not isinstance(value, list):
            raise Violation(f"{where}: expected a list")
        for i, item in enumerate(value):
            check(item, schema["items"], f"{where}[{i}]", int_enums)
    elif kind == "string":
        if "enum" in schema:
            if int_enums and isinstance(value, int):
                if not 0 <= value < len(schema["enum"]):
                    raise Violation(f"{where}: enum number {value} out of range")
            elif value not in schema["enum"]:
                raise Violation(f"{where}: {value!r} is not one of {schema['enum']}")
        elif schema.get("format") in ("int64", "uint64"):
            if not re.fullmatch(r"-?[0-9]+", str(value)):
                raise Violation(f"{where}: {value!r} is not an int64")
        elif not isinstance(value, str):
            raise Violation(f"{where}: expected a string, got {value!r}")
    elif kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            raise Violation(f"{where}: expected an integer, got {value!r}")
    elif kind == "boolean":
        if not isinstance(value, bool):
            raise Violation(f"{where}: expected a boolean, got {value!r}")


def validate(request: Request) -> tuple[str, tuple[str, ...]]:
    mid, spec, path_args = match(request.method, request.path)
    allowed = set(spec.get("parameters", {})) | set(DOC.get("parameters", {})) | {"$alt"}
    for name in request.query:
        if name not in allowed:
            raise Violation(f"query parameter {name} is not defined for {mid}")
    int_enums = "enum-encoding=int" in ";".join(request.query.get("$alt", []))
    if "request" in spec:
        if request.body is None:
            raise Violation(f"{mid} needs a {spec['request']['$ref']} body")
        check(request.body, spec["request"], spec["request"]["$ref"], int_enums)
    elif request.body not in (None, {}):
        raise Violation(f"{mid} takes no body")
    return mid, path_args


class FakeGKE:
    """Clusters by path; every operation finishes at once."""

    def __init__(self) -> None:
        self.clusters: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, tuple[str, ...]]] = []
        self.ops = 0

    def _op(self, kind: str, target: str) -> Reply:
        self.ops += 1
        return 200, {"name": f"operation-{self.ops}", "operationType": kind, "status": "DONE",
                     "targetLink": target}

    def __call__(self, request: Request) -> Reply:
        mid, args = validate(request)
        self.calls.append((mid, args))
        body = request.body or {}
        base = "projects/{}/locations/{}".format(*args[:2])
        if mid == "projects.locations.operations.get":
            return 200, {"name": args[2], "status": "DONE"}
        if mid == "projects.locations.clusters.create":
            cluster = json.loads(json.dumps(body["cluster"]))
            for pool in cluster.get("nodePools", []):
                pool["status"] = "RUNNING"
            cluster.update(status="RUNNING", endpoint="203.0.113.10",
                           currentMasterVersion=cluster["initialClusterVersion"] + ".5-gke.1200",
                           masterAuth={"clusterCaCertificate": "Y2E="})
            del cluster["initialClusterVersion"]
            self.clusters[f"{base}/clusters/{cluster['name']}"] = cluster
            return self._op("CREATE_CLUSTER", cluster["name"])
        path = f"{base}/clusters/{args[2]}"
        cluster = self.clusters.get(path)
        if cluster is None:
            return 404, {"error": {"code": 404, "message": f"Not found: {path}.", "status": "NOT_FOUND"}}
        pools = {p["name"]: p for p in cluster["nodePools"]}
        if mid == "projects.locations.clusters.get":
            return 200, cluster
        if mid == "projects.locations.clusters.delete":
            del self.clusters[path]
            return self._op("DELETE_CLUSTER", path)
        if mid == "projects.locations.clusters.setAddons":
            cluster["addonsConfig"] = {**cluster.get("addonsConfig", {}), **body["addonsConfig"]}
            return self._op("SET_ADDONS", path)
        if mid == "projects.locations.clusters.setNetworkPolicy":
            # GKE's clusters start with the add-on off; a set message without `disabled` is false (proto3)
            addon = cluster.get("addonsConfig", {}).get("networkPolicyConfig")
            if addon is None or addon.get("disabled", False):
                return 400, {"error": {"code": 400, "status": "FAILED_PRECONDITION", "message":
                                       "Network policy add-on must be enabled before enabling network policy."}}
            cluster["networkPolicy"] = body["networkPolicy"]
            return self._op("SET_NETWORK_POLICY", path)
        if mid == "projects.locations.clusters.nodePools.create":
            cluster["nodePools"].append({**body["nodePool"], "status": "RUNNING"})
            return self._op("CREATE_NODE_POOL", path)
        pool = pools.get(args[3])
        if pool is None:
            return 404, {"error": {"code": 404, "message": "node pool not found", "status": "NOT_FOUND"}}
        if mid == "projects.locations.clusters.nodePools.get":
            return 200, {**pool, "version": cluster["currentMasterVersion"],
                         "config": {**pool.get("config", {}), "imageType": "COS_CONTAINERD"}}
        if mid == "projects.locations.clusters.nodePools.delete":
            cluster["nodePools"].remove(pool)
        elif mid == "projects.locations.clusters.nodePools.setAutoscaling":
            pool["autoscaling"] = body["autoscaling"]
        elif mid == "projects.locations.clusters.nodePools.update":
            pool["config"]["labels"] = body.get("labels", {}).get("labels", {})
            pool["config"]["taints"] = [
                {**t, "effect": DOC["schemas"]["NodeTaint"]["properties"]["effect"]["enum"][t["effect"]]
                 if isinstance(t.get("effect"), int) else t.get("effect")}
                for t in body.get("taints", {}).get("taints", [])]
        else:
            raise Violation(f"the fake does not implement {mid}")
        return self._op(mid.rsplit(".", 1)[1], path)
