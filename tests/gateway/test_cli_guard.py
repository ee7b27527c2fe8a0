"""``tripwire guard`` from the command line: usage errors, and a real start and stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tripwire.cli.main import main

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["guard"], "either MODEL or --upstream"),
        (["guard", "nosuch.pt"], "no such file"),
        (["guard", "--upstream", "ftp://x", "--name", "m"], "http"),
        (["guard", "--upstream", "http://127.0.0.1:9"], "--name"),
    ],
)
def test_usage_errors_are_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_bad_store_and_config_name_the_file(
    digits_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["guard", str(digits_model), "--store", "mongo://x"]) == 2
    assert "mongo://x" in capsys.readouterr().err
    bad = tmp_path / "guard.toml"
    bad.write_text("[keys\n")
    assert main(["guard", str(digits_model), "--config", str(bad)]) == 2
    assert str(bad) in capsys.readouterr().err


def test_a_broken_retrained_classifier_names_its_file(
    digits_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "clf.json").write_text('{"format": "something else"}')
    cfg = tmp_path / "guard.toml"
    cfg.write_text('[monitor]\nclassifier = "clf.json"\n')
    argv = ["guard", str(digits_model), "--config", str(cfg), "--reference", "bundled:digits"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp_path / "clf.json") in err[0]


@pytest.mark.slow
def test_guard_serves_until_interrupted(digits_model: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(SRC), "TRIPWIRE_NO_PROGRESS": "1"}
    drift = tmp_path / "drift.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tripwire",
            "guard",
            str(digits_model),
            "--port",
            "0",
            "--reference",
            "bundled:digits",
            "--store",
            f"sqlite:{tmp_path / 'g.db'}",
            "--admin-token",
            "t",
            "--drift-report",
            str(drift),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert "serving 'digits' on http://" in line, proc.stderr.read() if proc.stderr else ""
        url = line.split(" on ", 1)[1].split(" ", 1)[0]
        with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=10) as resp:
            assert json.loads(resp.read()) == {"ready": True}
        req = urllib.request.Request(f"{url}/tripwire/v1/alerts")
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(req, timeout=10)
        assert info.value.code == 401
    finally:
        proc.send_signal(signal.SIGTERM)  # what a service manager sends
        rc = proc.wait(timeout=30)
    assert rc == 0
    assert "drift" in json.loads(drift.read_text())


def test_guard_args_parse_like_the_command() -> None:
    from tripwire.cli.commands.guard import guard_args
    from tripwire.errors import UsageError

    args = guard_args("m.pt", "--port", "0", "--admin-token=-starts-with-a-dash")
    assert args.model == "m.pt" and args.port == 0 and args.mode == "observe"
    assert args.admin_token == "-starts-with-a-dash"
    with pytest.raises(UsageError, match="not a guard command line"):
        guard_args("m.pt", "--no-such-flag")
