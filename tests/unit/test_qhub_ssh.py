"""The SSH gateway's login rules (images/kubessh, package qhub_ssh): which token scopes open a user's server, the
failed-login limits, user names in the log, which token each request carries, the host key file and the SFTP file
agent (the program the gateway runs in a user's server). The gateway against a real hub
and real user servers is in tests/cluster/test_kubessh.py and tests/node/test_ssh_journey.py."""

from __future__ import annotations

import asyncio
import base64
import errno
import json
import os
import struct
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "images" / "kubessh" / "rootfs" / "opt" / "qhub-ssh"))
from qhub_ssh import files, hostkey  # noqa: E402
from qhub_ssh.guard import MAX_SHOWN, FailedLogins, Limits, shown  # noqa: E402
from qhub_ssh.hub import Hub, Login, grants_server_access  # noqa: E402

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("scopes, groups, ok", [
    (["access:servers!user=alice", "read:users:name!user=alice"], [], True),
    (["access:servers"], [], True),  # an admin's token: every server, alice's included
    (["access:servers!server=alice/"], [], True),  # her default server
    (["access:servers!group=team"], ["team"], True),
    (["access:servers!group=team"], ["other"], False),
    (["read:users:name!user=alice"], [], False),  # a narrow token: identifies her, opens nothing
    (["access:servers!user=bob"], [], False),
    (["access:servers!server=alice/lab2"], [], False),  # a named server is not the one SSH uses
    (["access:services!service=kubessh"], [], False),  # cannot reach her server without a privileged token
    (["servers!user=alice", "read:servers!user=alice"], [], False),  # start/stop is not access
    ([], [], False),
])
def test_which_scopes_open_the_users_server(scopes: list[str], groups: list[str], ok: bool) -> None:
    assert grants_server_access(scopes, "alice", groups) is ok


def test_each_request_carries_the_right_token() -> None:
    """The service token only ever goes to the hub API; the user's server only ever sees the user's token."""
    hub = Hub("http://qhub-hub:8081/hub/api", "http://qhub-proxy-public:80", "SERVICE")
    login = Login("alice", "ALICE")
    url, headers = hub._user_server(login, "/user/alice/", "api/terminals")
    assert url == "http://qhub-proxy-public:80/user/alice/api/terminals"
    assert headers == {"Authorization": "token ALICE"}
    url, headers = hub._hub_api("/users/alice")
    assert url.startswith("http://qhub-hub:8081/hub/api/") and headers == {"Authorization": "token SERVICE"}
    assert "ALICE" not in repr(login), "a Login never prints its token"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_failures_per_source_block_every_name_from_that_address() -> None:
    clock = Clock()
    f = FailedLogins(Limits(window=60, per_source=3, per_user=0), clock=clock)
    for name in ("a", "b", "c"):
        assert f.begin("10.0.0.1", name)
        f.end("10.0.0.1", name, False)
    assert not f.begin("10.0.0.1", "alice"), "a fourth name from the same address is refused"
    assert f.begin("10.0.0.2", "alice"), "other addresses are not affected"
    f.end("10.0.0.2", "alice", True)
    clock.now += 61
    assert f.begin("10.0.0.1", "alice"), "failures older than the window no longer count"


def test_failures_per_user_block_that_name_from_everywhere_and_success_clears_it() -> None:
    clock = Clock()
    f = FailedLogins(Limits(window=60, per_source=0, per_user=2), clock=clock)
    for source in ("10.0.0.1", "10.0.0.2"):
        assert f.begin(source, "bob")
        f.end(source, "bob", False)
    assert not f.begin("10.0.0.3", "bob")
    assert f.begin("10.0.0.3", "alice")
    f.end("10.0.0.3", "alice", True)
    clock.now += 30
    assert not f.begin("10.0.0.3", "bob"), "still inside the window"
    clock.now += 31
    assert f.begin("10.0.0.3", "bob")
    f.end("10.0.0.3", "bob", True)
    assert f.begin("10.0.0.4", "bob"), "a success clears the name's count"


def test_attempts_in_flight_count_so_a_burst_cannot_exceed_the_limit() -> None:
    f = FailedLogins(Limits(window=60, per_source=3, per_user=100), clock=Clock())
    started = [f.begin("10.0.0.1", f"u{i}") for i in range(10)]
    assert started == [True] * 3 + [False] * 7
    f.end("10.0.0.1", "u0", None)  # the hub did not answer: not a failure, no longer in flight
    assert f.begin("10.0.0.1", "u9")


