"""``tripwire pipeline`` end to end on the bundled 8x8 digits.

A clean delivery goes through every stage and is promoted; a delivery with relabelled
copies (the same images shipped again under another label) stops at the data gate; a
delivery altered after its manifest was written stops at verify; bad configs exit 2
with one line naming the problem. Stages run the real commands (proxy training, model
training and the trigger search are the slow parts: ~30 s on one thread in all).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tripwire.cli.main import main
from tripwire.io import Dataset, load_dataset, make_dataset, save_dataset
from tripwire.response.pipeline import load_config
from tripwire.response.registry import Registry

CONFIG = """
[pipeline]
out = "out"
fail_on = "high"
{skip}

[data]
path = "{data}"
{manifest}

[reference]
path = "reference.npz"

[scan_data]
detectors = ["duplicate-labels", "knn-label", "confident-learning"]
epochs = 2

[train]
epochs = 3
threads = 1

[scan_model]
max_samples = 150

[registry]
path = "registry.db"
alias = "prod"
by = "ci"
"""


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Dataset]:
    """A folder with the clean reference set (digits' test split) and the train split."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("pipeline")
    save_dataset(load_dataset("bundled:digits", split="test"), root / "reference.npz")
    return root, load_dataset("bundled:digits", split="train")


def write_config(root: Path, data: str, *, manifest: str | None = None, skip: str = "") -> Path:
    cfg = root / f"{Path(data).stem}.toml"
    cfg.write_text(
        CONFIG.format(
            data=data,
            manifest=f'manifest = "{manifest}"' if manifest else "",
            skip=f"skip = {skip}" if skip else "",
        )
    )
    return cfg


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def summary(root: Path) -> dict[str, object]:
    doc: dict[str, object] = json.loads((root / "out" / "pipeline.json").read_text())
    return doc


def stages(doc: dict[str, object]) -> dict[str, dict[str, object]]:
    rows = doc["stages"]
    assert isinstance(rows, list)
    return {r["stage"]: r for r in rows}


def test_clean_delivery_runs_every_stage_and_is_promoted(
    digits: tuple[Path, Dataset], capsys: pytest.CaptureFixture[str]
) -> None:
    root, train = digits
    case = root / "clean"
    case.mkdir()
    (case / "reference.npz").symlink_to(root / "reference.npz")
    save_dataset(train, case / "delivery.npz")
    assert main(["manifest", str(case / "delivery.npz"), "--out", str(case / "m.jsonl")]) == 0
    cfg = write_config(case, "delivery.npz", manifest="m.jsonl")
    code, out, err = run(capsys, "pipeline", "--config", str(cfg))
    assert code == 0, err
    assert "promoted v1 to 'prod'" in out
    assert "[6/6] promote" in err  # progress is shown
    doc = summary(case)
    st = stages(doc)
    assert list(st) == ["verify", "scan-data", "train", "scan-model", "register", "promote"]
    assert all(s["status"] == "passed" and s["exit_code"] == 0 for s in st.values())
    assert doc["promoted"] is True and doc["exit_code"] == 0
    for name in ("verify", "scan-data", "scan-model"):
        report = json.loads((case / "out" / str(st[name]["report"])).read_text())
        assert report["command"] == name
        assert (case / "out" / str(st[name]["html"])).is_file()
    index = (case / "out" / "index.html").read_text()
    assert 'href="scan-model.json"' in index and 'href="scan-data.html"' in index
    # The registry serves the trained model, with its lineage and all three reports.
    reg = Registry(case / "registry.db")
    served = reg.resolve("prod")
    assert served.read_bytes() == (case / "out" / "model.pt").read_bytes()
    assert sorted(r.command for r in reg.reports("v1")) == ["scan-data", "scan-model", "verify"]
    assert reg.get("v1").manifest_sha256 is not None


def relabelled_copies(train: Dataset, n: int = 60, seed: int = 0) -> Dataset:
    """The delivery plus ``n`` class-3 images shipped again labelled 0."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(np.flatnonzero(train.y == 3), n, replace=False)
    x = np.concatenate([train.x, train.x[idx]])
    y = np.concatenate([train.y, np.zeros(n, dtype=train.y.dtype)])
    return make_dataset(x, y, path="poisoned")


def test_poisoned_delivery_stops_at_the_data_gate(
    digits: tuple[Path, Dataset], capsys: pytest.CaptureFixture[str]
) -> None:
    root, train = digits
    case = root / "poisoned"
    case.mkdir()
    (case / "reference.npz").symlink_to(root / "reference.npz")
    save_dataset(relabelled_copies(train), case / "delivery.npz")
    # The vendor's manifest describes the poisoned delivery: verify passes, the scan must not.
    assert main(["manifest", str(case / "delivery.npz"), "--out", str(case / "m.jsonl")]) == 0
    cfg = write_config(case, "delivery.npz", manifest="m.jsonl")
    code, out, err = run(capsys, "pipeline", "--config", str(cfg))
    assert code == 1, err
    assert "not promoted" in out
    doc = summary(case)
    st = stages(doc)
    assert st["verify"]["status"] == "passed"
    assert st["scan-data"]["status"] == "failed" and st["scan-data"]["exit_code"] == 1
    assert [st[s]["status"] for s in ("train", "scan-model", "register", "promote")] == [
        "not-run"
    ] * 4
    assert doc["promoted"] is False and doc["exit_code"] == 1
    assert not (case / "out" / "model.pt").exists()  # nothing trained on a failed delivery
    assert not (case / "registry.db").exists()
    report = json.loads((case / "out" / "scan-data.json").read_text())
    flagged = set(report["flagged"])
    copies = set(range(len(train), len(train) + 60))
    assert len(flagged & copies) >= 45  # the copies are what failed it


def test_delivery_altered_after_its_manifest_stops_at_verify(
    digits: tuple[Path, Dataset], capsys: pytest.CaptureFixture[str]
) -> None:
    root, train = digits
    case = root / "tampered"
    case.mkdir()
    (case / "reference.npz").symlink_to(root / "reference.npz")
    save_dataset(train, case / "delivery.npz")
    assert main(["manifest", str(case / "delivery.npz"), "--out", str(case / "m.jsonl")]) == 0
    y = train.y.copy()
    y[:25] = (y[:25] + 1) % 10  # relabelled in transit
    save_dataset(dataclasses.replace(train, y=y), case / "delivery.npz")
    cfg = write_config(case, "delivery.npz", manifest="m.jsonl")
    code, _, err = run(capsys, "pipeline", "--config", str(cfg))
    assert code == 1, err
    st = stages(summary(case))
    assert st["verify"]["status"] == "failed"
    assert st["scan-data"]["status"] == "not-run"
    verify = json.loads((case / "out" / "verify.json").read_text())
    assert verify["summary"]["relabelled"] == 25


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda t: t.replace("epochs = 3\n", "epochs = 3\nlearning_rate = 0.1\n"),
            "unknown key(s) learning_rate in [train]",
        ),
        (lambda t: t + "\n[serving]\nport = 8080\n", "unknown section(s) serving"),
        (lambda t: t.replace('fail_on = "high"', 'fail_on = "severe"'), "fail_on must be one of"),
        (
            lambda t: t.replace("epochs = 3", 'epochs = "three"'),
            "[train] epochs must be an integer",
        ),
        (lambda t: t.replace('alias = "prod"', "alias = "), "not valid TOML"),
        (
            lambda t: t.replace('out = "out"', 'out = "out"\nskip = ["deploy"]'),
            "skip names unknown stage(s) deploy",
        ),
        (
            lambda t: t.replace('[reference]\npath = "reference.npz"', ""),
            "scan-model needs a clean reference set",
        ),
    ],
)
def test_bad_config_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: object, expected: str
) -> None:
    cfg = write_config(tmp_path, "bundled:digits")
    assert callable(edit)
    cfg.write_text(edit(cfg.read_text()))
    code, out, err = run(capsys, "pipeline", "--config", str(cfg))
    assert code == 2
    assert err.count("\n") == 1 and expected in err and str(cfg) in err, err
    assert out == ""
    assert not (tmp_path / "out").exists()  # nothing ran


def test_missing_config_and_given_model_paths(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "pipeline", "--config", str(tmp_path / "none.toml"))
    assert code == 2 and "no such config file" in err
    cfg = write_config(tmp_path, "bundled:digits")
    text = cfg.read_text().replace("[train]\nepochs = 3\nthreads = 1\n", '[model]\npath = "m.pt"\n')
    cfg.write_text(text)
    parsed = load_config(cfg)
    assert parsed.model == tmp_path / "m.pt" and parsed.data == "bundled:digits"
    assert parsed.reference == str(tmp_path / "reference.npz")
    cfg.write_text(text + "\n[train]\nepochs = 1\n")
    code, _, err = run(capsys, "pipeline", "--config", str(cfg))
    assert code == 2 and "not both" in err and err.count("\n") == 1


@pytest.mark.slow
def test_backdoored_model_is_registered_with_its_scan_but_not_promoted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A given BadNets model (16x16 digits, patch 3x3 to class 3) fails scan-model."""
    from tripwire.attacks import poison_dataset
    from tripwire.models.train import TrainConfig, save_model, train_model

    torch.set_num_threads(1)
    d8 = load_dataset("bundled:digits")
    ds = make_dataset(np.kron(d8.x, np.ones((1, 2, 2), dtype=d8.x.dtype)), d8.y, path="d16")
    order = np.random.default_rng(0).permutation(len(ds))
    train, clean = ds.subset(np.sort(order[400:])), ds.subset(np.sort(order[:400]))
    poisoned = poison_dataset(train, "badnets", rate=0.1, target=3, size=3)
    res = train_model(poisoned, TrainConfig(epochs=12, seed=0, threads=1), show_progress=False)
    save_model(res, tmp_path / "vendor.pt", poisoned)
    save_dataset(clean, tmp_path / "reference.npz")
    save_dataset(poisoned, tmp_path / "delivery.npz")
    cfg = write_config(tmp_path, "delivery.npz", skip='["verify", "scan-data"]')
    text = cfg.read_text().replace(
        "[train]\nepochs = 3\nthreads = 1\n", '[model]\npath = "vendor.pt"\n'
    )
    cfg.write_text(text)
    code, out, err = run(capsys, "pipeline", "--config", str(cfg))
    assert code == 1, err
    assert "not promoted" in out
    st = stages(summary(tmp_path))
    assert st["train"]["status"] == "given"
    assert st["scan-model"]["status"] == "failed"
    assert st["register"]["status"] == "passed"
    assert st["promote"]["status"] == "not-run"
    reg = Registry(tmp_path / "registry.db")
    assert [r.command for r in reg.reports("v1")] == ["scan-model"]
    assert not reg.gate("v1", fail_on="high").passed
    assert "prod" not in reg.aliases()
    scan = json.loads((tmp_path / "out" / "scan-model.json").read_text())
    assert 3 in scan["summary"]["target_classes"]


def test_a_stage_that_cannot_run_is_recorded_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_config(tmp_path, "missing.npz")
    code, out, err = run(capsys, "pipeline", "--config", str(cfg))
    assert code == 2 and out == ""
    last = err.strip().splitlines()[-1]
    assert "stage verify could not run" in last and "missing.npz: no such file" in last
    st = stages(summary(tmp_path))
    assert st["verify"]["status"] == "error" and st["verify"]["exit_code"] == 2
    assert all(st[s]["status"] == "not-run" for s in ("scan-data", "train", "promote"))
    assert "bad config or input" in (tmp_path / "out" / "index.html").read_text()
