"""scan-model on small models trained here: a planted trigger is found, a clean model passes.

Models are cnn-small trained on the bundled 8x8 digits (1,797 samples, a few seconds
each on one thread); the clean set is a held-out part of the same digits, never seen in
training. Triggers come from ``tripwire.attacks`` (BadNets 2x2 patch, blended noise).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tripwire.cli.main import main
from tripwire.io import Dataset, load_dataset, make_dataset, save_dataset

torch = pytest.importorskip("torch")


@pytest.fixture(scope="session")
def digits_split() -> tuple[Dataset, Dataset]:
    d8 = load_dataset("bundled:digits")
    # 16x16 (each pixel doubled): room for a patch to be much smaller than a digit.
    ds = make_dataset(np.kron(d8.x, np.ones((1, 2, 2), dtype=d8.x.dtype)), d8.y, path="digits16")
    rng = np.random.default_rng(0)
    order = rng.permutation(len(ds))
    return ds.subset(np.sort(order[400:])), ds.subset(np.sort(order[:400]))


def _train(tmp: Path, train: Dataset, name: str) -> Path:
    from tripwire.models.train import TrainConfig, save_model, train_model

    torch.set_num_threads(1)
    r = train_model(train, TrainConfig(epochs=12, seed=0, threads=1), show_progress=False)
    path = tmp / f"{name}.pt"
    save_model(r, path, train)
    return path


@pytest.fixture(scope="session")
def models(
    tmp_path_factory: pytest.TempPathFactory, digits_split: tuple[Dataset, Dataset]
) -> dict[str, Path]:
    from tripwire.attacks import poison_dataset

    tmp = tmp_path_factory.mktemp("scan_models")
    train, _ = digits_split
    return {
        "clean": _train(tmp, train, "clean"),
        "badnets": _train(
            tmp, poison_dataset(train, "badnets", rate=0.1, target=3, size=2), "badnets"
        ),
        # A 3x3 patch: its reversed trigger is barely smaller than the other classes'
        # (anomaly index between NC's 2 and the 10-class threshold, on the machines
        # measured: the marginal case; too marginal to assert a verdict on).
        "badnets-marginal": _train(
            tmp, poison_dataset(train, "badnets", rate=0.1, target=3, size=3), "badnets3"
        ),
        "blend": _train(
            tmp, poison_dataset(train, "blend", rate=0.1, target=6, alpha=0.2), "blend"
        ),
    }


def _scan(path: Path, clean: Dataset, **kw: object) -> object:
    from tripwire.models.loading import load_model
    from tripwire.scan.model import scan_model

    torch.set_num_threads(1)
    return scan_model(load_model(path, device="cpu"), clean, random_state=0, **kw)  # type: ignore[arg-type]


@pytest.mark.slow
def test_patch_backdoor_found_with_its_target(
    models: dict[str, Path], digits_split: tuple[Dataset, Dataset]
) -> None:
    res = _scan(models["badnets"], digits_split[1])
    assert res.verdict == "backdoored"  # type: ignore[attr-defined]
    assert res.target_classes == [3]  # type: ignore[attr-defined]
    c3 = res.classes[3]  # type: ignore[attr-defined]
    assert "patch" in c3.fired and c3.anomaly_index > 2
    trig = res.trigger(3, "patch")  # type: ignore[attr-defined]
    # The reversed trigger works on clean inputs and is far smaller than other classes'.
    assert trig.attack_success >= 0.9
    others = [c.evidence["patch"]["trigger_norm"] for c in res.classes if c.cls != 3]  # type: ignore[attr-defined]
    assert trig.norm < 0.5 * float(np.median(others))
    assert "TW201" in {f.rule_id for f in res.findings}  # type: ignore[attr-defined]
    assert {f.rule_id for f in res.findings} <= {"TW201", "TW202"}  # type: ignore[attr-defined]
    assert all(f.target_class == 3 for f in res.findings)  # type: ignore[attr-defined]


@pytest.mark.slow
def test_clean_model_passes(models: dict[str, Path], digits_split: tuple[Dataset, Dataset]) -> None:
    res = _scan(models["clean"], digits_split[1])
    assert res.verdict == "clean", res.to_dict()["classes"]  # type: ignore[attr-defined]
    assert res.target_classes == [] and res.findings == []  # type: ignore[attr-defined]
    assert len(res.triggers) == 2 * 10  # type: ignore[attr-defined]


@pytest.mark.slow
def test_blend_backdoor_found_by_the_full_image_search(
    models: dict[str, Path], digits_split: tuple[Dataset, Dataset]
) -> None:
    res = _scan(models["blend"], digits_split[1], methods=("blend",))
    assert 6 in res.target_classes  # type: ignore[attr-defined]
    assert "blend" in res.classes[6].fired  # type: ignore[attr-defined]
    t = res.trigger(6, "blend")  # type: ignore[attr-defined]
    # One opacity over the whole image: a uniform mask.
    assert np.ptp(t.mask) < 1e-6 and 0 < t.mask[0, 0] < 1


@pytest.mark.slow
def test_cli_writes_report_and_triggers_file(
    models: dict[str, Path],
    digits_split: tuple[Dataset, Dataset],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tripwire.detectors.backdoor.trigger import load_triggers

    clean = tmp_path / "clean.npz"
    save_dataset(digits_split[1], clean)
    out = tmp_path / "r" / "REPORT.json"
    code = main(
        [
            "scan-model",
            str(models["badnets"]),
            "--data",
            str(clean),
            "--methods",
            "patch",
            "--max-samples",
            "300",
            "--out",
            str(out),
            "--html",
            str(tmp_path / "r.html"),
        ]
    )
    cap = capsys.readouterr()
    assert code == 1, cap.err  # a high finding with the default --fail-on high
    doc = json.loads(out.read_text())
    assert doc["verdict"] == "backdoored" and doc["target_classes"] == [3]
    assert doc["triggers_file"] == "REPORT.triggers.npz"
    row = doc["classes"][3]
    assert {"class", "anomaly_index", "trigger_norm", "flagged", "patch"} <= set(row)
    assert row["flagged"] and row["patch"]["flagged"]
    trig = load_triggers(str(out.parent / doc["triggers_file"]))
    assert sorted(t.target for t in trig) == list(range(10))
    assert all(t.mask.shape == (16, 16) and t.pattern.shape == (1, 16, 16) for t in trig)
    assert (out.parent / "REPORT.class3.patch.mask.png").exists()
    html = (tmp_path / "r.html").read_text()
    assert "reversed triggers" in html and "data:image/png;base64" in html
    assert "backdoored" in cap.out


# -- bad input: one line on stderr naming the file, exit 2 -----------------------------


def _one_line(err: str, *needles: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], lines[0]


def test_cli_clean_set_must_cover_the_classes(
    digits_model: Path, small_npz: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # small_npz: 8x8 images of 3 classes; the digits model has 10 outputs.
    code = main(
        [
            "scan-model",
            str(digits_model),
            "--data",
            str(small_npz),
            "--out",
            str(tmp_path / "r.json"),
        ]
    )
    _one_line(capsys.readouterr().err, "small.npz", "lacks classes 3, 4")
    assert code == 2 and not (tmp_path / "r.json").exists()


def test_cli_refuses_a_model_that_is_not_a_classifier(
    small_npz: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    class Score(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1).mean(1, keepdim=True)

    path = tmp_path / "score.pt"
    torch.jit.script(Score()).save(str(path))
    code = main(
        ["scan-model", str(path), "--data", str(small_npz), "--out", str(tmp_path / "r.json")]
    )
    _one_line(capsys.readouterr().err, "score.pt", "1 output")
    assert code == 2


def test_cli_needs_out_and_a_scan_data_report(
    digits_model: Path, small_npz: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["scan-model", str(digits_model), "--data", str(small_npz)])
    _one_line(capsys.readouterr().err, "--out")
    assert code == 2
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"command": "verify"}))
    code = main(
        [
            "scan-model",
            str(digits_model),
            "--data",
            "bundled:digits",
            "--data-report",
            str(other),
            "--out",
            str(tmp_path / "r.json"),
        ]
    )
    _one_line(capsys.readouterr().err, "other.json", "scan-data")
    assert code == 2


def test_cli_refuses_tables(
    digits_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = tmp_path / "t.csv"
    table.write_text("a,b,label\n" + "".join(f"{i},{i * 2},{i % 3}\n" for i in range(12)))
    code = main(
        [
            "scan-model",
            str(digits_model),
            "--data",
            str(table),
            "--label-column",
            "label",
            "--out",
            str(tmp_path / "r.json"),
        ]
    )
    _one_line(capsys.readouterr().err, "t.csv", "image")
    assert code == 2


def test_model_threshold_holds_the_clean_model_false_alarm_rate() -> None:
    from tripwire.detectors.backdoor.reverse import mad_anomaly
    from tripwire.scan.model import ANOMALY_THRESHOLD, model_threshold

    t10 = model_threshold(10)
    assert ANOMALY_THRESHOLD < t10 < model_threshold(5)
    # Fresh clean "models" (i.i.d. normal log sizes, another seed than the threshold's):
    # NC's rule flags a third of them, the model-level threshold about 5%.
    rng = np.random.default_rng(123)
    tops = np.array([mad_anomaly(rng.normal(size=10))[0].max() for _ in range(4000)])
    assert 0.25 < float(np.mean(tops > ANOMALY_THRESHOLD)) < 0.42
    assert 0.03 < float(np.mean(tops > t10)) < 0.07


@pytest.mark.slow
def test_a_marginal_class_is_flagged_only_when_the_data_scan_corroborates_it(
    models: dict[str, Path], digits_split: tuple[Dataset, Dataset]
) -> None:
    def report(severity: str) -> dict[str, object]:
        finding = {"rule_id": "TW104", "severity": severity, "target_class": 3}
        return {"command": "scan-data", "per_class": [], "findings": [finding]}

    # The patch search alone puts class 3 over NC's rule but under the 10-class threshold.
    alone = _scan(models["badnets-marginal"], digits_split[1], methods=("patch",))
    c3 = alone.classes[3]  # type: ignore[attr-defined]
    assert c3.evidence["patch"]["nc_rule"] and not c3.flagged
    assert alone.verdict == "clean"  # type: ignore[attr-defined]
    assert [f.severity for f in alone.findings] == ["medium"]  # type: ignore[attr-defined]
    weak = _scan(
        models["badnets-marginal"],
        digits_split[1],
        methods=("patch",),
        data_report=report("medium"),
    )
    assert weak.verdict == "clean"  # type: ignore[attr-defined]
    strong = _scan(
        models["badnets-marginal"], digits_split[1], methods=("patch",), data_report=report("high")
    )
    assert strong.target_classes == [3]  # type: ignore[attr-defined]
    assert {f.rule_id for f in strong.findings} == {"TW201", "TW203"}  # type: ignore[attr-defined]
