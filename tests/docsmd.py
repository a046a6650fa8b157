"""The commands the docs show, read from the markdown (issue 15: docs as tests).

README.md, CONTRIBUTING.md and docs/*.md are read as they are: their fenced code blocks (with the line each starts
on), the command lines in them (a `$ ` prompt dropped, `\\` continuations joined, comments and pipelines split
off), the inline code spans that start with `qhubctl ` (and the first cells of a table of qhubctl's commands),
and the blocks a page marks as runnable with an HTML comment on the line right before the block (invisible when
rendered):

    <!-- docs-test: FLOW -->

FLOW names a flow of FLOWS below, which tests/cluster/test_docs_flows.py runs: every block marked with the same
name, in page order (the pages in `pages()` order, then by line), is one bash script run literally. The marker
takes no options: lines a flow cannot run here (a cloud account, a package install) live in a block of their own.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"^<!-- docs-test: (?P<flow>[a-z0-9][a-z0-9-]*) -->$")
MARKER_LIKE = re.compile(r"^\s*<!--.*docs-test", re.I)  # an HTML comment that looks like a marker must be one
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```+|~~~+)(?P<lang>[\w+-]*)\s*$")
SHELL_LANGS = ("", "bash", "sh", "shell", "console")
CONTROL = {"|", "||", "&&", ";", "&", "(", ")"}
PLACEHOLDER = re.compile(r"<([A-Za-z_][\w.:-]*)>")  # <project>, <QHUB_REGISTRY>: words of the docs, not redirections
USAGE_CHOICE = re.compile(r"\[[^\[\]]*\|[^\[\]]*\]")  # [--push REGISTRY | --oci-layout DIR] of a usage synopsis
ALTERNATIVE = "\u2502"  # what `|` inside such brackets becomes: a word, not a pipeline
REDIRECT = re.compile(r"^[0-9]*[<>]+&?$")

# The flows the cluster tier runs, and what each one proves. A marker naming another flow fails the unit tier.
FLOWS: dict[str, str] = {
    "aws-config": "README's qhubctl quick start up to what needs an AWS account: init, validate, render",
    "existing-try": "docs/providers.md, existing: init, validate, render, deploy, status and destroy on your cluster",
}


def pages() -> list[Path]:
    """Every page whose commands are checked, in flow order."""
    return [REPO / "README.md", REPO / "CONTRIBUTING.md", *sorted((REPO / "docs").glob("*.md"))]


def where(path: Path, line: int) -> str:
    return f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path.name}:{line}"


@dataclass(frozen=True)
class Block:
    """A fenced code block: its page, the line of its first content line, language, text and marker."""

    path: Path
    line: int
    lang: str
    text: str
    flow: str | None

    @property
    def where(self) -> str:
        """The fence's line."""
        return where(self.path, self.line - 1)

    @property
    def marker_where(self) -> str:
        """The line a marker of this block is on: right before the fence."""
        return where(self.path, self.line - 2)


@dataclass(frozen=True)
class Command:
    """One simple command (`qhubctl ...`, `make ...`, `helm ...`) as shell words, with where the docs show it."""

    where: str
    source: str
    words: tuple[str, ...]


def blocks(path: Path) -> list[Block]:
    lines = path.read_text().splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        close = re.compile(rf"^ *{re.escape(opening['fence'][0])}{{{len(opening['fence'])},}}\s*$")
        end = next((j for j in range(i + 1, len(lines)) if close.match(lines[j])), len(lines))
        marked = MARKER.match(lines[i - 1].strip()) if i > 0 else None
        indent = len(opening["indent"])
        body = "\n".join(line[indent:] if line[:indent].isspace() else line for line in lines[i + 1:end])
        found.append(Block(path, i + 2, opening["lang"], body + "\n", marked["flow"] if marked else None))
        i = end + 1
    return found


def markers(path: Path) -> list[tuple[str, str]]:
    """(where, line) of every HTML comment line that mentions docs-test: each must be a well-formed marker right
    before a fence (tests/unit/test_docs_commands.py checks it)."""
    return [(where(path, n), line.strip()) for n, line in enumerate(path.read_text().splitlines(), 1)
            if MARKER_LIKE.search(line)]


