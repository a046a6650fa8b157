"""The first hour with qhubctl (issue 15): every command answers a mistake with a message, never a traceback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
import typer
from typer.testing import CliRunner

from qhubctl.cli import app

pytestmark = pytest.mark.unit
runner = CliRunner()
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _config_commands() -> list[list[str]]:
    """Every command that reads the config file (-c), found from the CLI itself, so new commands are covered too;
    with --yes where it asks, and an output path where it writes one."""
    found: list[list[str]] = []

    def walk(cmd: Any, path: list[str]) -> None:
        for name, sub in sorted(getattr(cmd, "commands", {}).items()):  # a group
            walk(sub, [*path, name])
        names = {p.name for p in cmd.params}
        if "config" in names:
            # required options and arguments get a value that is valid on its own (a local directory's name)
            required = [x for p in cmd.params if p.required and p.name != "config"
                        for x in ([p.opts[0], "placeholder-dir"] if p.param_type_name == "option" else ["placeholder-dir"])]
            found.append([*path, *required, *(["--yes"] if "yes" in names else [])])

    walk(typer.main.get_command(app), [])
    return found


COMMANDS = _config_commands()


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "a-directory").mkdir()
    (tmp_path / "empty.yaml").write_text("")
    unreadable = tmp_path / "unreadable.yaml"
    unreadable.write_text((CONFIGS / "aws.ok.full.yaml").read_text())
    unreadable.chmod(0)
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00garbage")
    return {"directory": tmp_path / "a-directory", "missing": tmp_path / "missing.yaml", "empty": tmp_path / "empty.yaml",
            "unreadable": unreadable, "binary": tmp_path / "binary.yaml"}


WHAT = {"directory": "is a directory", "missing": "no such file", "empty": "empty", "unreadable": "permission denied",
        "binary": "not a text file"}

# Runs the CLI in a process without the capabilities that let root read any file (the test may run as root), and
# reports each command's exit code and output as JSON.
_HARNESS = """
import json, sys
from typer.testing import CliRunner
from qhubctl.cli import app
results = []
for argv in json.load(sys.stdin):
    res = CliRunner().invoke(app, argv)
    crash = None if res.exception is None or isinstance(res.exception, SystemExit) else repr(res.exception)
    results.append({"argv": argv, "code": res.exit_code, "output": res.output, "crash": crash})
