"""Turn pydantic validation errors into "field.path: message - hint" lines a user can act on."""

from __future__ import annotations

import io
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from qhubctl.config.base import FieldProblem, secret_env_name

# Error types that say what is wrong better than a type mismatch reported by another union member.
_PREFERRED = ("secret_in_file", "value_error", "union_tag_invalid", "missing", "extra_forbidden")


def format_path(parts: list[str | int]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _clean_loc(loc: tuple[Any, ...], data: Any) -> list[str | int]:
    """Drop union member tags pydantic inserts in locations ('cluster', 'aws', 'region' -> 'cluster', 'region')."""
    parts: list[str | int] = []
    node = data
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(node, dict) and part in node:
            parts.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            parts.append(part)
            node = node[part]
        elif isinstance(node, dict) and last and isinstance(part, str) and not _is_tag(part, node):
            parts.append(part)  # a missing key
        # anything else is a union member tag or a model class name
    return parts


def _is_tag(part: str, node: dict[str, Any]) -> bool:
    builtin = {"str", "int", "float", "bool", "list", "dict", "none", "tagged-union", "union"}
    return part in (node.get("provider"), node.get("type")) or part[:1].isupper() or "[" in part or part in builtin


def _target(model: type[BaseModel], parts: list[str | int], data: Any) -> Any:
    """The model class that holds the last element of `parts`, following the data's union discriminators."""
    target: Any = model
    node = data
    for part in parts[:-1]:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            node = None
        if isinstance(target, _ListOf):
            target = _pick(target.item, node)
        elif isinstance(target, type) and issubclass(target, BaseModel) and str(part) in target.model_fields:
            target = _pick(target.model_fields[str(part)].annotation, node)
        else:
            return None
    return target if isinstance(target, type) and issubclass(target, BaseModel) else None


def _allowed_keys(model: type[BaseModel], parts: list[str | int], data: Any) -> list[str]:
    target = _target(model, parts, data)
    return sorted(f.alias or n for n, f in target.model_fields.items()) if target else []


class _ListOf:
    def __init__(self, item: Any) -> None:
        self.item = item


def _pick(annotation: Any, node: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin is typing.Annotated:
        return _pick(args[0], node)
    if origin in (list, dict):
        return _ListOf(args[-1]) if args else None
    for arg in args:
        inner = _pick(arg, node)
        if isinstance(inner, type) and issubclass(inner, BaseModel) and isinstance(node, dict):
            fields = inner.model_fields
            key = "provider" if "provider" in fields else "type"
            if key not in fields or node.get(key) in typing.get_args(fields[key].annotation):
                return inner
    return None


def _hint(err: dict[str, Any], parts: list[str | int], model: type[BaseModel], data: Any, literal: str = "") -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model, parts, data)
        return f"remove it or fix the spelling; allowed here: {', '.join(allowed)}" if allowed else "remove it"
    if kind == "missing":
        if _is_secret(model, parts, data):
            env = secret_env_name(tuple(str(p) for p in parts))
            return (f"a secret never goes into the file: set {env}=... in the environment, or write "
                    f"{parts[-1]}: {{secretRef: {{name: <Secret in the namespace>, key: <key in it>}}}}")
        return "add this field"
    if kind in ("string_type", "string_pattern_mismatch") and isinstance(err.get("input"), (int, float)) \
            and not isinstance(err.get("input"), bool):
        literal = literal or str(err["input"])
        return (f"YAML reads the unquoted {literal} as a number; quote it: {parts[-1] if parts else 'value'}: "
                f'"{literal}"')
    if kind == "secret_in_file":
        env = secret_env_name(tuple(str(p) for p in parts))
        return f"remove the value; set {env} in the environment or write {{secretRef: {{name: ..., key: ...}}}}"
    if kind == "union_tag_invalid":
        return f"use one of {err.get('ctx', {}).get('expected_tags', '')}"
    if kind == "union_tag_not_found":
        return f"add {err.get('ctx', {}).get('discriminator', 'the type key')}"
    if kind == "string_pattern_mismatch":
        return _description(model, parts, data) or f"the value must match {err['ctx']['pattern']}"
    if kind == "literal_error":
        return f"use {err.get('ctx', {}).get('expected', 'an allowed value')}"
    return ""


def _is_secret(model: type[BaseModel], parts: list[str | int], data: Any) -> bool:
    target = _target(model, parts, data)
    field = target.model_fields.get(str(parts[-1])) if target is not None and parts else None
    extra = field.json_schema_extra if field is not None else None
    return isinstance(extra, dict) and bool(extra.get("secret"))


def _literal(source: Any, parts: list[str | int]) -> str:
    """How a number was written in the file (1.30, not the float 1.3), from the round-trip data; "" if unknown."""
    node = source
    try:
        for part in parts:
            node = node[part]
    except (KeyError, IndexError, TypeError):
        return ""
    if isinstance(node, bool) or not isinstance(node, (int, float)):
        return ""
    from ruamel.yaml import YAML

    buf = io.StringIO()
    YAML().dump([node], buf)
    return buf.getvalue().strip().removeprefix("- ").strip()


def _description(model: type[BaseModel], parts: list[str | int], data: Any) -> str:
    target = _target(model, parts, data)
    if target is not None and str(parts[-1]) in target.model_fields:
        return target.model_fields[str(parts[-1])].description or ""
    return ""


def _message(err: dict[str, Any]) -> str:
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def problems_from(exc: ValidationError, model: type[BaseModel], data: Any, source: Any = None) -> list[str]:
    """One "path: message - hint" line per field, most useful error first when union members disagree. `source` is
    the file as loaded (round-trip data), used to quote numbers as they were written."""
    best: dict[str, tuple[int, str]] = {}
    for err in exc.errors(include_url=False):
        parts = _clean_loc(tuple(err["loc"]), data)
        problem = (err.get("ctx") or {}).get("error")
        if isinstance(problem, FieldProblem):
            prefix = format_path(parts)
            for sub, msg in problem.problems:
                best.setdefault(f"{prefix}.{sub}" if prefix else sub, (0, msg))
            continue
        path = format_path(parts) or "(top level)"
        hint = _hint(err, parts, model, data, _literal(source, parts) if source is not None else "")
        line = _message(err) + (f" - {hint}" if hint else "")
        rank = _PREFERRED.index(err["type"]) if err["type"] in _PREFERRED else len(_PREFERRED)
        if path not in best or rank < best[path][0]:
            best[path] = (rank, line)
    return [f"{path}: {line}" for path, (_, line) in best.items()]
