"""Every command the docs show exists as written (issue 15: docs as tests). The command lines are read from the
fenced blocks and the inline `qhubctl ...` spans of README.md, CONTRIBUTING.md and docs/*.md (tests/docsmd.py):

- `qhubctl ...`: the command path resolves in qhubctl's click app, every option is an option of that command,
  and a literal value of a choice (option or argument) is one of its choices;
- `make <target>`: the Makefile has the target;
- `helm ... --set key=value`: the chart has the key (its values.yaml or its schema, subcharts under their name);
- every `<!-- docs-test: FLOW -->` marker is well-formed, sits right before a shell block, and names a flow the
  cluster tier runs (docsmd.FLOWS), and every flow has its blocks.

Placeholders are fine as values: `<project>`, `FILE`, `NAME:TAG`, `X.Y.Z`, `...`. Usage synopses may bracket
options (`[--keep N]`, `[--push REGISTRY | --oci-layout DIR]`)."""

from __future__ import annotations

import enum
import json
import re
import typing
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any, Literal

import pytest
import typer.main
import yaml

import docsmd
from qhubctl.cli import app

pytestmark = pytest.mark.unit
CHART = docsmd.REPO / "charts" / "qhub"


def placeholder(word: str) -> bool:
    """A word the docs use for "your value here"."""
    return ("<" in word or "..." in word or
            bool(re.fullmatch(r"[A-Z][A-Z0-9_]*([:.=/-][A-Z0-9_]+)*", word)))


def _usage_words(words: tuple[str, ...]) -> list[str]:
    """Words of a usage synopsis without its brackets and alternatives: `[--push REGISTRY | --oci DIR]`."""
    out = [w.strip("[]") for w in words if w != docsmd.ALTERNATIVE]
    return [w for w in out if w]


# typer carries its own click (typer._click): its objects are read by their public attributes, not their classes
Command = Any


def _params(command: Command, kind: str) -> list[Any]:
    return [p for p in command.params if p.param_type_name == kind]  # "option" or "argument"


def _option(command: Command, name: str) -> Any:
    return next((p for p in _params(command, "option") if name in (*p.opts, *p.secondary_opts)), None)


def _options_of(command: Command) -> str:
    return ", ".join(o for p in _params(command, "option") for o in p.opts)


def _choices(param: Any) -> list[str] | None:
    """The values a choice parameter takes (an Enum or Literal annotation), else None."""
    annotation = param.type_descriptor.annotation
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return [str(member.value) for member in annotation]
    return [str(v) for v in typing.get_args(annotation)] if typing.get_origin(annotation) is Literal else None


def _choice_problem(param: Any, value: str) -> str | None:
    choices = _choices(param)
    if choices is not None and not placeholder(value) and value not in choices:
        return f"{value!r} is not a choice of {'/'.join(param.opts)} ({'|'.join(map(str, choices))})"
    return None


def qhubctl_problems(words: tuple[str, ...], *, inline: bool) -> Iterator[str]:
    """What is wrong with a qhubctl command line, checked against the click app."""
    command: Command = typer.main.get_command(app)
    path = ["qhubctl"]
    rest = _usage_words(words[1:])
    positionals: list[str] = []
    while rest:
        word = rest.pop(0)
        if word.startswith("...") or word in {"--", "--help"}:
            return
        if word.startswith("-") and len(word) > 1:
            name, _, attached = word.partition("=")
            option = _option(command, name)
            if option is None:
                yield f"`{' '.join(path)}` has no option {name} (options: {_options_of(command)})"
                return
            if not (option.is_flag or option.count) and not attached:  # type: ignore[attr-defined]
                if not rest or (rest[0].startswith("-") and len(rest[0]) > 1):
                    if not inline:
                        yield f"option {name} of `{' '.join(path)}` needs a value"
                    continue
                attached = rest.pop(0)
            if attached and (problem := _choice_problem(option, attached)):
                yield problem
        elif hasattr(command, "commands") and not positionals:
            sub = command.commands.get(word)
            if sub is None:
                if not placeholder(word):
                    known = ", ".join(sorted(command.commands))
                    yield f"`{' '.join(path)}` has no command {word!r} (commands: {known})"
                return
            command, path = sub, [*path, word]
        else:
            positionals.append(word)
    arguments = _params(command, "argument")
    if not any(a.nargs == -1 for a in arguments) and len(positionals) > sum(a.nargs for a in arguments):
        yield f"`{' '.join(path)}` takes {len(arguments)} argument(s), given {positionals}"
    for argument, value in zip(arguments, positionals):
        if argument.nargs == 1 and (problem := _choice_problem(argument, value)):
            yield problem