def test_memory_is_bounded_whatever_clients_send() -> None:
    f = FailedLogins(Limits(window=600, per_source=5, per_user=5), clock=Clock(), max_tracked=100)
    for i in range(1000):
        assert f.begin(f"10.0.{i // 256}.{i % 256}", f"user{i}")
        f.end(f"10.0.{i // 256}.{i % 256}", f"user{i}", False)
    assert f.tracked() <= 100


@pytest.mark.parametrize("name, expected", [
    ("alice", '"alice"'),
    ("bob accepted for alice", '"bob accepted for alice"'),
    ('x" from 10.0.0.9', '"x\\" from 10.0.0.9"'),
    ("eve\nlogin accepted for alice", '"eve\\nlogin accepted for alice"'),
    ("\x1b[2Jroot", '"\\u001b[2Jroot"'),
    ("al\u202eice", '"al\\u202eice"'),  # right-to-left override
])
def test_user_names_are_escaped_in_the_log(name: str, expected: str) -> None:
    assert shown(name) == expected
    assert "\n" not in shown(name) and "\x1b" not in shown(name)


def test_long_names_are_cut_in_the_log() -> None:
    assert len(shown("a" * 10000)) == MAX_SHOWN + 2 + 3


def test_host_key_file_is_generated_once_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "ssh_host_ed25519_key"
    first = hostkey.from_file(str(path))
    assert path.stat().st_mode & 0o777 == 0o600
    assert first.algorithm == b"ssh-ed25519"
    assert hostkey.from_file(str(path)).get_fingerprint() == first.get_fingerprint()


def test_host_key_secret_without_service_account_files_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(hostkey.HostKeyError, match="qhub-kubessh-host-key"):
        asyncio.run(hostkey.from_secret("https://127.0.0.1:1", str(tmp_path), "qhub-kubessh-host-key"))


class Agent:
    """The SFTP file agent (qhub_ssh.files.AGENT) as the gateway starts it in a user's server: `python3 -c` reading
    its source as the first line of input, then framed calls on stdin/stdout."""

    def __init__(self, home: Path) -> None:
        import subprocess

        self.proc = subprocess.Popen(["sh", "-c", files.AGENT_COMMAND], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env={**os.environ, "HOME": str(home)})
        self.proc.stdin.write(base64.b64encode(files.AGENT.encode()) + b"\n")

    def call(self, op: str, *args, data: bytes = b"") -> tuple[dict, bytes]:
        body = json.dumps({"op": op, "args": list(args)}).encode()
        self.proc.stdin.write(struct.pack(">II", len(body), len(data)) + body + data)
        self.proc.stdin.flush()
        jl, pl = struct.unpack(">II", self.proc.stdout.read(8))
        return json.loads(self.proc.stdout.read(jl)), self.proc.stdout.read(pl)

    def close(self) -> int:
        self.proc.stdin.close()
        return self.proc.wait(10)


def test_file_agent_works_in_the_home_as_the_process_user(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    agent = Agent(home)
    try:
        assert agent.call("realpath", ".")[0] == {"ok": str(home)}, "relative paths start in the user's home"
        fd = agent.call("open", "notes.txt", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)[0]["ok"]
        blob = bytes(range(256)) * 300
        assert agent.call("write", fd, 0, data=blob)[0] == {"ok": len(blob)}
        assert agent.call("close", fd)[0] == {"ok": None}
        assert (home / "notes.txt").read_bytes() == blob
        fd = agent.call("open", str(home / "notes.txt"), os.O_RDONLY, 0)[0]["ok"]
        assert agent.call("read", fd, 100, 50)[1] == blob[100:150]
        assert agent.call("read", fd, len(blob), 50)[1] == b"", "end of file"
        mode, uid, *_ = agent.call("fstat", fd)[0]["ok"]
        assert (mode & 0o777, uid) == (0o640 & ~_umask(), os.getuid()), "the file belongs to the agent's user"
        names = {n for n, _ in agent.call("scandir", ".")[0]["ok"]}
        assert names == {".", "..", "notes.txt"}
        odd = os.fsdecode(b"caf\xe9")  # not UTF-8: survives as a surrogate escape
        assert agent.call("mkdir", odd, 0o755)[0] == {"ok": None} and (home / os.fsdecode(b"caf\xe9")).is_dir()
        assert agent.call("rename", "notes.txt", odd)[0]["errno"] == errno.EEXIST, "SFTP v3 rename never replaces"
        assert agent.call("stat", "missing")[0]["errno"] == errno.ENOENT
        assert agent.call("setstat", "notes.txt", {"mode": 0o600, "size": 10})[0] == {"ok": None}
        assert (home / "notes.txt").stat().st_size == 10 and (home / "notes.txt").stat().st_mode & 0o777 == 0o600
    finally:
        assert agent.close() == 0, "the agent ends when its input ends"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
