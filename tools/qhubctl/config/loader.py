"""Read qhub-config.yaml (comments kept for rewriting), apply QHUB_SECRET__ overrides, validate."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from qhubctl.config.base import EnvValue
from qhubctl.config.model import SCHEMA_VERSION, QHubConfig
from qhubctl.config.problems import problems_from
from qhubctl.errors import ConfigError

DEFAULT_CONFIG = Path("qhub-config.yaml")
ENV_PREFIX = "QHUB_SECRET__"
SCHEMA_FILE = "qhub-config.schema.json"


def _yaml() -> YAML:
    yaml = YAML()  # round-trip: keeps comments and key order for `upgrade` and `init`
    yaml.preserve_quotes = True
    yaml.width = 120
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def load_raw(path: Path) -> Any:
    """The file as ruamel round-trip data (comments kept). ConfigError for a missing file or bad YAML."""
    data = parse_yaml(read_text(path), path)
    if data is None:
        raise ConfigError(f"{path}: the file is empty", hint="write one with `qhubctl init <provider> -o FILE`")
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: the top level must be a mapping of settings", hint="start from `qhubctl init`")
    return data


def read_text(path: Path, what: str = "config file",
              missing_hint: str = "create one with `qhubctl init <provider>` or pass -c FILE") -> str:
    """The text of a file the user named; ConfigError naming the file when it is missing, a directory, unreadable
    or not UTF-8 text (never an OSError traceback)."""
    if not path.exists():
        raise ConfigError(f"{path}: no such file", hint=missing_hint)
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory, not a {what}", hint=f"pass the {what} itself, not its folder")
    try:
        return path.read_text(encoding="utf-8")
    except PermissionError:
        raise ConfigError(f"{path}: cannot read the {what}: permission denied",
                          hint="check the file's owner and mode (`ls -l`)") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a text file (byte {exc.start} is not UTF-8)",
                          hint=f"pass the YAML {what}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None


def parse_yaml(text: str, path: Path) -> Any:
    """YAML text as ruamel round-trip data; ConfigError with file:line:column on a syntax error."""
    try:
        return _yaml().load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML: {getattr(exc, 'problem', exc)}",
                          hint="fix the indentation or quoting at that line") from None


def dump_yaml(data: Any) -> str:
    buf = io.StringIO()
    _yaml().dump(data, buf)
    return buf.getvalue()


def plain(data: Any) -> Any:
    """ruamel containers and scalars as plain JSON-like Python data."""
    return json.loads(json.dumps(data, default=str))


def apply_env(data: dict[str, Any], environ: Mapping[str, str]) -> list[str]:
    """Set QHUB_SECRET__a__b=value at a.b (list items by index); returns the paths it set."""
    applied: list[str] = []
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or len(name) == len(ENV_PREFIX):
            continue
        path = name[len(ENV_PREFIX):].split("__")
        node: Any = data
        for i, key in enumerate(path[:-1]):
            nxt = path[i + 1]
            if isinstance(node, list):
                node = node[int(key)]
            else:
                node = node.setdefault(key, [] if nxt.isdigit() and False else {})
            if not isinstance(node, (dict, list)):
                raise ConfigError(f"{name}: {'.'.join(path[:i + 1])} is not a mapping, cannot set {nxt} in it")
        last = path[-1]
        if isinstance(node, list):
            node[int(last)] = EnvValue(environ[name])
        else:
            node[last] = EnvValue(environ[name])
        applied.append(".".join(path))
    return applied


def parse_config(data: Any, *, source: str = "config", environ: Mapping[str, str] | None = None) -> QHubConfig:
    """Validate already-loaded data (plus env overrides); ConfigError lists every problem with its path."""
    raw = plain(data)
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping")
    version = raw.get("schema_version")
    if isinstance(version, int) and version < SCHEMA_VERSION:
        raise ConfigError(
            f"{source}: schema_version {version} is older than {SCHEMA_VERSION}",
            hint=f"run `qhubctl upgrade -c {source}` to migrate it (a backup of the old file is kept)",
        )
    apply_env(raw, os.environ if environ is None else environ)
    try:
        return QHubConfig.model_validate(raw)
    except ValidationError as exc:
        problems = problems_from(exc, QHubConfig, raw, data)
        raise ConfigError(
            f"{source}: {len(problems)} problem(s)",
            problems=problems,
            hint=f"see docs/config-reference.md, or `qhubctl schema` for editor completion ({SCHEMA_FILE})",
        ) from None


def load_config(path: Path | str = DEFAULT_CONFIG, *, environ: Mapping[str, str] | None = None) -> QHubConfig:
    path = Path(path)
    return parse_config(load_raw(path), source=str(path), environ=environ)
