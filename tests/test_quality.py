"""ruff and mypy run as part of the suite, so CI keeps the code clean."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "cmd",
    [
        [sys.executable, "-m", "ruff", "check", "src", "tests", "benchmarks"],
        [sys.executable, "-m", "mypy", "src/tripwire"],
    ],
    ids=["ruff", "mypy"],
)
def test_static_checks(cmd: list[str]) -> None:
    if importlib.util.find_spec(cmd[2]) is None:
        pytest.skip(f"{cmd[2]} is not installed (pip install -e '.[test]')")
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
