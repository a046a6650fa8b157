"""Kubeconfig credential exec plugins served by qhubctl itself, so no cloud CLI is needed:
`qhubctl cluster gke-token` prints a client-go ExecCredential with a Google OAuth access token from Application
Default Credentials (what gke-gcloud-auth-plugin does). The EKS one is in qhubctl.providers.eks_token."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sys
from typing import Any

API_VERSION = "client.authentication.k8s.io/v1beta1"


def exec_user(subcommand: str, *args: str) -> dict[str, Any]:
    command = shutil.which("qhubctl") or os.path.join(os.path.dirname(sys.executable), "qhubctl")
    return {"exec": {"apiVersion": API_VERSION, "command": command, "args": ["cluster", subcommand, *args],
                     "interactiveMode": "Never", "provideClusterInfo": False}}


def gke_credential() -> dict[str, Any]:
    import google.auth
    import google.auth.transport.requests

    credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    credentials.refresh(google.auth.transport.requests.Request())
    expiry = credentials.expiry or (dt.datetime.utcnow() + dt.timedelta(minutes=30))
    return {"kind": "ExecCredential", "apiVersion": API_VERSION, "spec": {},
            "status": {"token": credentials.token, "expirationTimestamp": expiry.strftime("%Y-%m-%dT%H:%M:%SZ")}}
