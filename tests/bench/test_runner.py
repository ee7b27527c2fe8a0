"""A miniature suite end to end: poison, train, detect, measure, write outputs."""

from __future__ import annotations

import csv
import importlib.util
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")

from tripwire.bench.report import COLUMNS, write_outputs
from tripwire.bench.runner import run_suite
from tripwire.bench.suites import AttackCell, DataSpec, Suite, get_suite, only_attacks, with_arch
from tripwire.errors import InputError

TINY = Suite(
    name="tiny",
    data=(DataSpec(name="digits", spec="bundled:digits", seeds=(0,), epochs=3),),
    attacks=(
        AttackCell("clean", rates=(0.0,)),
        AttackCell("badnets", rates=(0.1,), target=0, params={"size": 3}),
        AttackCell("no-such-attack", rates=(0.1,)),
    ),
    extraction=False,
)


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the tiny suite's tests: its models are trained once."""
    return tmp_path_factory.mktemp("tiny") / "cache"


def test_tiny_suite(tmp_path: Path, tiny_cache: Path) -> None:
    logs: list[str] = []
    result = run_suite(TINY, out_dir=tmp_path / "out", cache_dir=tiny_cache, log=logs.append)
    rows = result["rows"]
    assert any("skipping attack 'no-such-attack'" in m for m in logs)
    assert [m.split(" (")[0] for m in logs if m.startswith("cell ")] == [
        "cell 1/2 done",
        "cell 2/2 done",
    ]
    detectors = {r["detector"] for r in rows}
    assert "feature-outlier" in detectors
    # The suite's own training runs keep their dynamics beside each model.
    assert "training-margin" in detectors
    assert sorted(tiny_cache.glob("models/*.margins.npy"))
    if importlib.util.find_spec("art") is not None:  # the baselines extra is installed
        assert {"art:ActivationDefence", "art:SpectralSignatureDefense"} <= detectors
    if importlib.util.find_spec("cleanlab") is not None:
        assert "cleanlab:find_label_issues" in detectors
    bd = [r for r in rows if r["attack"] == "badnets"]
    assert bd and all(r["n_positive"] == round(0.1 * r["n_samples"]) for r in bd)
    assert all(r["auroc"] is not None and 0.0 <= r["auroc"] <= 1.0 for r in bd)
    assert all(r["asr"] is not None for r in bd)
    clean = [r for r in rows if r["attack"] == "clean"]
    assert clean and all(r["auroc"] is None and r["recall"] is None for r in clean)
    write_outputs("tiny", result, tmp_path / "out", wall_s=1.0)
    with open(tmp_path / "out" / "results.csv") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == COLUMNS
        assert len(list(reader)) == len(rows)
    assert len(json.loads((tmp_path / "out" / "results.json").read_text())) == len(rows)
    html = (tmp_path / "out" / "report.html").read_text()
    assert "Attack x detector matrix" in html and "data:image/png;base64," in html
    # A second run with --resume reads every cell from the cache.
    logs.clear()
    again = run_suite(
        TINY, out_dir=tmp_path / "out", cache_dir=tiny_cache, resume=True, log=logs.append
    )
    assert again["rows"] == rows
    assert not any("detectors," in m for m in logs)
    # --finished-only runs nothing: a cell not finished is left out and listed.
    from tripwire.bench.runner import cell_file

    spec, badnets = TINY.data[0], TINY.attacks[1]
    cell_file(TINY, spec, badnets, 0.1, 0, tiny_cache).unlink()
    logs.clear()
    part = run_suite(
        TINY,
        out_dir=tmp_path / "out",
        cache_dir=tiny_cache,
        finished_only=True,
        log=logs.append,
    )
    assert part["unfinished"] == ["digits/badnets/0.1/0"]
    assert part["rows"] == [r for r in rows if r["attack"] == "clean"]
    assert not any("detectors," in m for m in logs)
    assert any("1 of 2 cells not finished" in m for m in logs)
    write_outputs("tiny", part, tmp_path / "part", wall_s=1.0)
    summary = json.loads((tmp_path / "part" / "report.json").read_text())["summary"]
    assert summary["unfinished_cells"] == 1


