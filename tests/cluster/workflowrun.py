"""Run a GitHub Actions workflow's jobs here, step by step, as a GitHub-hosted Linux runner would.

What GitHub does that cannot happen here is handed in explicitly, and anything else stops the run:
- `${{ ... }}` expressions (in env, with, run, if and concurrency) come from a table of their text; an expression
  the table lacks fails the run before any step starts, so no step is skipped or run with a blank value silently;
- `uses:` actions come from a table of local equivalents (callables given the step's `with:` and the job);
- `run:` steps run in GitHub's shells: no `shell:` is `bash -e {0}`, `bash` is `bash --noprofile --norc -eo
  pipefail {0}`, `sh` is `sh -e {0}`, with the script in a file, in $GITHUB_WORKSPACE, with the workflow's, the
  job's and the step's env on top of the runner's default variables; $GITHUB_ENV and $GITHUB_PATH are read back
  after each step.
Keys this runner does not implement (needs, matrix, services, container, working-directory, ...) fail the run.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
SHELLS = {
    None: ["bash", "-e", "{0}"],
    "bash": ["bash", "--noprofile", "--norc", "-eo", "pipefail", "{0}"],
    "sh": ["sh", "-e", "{0}"],
}
WORKFLOW_KEYS = {"name", "on", "permissions", "concurrency", "env", "jobs"}
JOB_KEYS = {"if", "runs-on", "env", "steps", "environment", "name"}  # environment: GitHub's protection rules only
STEP_KEYS = {"name", "id", "if", "uses", "with", "run", "env", "shell"}


class WorkflowError(AssertionError):
    """The workflow needs something this runner was not given, or a step failed."""


@dataclass
class Job:
    """One job's runner state: its directories, environment and the PATH entries actions added."""

    name: str
    workspace: Path
    temp: Path
    env: dict[str, str]
    path: list[str] = field(default_factory=list)
    outputs: list[tuple[str, str]] = field(default_factory=list)  # (step name, stdout + stderr)

    def add_path(self, entry: Path) -> None:
        self.path.insert(0, str(entry))

    def environ(self, extra: dict[str, str]) -> dict[str, str]:
        env = {**self.env, **extra}
        env["PATH"] = os.pathsep.join([*self.path, env["PATH"]])
        return env


Action = Callable[[dict[str, str], Job], None]


@dataclass(frozen=True)
class Substitutes:
    expressions: dict[str, str]  # an expression's text -> its value ("true"/"false" for conditions)
    actions: dict[str, Action]  # "owner/name@ref" -> what stands in for it
    env: dict[str, str]  # the runner machine's environment (PATH, HOME, ...)


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    return {("on" if k is True else k): v for k, v in data.items()}  # YAML 1.1 reads `on` as True


def expressions_in(workflow: dict[str, Any]) -> set[str]:
    """Every expression GitHub would evaluate: `${{ }}` anywhere, and the bare `if:` conditions."""
    found = set(EXPRESSION.findall(yaml.safe_dump(workflow, width=10**6)))
    for job in workflow["jobs"].values():
        for item in [job, *job.get("steps", [])]:
            if "if" in item and not EXPRESSION.fullmatch(str(item["if"]).strip()):
                found.add(str(item["if"]).strip())
    return found


def expand(value: Any, subs: Substitutes) -> str:
    def one(match: re.Match[str]) -> str:
        if match.group(1) not in subs.expressions:
            raise WorkflowError(f"no local value for ${{{{ {match.group(1)} }}}}")
        return subs.expressions[match.group(1)]
    return EXPRESSION.sub(one, str(value))


def holds(condition: Any, subs: Substitutes) -> bool:
    text = str(condition).strip()
    inner = EXPRESSION.fullmatch(text)
    value = subs.expressions.get(inner.group(1) if inner else text)
    if value not in ("true", "false"):
        raise WorkflowError(f"no local truth value for the condition {text!r}")
    return value == "true"


def _check_keys(what: str, item: dict[str, Any], allowed: set[str]) -> None:
    unknown = set(item) - allowed
    if unknown:
        raise WorkflowError(f"{what}: this runner does not implement {sorted(unknown)}")


