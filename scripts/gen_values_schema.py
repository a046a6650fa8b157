"""Each chart's values.schema.json and README.md, generated from two hand-written sources, each fact in one:

- values.schema.yaml: the JSON Schema (draft-07) of the chart's values - types, enums, patterns, required keys,
  additionalProperties - written in YAML. A property that values.yaml does not set carries `x-optional: <why>`
  (e.g. a renamed value the chart refuses with a message); the generator drops that key from the JSON.
- values.yaml: the defaults, and the comment block directly above each key, which becomes that key's
  `description` in the JSON and its row in the README's table of values.

    python scripts/gen_values_schema.py            write every chart's values.schema.json and README.md
    python scripts/gen_values_schema.py --check    exit 1 naming the files that are out of date, or the keys that
                                                   one source has and the other lacks (`make schema-check`)
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
UMBRELLA = REPO / "charts" / "qhub"
OPTIONAL = "x-optional"
KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>\"[^\"]+\"|'[^']+'|[^\s#:'\"-][^:#]*?|-[^\s:#][^:#]*?) *:(?: |$)")
KeyPath = tuple[str, ...]


def charts() -> list[Path]:
    """The umbrella, its subcharts, and the other charts beside it (qhub-cluster-addons); each a folder with
    Chart.yaml and values.yaml."""
    subs = sorted(p for p in (UMBRELLA / "charts").iterdir() if (p / "Chart.yaml").exists())
    beside = sorted(p for p in UMBRELLA.parent.iterdir() if p != UMBRELLA and (p / "Chart.yaml").exists())
    return [UMBRELLA, *subs, *beside]


def comments(values_text: str) -> dict[KeyPath, str]:
    """The comment block directly above each block-mapping key of values.yaml, by key path; a blank line ends a
    block. Keys inside list items and flow collections are not followed (they are documented by their parent)."""
    found: dict[KeyPath, str] = {}
    stack: list[tuple[int, str]] = []
    block: list[str] = []
    skip_deeper_than: int | None = None
    for line in values_text.splitlines():
        stripped = line.strip()
        indent = len(line) - len(line.lstrip(" "))
        if not stripped:
            block = []
            continue
        if stripped.startswith("#"):
            block.append(stripped.lstrip("#").strip())
            continue
        if skip_deeper_than is not None and indent > skip_deeper_than:
            continue
        skip_deeper_than = None
        if stripped.startswith("- ") or stripped == "-":
            skip_deeper_than = indent
            block = []
            continue
        match = KEY_LINE.match(line)
        if not match:
            block = []
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        key = match["key"].strip("\"'")
        stack.append((indent, key))
        path = tuple(k for _, k in stack)
        if block:
            found[path] = " ".join(block)
        block = []
    return found


def strip_private(node: Any) -> Any:
    """The schema without the source's own keywords (x-optional)."""
    if isinstance(node, dict):
        return {k: strip_private(v) for k, v in node.items() if k != OPTIONAL}
    if isinstance(node, list):
        return [strip_private(v) for v in node]
    return node


def sub_schema(schema: dict[str, Any], key: str) -> dict[str, Any] | None:
    """The schema a mapping applies to its key: a property, a matching patternProperty, or additionalProperties."""
    if key in (schema.get("properties") or {}):
        return schema["properties"][key]
    for pattern, sub in (schema.get("patternProperties") or {}).items():
        if re.search(pattern, key):
            return sub
    extra = schema.get("additionalProperties", True)
    return extra if isinstance(extra, dict) else None


def closed(schema: dict[str, Any]) -> bool:
    return schema.get("additionalProperties", True) is False


@dataclass
class Coverage:
    """Keys one source has and the other lacks."""

    not_in_schema: list[str]
    not_in_values: list[str]

    def problems(self, chart: str) -> list[str]:
        return ([f"{chart}: values.yaml sets {p}, which values.schema.yaml does not describe" for p in self.not_in_schema]
                + [f"{chart}: values.schema.yaml has {p}, which values.yaml does not set; give it a default or mark "
                   f"it `{OPTIONAL}: <why>`" for p in self.not_in_values])


