"""The files Helm puts in a chart it loads from a directory, by the chart's .helmignore: what qhubctl hashes to tell a
chart change (qhubctl.helm) and what the wheel carries (setup.py loads this file by its path during a build, so it
imports nothing outside the standard library)."""

from __future__ import annotations

import fnmatch
from pathlib import Path, PurePosixPath

# Files Helm leaves out of a chart whatever its .helmignore says (Helm's own default rule: hidden files in templates/).
ALWAYS_IGNORED = ("templates/.?*",)


def _ignore_rules(chart: Path) -> list[str]:
    path = chart / ".helmignore"
    lines = path.read_text().splitlines() if path.is_file() else []
    return [*ALWAYS_IGNORED, *(s for line in lines if (s := line.strip()) and not s.startswith("#"))]


def _ignored(rel: PurePosixPath, is_dir: bool, rules: list[str]) -> bool:
    """Helm's .helmignore semantics: a rule without "/" matches a file or folder name anywhere, a rule with "/"
    matches the path from the chart's root, a trailing "/" matches folders only, and "!" re-includes; the last
    matching rule wins."""
    ignored = False
    for rule in rules:
        negate = rule.startswith("!")
        pattern = rule[1:] if negate else rule
        if pattern.endswith("/"):
            if not is_dir:
                continue
            pattern = pattern.rstrip("/")
        subject = str(rel) if "/" in pattern else rel.name
        if fnmatch.fnmatchcase(subject, pattern.lstrip("/")):
            ignored = not negate
    return ignored


def packaged_files(chart: Path) -> list[Path]:
    """The files Helm loads from the chart directory, sorted. Like Helm, only the top chart's .helmignore counts,
    for subcharts under charts/ too. What Python or an editor leaves beside them is not part of the chart."""
    rules = _ignore_rules(chart)
    found: list[Path] = []

    def walk(folder: Path) -> None:
        for entry in sorted(folder.iterdir()):
            rel = PurePosixPath(entry.relative_to(chart).as_posix())
            if entry.is_dir():
                if not _ignored(rel, True, rules):
                    walk(entry)
            elif entry.is_file() and not _ignored(rel, False, rules):
                found.append(entry)

    walk(chart)
    return found