def run_event(workflow: dict[str, Any], event: str, subs: Substitutes, root: Path) -> list[Job]:
    """The jobs `event` triggers, run in file order (none of them `needs` another). Returns the jobs that ran."""
    _check_keys("workflow", workflow, WORKFLOW_KEYS)
    if event not in workflow["on"]:
        raise WorkflowError(f"the workflow does not run on {event}")
    missing = sorted(expressions_in(workflow) - set(subs.expressions))
    if missing:
        raise WorkflowError(f"no local value for the expressions {missing}")
    ran = []
    for name, spec in workflow["jobs"].items():
        _check_keys(f"job {name}", spec, JOB_KEYS)
        if spec["runs-on"] != "ubuntu-latest":
            raise WorkflowError(f"job {name} runs on {spec['runs-on']}; this runner stands in for ubuntu-latest")
        if "if" in spec and not holds(spec["if"], subs):
            continue
        ran.append(_run_job(name, spec, workflow, event, subs, root / name))
    return ran


def _run_job(name: str, spec: dict[str, Any], workflow: dict[str, Any], event: str, subs: Substitutes,
             root: Path) -> Job:
    workspace, temp = root / "workspace", root / "temp"
    workspace.mkdir(parents=True)
    temp.mkdir()
    defaults = {"CI": "true", "GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": event, "GITHUB_JOB": name,
                "GITHUB_WORKSPACE": str(workspace), "RUNNER_TEMP": str(temp), "RUNNER_OS": "Linux",
                "GITHUB_ENV": str(temp / "_env"), "GITHUB_PATH": str(temp / "_path")}
    job = Job(name, workspace, temp, {**subs.env, **defaults})
    for scope in (workflow.get("env") or {}, spec.get("env") or {}):
        job.env.update({k: expand(v, subs) for k, v in scope.items()})
    for i, step in enumerate(spec["steps"]):
        label = f"job {name}, step {i + 1} ({step.get('name') or step.get('uses') or 'run'})"
        _check_keys(label, step, STEP_KEYS)
        if "if" in step and not holds(step["if"], subs):
            continue
        env = {k: expand(v, subs) for k, v in (step.get("env") or {}).items()}
        if "uses" in step:
            action = subs.actions.get(step["uses"])
            if action is None:
                raise WorkflowError(f"{label}: no local equivalent of {step['uses']}")
            action({k: expand(v, subs) for k, v in (step.get("with") or {}).items()}, job)
        else:
            _run_script(label, expand(step["run"], subs), step.get("shell"), job, env)
        _read_back(job)
    return job


def _run_script(label: str, script: str, shell: str | None, job: Job, env: dict[str, str]) -> None:
    if shell not in SHELLS:
        raise WorkflowError(f"{label}: shell {shell!r} is not one this runner has")
    path = job.temp / f"step-{len(job.outputs)}.sh"
    path.write_text(script)
    argv = [part.format(str(path)) for part in SHELLS[shell]]
    result = subprocess.run(argv, cwd=job.workspace, env=job.environ(env), capture_output=True, text=True,
                            timeout=900, check=False)
    output = result.stdout + result.stderr
    job.outputs.append((label, output))
    if result.returncode != 0:
        raise WorkflowError(f"{label} exited {result.returncode}:\n{script}\n--- output ---\n{output}")


def _read_back(job: Job) -> None:
    """$GITHUB_ENV (NAME=value lines) and $GITHUB_PATH (one directory a line) as GitHub applies them."""
    env_file, path_file = Path(job.env["GITHUB_ENV"]), Path(job.env["GITHUB_PATH"])
    if env_file.exists():
        for line in env_file.read_text().splitlines():
            if "<<" in line:
                raise WorkflowError("multi-line $GITHUB_ENV values are not implemented here")
            key, _, value = line.partition("=")
            job.env[key] = value
        env_file.unlink()
    if path_file.exists():
        for line in path_file.read_text().splitlines():
            job.add_path(Path(line))
        path_file.unlink()
