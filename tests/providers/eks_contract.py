"""EKS add-ons for the AWS provider tests. The AWS emulator (moto) does not implement them, so a loopback proxy
sits in front of moto: requests for `/clusters/<name>/addons...` and `/addons/supported-versions` are answered by a
small stateful fake, every other request goes to moto unchanged (headers, status and body), so the provider's whole
create -> plan -> destroy runs against one endpoint.

The fake checks each add-on request against botocore's EKS service model, the published contract boto3 is
generated from (route and method, known members, required members, enum values, value types, query parameters
and their types), and the configuration values against the part of each add-on's configuration schema (`aws eks
describe-addon-configuration --addon-name <add-on>`) it knows: for vpc-cni a JSON object whose
`enableNetworkPolicy` is the string "true" or "false"; for aws-ebs-csi-driver `controller.k8sTagClusterId` (a
string) and `node.tolerateAllTaints` (a boolean). Add-ons other than these two are refused, and so is an IAM role
ARN that is not one. A request that breaks the contract is answered 400 and recorded in `violations`.

DescribeAddonVersions answers from `catalog` (a copy of CATALOG per fake, which a test may change): for each add-on
two versions, each compatible with some of the Kubernetes versions the tests use, one marked default per
Kubernetes version, 1.34's default newer than 1.33's; filtered by `addonName` and `kubernetesVersion` and paged by
`maxResults`/`nextToken` like EKS. CreateAddon and UpdateAddon record the `addonVersion` asked for (in `asked`, and
on the add-on; CreateAddon without one gets the default, as on EKS) and refuse, as EKS does (400
InvalidParameterException, not a contract violation), a version the catalog has not for the cluster's Kubernetes
version. Add-ons go away with their cluster, as on EKS.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import boto3
import botocore.session
from fakeapi import Violation

MODEL = botocore.session.get_session().get_service_model("eks")
OPERATIONS = ("CreateAddon", "DescribeAddon", "UpdateAddon", "ListAddons", "DeleteAddon", "DescribeAddonVersions")
ROUTES = []
for _name in OPERATIONS:
    _op = MODEL.operation_model(_name)
    _pattern = re.sub(r"\\\{[^}]+\\\}", "([^/]+)", re.escape(_op.http["requestUri"]))
    ROUTES.append((_name, _op.http["method"], re.compile(f"^{_pattern}$")))
# the requests the fake answers (the others go to moto)
ADDONS_PATH = re.compile(r"^(/clusters/[^/]+/addons(/.*)?|/addons/supported-versions)$")
CLUSTER_PATH = re.compile(r"^/clusters/([^/]+)$")
# The vpc-cni configuration schema's properties the fake knows (a subset of the add-on's published schema).
VPC_CNI_KEYS = {"enableNetworkPolicy": ("true", "false"), "env": None, "nodeAgent": None, "resources": None,
                "tolerations": None, "init": None}
# The aws-ebs-csi-driver configuration schema's properties the fake knows: section -> {key: value type}.
EBS_CSI_KEYS: dict[str, dict[str, type]] = {"controller": {"k8sTagClusterId": str, "extraVolumeTags": dict},
                                           "node": {"tolerateAllTaints": bool}}
ADDON_NAMES = ("vpc-cni", "aws-ebs-csi-driver")
# DescribeAddonVersions' catalog: add-on -> [(version, {Kubernetes version: whether it is that version's default})]
CATALOG: dict[str, list[tuple[str, dict[str, bool]]]] = {
    "vpc-cni": [("v1.19.6-eksbuild.1", {"1.33": True}),
                ("v1.20.4-eksbuild.2", {"1.33": False, "1.34": True})],
    "aws-ebs-csi-driver": [("v1.45.0-eksbuild.2", {"1.33": True}),
                           ("v1.48.0-eksbuild.1", {"1.33": False, "1.34": True})],
}
PAGE = 1  # add-ons per DescribeAddonVersions page without maxResults (small, so a client must follow nextToken)
ROLE_ARN = re.compile(r"^arn:aws:iam::[0-9]{12}:role/.+$")


def check_shape(value: Any, shape: Any, where: str) -> None:
    kind = shape.type_name
    if kind == "string":
        if not isinstance(value, str):
            raise Violation(f"{where}: expected a string, got {value!r}")
        if shape.enum and value not in shape.enum:
            raise Violation(f"{where}: {value!r} is not one of {shape.enum}")
    elif kind == "boolean" and not isinstance(value, bool):
        raise Violation(f"{where}: expected a boolean")
    elif kind == "integer" and (isinstance(value, bool) or not isinstance(value, int)):
        raise Violation(f"{where}: expected an integer")
    elif kind == "map":
        if not isinstance(value, dict):
            raise Violation(f"{where}: expected a map")
        for key, item in value.items():
            check_shape(key, shape.key, f"{where} key")
            check_shape(item, shape.value, f"{where}[{key}]")
    elif kind == "list":
        if not isinstance(value, list):
            raise Violation(f"{where}: expected a list")
        for i, item in enumerate(value):
            check_shape(item, shape.member, f"{where}[{i}]")
    elif kind == "structure":
        if not isinstance(value, dict):
            raise Violation(f"{where}: expected an object")
        for key, item in value.items():
            if key not in shape.members:
                raise Violation(f"{where}.{key}: no such member of {shape.name}")
            check_shape(item, shape.members[key], f"{where}.{key}")


def validate(method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[str, tuple[str, ...]]:
    """The operation a request is, and its path arguments; Violation where it breaks the model."""
    for name, verb, pattern in ROUTES:
        found = pattern.match(path)
        if found and verb == method:
            break
    else:
        raise Violation(f"no EKS add-on operation is {method} {path}")
    op = MODEL.operation_model(name)
    members = op.input_shape.members
    located = {n: s.serialization.get("location") for n, s in members.items()}
    for key, values in query.items():
        shape = next((s for n, s in members.items()
                      if s.serialization.get("name", n) == key and located[n] == "querystring"), None)
        if shape is None:
            raise Violation(f"{name}: query parameter {key} is not in the model")
        if shape.type_name == "integer" and not all(v.isdigit() for v in values):
            raise Violation(f"{name}: query parameter {key} is not an integer: {values}")
        if shape.type_name != "list" and len(values) != 1:
            raise Violation(f"{name}: query parameter {key} given {len(values)} times")
    body = body or {}
    if not isinstance(body, dict):
        raise Violation(f"{name}: the body is not a JSON object")
    for key, value in body.items():
        if key not in members or located[key]:
            raise Violation(f"{name}.{key}: not a body member of {op.input_shape.name}")
        check_shape(value, members[key], f"{name}.{key}")
    in_path = {n for n, where in located.items() if where == "uri"}
    for required in op.input_shape.required_members:
        if required not in in_path and required not in body:
            raise Violation(f"{name}.{required}: required")
    args = tuple(unquote(a) for a in found.groups())
    addon = body.get("addonName") or (args[1] if len(args) > 1 else None)
    if addon is not None and addon not in ADDON_NAMES:
        raise Violation(f"{name}: the fake knows no add-on {addon!r}")
    if "serviceAccountRoleArn" in body and not ROLE_ARN.match(body["serviceAccountRoleArn"]):
        raise Violation(f"{name}.serviceAccountRoleArn: {body['serviceAccountRoleArn']!r} is not an IAM role ARN")
    if "configurationValues" in body:
        check = check_ebs_csi_config if addon == "aws-ebs-csi-driver" else check_vpc_cni_config
        check(body["configurationValues"], name)
    return name, args


def _config_object(text: str, where: str) -> dict[str, Any]:
    """An add-on's configurationValues: a JSON object."""
    try:
        values = json.loads(text)
    except ValueError:
        raise Violation(f"{where}.configurationValues: not JSON: {text!r}") from None
    if not isinstance(values, dict):
        raise Violation(f"{where}.configurationValues: not an object")
    return values


