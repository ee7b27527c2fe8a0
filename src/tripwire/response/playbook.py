"""The incident-response playbook: the shipped Markdown, its sections, a plain-text view,
and the ``tripwire`` command lines it cites.

The canonical text is ``docs/playbook.md`` in the repository; an identical copy ships in
the package (``tripwire/response/data/playbook.md``) so that ``tripwire playbook`` works
from a wheel. A test keeps the two identical.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from importlib import resources

from tripwire.errors import InputError

__all__ = [
    "PLAYBOOK_RESOURCE",
    "Section",
    "cited_commands",
    "load_playbook",
    "sections",
    "select",
    "to_text",
]

#: Where the packaged copy lives, relative to the ``tripwire.response`` package.
PLAYBOOK_RESOURCE = "data/playbook.md"


@dataclass(frozen=True)
class Section:
    """One ``## `` section of the playbook: its short name, heading and Markdown."""

    name: str
    title: str
    markdown: str


def load_playbook() -> str:
    """The playbook's Markdown, from the installed package."""
    ref = resources.files("tripwire.response").joinpath(PLAYBOOK_RESOURCE)
    try:
        return ref.read_text(encoding="utf-8")
    except (OSError, FileNotFoundError) as exc:  # a broken install, not user input
        raise InputError(f"the packaged playbook is missing ({exc})", str(ref)) from None


def _slug(title: str) -> str:
    """``"3. Contain"`` -> ``contain``; ``"Tabletop exercise: ..."`` -> ``tabletop``."""
    words = re.findall(r"[a-z]+", re.sub(r"^\s*\d+\.\s*", "", title).lower())
    return words[0] if words else ""


def sections(markdown: str) -> list[Section]:
    """The ``## `` sections, in order (the text before the first is ``intro``)."""
    out: list[Section] = []
    title, name = "", "intro"
    lines: list[str] = []
    fence = False
    for line in markdown.splitlines(keepends=True):
        if line.lstrip().startswith("```"):
            fence = not fence
        if not fence and line.startswith("## "):
            out.append(Section(name, title, "".join(lines)))
            title = line[3:].strip()
            name, lines = _slug(title), []
        lines.append(line)
    out.append(Section(name, title, "".join(lines)))
    return [s for s in out if s.markdown.strip()]


def select(markdown: str, name: str) -> Section:
    """The section called ``name`` (its short name, or the start of its heading).

    Raises
    ------
    InputError
        No such section; the message lists the names.
    """
    wanted = name.strip().lower()
    found = sections(markdown)
    for s in found:
        if wanted and (s.name == wanted or s.title.lower().startswith(wanted)):
            return s
    names = ", ".join(s.name for s in found)
    raise InputError(f"no section '{name}' in the playbook (sections: {names})", "--section")


_LINK = re.compile(r"\[([^\]]+)\]\(([^)]+)\)")
_EMPHASIS = re.compile(r"(\*\*|\*)(\S(?:.*?\S)?)\1")


def _inline(text: str) -> str:
    text = _LINK.sub(
        lambda m: m.group(1) if m.group(1) == m.group(2) else f"{m.group(1)} ({m.group(2)})",
        text,
    )
    text = _EMPHASIS.sub(r"\2", text)
    # Bold that wraps across lines leaves its halves on two lines.
    return text.replace("**", "").replace("`", "")


def _cells(row: str) -> list[str]:
    # A `\|` inside a cell is a literal bar, not a column border.
    parts = re.split(r"(?<!\\)\|", row.strip().strip("|"))
    return [_inline(p.strip().replace("\\|", "|")) for p in parts]


def _table(rows: list[str]) -> list[str]:
    """A Markdown table as one block per row: the first cell, then ``header: value``."""
    head = _cells(rows[0])
    out: list[str] = []
    for row in rows[2:] if len(rows) > 1 else []:
        cells = _cells(row)
        out.append(f"- {cells[0]}")
        out += [f"    {h}: {c}" for h, c in zip(head[1:], cells[1:], strict=False) if c]
    return out


def to_text(markdown: str) -> str:
    """Plain text for a terminal: no Markdown marks, code indented, tables as lists."""
    out: list[str] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("```"):
            i += 1
            while i < len(lines) and not lines[i].lstrip().startswith("```"):
                out.append("    " + lines[i].strip() if lines[i].strip() else "")
                i += 1
            i += 1
            continue
        if line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(lines[i])
                i += 1
            out += _table(rows)
            continue
        heading = re.match(r"^(#+)\s+(.*)$", line)
        if heading:
            title = _inline(heading.group(2))
            out += [title, ("=" if len(heading.group(1)) <= 2 else "-") * len(title)]
        else:
            out.append(_inline(line))
        i += 1
    return "\n".join(out).rstrip() + "\n"


_FENCE = re.compile(r"^[ \t]*```[^\n]*\n(.*?)^[ \t]*```", re.S | re.M)
_SPAN = re.compile(r"`([^`]+)`")


def _split_commands(line: str) -> list[str]:
    """``a && b`` and ``a; b`` are two commands; a trailing ``# comment`` is dropped."""
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError:  # an unbalanced quote in prose: keep the words
        tokens = line.split()
    out: list[list[str]] = [[]]
    for t in tokens:
        if t in ("&&", ";", "||"):
            out.append([])
        else:
            out[-1].append(t)
    return [shlex.join(c) for c in out if c]


def cited_commands(markdown: str) -> list[str]:
    """Every ``tripwire ...`` command line cited in Markdown, in order.

    Lines of fenced code blocks (backslash continuations joined) and inline code spans
    (which may wrap across lines) that start with ``tripwire`` followed by a word.
    """
    found: list[str] = []
    for block in _FENCE.findall(markdown):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            found += [c for c in _split_commands(line) if _is_command(c)]
    prose = re.sub(r"\s*\n\s*", " ", _FENCE.sub("", markdown))
    for span in _SPAN.findall(prose):
        found += [c for c in _split_commands(span) if _is_command(c)]
    return found


def _is_command(text: str) -> bool:
    return re.match(r"^tripwire\s+-{0,2}[a-z]", text) is not None
