"""The CLI contract: exit codes, one-line errors naming the file, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import tar_tree
from tripwire import __version__
from tripwire.cli.main import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def one_line_error(err: str, *needles: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], lines[0]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--version")
    assert code == 0 and __version__ in out


def test_usage_error_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "train", "bundled:digits")
    assert code == 2
    one_line_error(err, "--out")
    code, _, err = run(capsys, "no-such-command")
    assert code == 2
    one_line_error(err, "invalid choice")


@pytest.mark.parametrize(
    "kind",
    ["truncated-npz", "nan", "labels-range", "labels-float", "empty", "corrupt-image", "csv-text"],
)
def test_bad_data_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], small_npz: Path, image_tree: Path, kind: str
) -> None:
    p = tmp_path / "bad.npz"
    if kind == "truncated-npz":
        p.write_bytes(small_npz.read_bytes()[:100])
    elif kind == "nan":
        np.savez(p, x=np.full((4, 3), np.nan), y=np.zeros(4, int))
    elif kind == "labels-range":
        np.savez(p, x=np.zeros((4, 3)), y=np.array([0, 1, 2, 9]), classes=np.array(["a", "b", "c"]))
    elif kind == "labels-float":
        np.savez(p, x=np.zeros((4, 3)), y=np.array([0, 1, 2.5, 0]))
    elif kind == "empty":
        np.savez(p, x=np.zeros((0, 3)), y=np.zeros(0, int))
    elif kind == "corrupt-image":
        (image_tree / "cat" / "x.png").write_bytes(b"not a png")
        p = tar_tree(image_tree, tmp_path / "bad.tar.gz")
    elif kind == "csv-text":
        p = tmp_path / "bad.csv"
        p.write_text("a,label\nhello,1\n")
    code, out, err = run(
        capsys, "manifest", str(p), "--out", str(tmp_path / "m.jsonl"), "--label-column", "label"
    )
    assert code == 2 and out == ""
    one_line_error(err, str(p))
    assert not (tmp_path / "m.jsonl").exists()


def test_pickle_model_refused_one_line(
    capsys: pytest.CaptureFixture[str], pickle_bomb: tuple[Path, Path]
) -> None:
    bomb, marker = pickle_bomb
    code, _, err = run(capsys, "evaluate", str(bomb), "bundled:digits")
    assert code == 2
    one_line_error(err, str(bomb), "pickle")
    assert not marker.exists()


def test_not_torchscript_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "model.pt"
    p.write_text("definitely not a model")
    code, _, err = run(capsys, "evaluate", str(p), "bundled:digits")
    assert code == 2
    one_line_error(err, str(p), "not a TorchScript archive")


def test_shape_mismatch_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], digits_model: Path
) -> None:
    data = tmp_path / "rgb.npz"
    np.savez(data, x=np.zeros((4, 32, 32, 3), np.uint8), y=np.zeros(4, int))
    code, _, err = run(capsys, "evaluate", str(digits_model), str(data))
    assert code == 2
    one_line_error(err, str(digits_model), "(1, 3, 32, 32)")


def test_evaluate_json(capsys: pytest.CaptureFixture[str], digits_model: Path) -> None:
    code, out, _ = run(capsys, "evaluate", str(digits_model), "bundled:digits", "--json")
    assert code == 0
    res = json.loads(out)
    assert res["split"] == "test" and res["accuracy"] > 0.5 and res["model_kind"] == "torchscript"


def test_train_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")
    model = tmp_path / "out" / "m.pt"
    code, out, _ = run(
        capsys, "train", "bundled:digits", "--out", str(model), "--epochs", "1", "--json"
    )
    assert code == 0
    meta = json.loads(out)
    assert meta["eval_split"] == "test" and meta["epochs"] == 1
    assert (tmp_path / "out" / "m.meta.json").exists()
    code, out, _ = run(capsys, "evaluate", str(model), "bundled:digits", "--json")
    assert json.loads(out)["accuracy"] == pytest.approx(meta["accuracy"], abs=1e-6)


def test_train_bad_arch(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(
        capsys, "train", "bundled:digits", "--out", str(tmp_path / "m.pt"), "--arch", "vgg19"
    )
    assert code == 2
    one_line_error(err, "vgg19", "unknown architecture")


def test_manifest_then_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    data = tmp_path / "d.npz"
    x = rng.integers(0, 256, (20, 6, 6), dtype=np.uint8)
    y = np.arange(20) % 4
    np.savez(data, x=x, y=y)
    manifest = tmp_path / "m.jsonl"
    code, _, _ = run(capsys, "manifest", str(data), "--source", "vendorA", "--out", str(manifest))
    assert code == 0 and manifest.exists()
    code, _, _ = run(capsys, "verify", str(data), "--manifest", str(manifest))
    assert code == 0
    x2, y2 = x.copy(), y.copy()
    x2[3, 0, 0] ^= 1  # altered by one grey level
    y2[5] = (y2[5] + 1) % 4  # relabelled
    tampered = tmp_path / "t.npz"
    np.savez(tampered, x=x2, y=y2)
    report = tmp_path / "r.json"
    sarif = tmp_path / "r.sarif"
    code, _, _ = run(
        capsys,
        "verify",
        str(tampered),
        "--manifest",
        str(manifest),
        "--out",
        str(report),
        "--sarif",
        str(sarif),
    )
    assert code == 1
    rep = json.loads(report.read_text())
    rules = {f["rule_id"]: f for f in rep["findings"]}
    assert set(rules) == {"TW003", "TW004"}
    assert rules["TW004"]["indices"] == [3] and rules["TW003"]["indices"] == [5]
    assert json.loads(sarif.read_text())["version"] == "2.1.0"


def test_detectors_listing(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "detectors", "--json")
    assert code == 0
    names = {d["name"] for d in json.loads(out)}
    assert "feature-outlier" in names


def test_console_script_no_traceback(tmp_path: Path) -> None:
    """The installed entry point keeps the one-line contract in a real process."""
    p = tmp_path / "bad.npz"
    p.write_bytes(b"PK\x03\x04garbage")
    proc = subprocess.run(
        [sys.executable, "-m", "tripwire", "manifest", str(p), "--out", str(tmp_path / "m")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    one_line_error(proc.stderr, str(p))


def test_internal_error_exit_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import tripwire.cli.commands.detectors as det

    def boom(args: object) -> int:
        raise ZeroDivisionError("bug")

    monkeypatch.setattr(det, "run", boom)
    code, _, err = run(capsys, "detectors")
    assert code == 3
    one_line_error(err, "internal error", "--debug")


def test_attack_poison_and_asr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], digits_model: Path
) -> None:
    src = tmp_path / "digits.npz"
    from tripwire.io import load_dataset, save_dataset

    tr = load_dataset("bundled:digits")
    te = load_dataset("bundled:digits", split="test")
    np.savez(src, x_train=tr.x, y_train=tr.y, x_test=te.x, y_test=te.y)
    out_path = tmp_path / "bad.npz"
    code, out, _ = run(
        capsys,
        "attack",
        "poison",
        str(src),
        "--kind",
        "badnets",
        "--rate",
        "0.05",
        "--target",
        "3",
        "--param",
        "size=2",
        "--out",
        str(out_path),
    )
    assert code == 0 and "poisoned 72 of 1438" in out
    bad = load_dataset(out_path)
    assert bad.poisoned is not None and bad.poisoned.sum() == 72
    assert bad.attack is not None and bad.attack["params"]["size"] == 2
    with np.load(out_path) as z:
        assert "x_test" in z.files  # the test split travels along
    code, out, _ = run(
        capsys, "attack", "asr", str(digits_model), "--data", str(out_path), "--json"
    )
    assert code == 0
    res = json.loads(out)
    assert 0.0 <= res["attack_success_rate"] < 0.5  # a clean model ignores the trigger
    assert res["test_samples"] == len(te)
    save_dataset(tr, tmp_path / "plain.npz")
    code, _, err = run(
        capsys, "attack", "asr", str(digits_model), "--data", str(tmp_path / "plain.npz")
    )
    assert code == 2
    one_line_error(err, "no attack record")


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--kind", "nope", "--rate", "0.1", "--target", "1"], "unknown attack kind"),
        (["--kind", "badnets", "--rate", "0", "--target", "1"], "(0, 1)"),
        (["--kind", "badnets", "--rate", "1.2", "--target", "1"], "(0, 1)"),
        (["--kind", "badnets", "--rate", "0.1", "--target", "99"], "not in the data"),
        (["--kind", "badnets", "--rate", "0.0001", "--target", "1"], "too small"),
        (["--kind", "badnets", "--rate", "0.1", "--target", "1", "--param", "x"], "NAME=VALUE"),
    ],
)
def test_attack_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    code, _, err = run(
        capsys, "attack", "poison", "bundled:digits", *argv, "--out", str(tmp_path / "o.npz")
    )
    assert code == 2
    one_line_error(err, needle)
    assert not (tmp_path / "o.npz").exists()


def test_attack_list(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "attack", "list", "--json")
    assert code == 0
    assert {"badnets", "blend", "label-flip"} <= {r["kind"] for r in json.loads(out)}


def test_attack_extract_local_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], digits_model: Path
) -> None:
    stolen = tmp_path / "stolen.pt"
    code, out, _ = run(
        capsys,
        "attack",
        "extract",
        "--model",
        str(digits_model),
        "--kind",
        "random",
        "--budget",
        "60",
        "--budgets",
        "30,60",
        "--eval",
        "bundled:digits",
        "--out",
        str(stolen),
        "--json",
    )
    assert code == 0
    rec = json.loads(out)
    assert [r["budget"] for r in rec["per_budget"]] == [30, 60]
    assert stolen.exists()
    code, _, err = run(
        capsys,
        "attack",
        "extract",
        "--model",
        str(digits_model),
        "--kind",
        "random",
        "--budget",
        "60",
        "--budgets",
        "100",
        "--eval",
        "bundled:digits",
        "--out",
        str(stolen),
    )
    assert code == 2
    one_line_error(err, "--budgets")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["guard-train", "--settings", "cifar"], "unknown setting"),
        (["guard-train", "--settings", ""], "no victim settings"),
        (["guard-train", "--data", "a.npz"], "pair each data file"),
        (["guard-train", "--seeds", "x"], "integers"),
    ],
)
def test_guard_train_rejects_bad_settings_in_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