@cache
def make_targets() -> frozenset[str]:
    text = (docsmd.REPO / "Makefile").read_text()
    return frozenset(re.findall(r"^([A-Za-z][\w-]*):(?!=)", text, re.M))


def make_problems(words: tuple[str, ...]) -> Iterator[str]:
    targets = [w for w in words[1:] if "=" not in w and not w.startswith("-")]
    yield from (f"the Makefile has no target {t!r}" for t in targets if t not in make_targets())


@cache
def _chart_values(chart: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    return (yaml.safe_load((chart / "values.yaml").read_text()) or {},
            json.loads((chart / "values.schema.json").read_text()))


def _has_key(values: Any, schema: dict[str, Any], keys: list[str]) -> bool:
    """The dotted path exists in values.yaml or in the schema (a map-typed schema node takes any key)."""
    if not keys:
        return True
    key = re.sub(r"\[\d+\]$", "", keys[0])
    in_values = isinstance(values, dict) and key in values
    props = schema.get("properties", {})
    if not in_values and key not in props:
        extra = schema.get("additionalProperties")
        return isinstance(extra, dict) or (extra is None and not props and schema.get("type") == "object")
    return _has_key(values.get(key) if in_values else None, props.get(key, {}), keys[1:])


def chart_has(key: str) -> bool:
    keys = key.split(".")
    sub = CHART / "charts" / keys[0]
    if sub.is_dir() and len(keys) > 1:
        return _has_key(*_chart_values(sub), keys[1:])
    return _has_key(*_chart_values(CHART), keys)


def helm_problems(words: tuple[str, ...]) -> Iterator[str]:
    if not any("charts/qhub" in w or w.endswith("/qhub") for w in words):
        return  # another chart
    for flag, value in zip(words, words[1:]):
        if flag in {"--set", "--set-string", "--set-json", "--set-file"}:
            for assignment in value.split(","):
                key = assignment.split("=", 1)[0]
                if "=" in assignment and not chart_has(key):
                    yield f"the chart has no value {key} (charts/qhub/values.yaml, charts/qhub/charts/*/values.yaml)"


def problems(command: docsmd.Command, *, inline: bool = False) -> list[str]:
    checks = {"qhubctl": lambda w: qhubctl_problems(w, inline=inline), "make": make_problems, "helm": helm_problems}
    return [f"{command.where}: `{command.source}`: {p}" for p in checks[command.words[0]](command.words)]


def test_every_documented_command_exists_as_written() -> None:
    found = [p for page in docsmd.pages() for b in docsmd.blocks(page) for c in docsmd.block_commands(b)
             for p in problems(c)]
    found += [p for page in docsmd.pages() for c in docsmd.inline_commands(page) for p in problems(c, inline=True)]
    assert not found, "\n".join(found)


def test_the_docs_show_commands_of_every_kind() -> None:
    """The reader finds the commands (a parser that found none would pass everything)."""
    kinds = {c.words[0] for c in docsmd.all_commands()}
    assert kinds == set(docsmd.TOOLS), kinds
    assert len(docsmd.all_commands()) > 50


def marker_problems(page: Path) -> Iterator[str]:
    marked = {b.marker_where: b for b in docsmd.blocks(page) if b.flow}
    for at, line in docsmd.markers(page):
        match = docsmd.MARKER.match(line)
        if not match:
            yield f"{at}: {line!r} is not `<!-- docs-test: FLOW -->` (lower-case name, nothing else)"
        elif at not in marked:
            yield f"{at}: the marker must be the line right before a fence"
        elif marked[at].lang not in docsmd.SHELL_LANGS:
            yield f"{at}: the marked block is `{marked[at].lang}`, not a shell block"
        elif match["flow"] not in docsmd.FLOWS:
            yield f"{at}: no flow {match['flow']!r} in tests/docsmd.py FLOWS ({', '.join(docsmd.FLOWS)})"


def test_every_docs_test_marker_names_a_flow_the_cluster_tier_runs() -> None:
    bad = [problem for page in docsmd.pages() for problem in marker_problems(page)]
    flows = docsmd.flows()
    bad += [f"flow {name!r} (tests/docsmd.py FLOWS) has no marked block in the docs" for name in docsmd.FLOWS
            if name not in flows]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize(("line", "wrong"), [
    ("qhubctl backup --kep 3", "no option --kep"),
    ("qhubctl bakup -c qhub-config.yaml", "no command 'bakup'"),
    ("qhubctl render --format toml", "'toml' is not a choice"),
    ("qhubctl init amazon", "'amazon' is not a choice"),
    ("qhubctl cluster create -c", "needs a value"),
    ("make tset", "no target 'tset'"),
    ("helm install qhub charts/qhub --set global.tls.mod=none", "no value global.tls.mod"),
    ("helm install qhub charts/qhub --set jupyterhub.nothere=1", "no value jupyterhub.nothere"),
])
def test_a_misspelt_command_is_named(line: str, wrong: str) -> None:
    words = tuple(docsmd.split_commands(line)[0])
    found = problems(docsmd.Command("docs/x.md:1", line, words))
    assert len(found) == 1 and wrong in found[0] and found[0].startswith(f"docs/x.md:1: `{line}`: "), found


@pytest.mark.parametrize("line", [
    "qhubctl deploy -c qhub-config.yaml --kubeconfig <project>.kubeconfig --yes",
    "qhubctl images build SPEC --tag NAME:TAG [--push REGISTRY | --oci-layout DIR] [--relock]",
    "qhubctl --chart dist/qhub-0.1.0.tgz deploy --yes",
    "qhubctl render --format json > values.json",
    "REGISTRY=127.0.0.1:5001 make images",
    "make test PYTEST_ARGS=-x",
    "helm install qhub charts/qhub --set global.domain=qhub.example.org --set nfs.service.clusterIP=10.0.0.9",
])
def test_a_right_command_passes(line: str) -> None:
    for words in docsmd.split_commands(line):
        assert not problems(docsmd.Command("docs/x.md:1", line, tuple(words))), line


@pytest.mark.parametrize(("text", "wrong"), [
    ("<!-- docs-test: existing-try -->\n\n```bash\ntrue\n```\n", "right before a fence"),
    ("<!-- docs-test: Existing_Try -->\n```bash\ntrue\n```\n", "is not `<!-- docs-test: FLOW -->`"),
    ("<!--docs-test: existing-try-->\n```bash\ntrue\n```\n", "is not `<!-- docs-test: FLOW -->`"),
    ("<!-- docs-test: nowhere -->\n```bash\ntrue\n```\n", "no flow 'nowhere'"),
    ("<!-- docs-test: existing-try -->\n```yaml\na: 1\n```\n", "not a shell block"),
])
def test_a_dead_or_broken_marker_is_named(tmp_path: Path, text: str, wrong: str) -> None:
    page = tmp_path / "page.md"
    page.write_text("# A page\n\n" + text)
    found = list(marker_problems(page))
    assert len(found) == 1 and found[0].startswith("page.md:3: ") and wrong in found[0], found


def test_a_marked_block_is_read_as_written() -> None:
    """Continuations joined, prompts dropped, heredoc bodies skipped; the flow's text is the block's text."""
    blocks = docsmd.flows()["existing-try"]
    assert [b.path.name for b in blocks] == ["providers.md"] and "cat > try-qhub.yaml <<'EOF'" in blocks[0].text
    commands = [c.source for c in docsmd.block_commands(blocks[0])]
    assert commands[0].startswith("qhubctl init existing") and not any("schema_version" in c for c in commands)


def test_console_blocks_give_their_prompted_lines_joined() -> None:
    text = "$ qhubctl backup -c qhub-config.yaml \\\n    -o DIR   # a comment\nbacked up\n$ make test | tee log\n"
    block = docsmd.Block(docsmd.REPO / "docs" / "x.md", 10, "console", text, None)
    assert [(c.where, c.words) for c in docsmd.block_commands(block)] == [
        ("docs/x.md:10", ("qhubctl", "backup", "-c", "qhub-config.yaml", "-o", "DIR")),
        ("docs/x.md:13", ("make", "test"))]