def logical_lines(block: Block) -> list[tuple[int, str]]:
    """The block's command lines with their line numbers: only `$ ` lines when the block has a prompt (console
    output follows them), `\\` continuations joined, heredoc bodies skipped."""
    raw = block.text.splitlines()
    prompted = any(line.startswith("$ ") for line in raw)
    out: list[tuple[int, str]] = []
    heredoc: str | None = None
    pending: tuple[int, str] | None = None
    for n, line in enumerate(raw, block.line):
        if heredoc is not None:
            heredoc = None if line.strip() == heredoc else heredoc
            continue
        if pending is None:
            if prompted and not line.startswith("$ "):
                continue
            pending = (n, line[2:] if prompted else line)
        else:
            pending = (pending[0], pending[1] + " " + line.strip())
        if pending[1].endswith("\\"):
            pending = (pending[0], pending[1][:-1].rstrip())
            continue
        out.append(pending)
        here = re.search(r"<<-?\s*['\"]?(\w+)['\"]?", pending[1])
        heredoc = here.group(1) if here else None
        pending = None
    if pending is not None:
        out.append(pending)
    return out


def split_commands(source: str) -> list[list[str]]:
    """Shell words of each simple command on a line (pipelines, lists and redirections split off, comments and
    leading VAR=value assignments dropped). `<placeholder>`s stay words (not redirections); lines shlex cannot
    read (unbalanced quotes) give nothing."""
    held = PLACEHOLDER.sub(lambda m: f"\u2039{m.group(1)}\u203a", source)
    held = USAGE_CHOICE.sub(lambda m: m.group(0).replace("|", ALTERNATIVE), held)
    lexer = shlex.shlex(held, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError:
        return []
    commands: list[list[str]] = [[]]
    skip_next = False
    for token in tokens:
        if skip_next:
            skip_next = False
        elif token in CONTROL:
            commands.append([])
        elif REDIRECT.match(token):
            skip_next = True
        elif commands[-1] or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", token):
            commands[-1].append(token.replace("\u2039", "<").replace("\u203a", ">"))
    return [c for c in commands if c]


TOOLS = ("qhubctl", "make", "helm")


def block_commands(block: Block) -> list[Command]:
    """The qhubctl, make and helm commands of a shell-like block."""
    if block.lang not in SHELL_LANGS:
        return []
    return [Command(where(block.path, n), source.strip(), tuple(words))
            for n, source in logical_lines(block) for words in split_commands(source) if words[0] in TOOLS]


COMMAND_TABLE = re.compile(r"^\| *command *\|")  # a table whose first column is qhubctl commands
INLINE = re.compile(r"(?<!`)`(qhubctl [^`\n]+)`(?!`)")


def inline_commands(path: Path) -> list[Command]:
    """Inline code spans in prose that are qhubctl command lines (`qhubctl backup --keep N`), and the first cells
    of a table whose first column is headed `command` (`cluster plan -c FILE`)."""
    found: list[Command] = []
    fenced = {n for b in blocks(path) for n in range(b.line - 1, b.line + b.text.count("\n") + 1)}
    in_command_table = False
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if n in fenced:
            continue
        in_command_table = line.startswith("|") and (in_command_table or COMMAND_TABLE.match(line) is not None)
        spans = INLINE.findall(line)
        if in_command_table and (first := re.match(r"^\| `([^`]+)` \|", line)) and first[1].split()[0] != "qhubctl":
            spans.append(f"qhubctl {first[1]}")  # a table of qhubctl's commands names them without the prefix
        for span in spans:
            found.extend(Command(where(path, n), span, tuple(words)) for words in split_commands(span)
                         if words[0] == "qhubctl")
    return found


def all_commands() -> list[Command]:
    return [c for page in pages() for b in blocks(page) for c in block_commands(b)] + \
        [c for page in pages() for c in inline_commands(page)]


def flows() -> dict[str, list[Block]]:
    """Every marked block by flow name, in flow order."""
    found: dict[str, list[Block]] = {}
    for page in pages():
        for block in blocks(page):
            if block.flow:
                found.setdefault(block.flow, []).append(block)
    return found
