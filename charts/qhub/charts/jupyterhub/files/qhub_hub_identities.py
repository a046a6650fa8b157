"""Linux identities of users: one uid per user, kept by the hub for the life of the platform.

The record is the ConfigMap <release>-identities (key identities.json) in the release namespace:

    {"version": 1, "serial": 7, "firstUid": 100000, "nextUid": 100003,
     "users": {"alice": 100000, "bob": 100001, "carol": 100002}, "groups": {"analysts": 3001}}

- users: the uid of every user the hub has ever seen, allocated in order from firstUid and never reused (nextUid
  only grows, also past uids deleted from the record by hand). A user's primary gid is their uid (a private
  group), so user ids never meet the group gids of the config, which stay at or below 65000.
- groups: the configured groups' gids as the chart computed them (rewritten when the config changes).
- serial: bumped on every change, so readers can tell the record moved.

The hub creates the ConfigMap at run time; it is never a Helm object, so no upgrade, rollback, `--force` or
uninstall rewrites it, and it is part of any backup of the namespace. Dask-Gateway reads it to run a user's
schedulers and workers as that user; `qhubctl upgrade --homes` reads it to give pre-uid homes to their owners.
The hub writes with the resourceVersion it read (optimistic locking): two writers never hand out one uid twice.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

RECORD_KEY = "identities.json"
FIRST_UID = 100000
# The uid and gid every user ran as before per-user uids (and that QHub's own services still run as).
LEGACY_UID = 1000
LEGACY_GID = 100
MAX_GROUP_GID = 65000
RETRIES = 8


class IdentityError(RuntimeError):
    """The record cannot be read or written; the message says what to check."""


@dataclass
class Record:
    """The parsed identities.json."""

    serial: int = 0
    first_uid: int = FIRST_UID
    next_uid: int = FIRST_UID
    users: dict[str, int] = field(default_factory=dict)
    groups: dict[str, int] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str | None) -> Record:
        if not text:
            return cls()
        raw = json.loads(text)
        users = {str(k): int(v) for k, v in (raw.get("users") or {}).items()}
        first = int(raw.get("firstUid", FIRST_UID))
        next_uid = max([int(raw.get("nextUid", first)), first, *(u + 1 for u in users.values())])
        return cls(int(raw.get("serial", 0)), first, next_uid, users,
                   {str(k): int(v) for k, v in (raw.get("groups") or {}).items()})

    def dump(self) -> str:
        return json.dumps({"version": 1, "serial": self.serial, "firstUid": self.first_uid, "nextUid": self.next_uid,
                           "users": dict(sorted(self.users.items())), "groups": dict(sorted(self.groups.items()))},
                          indent=1)

    def with_users(self, names: Iterable[str], groups: dict[str, int]) -> Record | None:
        """A copy with a uid for each of `names` (in the given order) and `groups`; None when nothing changes."""
        users, next_uid = dict(self.users), self.next_uid
        for name in names:
            if name not in users:
                users[name], next_uid = next_uid, next_uid + 1
        if users == self.users and groups == self.groups:
            return None
        return Record(self.serial + 1, self.first_uid, next_uid, users, dict(groups))


def check_name(name: str) -> str:
    """A user or group name as a folder name: refuse what would leave home/ or shared/."""
    if not name or "/" in name or "\0" in name or name in (".", ".."):
        raise IdentityError(f"{name!r} cannot name a folder on the shared filesystem")
    return name


class IdentityStore:
    """Reads and extends the record through the Kubernetes API (the hub's ServiceAccount may create ConfigMaps
    and get/update this one by name)."""

    def __init__(self, namespace: str, name: str, groups: dict[str, int], labels: dict[str, str]) -> None:
        self.namespace, self.name, self.groups, self.labels = namespace, name, dict(groups), dict(labels)
        self._lock = asyncio.Lock()
        self._known: dict[str, int] = {}
        self.sync_task: asyncio.Task[None] | None = None

    async def _api(self) -> Any:
        from kubespawner.clients import load_config, shared_client

        load_config()  # cached; the same call KubeSpawner makes
        return shared_client("CoreV1Api")

    async def ensure(self, names: Iterable[str]) -> dict[str, int]:
        """The uid of each name, allocating (and recording) the missing ones first."""
        wanted = [check_name(n) for n in names]
        if all(n in self._known for n in wanted):
            return {n: self._known[n] for n in wanted}
        async with self._lock:
            record = await self._update(wanted)
        self._known = dict(record.users)
        return {n: record.users[n] for n in wanted}

    async def _update(self, names: list[str]) -> Record:
        from kubernetes_asyncio.client import V1ConfigMap, V1ObjectMeta
        from kubernetes_asyncio.client.rest import ApiException

        api = await self._api()
        for _ in range(RETRIES):
            try:
                found = await api.read_namespaced_config_map(self.name, self.namespace)
            except ApiException as exc:
                if exc.status != 404:
                    raise IdentityError(f"cannot read ConfigMap {self.namespace}/{self.name}: {exc.status} "
                                        f"{exc.reason}") from None
                found = None
            data = dict((found.data if found else None) or {})
            record = Record.parse(data.get(RECORD_KEY))
            changed = record.with_users(names, self.groups)
            if changed is None:
                return record
            data[RECORD_KEY] = changed.dump()
            try:
                if found is None:
                    body = V1ConfigMap(metadata=V1ObjectMeta(name=self.name, labels=self.labels), data=data)
                    await api.create_namespaced_config_map(self.namespace, body)
                else:
                    found.data = data
                    await api.replace_namespaced_config_map(self.name, self.namespace, found)
            except ApiException as exc:
                if exc.status == 409:  # someone wrote first: read again
                    continue
                raise IdentityError(f"cannot write ConfigMap {self.namespace}/{self.name}: {exc.status} "
                                    f"{exc.reason}") from None
            return changed
        raise IdentityError(f"ConfigMap {self.namespace}/{self.name} kept changing under {RETRIES} writes")


def start_sync(store: IdentityStore, every: float = 600.0) -> None:
    """Give every user in the hub's database a uid, at start (before anyone spawns: `qhubctl upgrade --homes`
    needs the uid of users who had homes before per-user uids) and then every `every` seconds. Runs in the hub's
    event loop; without one (the config loaded outside a running hub) there is nothing to sync."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return

    async def sync() -> None:
        from jupyterhub import orm
        from jupyterhub.app import JupyterHub

        app = JupyterHub.instance()
        while getattr(app, "tornado_application", None) is None:  # users and groups are loaded by then
            await asyncio.sleep(1)
        while True:
            names = []
            for user in app.db.query(orm.User).order_by(orm.User.id):
                try:
                    names.append(check_name(user.name))
                except IdentityError as exc:
                    app.log.warning("no uid for this user: %s", exc)
            try:
                await store.ensure(names)
            except Exception as exc:  # noqa: BLE001 - logged and retried; spawns allocate on their own
                app.log.error("could not record the uids of %d users: %s", len(names), exc)
                await asyncio.sleep(30)
                continue
            await asyncio.sleep(every)

    store.sync_task = loop.create_task(sync())  # keep a reference: the loop holds tasks only weakly
