"""`tripwire playbook`, and every tripwire command the docs cite exists with its flags."""

from __future__ import annotations

import argparse
import re
import shlex
import tomllib
from pathlib import Path

import pytest

from tripwire.cli.main import build_parser, main
from tripwire.response.playbook import (
    cited_commands,
    load_playbook,
    sections,
    select,
    to_text,
)

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "docs" / "playbook.md"
PACKAGED = ROOT / "src" / "tripwire" / "response" / "data" / "playbook.md"
DOCS = [PLAYBOOK, ROOT / "docs" / "incident-response.md", ROOT / "README.md"]


def test_the_packaged_playbook_is_docs_playbook() -> None:
    """The wheel ships a copy (package data); docs/playbook.md is the one to edit."""
    assert PACKAGED.read_bytes() == PLAYBOOK.read_bytes(), (
        "docs/playbook.md changed: cp docs/playbook.md src/tripwire/response/data/playbook.md"
    )
    assert load_playbook() == PLAYBOOK.read_text(encoding="utf-8")
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["tripwire"]
    assert "response/data/*" in package_data


def _subcommands(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            return dict(a.choices)
    return {}


def _flags(p: argparse.ArgumentParser) -> set[str]:
    return {o for a in p._actions for o in a.option_strings}


def check_command(command: str) -> list[str]:
    """Problems of one cited command line: unknown subcommand or flag (nothing runs).

    ``tripwire registry list | show v2 | verify`` lists alternatives: each part after a
    bar is checked as a sibling subcommand when its first word is one.
    """
    tokens = shlex.split(command)
    assert tokens[0] == "tripwire"
    root = build_parser()
    parts: list[list[str]] = [[]]
    for t in tokens[1:]:
        if t == "|":
            parts.append([])
        else:
            parts[-1].append(t)
    problems: list[str] = []
    parent: argparse.ArgumentParser = root
    path: list[str] = []
    parser: argparse.ArgumentParser = root
    for i, part in enumerate(parts):
        if i > 0 and part and part[0] in _subcommands(parent):
            parser, path = parent, path[:-1]
        elif i > 0:
            part = [t for t in part if t.startswith("-")]  # a value's alternatives
        words = list(part)
        while words and words[0] in _subcommands(parser):
            parent, parser = parser, _subcommands(parser)[words[0]]
            path.append(words.pop(0))
        if not path and (not words or not words[0].startswith("--")):
            problems.append(f"no such command in: {command}")
            return problems
        # `tripwire registry` alone names the group in prose; `[--registry PATH]` and
        # `init|add|...` are usage syntax, not an action.
        first = words[0] if words else "-"
        if path and _subcommands(parser) and first[0] not in "-[(." and "|" not in first:
            problems.append(f"'tripwire {' '.join(path)}' has no action {words[0]!r}")
        known = _flags(parser)
        for w in words:
            for flag in re.findall(r"(?<![\w-])(--?[a-z][a-z0-9-]*)", w):
                if w.lstrip("[(").startswith(flag) and flag not in known:
                    problems.append(f"'tripwire {' '.join(path)}' has no flag {flag}")
    return problems


def _threat_model_text(tmp_path: Path) -> str:
    """The example threat model as `tripwire threat-model` renders it (commands in it)."""
    system = ROOT / "examples" / "threat-model" / "system.yaml"
    out = tmp_path / "tm.md"
    assert main(["threat-model", str(system), "--out", str(out)]) == 0
    return system.read_text(encoding="utf-8") + "\n" + out.read_text(encoding="utf-8")


def test_every_cited_command_parses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    texts = {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8") for p in DOCS}
    texts["examples/threat-model"] = _threat_model_text(tmp_path)
    capsys.readouterr()
    # The YAML's comments cite commands without backticks ("Run: tripwire ...").
    runs = re.findall(r"Run: (tripwire [^\n]*)", texts["examples/threat-model"])
    assert runs
    texts["examples/threat-model"] += "".join(f"\n`{r}`" for r in runs)
    seen = 0
    problems = []
    for where, text in texts.items():
        commands = cited_commands(text)
        seen += len(commands)
        problems += [f"{where}: {p}" for c in commands for p in check_command(c)]
    assert problems == []
    assert seen > 80  # the extraction found the docs' commands
    playbook = cited_commands(PLAYBOOK.read_text(encoding="utf-8"))
    cited = {tuple(shlex.split(c)[1:3]) for c in playbook}
    # The playbook covers every layer: response, containment, forensics and the gateway.
    for need in [("registry", "rollback"), ("forensics", "data"), ("forensics", "client")]:
        assert need in cited, need
    assert any(c.startswith("tripwire guard ") and "--mode enforce" in c for c in playbook)


def test_the_checker_catches_unknown_commands_and_flags() -> None:
    assert check_command("tripwire registry rollback --alias prod") == []
    assert check_command("tripwire registry list | show v2 | history --alias prod") == []
    assert check_command("tripwire guard MODEL --mode observe|enforce") == []
    assert check_command("tripwire registry rollback --to v1")  # no such flag
    assert check_command("tripwire registry undo v1")  # no such action
    assert check_command("tripwire rollback --alias prod")  # no such command
    assert check_command("tripwire registry list | verify --nope")


def test_cited_commands_reads_blocks_spans_and_continuations() -> None:
    md = (
        "Run `tripwire registry\n  rollback --alias prod` now.\n\n"
        "```bash\ntripwire export-stix a.json \\\n    --out b.json  # share\n"
        "tripwire registry add m.pt && tripwire registry attach v1 r.json\n```\n"
        "`tripwire.response.registry` is a module, not a command.\n"
    )
    assert cited_commands(md) == [
        "tripwire export-stix a.json --out b.json",
        "tripwire registry add m.pt",
        "tripwire registry attach v1 r.json",
        "tripwire registry rollback --alias prod",
    ]


def test_the_playbook_toml_blocks_load(tmp_path: Path) -> None:
    """The tabletop's pipeline and gateway settings are valid for the real loaders."""
    from tripwire.gateway.config import load_config as load_guard
    from tripwire.response.pipeline import load_config as load_pipeline

    blocks = re.findall(r"```toml\n(.*?)```", PLAYBOOK.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 2
    for i, block in enumerate(blocks):
        path = tmp_path / f"{i}.toml"
        path.write_text(block)
        doc = tomllib.loads(block)
        (load_pipeline if "pipeline" in doc else load_guard)(path)


def test_tripwire_playbook_prints_the_doc(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["playbook"]) == 0
    assert capsys.readouterr().out.rstrip("\n") == PLAYBOOK.read_text().rstrip("\n")

    assert main(["playbook", "--section", "contain"]) == 0
    contain = capsys.readouterr().out
    assert contain.startswith("## 3. Contain") and "## 4." not in contain
    assert "tripwire registry rollback --alias prod" in contain
    assert main(["playbook", "--section", "Tabletop"]) == 0
    assert "### Injects" in capsys.readouterr().out

    assert main(["playbook", "--section", "triage", "--format", "text"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("2. Triage\n=========")
    assert "`" not in text and "|---" not in text and "**" not in text
    assert "    how to answer it: tripwire verify DELIVERY --manifest M.jsonl" in text

    out = tmp_path / "pb.md"
    assert main(["playbook", "--out", str(out)]) == 0
    assert out.read_text() == PLAYBOOK.read_text()
    capsys.readouterr()

    assert main(["playbook", "--section", "nope"]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "no section 'nope'" in lines[0]
    for name in ("roles", "detect", "triage", "contain", "forensics", "tabletop"):
        assert name in lines[0]


def test_sections_and_text() -> None:
    md = (
        "# T\n\n**wrapped\nbold** and [a.md](a.md), [b](b.md)\n\n## 1. Detect\n\n"
        "```bash\n## not a heading\n```\n\n## Roles\n| a | b |\n|---|---|\n| x | `y` |\n"
    )
    names = [s.name for s in sections(md)]
    assert names == ["intro", "detect", "roles"]
    assert "## not a heading" in select(md, "detect").markdown
    assert to_text(select(md, "roles").markdown).splitlines() == [
        "Roles",
        "=====",
        "- x",
        "    b: y",
    ]