def test_a_trusted_set_calibrates_the_cells_and_is_cached_apart(
    tmp_path: Path, tiny_cache: Path
) -> None:
    from dataclasses import replace

    from tripwire.bench.runner import cell_file

    # The clean cell alone: its model (and its plain run) the tiny suite left cached.
    suite = replace(TINY, attacks=TINY.attacks[:1])
    plain = run_suite(
        suite, out_dir=tmp_path / "a", cache_dir=tiny_cache, resume=True, log=lambda _: None
    )
    calibrated = run_suite(
        suite, out_dir=tmp_path / "b", cache_dir=tiny_cache, trusted=100, log=lambda _: None
    )
    spec, clean = suite.data[0], suite.attacks[0]
    assert cell_file(suite, spec, clean, 0.0, 0, tiny_cache) != cell_file(
        suite, spec, clean, 0.0, 0, tiny_cache, 100
    )
    assert {r.get("trusted", 0) for r in plain["rows"]} == {0}
    assert {r["trusted"] for r in calibrated["rows"]} == {100}

    def flagged(rows: list[dict[str, Any]], det: str) -> Any:
        return next(r["n_flagged"] for r in rows if r["detector"] == det)

    # The same model and scores; thresholds from the trusted set's false-alarm rate.
    assert flagged(plain["rows"], "feature-outlier") != flagged(
        calibrated["rows"], "feature-outlier"
    )


