"""`qhubctl backup`/`restore` without a cluster: destinations, the Jobs' pods, the image they run, the archive's
checksums and the agent's safety rules (tools/qhubctl/backup)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qhubctl.backup import agent, run, transfer
from qhubctl.backup.destination import parse, s3_settings
from qhubctl.cli import app
from qhubctl.errors import UserError

pytestmark = pytest.mark.unit


def test_destinations_parse_and_bad_ones_name_the_fix(tmp_path: Path) -> None:
    s3 = parse("s3://my-bucket/qhub/prod/")
    assert s3.is_s3 and (s3.bucket, s3.prefix) == ("my-bucket", "qhub/prod")
    assert s3.s3_repository("files", "http://10.0.0.5:9000/") == "s3:http://10.0.0.5:9000/my-bucket/qhub/prod/files"
    assert parse("s3://my-bucket").s3_repository("meta", "https://s3.x") == "s3:https://s3.x/my-bucket/meta"
    local = parse(str(tmp_path / "new"))
    assert local.local == tmp_path / "new" and local.part_dir("meta") == tmp_path / "new" / "meta"
    (tmp_path / "file").write_text("x")
    for bad, words in (("s3://UPPER/x", "bucket name"), ("gs://b/x", "s3:// URLs"), ("", "empty"),
                       (str(tmp_path / "file"), "not a directory")):
        with pytest.raises(UserError) as caught:
            parse(bad)
        assert words in str(caught.value) and caught.value.hint, bad


def test_s3_settings_need_keys_and_default_to_aws() -> None:
    with pytest.raises(UserError, match="AWS_SECRET_ACCESS_KEY"):
        s3_settings({"AWS_ACCESS_KEY_ID": "a"})
    endpoint, env = s3_settings({"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b", "AWS_REGION": "eu-west-1"})
    assert endpoint == "https://s3.eu-west-1.amazonaws.com"
    assert env == {"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b", "AWS_DEFAULT_REGION": "eu-west-1"}
    endpoint, _ = s3_settings({"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b",
                               "AWS_ENDPOINT_URL": "http://10.244.0.1:5000"})
    assert endpoint == "http://10.244.0.1:5000"
    with pytest.raises(UserError, match="not an http"):
        s3_settings({"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b", "AWS_ENDPOINT_URL": "minio:9000"})


def test_backup_image_sits_next_to_the_hub_image() -> None:
    assert run.sibling_image("127.0.0.1:5001/qhub/jupyterhub:0.4.0", "backup") == "127.0.0.1:5001/qhub/backup:0.4.0"
    assert run.sibling_image("qhub/jupyterhub", "backup") == "qhub/backup"
    assert run.sibling_image("reg:5000/a/b/jupyterhub@sha256:ab", "backup").startswith("reg:5000/a/b/backup")


def _part(name: str, root: bool) -> run.Part:
    pod = ({"runAsUser": 0, "runAsGroup": 0, "runAsNonRoot": False} if root else
           {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 100, "fsGroup": 100})
    return run.Part(name, "qhub", [{"name": "source", "configMap": {"name": ""}}, {"name": "work", "emptyDir": {}}],
                    [{"name": "work", "mountPath": "/work"}], {**pod, "seccompProfile": {"type": "RuntimeDefault"}},
                    root=root, node="n1" if root else "")


def test_job_pods_have_no_token_few_capabilities_and_their_own_configmap() -> None:
    params = {"run": "20261130T120000Z", "release": "qhub"}
    meta = run.job_manifest("qhub-backup-meta", "r/qhub/backup:1", _part("meta", False), "backup", params,
                            "qhub-backup-meta", "/repo")
    pod = meta["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["automountServiceAccountToken"] is False and "nodeName" not in pod
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["volumes"][0] == {"name": "source", "configMap": {"name": "qhub-backup-meta"}}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert json.loads(env["QHUB_JOB"]) == params and env["QHUB_PART"] == "meta" and env["RESTIC_REPOSITORY"] == "/repo"
    assert container["envFrom"] == [{"secretRef": {"name": "qhub-backup-meta"}}]
    labels = meta["spec"]["template"]["metadata"]["labels"]
    # the conda-store PostgreSQL NetworkPolicy admits exactly these labels
    assert labels["app.kubernetes.io/component"] == "backup" and labels["app.kubernetes.io/instance"] == "qhub"
    for mode, caps in (("backup", ["DAC_OVERRIDE"]), ("restore", ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID"])):
        files = run.job_manifest("j", "i", _part("files", True), mode, params, "s", "/repo")["spec"]["template"]["spec"]
        assert "nodeName" not in files, "the scheduler places it, so a new staging volume is provisioned"
        term = files["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        assert term == [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]
        assert files["containers"][0]["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": caps}


def test_chart_lets_backup_pods_reach_conda_store_database() -> None:
    policy = (Path(__file__).resolve().parents[2] / "charts/qhub/charts/conda-store/templates/postgresql/"
              "networkpolicy.yaml").read_text()
    assert "app.kubernetes.io/component: backup" in policy
    assert "app.kubernetes.io/instance: {{ .Release.Name }}" in policy


def test_archive_files_are_checked_against_their_names(tmp_path: Path) -> None:
    repo = tmp_path / "files"
    data = b"some pack"
    name = hashlib.sha256(data).hexdigest()
    (repo / "data" / name[:2]).mkdir(parents=True)
    (repo / "data" / name[:2] / name).write_bytes(data)
    (repo / "config").write_bytes(b"anything")
    (repo / "locks").mkdir()
    (repo / "locks" / "abc").write_text("a lock is never copied")
    assert transfer.local_listing(repo) == {"config": 8, f"data/{name[:2]}/{name}": len(data)}
    assert transfer.verify_local(repo) == []
    (repo / "data" / name[:2] / name).write_bytes(b"some pacK")
    assert transfer.verify_local(repo) == [f"data/{name[:2]}/{name}"]


def test_agent_stays_inside_the_repository_and_sees_what_a_restore_would_overwrite(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent, "REPO", tmp_path / "repo")
    (tmp_path / "repo").mkdir()
    assert agent.repo_path("data/ab/abc") == (tmp_path / "repo" / "data/ab/abc").resolve()
    for escape in ("../outside", "/etc/passwd", "data/../../x"):
        with pytest.raises(ValueError):
            agent.repo_path(escape)
    share = tmp_path / "share"
    (share / "home" / "alice").mkdir(parents=True)
    (share / "shared" / "analysts").mkdir(parents=True)
    assert agent.non_empty(share) == [], "empty folders made by a fresh deploy are nothing to lose"
    (share / "home" / "alice" / ".bashrc").write_text("")
    (share / "shared" / "stray.txt").write_text("")
    assert agent.non_empty(share) == ["home/alice", "shared/stray.txt"]


def test_agent_sends_and_receives_raw_bytes(tmp_path: Path) -> None:
    """The transfer protocol end to end with the real program: what `send` prints, `receive` writes back."""
    script = Path(agent.__file__).read_text().replace('REPO = Path("/repo")', f'REPO = Path("{tmp_path}")')
    program = tmp_path.parent / f"{tmp_path.name}-agent.py"
    program.write_text(script)
    data = bytes(range(256)) * 1000
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "in").write_bytes(data)
    sent = subprocess.run([sys.executable, str(program), "send", "data/in"], capture_output=True, check=True).stdout
    assert sent == data
    got = subprocess.run([sys.executable, str(program), "receive", "data/out", str(len(data))], input=sent,
                         capture_output=True, check=True)
    assert got.stdout.strip() == b"OK" and (tmp_path / "data" / "out").read_bytes() == data
    cut = subprocess.run([sys.executable, str(program), "receive", "data/cut", str(len(data))], input=sent[:100],
                         capture_output=True)
    assert cut.returncode != 0 and b"100 of" in cut.stderr, cut.stderr
    assert not list((tmp_path / "data").glob("*cut*")), "a cut upload leaves nothing"
    listing = json.loads(subprocess.run([sys.executable, str(program), "list"], capture_output=True,
                                        check=True).stdout)
    assert listing == {"data/in": len(data), "data/out": len(data)}


def test_exit_code_of_an_exec_comes_from_its_status_frame() -> None:
    assert transfer._exit_code(b'{"metadata":{},"status":"Success"}') == 0
    failed = {"status": "Failure", "reason": "NonZeroExitCode",
              "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}}
    assert transfer._exit_code(json.dumps(failed).encode()) == 3
    assert transfer._exit_code(b'{"status":"Failure","message":"container not found"}') == 1


def test_commands_refuse_bad_destinations_without_a_traceback(tmp_path: Path) -> None:
    config = tmp_path / "qhub-config.yaml"
    config.write_text("project_name: demo\n")
    for args in (["backup", "-c", str(config), "-o", "ftp://x/y"], ["restore", "gs://b", "-c", str(config)]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code != 0 and "Traceback" not in result.output, result.output
        assert "only s3:// URLs and local directories" in result.output, result.output