def check_vpc_cni_config(text: str, where: str) -> None:
    values = _config_object(text, where)
    for key, value in values.items():
        if key not in VPC_CNI_KEYS:
            raise Violation(f"{where}.configurationValues.{key}: not in the vpc-cni configuration schema")
        allowed = VPC_CNI_KEYS[key]
        if allowed and value not in allowed:
            raise Violation(f"{where}.configurationValues.{key}: {value!r} is not one of {allowed} (a string)")


def check_ebs_csi_config(text: str, where: str) -> None:
    values = _config_object(text, where)
    for section, settings in values.items():
        known = EBS_CSI_KEYS.get(section)
        if known is None or not isinstance(settings, dict):
            raise Violation(f"{where}.configurationValues.{section}: not a section of the aws-ebs-csi-driver schema")
        for key, value in settings.items():
            if key not in known or not isinstance(value, known[key]):
                raise Violation(f"{where}.configurationValues.{section}.{key}: not in the schema, or not a "
                                f"{known.get(key, object).__name__}")


class FakeAddons:
    """Add-ons by (cluster, name); a new or updated add-on is ACTIVE from the second look on."""

    def __init__(self, moto_url: str) -> None:
        self.moto = moto_url
        self.addons: dict[tuple[str, str], dict[str, Any]] = {}
        self.catalog = {name: [(v, dict(k8s)) for v, k8s in versions] for name, versions in CATALOG.items()}
        self.calls: list[tuple[str, tuple[str, ...]]] = []
        self.asked: list[tuple[str, str, str | None]] = []  # (CreateAddon|UpdateAddon, add-on, addonVersion asked)
        self.violations: list[str] = []

    def _cluster(self, name: str) -> dict[str, Any] | None:
        eks = boto3.client("eks", endpoint_url=self.moto, region_name="us-east-1", aws_access_key_id="fake",
                           aws_secret_access_key="fake")
        try:
            return dict(eks.describe_cluster(name=name)["cluster"])
        except eks.exceptions.ResourceNotFoundException:
            return None

    def default(self, addon: str, kubernetes: str) -> str | None:
        return next((v for v, k8s in self.catalog[addon] if k8s.get(kubernetes)), None)

    def supported_versions(self, query: dict[str, list[str]]) -> dict[str, Any]:
        """DescribeAddonVersions: the catalog's add-ons (one, with addonName) with their versions compatible with
        kubernetesVersion (all without it), a page of maxResults add-ons at a time."""
        name, kubernetes = (query.get(k, [None])[0] for k in ("addonName", "kubernetesVersion"))
        found = []
        for addon, versions in sorted(self.catalog.items()):
            items = [{"addonVersion": v, "architecture": ["amd64", "arm64"], "requiresConfiguration": False,
                      "compatibilities": [{"clusterVersion": k, "platformVersions": ["*"], "defaultVersion": d}
                                          for k, d in k8s.items()]}
                     for v, k8s in versions if kubernetes is None or kubernetes in k8s]
            if (name is None or addon == name) and items:
                found.append({"addonName": addon, "type": "networking" if addon == "vpc-cni" else "storage",
                              "addonVersions": items, "publisher": "eks", "owner": "aws"})
        start = int(query.get("nextToken", ["0"])[0])
        size = int(query.get("maxResults", [str(PAGE)])[0])
        page: dict[str, Any] = {"addons": found[start:start + size]}
        if start + size < len(found):
            page["nextToken"] = str(start + size)
        check_shape(page, MODEL.operation_model("DescribeAddonVersions").output_shape, "the fake's answer")
        return page

    def _refused_version(self, operation: str, addon: str, body: dict[str, Any],
                         kubernetes: str) -> tuple[int, str, Any] | None:
        """Records the addonVersion a CreateAddon/UpdateAddon asked for; EKS's answer to one it has not for the
        cluster's Kubernetes version, else None."""
        version = body.get("addonVersion")
        self.asked.append((operation, addon, version))
        if version is None or kubernetes in dict(self.catalog[addon]).get(version, {}):
            return None
        return 400, "InvalidParameterException", {
            "message": f"Addon version specified is not supported: {addon} {version} on Kubernetes {kubernetes}"}

    def answer(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, str, Any]:
        """(status, error type or "", payload)."""
        try:
            name, args = validate(method, path, query, body)
        except Violation as exc:
            self.violations.append(f"{method} {path}: {exc}")
            return 400, "InvalidParameterException", {"message": f"contract violation: {exc}"}
        self.calls.append((name, args))
        if name == "DescribeAddonVersions":
            return 200, "", self.supported_versions(query)
        cluster = args[0]
        found = self._cluster(cluster)
        if found is None:
            return 404, "ResourceNotFoundException", {"message": f"No cluster found for name: {cluster}."}
        if name == "ListAddons":
            return 200, "", {"addons": sorted(a for c, a in self.addons if c == cluster)}
        if name == "CreateAddon":
            key = (cluster, body["addonName"])
            if key in self.addons:
                return 409, "ResourceInUseException", {"message": f"Addon already exists: {key[1]}"}
            refused = self._refused_version(name, key[1], body, found["version"])
            if refused:
                return refused
            now = time.time()
            self.addons[key] = {
                "addonName": key[1], "clusterName": cluster, "status": "CREATING",
                "addonVersion": body.get("addonVersion") or self.default(key[1], found["version"]),
                "health": {"issues": []}, "createdAt": now, "modifiedAt": now, "tags": dict(body.get("tags") or {}),
                "addonArn": f"arn:aws:eks:us-east-1:123456789012:addon/{cluster}/{key[1]}/0",
                "configurationValues": body.get("configurationValues", ""),
                **({"serviceAccountRoleArn": body["serviceAccountRoleArn"]} if "serviceAccountRoleArn" in body else {}),
            }
            return 200, "", {"addon": dict(self.addons[key])}
        addon = self.addons.get((cluster, args[1]))
        if addon is None:
            return 404, "ResourceNotFoundException", {"message": f"No addon: {args[1]} found in cluster: {cluster}"}
        if name == "DescribeAddon":
            shown = dict(addon)
            addon["status"] = {"CREATING": "ACTIVE", "UPDATING": "ACTIVE"}.get(addon["status"], addon["status"])
            return 200, "", {"addon": shown}
        if name == "UpdateAddon":
            refused = self._refused_version(name, args[1], body, found["version"])
            if refused:
                return refused
            addon.update(status="UPDATING", modifiedAt=time.time())
            for key in ("configurationValues", "serviceAccountRoleArn", "addonVersion"):
                if key in body:
                    addon[key] = body[key]
            return 200, "", {"update": {"id": "u-1", "status": "InProgress", "type": "AddonUpdate", "errors": []}}
        del self.addons[(cluster, args[1])]
        return 200, "", {"addon": {**addon, "status": "DELETING"}}

    def cluster_deleted(self, cluster: str) -> None:
        for key in [k for k in self.addons if k[0] == cluster]:
            del self.addons[key]


