"""DigitalOcean's contract for DOKS as pydo carries it. DigitalOcean's OpenAPI document is not shipped by any PyPI
or npm package reachable here (pydo's sdist and wheel hold only generated code), so requests are checked against
the nearest real thing: pydo is generated from that document, and every operation's docstring carries the request
body template (field names, nesting, value types, "Required." marks) and its route. A small stateful DOKS answers."""

from __future__ import annotations

import inspect
import re
from typing import Any

import pydo.operations._operations as ops
from fakeapi import Reply, Request, Violation

SOURCE = inspect.getsource(ops.KubernetesOperations)


def _leaf(value: str) -> Any:
    """The type of a template value: "str", 0, 0.0, bool, or a default such as False, 10, "nyc1"."""
    if value in ("bool", "True", "False"):
        return bool
    if re.fullmatch(r"-?[0-9]+", value):
        return int
    if re.fullmatch(r"-?[0-9]+\.[0-9]+", value):
        return (int, float)
    if value == "{}":
        return dict
    if value.startswith("["):
        return "scalar-list"
    return str


def body_template(operation: str) -> dict[tuple[str, ...], tuple[Any, bool]]:
    """path -> (python type or 'object'/'list', required) from the operation's JSON input template."""
    start = SOURCE.index(f"    def {operation}(")
    text = SOURCE[start:SOURCE.index("\n    def ", start + 10)]
    lines = text[text.index("body = {"):].splitlines()
    base = len(lines[0]) - len(lines[0].lstrip())
    schema: dict[tuple[str, ...], tuple[Any, bool]] = {}
    stack: list[str] = []
    last: tuple[str, ...] | None = None
    for line in lines[1:]:
        indent = len(line) - len(line.lstrip())
        stripped = line.strip()
        if not stripped:
            break
        if (indent - base) % 4:  # a wrapped comment line
            if last is not None and stripped.endswith("Required."):
                schema[last] = (schema[last][0], True)
            continue
        code, _, comment = stripped.partition("  #")
        code = code.rstrip(",").strip()
        required = comment.strip().endswith("Required.")
        if code in ("}", "]"):
            if not stack:
                break
            stack.pop()
            continue
        if code == "{":  # a dict inside a list
            stack.append("[]")
            continue
        match = re.fullmatch(r'"([^"]+)": (.+)', code)
        if not match:
            continue
        key, value = match.groups()
        path = (*stack, key)
        if value == "{":
            schema[path] = ("object", required)
            stack.append(key)
        elif value == "[":
            schema[path] = ("list", required)
            stack.append(key)
        else:
            kind = _leaf(value)
            schema[path] = (kind, required)
        last = path
    return schema


def check_body(operation: str, body: Any) -> None:
    schema = body_template(operation)
    if not isinstance(body, dict):
        raise Violation(f"{operation}: the body must be an object")

    def walk(value: Any, path: tuple[str, ...]) -> None:
        for key, item in value.items():
            here = (*path, key)
            if here not in schema:
                raise Violation(f"{operation}: {'.'.join(here)} is not a field of the request")
            kind, _ = schema[here]
            if kind == "object":
                if not isinstance(item, dict):
                    raise Violation(f"{operation}: {'.'.join(here)} must be an object")
                walk(item, here)
            elif kind == "list":
                if not isinstance(item, list):
                    raise Violation(f"{operation}: {'.'.join(here)} must be a list")
                for element in item:
                    if isinstance(element, dict):
                        walk(element, (*here, "[]"))
            elif kind == "scalar-list":
                if not isinstance(item, list):
                    raise Violation(f"{operation}: {'.'.join(here)} must be a list")
            elif kind is dict:
                if not isinstance(item, dict):
                    raise Violation(f"{operation}: {'.'.join(here)} must be a map")
            elif isinstance(item, bool) and kind is not bool or not isinstance(item, kind):
                raise Violation(f"{operation}: {'.'.join(here)}={item!r} has the wrong type")
        for req_path, (_, required) in schema.items():
            parent = req_path[:-1]
            if required and parent == path and req_path[-1] not in value:
                raise Violation(f"{operation}: {'.'.join(req_path)} is required")

    walk(body, ())


class FakeDOKS:
    def __init__(self) -> None:
        self.clusters: dict[str, dict[str, Any]] = {}
        self.calls: list[str] = []
        self.associated = {"load_balancers": [{"id": "lb-1", "name": "a1b2c3"}],
                           "volumes": [{"id": "vol-1", "name": "pvc-home"}], "volume_snapshots": []}
        self.deleted_with_resources: list[str] = []

    def __call__(self, request: Request) -> Reply:
        path, method = request.path, request.method
        self.calls.append(f"{method} {path}")
        if request.headers.get("Authorization") != "Bearer do-test-token":
            return 401, {"id": "unauthorized", "message": "Unable to authenticate you."}
        if path == "/v2/account" and method == "GET":
            return 200, {"account": {"email": "ops@example.org", "status": "active"}}
        if path == "/v2/kubernetes/options" and method == "GET":
            return 200, {"options": {"versions": [{"slug": "1.34.1-do.0", "kubernetes_version": "1.34.1"},
                                                  {"slug": "1.33.5-do.2", "kubernetes_version": "1.33.5"}]}}
        if path == "/v2/kubernetes/clusters" and method == "GET":
            return 200, {"kubernetes_clusters": list(self.clusters.values()), "meta": {"total": len(self.clusters)}}
        if path == "/v2/kubernetes/clusters" and method == "POST":
            check_body("create_cluster", request.body)
            cid = f"c{len(self.calls)}"
            cluster = {**request.body, "id": cid, "status": {"state": "running"},
                       "version": request.body["version"],
                       "node_pools": [{**p, "id": f"{cid}-{p['name']}"} for p in request.body["node_pools"]]}
            self.clusters[cid] = cluster
            return 201, {"kubernetes_cluster": cluster}
        found = re.fullmatch(r"/v2/kubernetes/clusters/([^/]+)(/.*)?", path)
        if not found or found.group(1) not in self.clusters:
            return 404, {"id": "not_found", "message": "The resource you requested could not be found."}
        cid, rest = found.group(1), found.group(2) or ""
        cluster = self.clusters[cid]
        if rest == "" and method == "GET":
            return 200, {"kubernetes_cluster": cluster}
        if rest == "/kubeconfig" and method == "GET":
            return 200, f"apiVersion: v1\nkind: Config\nclusters:\n- name: do-{cid}\n"
        if rest == "/destroy_with_associated_resources" and method == "GET":
            return 200, self.associated
        if rest == "/destroy_with_associated_resources/dangerous" and method == "DELETE":
            self.deleted_with_resources.append(cid)
            del self.clusters[cid]
            return 204, None
        if rest == "/node_pools" and method == "POST":
            check_body("add_node_pool", request.body)
            cluster["node_pools"].append({**request.body, "id": f"{cid}-{request.body['name']}"})
            return 201, {"node_pool": cluster["node_pools"][-1]}
        pool_match = re.fullmatch(r"/node_pools/([^/]+)", rest)
        if pool_match:
            pools = {p["id"]: p for p in cluster["node_pools"]}
            pool = pools.get(pool_match.group(1))
            if pool is None:
                return 404, {"id": "not_found", "message": "node pool not found"}
            if method == "PUT":
                check_body("update_node_pool", request.body)
                pool.update(request.body)
                return 202, {"node_pool": pool}
            if method == "DELETE":
                cluster["node_pools"].remove(pool)
                return 204, None
        raise Violation(f"the fake does not implement {method} {path}")
