"""The EKS bearer token, made in-process so the kubeconfig needs neither the aws CLI nor aws-iam-authenticator.

A token is a pre-signed STS GetCallerIdentity URL that also signs the header `x-k8s-aws-id: <cluster>`,
base64url-encoded behind the prefix `k8s-aws-v1.`. EKS calls the URL and maps the identity it returns to a
Kubernetes user. The signature uses boto3's usual credentials (profile, env, instance role), so the kubeconfig
runs `qhubctl cluster eks-token` as a client-go credential exec plugin.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import shutil
import sys
from typing import Any

import boto3

PREFIX = "k8s-aws-v1."
HEADER = "x-k8s-aws-id"
# STS accepts pre-signed URLs for up to 15 minutes; client-go refreshes the token before it expires.
LIFETIME = dt.timedelta(minutes=14)


def token(cluster: str, region: str, session: boto3.session.Session | None = None) -> str:
    session = session or boto3.session.Session(region_name=region)
    sts = session.client("sts", region_name=region)

    def add_cluster_header(request: Any, **_: Any) -> None:
        request.headers[HEADER] = cluster

    sts.meta.events.register("before-sign.sts.GetCallerIdentity", add_cluster_header)
    url = sts.generate_presigned_url("get_caller_identity", Params={}, ExpiresIn=60, HttpMethod="GET")
    return PREFIX + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


def decode(value: str) -> str:
    """The pre-signed URL inside a token (for tests and debugging)."""
    body = value[len(PREFIX):]
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()


def exec_credential(cluster: str, region: str, now: dt.datetime | None = None) -> dict[str, Any]:
    expires = (now or dt.datetime.now(dt.timezone.utc)) + LIFETIME
    return {
        "kind": "ExecCredential",
        "apiVersion": "client.authentication.k8s.io/v1beta1",
        "spec": {},
        "status": {"expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ"), "token": token(cluster, region)},
    }


def exec_user(cluster: str, region: str) -> dict[str, Any]:
    """The kubeconfig `user` entry: run this qhubctl to get a token; AWS_PROFILE is kept if set."""
    command = shutil.which("qhubctl") or os.path.join(os.path.dirname(sys.executable), "qhubctl")
    env = [{"name": "AWS_PROFILE", "value": os.environ["AWS_PROFILE"]}] if os.environ.get("AWS_PROFILE") else None
    spec: dict[str, Any] = {
        "apiVersion": "client.authentication.k8s.io/v1beta1",
        "command": command,
        "args": ["cluster", "eks-token", "--cluster-name", cluster, "--region", region],
        "interactiveMode": "Never",
        "provideClusterInfo": False,
    }
    if env:
        spec["env"] = env
    return {"exec": spec}


def main_json(cluster: str, region: str) -> str:
    return json.dumps(exec_credential(cluster, region))