HOP_HEADERS = {"connection", "transfer-encoding", "content-length", "server", "date", "keep-alive"}


@contextmanager
def proxy(moto_url: str) -> Iterator[tuple[str, FakeAddons]]:
    """A loopback endpoint: EKS add-on requests to the fake, everything else to moto."""
    fake = FakeAddons(moto_url)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            return

        def _reply(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
            self.send_response(status)
            for key, value in headers:
                if key.lower() not in HOP_HEADERS:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _serve(self) -> None:
            split = urlsplit(self.path)
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if ADDONS_PATH.match(split.path):
                status, error, payload = fake.answer(self.command, split.path, parse_qs(split.query),
                                                     json.loads(raw) if raw else None)
                headers = [("Content-Type", "application/json")] + ([("x-amzn-ErrorType", error)] if error else [])
                return self._reply(status, headers, json.dumps(payload).encode())
            request = urllib.request.Request(moto_url + self.path, data=raw or None, method=self.command,
                                             headers={k: v for k, v in self.headers.items() if k.lower() != "host"})
            try:
                with urllib.request.urlopen(request, timeout=60) as answer:
                    status, headers, data = answer.status, list(answer.headers.items()), answer.read()
            except urllib.error.HTTPError as exc:
                status, headers, data = exc.code, list(exc.headers.items()), exc.read()
            deleted = CLUSTER_PATH.match(split.path)
            if deleted and self.command == "DELETE" and status < 300:
                fake.cluster_deleted(unquote(deleted.group(1)))
            self._reply(status, headers, data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, port = server.server_address[:2]
    try:
        yield f"http://{host}:{port}", fake
    finally:
        server.shutdown()
        server.server_close()
