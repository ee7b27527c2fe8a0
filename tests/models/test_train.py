from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tripwire.errors import InputError  # noqa: E402
from tripwire.io import load_dataset, make_dataset  # noqa: E402
from tripwire.models.arch import ARCHITECTURES, auto_arch, build_model  # noqa: E402
from tripwire.models.loading import load_model  # noqa: E402
from tripwire.models.train import (  # noqa: E402
    TrainConfig,
    default_epochs,
    metadata_path,
    save_model,
    stratified_holdout,
    train_model,
)


def test_auto_arch() -> None:
    assert auto_arch((1, 28, 28)) == "cnn-small"
    assert auto_arch((3, 32, 32)) == "cnn-compact"
    assert auto_arch((10,)) == "mlp"


@pytest.mark.parametrize("arch", [a for a in ARCHITECTURES if a != "mlp"])
def test_architectures_script_and_export_features(arch: str) -> None:
    net = build_model(arch, (3, 32, 32), 7).eval()
    scripted = torch.jit.script(net)
    x = torch.rand(2, 3, 32, 32)
    logits, feats = scripted.forward_features(x)
    assert logits.shape == (2, 7)
    assert torch.allclose(scripted(x), logits)
    assert torch.allclose(scripted.features(x), feats)


def test_build_model_rejects_misfits() -> None:
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model("vgg", (3, 32, 32), 10)
    with pytest.raises(ValueError, match="table inputs"):
        build_model("mlp", (3, 32, 32), 10)
    with pytest.raises(ValueError, match="at least 8x8"):
        build_model("cnn-small", (1, 4, 4), 10)


def test_holdout_is_stratified_and_disjoint() -> None:
    y = np.repeat(np.arange(4), 50)
    tr, va = stratified_holdout(y, 0.2, seed=1)
    assert not set(tr) & set(va) and len(tr) + len(va) == 200
    assert np.bincount(y[va]).tolist() == [10] * 4


def test_default_epochs_scale_with_small_data() -> None:
    assert default_epochs("cnn-compact", 50_000, 128) == 18
    assert default_epochs("cnn-small", 1_000, 128) > 4


def test_train_is_seeded_and_learns(tmp_path: Path) -> None:
    train = load_dataset("bundled:digits")
    test = load_dataset("bundled:digits", split="test")
    cfg = TrainConfig(epochs=3, seed=7)
    a = train_model(train, cfg, test=test, show_progress=False)
    b = train_model(train, cfg, test=test, show_progress=False)
    assert a.accuracy == b.accuracy
    assert a.accuracy > 0.85  # 10 classes: chance is 0.1
    meta = save_model(a, tmp_path / "m.pt", train)
    on_disk = json.loads(metadata_path(tmp_path / "m.pt").read_text())
    assert on_disk["dataset"]["sha256"] == train.content_sha256() == meta["dataset"]["sha256"]
    assert on_disk["arch"] == "cnn-small" and on_disk["epochs"] == 3
    assert on_disk["eval_split"] == "test"
    m = load_model(tmp_path / "m.pt")
    pred = m.logits(test.model_input()).argmax(1)
    assert abs(float((pred == test.y).mean()) - a.accuracy) < 1e-9


def test_validation_holdout_when_no_test_split() -> None:
    train = load_dataset("bundled:digits")
    r = train_model(train, TrainConfig(epochs=1), show_progress=False)
    assert r.eval_split == "validation"
    assert r.eval_samples + r.train_samples == len(train)


def test_recorded_margins_cover_the_items_that_trained() -> None:
    train = load_dataset("bundled:digits")
    r = train_model(train, TrainConfig(epochs=2), show_progress=False, record_margins=True)
    assert r.margins is not None and r.margins.shape == (2, len(train))
    held_out = np.isnan(r.margins).all(axis=0)
    assert held_out.sum() == r.eval_samples  # the validation items never trained
    assert np.isfinite(r.margins[:, ~held_out]).all()
    # Late in training most items are fitted: their margin is positive.
    assert (r.margins[1, ~held_out] > 0).mean() > 0.5
    every = train_model(
        train, TrainConfig(epochs=2, val_fraction=0.0), show_progress=False, record_margins=True
    )
    assert every.eval_split == "train" and every.train_samples == len(train)
    assert every.margins is not None and np.isfinite(every.margins).all()
    assert train_model(train, TrainConfig(epochs=1), show_progress=False).margins is None


def test_mlp_on_table() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 5)).astype(np.float32) * 100 + 50
    y = (x[:, 0] > 50).astype(int)
    ds = make_dataset(x, y)
    r = train_model(ds, TrainConfig(epochs=20), show_progress=False)
    assert r.arch == "mlp" and r.accuracy > 0.9


def test_single_class_is_refused() -> None:
    ds = make_dataset(np.zeros((5, 3), np.float32), np.zeros(5, int))
    with pytest.raises(InputError, match="two classes"):
        train_model(ds, show_progress=False)