def coverage(schema: dict[str, Any], values: Any, path: KeyPath = ()) -> Coverage:
    """Both directions along the mappings values.yaml sets: every key it sets has a schema, every property the
    schema lists is set (or marked optional). Entries of maps and lists whose keys users choose (profiles, groups)
    are checked against the schema of an entry, not for completeness."""
    out = Coverage([], [])
    if not isinstance(values, dict):
        return out
    props = schema.get("properties") or {}
    for key, value in values.items():
        sub = sub_schema(schema, key)
        where = ".".join((*path, key))
        if sub is None:
            if closed(schema) or props:
                out.not_in_schema.append(where)
            continue
        inner = coverage(sub, value, (*path, key))
        out.not_in_schema += inner.not_in_schema
        if key in props:  # an entry of a user-keyed map need not set every property of an entry
            out.not_in_values += inner.not_in_values
    for key, sub in props.items():
        if key not in values and not (isinstance(sub, dict) and sub.get(OPTIONAL)):
            out.not_in_values.append(".".join((*path, key)))
    return out


def describe(schema: dict[str, Any], notes: dict[KeyPath, str], values: Any, path: KeyPath = ()) -> dict[str, Any]:
    """The schema with each property's description taken from its values.yaml comment (entries of user-keyed
    maps take the comments of the first example entry that has them)."""
    out = dict(schema)
    if path and path in notes:
        if "description" in schema:
            raise SystemExit(f"{'.'.join(path)}: described twice (values.yaml comment and values.schema.yaml); "
                             "keep the comment")
        out["description"] = notes[path]
    if isinstance(schema.get("properties"), dict):
        vals = values if isinstance(values, dict) else {}
        out["properties"] = {k: describe(v, notes, vals.get(k), (*path, k)) for k, v in schema["properties"].items()}
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict) and isinstance(values, dict):
        examples = [k for k in values if k not in (schema.get("properties") or {})]
        example = next((k for k in examples if any(p[:len(path) + 1] == (*path, k) and len(p) > len(path) + 1
                                                    for p in notes)), None)
        if example is not None:
            entry_notes = {(*path, "*", *p[len(path) + 1:]): n for p, n in notes.items()
                           if p[:len(path) + 1] == (*path, example) and len(p) > len(path) + 1}
            out["additionalProperties"] = describe(extra, entry_notes, values[example], (*path, "*"))
    return out


def schema_type(schema: dict[str, Any] | None) -> str:
    if not schema:
        return ""
    if "enum" in schema:
        return " \\| ".join(json.dumps(v) for v in schema["enum"])
    kind = schema.get("type", "")
    return " or ".join(kind) if isinstance(kind, list) else str(kind)


def rows(values: Any, schema: dict[str, Any] | None, notes: dict[KeyPath, str], path: KeyPath = ()) -> Iterator[str]:
    """One table row per value: leaves, and mappings with a comment of their own."""
    is_map = isinstance(values, dict) and bool(values)
    if path and (not is_map or path in notes):
        default = "" if is_map else f"`{json.dumps(values)}`".replace("|", "\\|")
        note = notes.get(path, "").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")
        yield f"| `{'.'.join(path)}` | {schema_type(schema)} | {default} | {note} |"
    if is_map:
        for key, value in values.items():
            yield from rows(value, sub_schema(schema or {}, key), notes, (*path, key))


def readme(chart: Path, values: Any, schema: dict[str, Any], notes: dict[KeyPath, str]) -> str:
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    table = "\n".join(rows(values, schema, notes))
    return (f"# {meta['name']}\n\n{meta.get('description', '')}\n\n"
            "<!-- Generated by scripts/gen_values_schema.py from values.yaml (defaults and comments) and "
            "values.schema.yaml (types); edit those and run `make schema`. -->\n\n"
            "## Values\n\n| Key | Type | Default | Description |\n|---|---|---|---|\n" + table + "\n")


def generate(chart: Path) -> tuple[dict[Path, str], list[str]]:
    """The generated files of one chart (path -> text) and the coverage problems of its two sources."""
    values_text = (chart / "values.yaml").read_text()
    values = yaml.safe_load(values_text) or {}
    source = yaml.safe_load((chart / "values.schema.yaml").read_text())
    notes = comments(values_text)
    schema = strip_private(describe(source, notes, values))
    name = chart.relative_to(REPO).as_posix()
    return ({chart / "values.schema.json": json.dumps(schema, indent=2) + "\n",
             chart / "README.md": readme(chart, values, schema, notes)},
            coverage(source, values).problems(name))


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale, problems = [], []
    for chart in charts():
        files, found = generate(chart)
        problems += found
        for path, text in files.items():
            if path.exists() and path.read_text() == text:
                continue
            if check:
                stale.append(path.relative_to(REPO).as_posix())
            else:
                path.write_text(text)
    for line in problems:
        print(line, file=sys.stderr)
    if stale:
        print("out of date (run `make schema`): " + ", ".join(stale), file=sys.stderr)
    return 1 if stale or problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
