"""JSON schema of qhub-config.yaml (editor completion) and the Markdown reference, both from the models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from qhubctl.config.loader import SCHEMA_FILE
from qhubctl.config.model import SCHEMA_VERSION, QHubConfig

SCHEMA_ID = "https://qhub.dev/schema/qhub-config.schema.json"


def json_schema() -> dict[str, Any]:
    schema = QHubConfig.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = SCHEMA_ID
    schema["title"] = f"qhub-config.yaml (schema_version {SCHEMA_VERSION})"
    return schema


def write_schema(path: Path = Path(SCHEMA_FILE)) -> Path:
    path.write_text(json.dumps(json_schema(), indent=2, sort_keys=True) + "\n")
    return path


def _type(prop: dict[str, Any], defs: dict[str, Any]) -> str:
    if "$ref" in prop:
        return f"[{prop['$ref'].rsplit('/', 1)[-1]}](#{prop['$ref'].rsplit('/', 1)[-1].lower()})"
    if "const" in prop:
        return f"`{prop['const']!r}`".replace("'", '"')
    if "enum" in prop:
        return " \\| ".join(f"`{v}`" for v in prop["enum"])
    if "anyOf" in prop or "oneOf" in prop:
        return " \\| ".join(_type(p, defs) for p in prop.get("anyOf", prop.get("oneOf", [])))
    kind = prop.get("type", "any")
    if kind == "array":
        return f"list of {_type(prop.get('items', {}), defs)}"
    if kind == "object" and "additionalProperties" in prop and isinstance(prop["additionalProperties"], dict):
        return f"map of {_type(prop['additionalProperties'], defs)}"
    return str(kind)


def _default(prop: dict[str, Any], required: bool) -> str:
    if required:
        return "**required**"
    if "default" in prop:
        return f"`{json.dumps(prop['default'])}`" if len(json.dumps(prop["default"])) < 60 else "see below"
    return "-"


def _table(name: str, spec: dict[str, Any], defs: dict[str, Any]) -> list[str]:
    lines = [f"### {name}", "", (spec.get("description") or "").strip(), "",
             "| key | type | default | description |", "|---|---|---|---|"]
    required = set(spec.get("required", []))
    for key, prop in spec.get("properties", {}).items():
        desc = prop.get("description", "").replace("|", "\\|").replace("\n", " ")
        if prop.get("immutable"):
            desc += " **Immutable.**"
        lines.append(f"| `{key}` | {_type(prop, defs)} | {_default(prop, key in required)} | {desc} |")
    return [*lines, ""]


def reference_markdown() -> str:
    """docs/config-reference.md: one table per model, top-level first then alphabetical."""
    schema = json_schema()
    defs = schema.get("$defs", {})
    out = [
        "# qhub-config.yaml reference",
        "",
        f"Generated from the qhubctl config models (schema_version {SCHEMA_VERSION}) by "
        "`scripts/gen_config_reference.py`; do not edit by hand. Secrets are never written in the file: set "
        "`QHUB_SECRET__<path>` environment variables (for example `QHUB_SECRET__auth__client_secret`) or write "
        "`{secretRef: {name: <Secret>, key: <key>}}`.",
        "",
        *_table("QHubConfig (top level)", schema, defs),
    ]
    for name in sorted(defs):
        if "properties" in defs[name]:
            out += _table(name, defs[name], defs)
    return "\n".join(out).rstrip() + "\n"