def test_standard_suite_needs_data_dir(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--data-dir"):
        run_suite(get_suite("standard"), out_dir=tmp_path, cache_dir=tmp_path)
    with pytest.raises(InputError, match="--data-dir"):
        run_suite(get_suite("full"), out_dir=tmp_path, cache_dir=tmp_path)
    with pytest.raises(InputError, match="unknown suite"):
        get_suite("huge")


def test_train_only_then_suite_reuses_models(tmp_path: Path) -> None:
    from dataclasses import replace

    from tripwire.bench.runner import (
        ENSEMBLE_ROW,
        attacked,
        cached_model_path,
        suite_cells,
        train_suite_models,
    )

    suite = replace(TINY, retrain_detectors=(ENSEMBLE_ROW,))
    cache = tmp_path / "cache"
    logs: list[str] = []
    assert train_suite_models(suite, cache_dir=cache, log=logs.append) == 2
    assert sum("model ready" in m for m in logs) == 2
    trained = set((cache / "models").glob("*.pt"))
    assert len(trained) == 2
    # Each cell's model lies where cached_model_path says (the probes find it there).
    cells = suite_cells(suite, None, log=lambda _: None)
    expected = {
        cached_model_path(attacked(train, attack, rate, seed)[0], spec, seed, cache)
        for spec, train, _, attack, rate, seed in cells
        if attack.kind in ("clean", "badnets")
    }
    assert expected == trained
    assert all(p.with_suffix(".meta.json").exists() for p in trained)
    result = run_suite(suite, out_dir=tmp_path / "out", cache_dir=cache, log=logs.append)
    # Only retraining without the ensemble's flags may add a model: the cells' own are reused.
    assert len(set((cache / "models").glob("*.pt")) - trained) <= 1
    retrained = [r for r in result["rows"] if r["asr_after"] is not None]
    assert {r["detector"] for r in retrained} <= {ENSEMBLE_ROW}


def test_suite_cells_are_seed_major() -> None:
    """Every dataset's first seed comes before any second seed: a suite stopped part-way
    already holds one complete table over all datasets."""
    from tripwire.bench.runner import suite_cells

    suite = Suite(
        name="order",
        data=(
            DataSpec(name="a", spec="bundled:digits", seeds=(0, 1, 2), epochs=1),
            DataSpec(name="b", spec="bundled:digits", seeds=(7,), epochs=1),
        ),
        attacks=(AttackCell("clean", rates=(0.0,)), AttackCell("badnets", rates=(0.1, 0.2))),
        extraction=False,
    )
    order = [
        (spec.name, seed, attack.kind, rate)
        for spec, _, _, attack, rate, seed in suite_cells(suite, None, log=lambda _: None)
    ]
    assert [(d, s) for d, s, _, _ in order] == (
        [("a", 0)] * 3 + [("b", 7)] * 3 + [("a", 1)] * 3 + [("a", 2)] * 3
    )
    assert order[:3] == [("a", 0, "clean", 0.0), ("a", 0, "badnets", 0.1), ("a", 0, "badnets", 0.2)]


def test_a_seed_selection_runs_those_seeds_cells_unchanged(tmp_path: Path) -> None:
    """``seeds``: only those seeds' cells, each with the key and the retraining it has in
    the whole suite, so runs over different seeds complete one suite's cache."""
    from tripwire.bench.runner import _retrain_settings, cell_file, suite_grid

    standard = get_suite("standard")
    whole = list(suite_grid(standard, log=lambda _: None))
    picked = list(suite_grid(standard, log=lambda _: None, seeds={2}))
    assert len(picked) == 8
    assert {(s.name, seed) for s, _, _, seed in picked} == {("mnist", 2)}
    assert [(s.name, a.kind, r, seed) for s, a, r, seed in picked] == [
        (s.name, a.kind, r, seed) for s, a, r, seed in whole if seed == 2
    ]
    firsts = list(suite_grid(standard, log=lambda _: None, seeds={0}))
    assert len(firsts) == 24  # seed 0 of every dataset
    spec, attack, rate, seed = next(c for c in firsts if c[1].kind == "badnets")
    assert _retrain_settings(standard, spec, attack, rate, seed) == ["tripwire:ensemble"]
    assert cell_file(standard, spec, attack, rate, seed, tmp_path) == next(
        cell_file(standard, s, a, r, sd, tmp_path)
        for s, a, r, sd in whole
        if (s.name, a.kind, r, sd) == (spec.name, attack.kind, rate, seed)
    )
    # Seed 2 is not MNIST's first: it does not retrain, selected alone or not.
    spec, attack, rate, seed = next(c for c in picked if c[1].kind == "badnets")
    assert _retrain_settings(standard, spec, attack, rate, seed) is None


def test_a_cell_the_data_cannot_hold_is_skipped_and_reported(tmp_path: Path) -> None:
    """A clean-label rate above the target class's share (every 0 of the data and more)
    is refused by the attack; the suite says so and runs the other cells."""
    suite = Suite(
        name="infeasible",
        data=(DataSpec(name="digits", spec="bundled:digits", seeds=(0,), epochs=1),),
        attacks=(AttackCell("sig", rates=(0.5,), target=0), AttackCell("clean", rates=(0.0,))),
        retrain=False,
        extraction=False,
    )
    logs: list[str] = []
    result = run_suite(suite, out_dir=tmp_path / "out", cache_dir=tmp_path, log=logs.append)
    assert [s["cell"] for s in result["skipped"]] == ["digits/sig/0.5/0"]
    assert "too small" in result["skipped"][0]["reason"]
    assert any(m.startswith("cell 1/2 skipped (digits/sig/0.5/0)") for m in logs)
    assert {r["attack"] for r in result["rows"]} == {"clean"}
    write_outputs("infeasible", result, tmp_path / "out", wall_s=1.0)
    summary = json.loads((tmp_path / "out" / "report.json").read_text())["summary"]
    assert summary["skipped_cells"] == 1


def test_standard_is_a_cross_section_of_the_full_grid(tmp_path: Path) -> None:
    """The standard suite runs each attack at one rate per dataset (sized for about three
    hours); every one of its cells is a cell of the full grid, and the two share a
    finished cell exactly where it is made the same way (retraining included)."""
    from tripwire.bench.runner import cell_file, suite_grid

    standard, full = get_suite("standard"), get_suite("full")
    std_cells = list(suite_grid(standard, log=lambda _: None))
    full_cells = list(suite_grid(full, log=lambda _: None))
    assert len(std_cells) == 40 and len(full_cells) == 110

    def named(cells: list) -> set[tuple[str, str, float, int]]:
        return {(s.name, a.kind, r, seed) for s, a, r, seed in cells}

    assert named(std_cells) < named(full_cells)
    # Three seeds of every MNIST cell: mean and spread over seeds.
    mnist = [(a.kind, r) for s, a, r, seed in std_cells if s.name == "mnist"]
    assert len(mnist) == 24 and all(mnist.count(c) == 3 for c in mnist)
    by_name = {(s.name, a.kind, r, seed): (s, a) for s, a, r, seed in full_cells}
    shared = {}
    for spec, attack, rate, seed in std_cells:
        fspec, fattack = by_name[(spec.name, attack.kind, rate, seed)]
        shared[(spec.name, attack.kind, rate, seed)] = cell_file(
            standard, spec, attack, rate, seed, tmp_path
        ) == cell_file(full, fspec, fattack, rate, seed, tmp_path)
    # MNIST backdoors at 1% retrain in both suites; GTSRB's retrain in the full grid only.
    assert shared[("mnist", "badnets", 0.01, 0)]
    assert shared[("cifar10-10k", "blend", 0.05, 0)]
    assert shared[("gtsrb", "clean", 0.0, 0)] and shared[("gtsrb", "label-flip", 0.05, 0)]
    assert not shared[("gtsrb", "badnets", 0.01, 0)]
    # A cell's file changes with how its model is trained.
    spec, attack, rate, seed = std_cells[0]
    from dataclasses import replace

    longer = replace(spec, epochs=spec.epochs + 1)
    assert cell_file(standard, longer, attack, rate, seed, tmp_path) != cell_file(
        standard, spec, attack, rate, seed, tmp_path
    )


def test_bench_cli_refuses_unknown_datasets_and_seeds_and_too_few_verified_samples(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.cli.test_cli import one_line_error
    from tests.cli.test_cli import run as cli

    out = ["--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")]
    for args, needles in (
        (["--data", "imagenet"], ["--data", "no dataset imagenet", "mnist-5k"]),
        (["--trusted", "5"], ["--trusted", "at least 100"]),
        (["--seeds", "2"], ["--seeds", "no seed 2", "0, 1"]),
        (["--seeds", "one"], ["--seeds", "integers"]),
        (["--arch", "vgg"], ["vgg", "resnet-mini"]),
        (["--attacks", "sig"], ["--attacks", "no attack sig", "badnets, blend, clean"]),
    ):
        code, _, err = cli(capsys, "bench", "--suite", "quick", *args, *out)
        assert code == 2, args
        one_line_error(err, *needles)
    assert not (tmp_path / "out").exists()


def test_a_second_architecture_runs_the_same_cells_apart(tmp_path: Path, tiny_cache: Path) -> None:
    std = with_arch(get_suite("standard"), "resnet-mini")
    assert [d.name for d in std.data] == [
        "mnist@resnet-mini",
        "cifar10-10k@resnet-mini",
        "gtsrb@resnet-mini",
    ]
    assert {d.arch for d in std.data} == {"resnet-mini"}
    assert std.retrain_data == ("mnist@resnet-mini",)  # retraining follows the rename
    assert [a.kind for a in std.attacks_for(std.data[1])] == [
        a.kind for a in get_suite("standard").attacks_for(get_suite("standard").data[1])
    ]
    tiny = replace(with_arch(TINY, "resnet-mini"), attacks=TINY.attacks[:2])
    result = run_suite(tiny, out_dir=tmp_path / "out", cache_dir=tiny_cache, log=lambda m: None)
    rows = result["rows"]
    assert rows and {r["dataset"] for r in rows} == {"digits@resnet-mini"}
    models = sorted((tiny_cache / "models").glob("*.meta.json"))
    archs = {json.loads(m.read_text())["arch"] for m in models}
    assert "resnet-mini" in archs  # its own models, beside the suite's own in the cache


def test_an_attack_selection_keeps_the_cells_and_their_keys(tmp_path: Path) -> None:
    from tripwire.bench.runner import cell_file

    std = get_suite("standard")
    some = only_attacks(std, ["clean", "wanet"])
    for full, part in zip(std.data, some.data, strict=True):
        kept = part.attacks if part.attacks is not None else some.attacks
        assert [a.kind for a in kept] == ["clean", "wanet"]
        wanet = next(a for a in std.attacks_for(full) if a.kind == "wanet")
        assert wanet in kept  # the same setting (rate, params) as in the whole suite
        assert cell_file(some, part, wanet, wanet.rates[0], 0, tmp_path) == cell_file(
            std, full, wanet, wanet.rates[0], 0, tmp_path
        )


def test_dynamics_feeds_training_margin_a_recording_run_and_is_cached_apart(
    tmp_path: Path, tiny_cache: Path
) -> None:
    from tripwire.bench.runner import cell_file

    flips = Suite(
        name="tiny-flips",
        data=(DataSpec(name="digits", spec="bundled:digits", seeds=(0,), epochs=10),),
        attacks=(AttackCell("label-flip", rates=(0.1,), target=None),),
        extraction=False,
    )
    plain = run_suite(flips, out_dir=tmp_path / "a", cache_dir=tiny_cache, log=lambda _: None)
    planted = run_suite(
        flips, out_dir=tmp_path / "b", cache_dir=tiny_cache, dynamics=True, log=lambda _: None
    )
    spec, cell = flips.data[0], flips.attacks[0]
    assert cell_file(flips, spec, cell, 0.1, 0, tiny_cache) != cell_file(
        flips, spec, cell, 0.1, 0, tiny_cache, dynamics=True
    )
    assert len(sorted(tiny_cache.glob("models/*.dynamics-*.npz"))) == 1

    def margin_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
        return next(r for r in rows if r["detector"] == "training-margin")

    before, after = margin_row(plain["rows"]), margin_row(planted["rows"])
    assert before["dynamics"] is False and after["dynamics"] is True
    # The recording run's calibrators set the cut: most flips found, few clean flags.
    assert after["recall"] >= 0.8 and after["precision"] >= 0.8
    assert after["n_flagged"] != before["n_flagged"]