print(json.dumps(results))
"""


def _run_unprivileged(argvs: list[list[str]], cwd: Path) -> list[dict[str, object]]:
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        assert setpriv, "setpriv (util-linux) is needed to run qhubctl without root's file-read override"
        prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--"]
    proc = subprocess.run([*prefix, sys.executable, "-c", _HARNESS], input=json.dumps(argvs), capture_output=True,
                          text=True, cwd=cwd, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_every_config_command_is_found() -> None:
    names = {" ".join(a for a in c if not a.startswith("-") and a != "placeholder-dir") for c in COMMANDS}
    assert {"validate", "render", "deploy", "status", "support", "upgrade", "destroy", "cost", "cluster create",
            "cluster destroy", "cluster plan", "cluster kubeconfig", "backup", "restore"} <= names


@pytest.mark.parametrize("case", sorted(WHAT))
def test_every_command_names_a_bad_config_file(tmp_path: Path, case: str) -> None:
    """A directory, a missing, empty, unreadable or binary file as the config: every command fails with a message
    naming the file and what is wrong with it, and no traceback."""
    bad = _bad_files(tmp_path)[case]
    argvs = [[*cmd, "-c", str(bad)] for cmd in COMMANDS]
    if case == "unreadable":
        results = _run_unprivileged(argvs, tmp_path)
    else:
        os.chdir(tmp_path)
        results = []
        for argv in argvs:
            res = runner.invoke(app, argv)
            crash = None if res.exception is None or isinstance(res.exception, SystemExit) else repr(res.exception)
            results.append({"argv": argv, "code": res.exit_code, "output": res.output, "crash": crash})
    for res in results:
        output = str(res["output"])
        assert res["crash"] is None, f"{res['argv']}: {res['crash']}"
        assert "Traceback" not in output, res
        assert res["code"] != 0, res
        assert str(bad) in output and WHAT[case] in output, res


@pytest.mark.parametrize("argv", [["init", "aws", "--yes", "-o"], ["schema", "-o"], ["support", "-c",
                                                                                    str(CONFIGS / "aws.ok.full.yaml"),
                                                                                    "-o"]])
def test_output_to_a_directory_is_a_message(tmp_path: Path, argv: list[str]) -> None:
    """Commands that write a file, given a directory or a path under a missing folder, say so."""
    target = tmp_path / "out"
    target.mkdir()
    res = runner.invoke(app, [*argv, str(target)], env={"KUBECONFIG": str(tmp_path / "none")})
    assert res.exit_code != 0 and not (res.exception and not isinstance(res.exception, SystemExit)), res.output
    assert "Traceback" not in res.output and str(target) in res.output, res.output


def test_render_refuses_an_unknown_format() -> None:
    res = runner.invoke(app, ["render", "-c", str(CONFIGS / "aws.ok.full.yaml"), "--format", "toml"])
    assert res.exit_code != 0 and "toml" in res.output and "yaml" in res.output and "json" in res.output
    assert "hub:" not in res.output  # no values printed
    ok = runner.invoke(app, ["render", "-c", str(CONFIGS / "aws.ok.full.yaml"), "--format", "json"])
    assert ok.exit_code == 0 and json.loads(ok.output)["jupyterhub"]


def _cfg(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "qhub-config.yaml"
    path.write_text(text)
    return path


def test_unquoted_kubernetes_version_says_to_quote_it(tmp_path: Path) -> None:
    path = _cfg(tmp_path, "schema_version: 2\nproject_name: demo\ncluster:\n  provider: aws\n  region: us-east-1\n"
                          "  kubernetes_version: 1.30\n")
    res = runner.invoke(app, ["validate", "-c", str(path)])
    assert res.exit_code == 1, res.output
    assert "cluster.kubernetes_version" in res.output
    assert 'quote it: kubernetes_version: "1.30"' in res.output, res.output  # as written, not the float 1.3


def test_missing_secret_says_how_to_provide_it() -> None:
    res = runner.invoke(app, ["validate", "-c", str(CONFIGS / "aws.error.auth-missing-secret.yaml")], env={})
    assert res.exit_code == 1
    assert "add this field" not in res.output
    assert "QHUB_SECRET__auth__client_secret" in res.output and "secretRef" in res.output, res.output


def test_old_schema_hint_names_the_file(tmp_path: Path) -> None:
    old = tmp_path / "mine.yaml"
    old.write_text((CONFIGS / "aws.error.old-schema.yaml").read_text())
    res = runner.invoke(app, ["validate", "-c", str(old)])
    assert res.exit_code == 1 and f"qhubctl upgrade -c {old}" in res.output, res.output
    up = runner.invoke(app, ["upgrade", "-c", str(old)])
    assert up.exit_code == 0, up.output
    assert f"qhubctl validate -c {old}" in up.output and f"qhubctl deploy -c {old} --dry-run" in up.output


def _project(tmp_path: Path) -> Path:
    config = tmp_path / "qhub-config.yaml"
    config.write_text((CONFIGS / "aws.ok.full.yaml").read_text())  # project_name: demo
    return config


@pytest.mark.parametrize("command", [["status"], ["destroy", "--yes"], ["deploy", "--yes"], ["render", "--diff"]])
def test_missing_kubeconfig_is_a_user_error_naming_the_file(tmp_path: Path, command: list[str]) -> None:
    config = _project(tmp_path)
    res = runner.invoke(app, [*command, "-c", str(config)], env={"KUBECONFIG": "/missing/file",
                                                                 "QHUB_SECRET__auth__client_secret": "x"})
    assert res.exit_code == 1, res.output  # a user error, not 3 (cluster not ready)
    assert "KUBECONFIG /missing/file: file not found" in res.output, res.output
    assert "Invalid kube-config" not in res.output and "`kubeconfig`" not in res.output
    flag = runner.invoke(app, [*command, "-c", str(config), "--kubeconfig", str(tmp_path / "nope")])
    assert flag.exit_code == 1 and f"--kubeconfig {tmp_path / 'nope'}: file not found" in flag.output, flag.output


def test_project_kubeconfig_next_to_the_config_is_used(tmp_path: Path) -> None:
    """`cluster create` writes <project>.kubeconfig next to the config; the other commands use it by themselves,
    ahead of a KUBECONFIG that points elsewhere, and say so."""
    config = _project(tmp_path)
    written = tmp_path / "demo.kubeconfig"
    written.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:9"}}],  # nothing listens on port 9
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "users": [{"name": "u", "user": {"token": "t"}}]}))
    res = runner.invoke(app, ["status", "-c", str(config)], env={"KUBECONFIG": "/missing/file"})
    assert f"kubeconfig: {written}" in res.output and "instead of KUBECONFIG=/missing/file" in res.output, res.output
    assert "127.0.0.1:9" in res.output and res.exit_code == 3, res.output  # it went to that cluster


def test_support_without_a_cluster_writes_what_it_can(tmp_path: Path) -> None:
    import zipfile

    config = _project(tmp_path)
    zipped = tmp_path / "support.zip"
    res = runner.invoke(app, ["support", "-c", str(config), "-o", str(zipped)], env={"KUBECONFIG": "/missing/file"})
    assert res.exit_code == 0, res.output
    assert "file not found" in res.output and "without the cluster's workloads" in res.output
    with zipfile.ZipFile(zipped) as zf:
        names = set(zf.namelist())
        assert {"config.redacted.yaml", "qhubctl-version.txt", "unreachable.txt"} <= names
        assert "KUBECONFIG /missing/file: file not found" in zf.read("unreachable.txt").decode()
        assert "abc123" in zf.read("config.redacted.yaml").decode()  # the config itself is there


def _help_texts(cmd: Any, path: list[str]) -> list[tuple[list[str], str]]:
    texts = [(path, runner.invoke(app, [*path, "--help"], terminal_width=200).output)]
    for name, sub in sorted(getattr(cmd, "commands", {}).items()):
        texts += _help_texts(sub, [*path, name])
    return texts


def test_help_shows_no_bool_metavar_and_cost_has_no_phantom_subcommands() -> None:
    texts = _help_texts(typer.main.get_command(app), [])
    assert len(texts) > 15
    for path, text in texts:
        assert "<bool>" not in text, (path, text)
        assert "Traceback" not in text and "Usage:" in text, (path, text)
    cost = dict((" ".join(p), t) for p, t in texts)["cost"]
    assert "Usage: qhubctl cost [OPTIONS]" in cost and "COMMAND" not in cost, cost


def test_cost_baseline_columns_line_up() -> None:
    res = runner.invoke(app, ["cost", "-c", str(CONFIGS / "aws.ok.full.yaml")])
    assert res.exit_code == 0, res.output
    rows = [line for line in res.output.splitlines() if line.startswith("  ")]
    assert rows[0].split() == ["part", "instance", "min", "price", "monthly"]
    assert [r.split()[0] for r in rows[1:3]] == ["control", "general"]
    assert len({len(r) for r in rows[1:]}) == 1, rows  # every row ends in the same column ($ amounts right-aligned)
    inst, price_end = rows[0].index("instance"), rows[0].index("price") + len("price")
    for row in rows[2:]:  # node groups: instance types start under their header, prices end under theirs
        assert row[inst - 1] == " " and row[inst] != " " and row[price_end - 2:price_end] == "/h", rows
    assert all(r.rstrip().endswith(("$73.00", "$280.32", "$0.00", "monthly")) for r in rows)


def test_first_install_values_are_summarised() -> None:
    from qhubctl.commands.deploy import install_summary
    from qhubctl.config import load_config
    from qhubctl.values import chart_values

    values = chart_values(load_config(CONFIGS / "aws.ok.full.yaml", environ={}))
    text = install_summary(values, Path("qhub-config.yaml"))
    assert "\n" not in text and "all new" in text and "jupyterhub " in text
    assert "--dry-run --diff" in text


def test_missing_provider_extra_names_the_pip_line(tmp_path: Path) -> None:
    """Without boto3 (the aws extra), `cluster plan` on an aws config names the exact pip command for this
    install (here a source checkout: the editable install of it with [aws])."""
    config = _project(tmp_path)
    code = ("import sys; sys.modules['boto3'] = None; sys.modules['botocore'] = None\n"  # the extra not installed
            "from qhubctl.cli import app; sys.argv = ['qhubctl', 'cluster', 'plan', '-c', sys.argv[1]]; app()")
    proc = subprocess.run([sys.executable, "-c", code, str(config)], capture_output=True, text=True, timeout=120,
                          check=False)
    repo = Path(__file__).resolve().parents[2]
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"{sys.executable} -m pip install -e '{repo}[aws]'" in proc.stderr, proc.stderr
