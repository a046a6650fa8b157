"""The program the backup and restore Jobs run in the qhub/backup image (restic, pg_dump/psql, Python; standard
library only). One run handles one part of the platform, each part a restic repository of its own:

- part `meta` (release namespace, the hub's uid, Pod Security `restricted`): the hub's database (a consistent copy
  through SQLite's online backup), the conda-store database (`pg_dump`, when conda-store is on), the users' uid
  record, the config file and the chart values. A `manifest.json` lists each file's size and sha256.
- part `files` (root with the fewest capabilities, where the shared filesystem is reachable as root): `home/` and
  `shared/` with owners, modes and setgid bits. restic only reads files whose size, mtime or inode changed since
  the last snapshot and only stores chunks the repository does not hold yet.

Modes (argv[1]): `backup` and `restore` of the part in $QHUB_PART; `verify` reads back every pack of the repository
(`restic check --read-data`). With a local directory as destination the repository is the volume at /repo and
qhubctl copies files through `list`, `send PATH` and `receive PATH SIZE` (the file's raw bytes on stdout or stdin) in
the running pod: a backup holds after its report until qhubctl has copied the new files (`done`), a restore waits for
them first.
With `keep` in the parameters a backup then forgets all but the newest `keep` snapshots of its part made by
this release and prunes the data only they used (`restic forget --keep-last N --prune`). A scheduled run (a Job
of a CronJob) has no `run` in its parameters: it is named after the minute it was scheduled for, which the CronJob
controller puts at the end of the Job's name, so the two parts' runs of one schedule get the same name.
The run's parameters come from $QHUB_JOB (JSON), the repository and its password from
restic's own variables (RESTIC_REPOSITORY, RESTIC_PASSWORD, AWS_*). Progress lines and the final report are JSON,
one per line on stdout; the last line is the report. Exit codes: 0 done, 2 refused (the report says why, nothing
was changed), 1 failed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

SOURCE = Path("/etc/qhub-backup")       # the run's ConfigMap: identities, config file, chart values
WORK = Path("/work")                    # an emptyDir: the meta part's files are staged here
REPO = Path("/repo")                    # the staging volume of a local directory's repository
SIGNAL = WORK / ".transferred"          # qhubctl's `done`: the files are copied
HOLD_SECONDS = 3600
BLOCK = 1 << 20                          # bytes per read while copying
META = WORK / "meta"
SHARE = Path("/share")                   # the shared filesystem: home/ and shared/
HUB_DB = Path("/srv/hub-db/jupyterhub.sqlite")
CONDA_DUMP = "conda-store.sql"
MANIFEST = "manifest.json"
TOP_LEVEL = ("home", "shared")
EXIT_REFUSED = 2
RUN_FORMAT = "%Y%m%dT%H%M%SZ"


class Refused(Exception):
    """The run stops before changing anything; the message says why and what to do."""


def say(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def restic(*args: str, capture: bool = False) -> str:
    """Run restic; its --json status lines go straight to our stdout unless captured."""
    cmd = ["restic", "--no-cache", *args]
    done = subprocess.run(cmd, stdout=subprocess.PIPE if capture else None, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"restic {args[0]} failed ({done.returncode}): {done.stderr.strip()[-1500:]}")
    return done.stdout or ""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def ensure_repository() -> bool:
    """Initialise the repository if it does not exist yet; True if it was created now."""
    probe = subprocess.run(["restic", "--no-cache", "cat", "config"], capture_output=True, text=True)
    if probe.returncode == 0:
        return False
    if "wrong password" in probe.stderr or "no key found" in probe.stderr:
        raise Refused("the repository exists but this key does not open it: use the key of its first backup "
                      "(--key-file)")
    restic("init")
    return True


def last_snapshot(part: str) -> dict[str, Any] | None:
    found = json.loads(restic("snapshots", "--json", "--tag", f"part={part}", capture=True) or "[]")
    return max(found, key=lambda s: s["time"]) if found else None


def run_id(job_name: str, now: datetime | None = None) -> str:
    """A scheduled run's name: the minute the CronJob controller scheduled it for (its Jobs are named
    <cronjob>-<minutes since 1970>); a Job named otherwise takes the time it starts."""
    suffix = job_name.rsplit("-", 1)[-1]
    if suffix.isdigit() and 10_000_000 < int(suffix) < 100_000_000:  # minutes: 1989 to 2160
        return datetime.fromtimestamp(int(suffix) * 60, timezone.utc).strftime(RUN_FORMAT)
    return (now or datetime.now(timezone.utc)).strftime(RUN_FORMAT)


def forget_args(part: str, keep: int) -> list[str]:
    """restic forget: keep this part's newest `keep` snapshots per host (the release), delete the data only the
    others used."""
    return ["forget", "--json", "--tag", f"part={part}", "--group-by", "host", "--keep-last", str(keep), "--prune"]


def forget(part: str, keep: int) -> dict[str, Any]:
    out = restic(*forget_args(part, keep), capture=True)
    groups: list[dict[str, Any]] = []
    for line in out.splitlines():  # the forget report is one JSON line; prune writes text after it
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, list):
            groups = value
            break
    return {"kept": sum(len(g.get("keep") or []) for g in groups),
            "forgot": sum(len(g.get("remove") or []) for g in groups)}


def backup(job: dict[str, Any], part: str) -> dict[str, Any]:
    created = ensure_repository()
    files: dict[str, dict[str, Any]] = {}
    if part == "meta":
        missing = [name for name in job.get("expect") or [] if not (SOURCE / name).is_file()]
        if missing:
            raise Refused(f"{', '.join(missing)} is missing: the hub has not recorded any user's uid yet "
                          f"(ConfigMap {job['release']}-identities); the next run, once the hub has started, has it")
        META.mkdir(parents=True, exist_ok=True)
        if HUB_DB.exists():
            copy = META / "jupyterhub.sqlite"
            source = sqlite3.connect(f"file:{HUB_DB}?mode=ro", uri=True)
            target = sqlite3.connect(copy)
            with target:
                source.backup(target)
            source.close()
            target.close()
        if job.get("condaStore"):
            with (META / CONDA_DUMP).open("w") as out:
                dump = subprocess.run(["pg_dump", "--clean", "--if-exists", "--no-owner", "--no-privileges"],
                                      stdout=out, stderr=subprocess.PIPE, text=True)
            if dump.returncode != 0:
                raise RuntimeError(f"pg_dump of the conda-store database failed: {dump.stderr.strip()[-1500:]}")
        for name in sorted(os.listdir(SOURCE)):
            if name.endswith((".json", ".yaml")) and not name.startswith("."):
                shutil.copyfile(SOURCE / name, META / name)
        files = {p.name: {"bytes": p.stat().st_size, "sha256": sha256(p)} for p in sorted(META.iterdir())}
        (META / MANIFEST).write_text(json.dumps({"run": job["run"], "release": job["release"], "files": files},
                                                indent=1, sort_keys=True))
        paths = [str(META)]
    else:
        # a platform nobody has used yet has neither: its (empty) root is what there is to keep
        paths = [str(SHARE / name) for name in TOP_LEVEL if (SHARE / name).is_dir()] or [str(SHARE)]
    parent = last_snapshot(part)
    args = ["backup", "--json", "--host", job["release"], "--tag", "qhub", "--tag", f"part={part}",
            "--tag", f"run={job['run']}", *paths]
    if parent:
        args[1:1] = ["--parent", parent["id"]]
    summary: dict[str, Any] = {}
    proc = subprocess.Popen(["restic", "--no-cache", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    last = 0.0
    for line in proc.stdout:
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("message_type") == "summary":
            summary = msg
        elif msg.get("message_type") == "status" and time.monotonic() - last > 2:
            last = time.monotonic()
            say("progress", part=part, percent=round(100 * float(msg.get("percent_done", 0)), 1),
                files=msg.get("files_done", 0), bytes=msg.get("bytes_done", 0),
                totalBytes=msg.get("total_bytes", 0))
    error = proc.stderr.read() if proc.stderr else ""
    if proc.wait() != 0:
        raise RuntimeError(f"restic backup failed ({proc.returncode}): {error.strip()[-1500:]}")
    pruned = forget(part, int(job["keep"])) if job.get("keep") else {}
    return {"part": part, "run": job["run"], "repositoryCreated": created, **pruned,
            "snapshot": summary.get("snapshot_id", ""),
            "parent": parent["id"] if parent else "", "files": summary.get("total_files_processed", 0),
            "bytes": summary.get("total_bytes_processed", 0), "newFiles": summary.get("files_new", 0),
            "changedFiles": summary.get("files_changed", 0), "unchangedFiles": summary.get("files_unmodified", 0),
            "addedBytes": summary.get("data_added", 0), "seconds": summary.get("total_duration", 0),
            "staged": files}


def pick_snapshot(job: dict[str, Any], part: str) -> dict[str, Any]:
    wanted = job.get("snapshotRun") or ""
    found = json.loads(restic("snapshots", "--json", "--tag", f"part={part}", capture=True) or "[]")
    if wanted:
        found = [s for s in found if f"run={wanted}" in (s.get("tags") or [])]
    if not found:
        what = f"run {wanted}" if wanted else "any run"
        raise Refused(f"the archive holds no {part} snapshot of {what}: is it the right destination?")
    return max(found, key=lambda s: s["time"])


def non_empty(root: Path) -> list[str]:
    """What a restore would overwrite: anything inside the folders under home/ and shared/."""
    busy = []
    for name in TOP_LEVEL:
        top = root / name
        if not top.is_dir():
            continue
        for entry in sorted(top.iterdir()):
            if entry.is_dir() and not entry.is_symlink() and any(entry.iterdir()):
                busy.append(f"{name}/{entry.name}")
            elif not entry.is_dir():
                busy.append(f"{name}/{entry.name}")
    return busy


def drop_symlinks(snapshot: str) -> int:
    """Remove the symlinks on the share that the snapshot restores (restic 0.14 cannot overwrite a symlink)."""
    dropped = 0
    for line in restic("ls", "--json", snapshot, capture=True).splitlines():
        try:
            node = json.loads(line)
        except ValueError:
            continue
        path = Path(node.get("path") or "")
        if node.get("type") == "symlink" and SHARE in path.parents and path.is_symlink():
            path.unlink()
            dropped += 1
    return dropped


def restore(job: dict[str, Any], part: str) -> dict[str, Any]:
    snapshot = pick_snapshot(job, part)
    if part == "files":
        busy = non_empty(SHARE)
        if busy and not job.get("force"):
            raise Refused(f"the shared filesystem is not empty ({', '.join(busy[:5])}"
                          f"{' ...' if len(busy) > 5 else ''}): restore onto a fresh platform, or pass --force to "
                          "overwrite what the archive holds (other files stay)")
        started = time.monotonic()
        if busy:
            replaced = drop_symlinks(snapshot["id"])
            if replaced:
                say("warning", message=f"replacing {replaced} symlinks that the archive holds too")
        restic("restore", snapshot["id"], "--target", "/")
        return {"part": part, "snapshot": snapshot["id"], "run": run_of(snapshot), "overwrote": busy,
                "seconds": round(time.monotonic() - started, 2)}
    started = time.monotonic()
    restic("restore", snapshot["id"], "--target", str(WORK / "restored"))
    staged = WORK / "restored" / str(META).lstrip("/")
    manifest = json.loads((staged / MANIFEST).read_text())
    for name, entry in manifest["files"].items():
        path = staged / name
        if not path.exists() or sha256(path) != entry["sha256"] or path.stat().st_size != entry["bytes"]:
            raise Refused(f"{name} in the archive does not match its manifest: the archive is damaged; nothing "
                          "was restored")
    restored: list[str] = []
    if (staged / "jupyterhub.sqlite").exists():
        tmp = HUB_DB.with_name(".restore.sqlite")
        shutil.copyfile(staged / "jupyterhub.sqlite", tmp)
        os.replace(tmp, HUB_DB)
        restored.append("hub database")
    if (staged / CONDA_DUMP).exists():
        if job.get("condaStore"):
            load = subprocess.run(["psql", "--quiet", "--set", "ON_ERROR_STOP=1", "--single-transaction",
                                   "--file", str(staged / CONDA_DUMP)], capture_output=True, text=True)
            if load.returncode != 0:
                raise RuntimeError(f"loading the conda-store database failed: {load.stderr.strip()[-1500:]}")
            restored.append("conda-store database")
        else:
            say("warning", message="the archive holds a conda-store database but conda-store is off here: skipped")
    texts = {name: (staged / name).read_text() for name in manifest["files"]
             if name.endswith((".json", ".yaml")) and name != MANIFEST}
    return {"part": part, "snapshot": snapshot["id"], "run": run_of(snapshot), "restored": restored,
            "texts": texts, "seconds": round(time.monotonic() - started, 2)}


def run_of(snapshot: dict[str, Any]) -> str:
    return next((t[4:] for t in snapshot.get("tags") or [] if t.startswith("run=")), "")


def verify(part: str) -> dict[str, Any]:
    started = time.monotonic()
    check = subprocess.run(["restic", "--no-cache", "check", "--read-data"], capture_output=True, text=True)
    if check.returncode != 0:
        lines = [l for l in (check.stdout + check.stderr).splitlines() if l.strip()]
        raise Refused(f"the {part} archive is damaged (restic check): {' | '.join(lines[-6:])}; nothing was "
                      "restored")
    return {"part": part, "verified": True, "seconds": round(time.monotonic() - started, 2)}


def wait_for_transfer(what: str) -> None:
    say("waiting", message=f"waiting for qhubctl to copy the repository's files {what}")
    deadline = time.monotonic() + HOLD_SECONDS
    while not SIGNAL.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"qhubctl did not copy the files {what} within {HOLD_SECONDS}s")
        time.sleep(1)


def repo_path(relative: str) -> Path:
    """A file inside the repository, never outside it."""
    path = (REPO / relative).resolve()
    if REPO.resolve() not in path.parents:
        raise ValueError(f"{relative!r} is not inside the repository")
    return path


def transfer(mode: str, argv: list[str]) -> int:
    if mode == "list":
        listing = {str(p.relative_to(REPO)): p.stat().st_size for p in sorted(REPO.rglob("*"))
                   if p.is_file() and not p.name.startswith(".") and "locks" not in p.relative_to(REPO).parts}
        print(json.dumps(listing))
    elif mode == "send":
        with repo_path(argv[2]).open("rb") as handle:
            shutil.copyfileobj(handle, sys.stdout.buffer, BLOCK)
        sys.stdout.buffer.flush()
    elif mode == "receive":
        target, size = repo_path(argv[2]), int(argv[3])
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        left = size
        with partial.open("wb") as out:
            while left:
                block = sys.stdin.buffer.read(min(left, BLOCK))
                if not block:
                    partial.unlink()
                    raise SystemExit(f"{argv[2]}: the upload ended after {size - left} of {size} bytes")
                out.write(block)
                left -= len(block)
        os.replace(partial, target)
        print("OK", flush=True)
    elif mode == "done":
        SIGNAL.touch()
    return 0


def main(argv: list[str]) -> int:
    mode = argv[1] if len(argv) > 1 else ""
    job = json.loads(os.environ.get("QHUB_JOB", "{}"))
    job.setdefault("run", run_id(os.environ.get("QHUB_JOB_NAME", "")))
    part = os.environ.get("QHUB_PART", "")
    os.environ.setdefault("HOME", str(WORK))
    if mode in ("list", "send", "receive", "done"):
        return transfer(mode, argv)
    try:
        if mode == "backup":
            report = backup(job, part)
        elif mode == "restore":
            if job.get("waitUpload"):
                wait_for_transfer("in")
            report = restore(job, part)
        elif mode == "verify":
            report = verify(part)
        else:
            raise Refused(f"unknown mode {mode!r}: backup, restore or verify")
    except Refused as exc:
        say("report", ok=False, refused=True, part=part, message=str(exc))
        return EXIT_REFUSED
    except (RuntimeError, OSError, sqlite3.Error, ValueError, KeyError) as exc:
        say("report", ok=False, refused=False, part=part, message=f"{exc.__class__.__name__}: {exc}")
        return 1
    say("report", ok=True, **report)
    if mode == "backup" and job.get("hold"):
        try:
            wait_for_transfer("out")
        except RuntimeError as exc:
            say("error", message=str(exc))
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
