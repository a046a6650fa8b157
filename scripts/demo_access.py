"""The demo's door: after `qhubctl deploy` of the local demo, find the hub's URL and login, prove that they work
(a real login through the proxy), write them to $QHUB_CACHE/demo/access.json and print them.

    python scripts/demo_access.py CONFIG [--out PATH]

Exit status 1 with a message naming what is missing when the URL does not answer or the login is refused.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import sys
import time
from pathlib import Path

import requests

from qhubctl import kube
from qhubctl.config.loader import load_config
from qhubctl.errors import QHubError


def _secret(api, namespace: str, name: str, key: str) -> str:  # noqa: ANN001 - kubernetes ApiClient
    from kubernetes import client

    data = client.CoreV1Api(api).read_namespaced_secret(name, namespace).data or {}
    if key not in data:
        raise QHubError(f"the Secret {namespace}/{name} has no key {key}")
    return base64.b64decode(data[key]).decode()


def _node_port(api, namespace: str, name: str, port_name: str) -> int:  # noqa: ANN001
    from kubernetes import client

    svc = client.CoreV1Api(api).read_namespaced_service(name, namespace)
    for port in svc.spec.ports:
        if port.name == port_name and port.node_port:
            return int(port.node_port)
    raise QHubError(f"the Service {namespace}/{name} has no NodePort {port_name!r}",
                    hint="the local provider exposes the hub as a NodePort; is this a local-provider config?")


def login(url: str, username: str, password: str, timeout: float = 120) -> requests.Session:
    """Log in through the hub's login form (with its XSRF token), as a browser does; the session holds the cookie."""
    deadline = time.monotonic() + timeout
    while True:
        session = requests.Session()
        try:
            page = session.get(f"{url}hub/login", timeout=10)
            if page.status_code == 200:
                break
            problem = f"HTTP {page.status_code}"
        except requests.RequestException as exc:
            problem = str(exc)
        if time.monotonic() > deadline:
            raise QHubError(f"{url}hub/login did not answer within {timeout:.0f}s: {problem}")
        time.sleep(2)
    found = re.search(r'name="_xsrf" value="([^"]+)"', page.text)
    form = {"username": username, "password": password, **({"_xsrf": found.group(1)} if found else {})}
    done = session.post(f"{url}hub/login", data=form, allow_redirects=False, timeout=30)
    if done.status_code != 302 or "login" in done.headers.get("Location", "").split("?")[0]:
        raise QHubError(f"logging in as {username} at {url}hub/login was refused (HTTP {done.status_code})")
    return session


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--out", default=str(Path(os.environ.get("QHUB_CACHE") or Path.home() / ".cache/qhub")
                                            / "demo" / "access.json"))
    args = parser.parse_args(argv)
    try:
        cfg = load_config(Path(args.config), environ=dict(os.environ))
        api = kube.api_client(os.environ.get("KUBECONFIG"))
        ns, release = cfg.namespace, cfg.release_name
        url = f"http://127.0.0.1:{_node_port(api, ns, f'{release}-proxy-public', 'http')}/"
        username = next(u for u in cfg.auth.users if u not in cfg.auth.admins)
        password = _secret(api, ns, f"{release}-hub", "dummy-password")
        login(url, username, password)
        access = {"url": url, "username": username, "password": password}
        admin = next(iter(cfg.auth.admins), None)
        if admin:
            access["admin_username"] = admin
            access["admin_password"] = _secret(api, ns, f"{release}-hub", "dummy-admin-password")
        if cfg.components.kubessh:
            ssh = _node_port(api, ns, f"{release}-kubessh", "ssh")
            access["ssh"] = f"ssh -p {ssh} {username}@127.0.0.1"
    except (QHubError, StopIteration) as err:
        print(f"demo: {err or 'the config has no non-admin user to log in as'}", file=sys.stderr)
        return 1
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(access, indent=2) + "\n")
    out.chmod(0o600)
    print(f"\nQHub is up: open {url} and log in as {username} with password {password}")
    if "ssh" in access:
        print(f"SSH (token from the hub's token page as password): {access['ssh']}")
    print(f"(also in {out})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
