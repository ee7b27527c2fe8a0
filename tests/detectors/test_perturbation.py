"""Perturbation consistency of training samples on a real BadNets-backdoored MNIST model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.audit_models import TARGET, BackdooredModel, train_badnets_model
from tripwire.detectors import DetectorInput
from tripwire.detectors.poisoning.perturbation import (
    PerturbationConsistencyDetector,
    _other_label_draws,
)
from tripwire.errors import InputError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def backdoored(tmp_path_factory: pytest.TempPathFactory) -> BackdooredModel:
    return train_badnets_model(tmp_path_factory.mktemp("perturbation"))


def test_flags_the_poisons_not_the_target_class(backdoored: BackdooredModel) -> None:
    from tripwire.models.loading import load_model

    model = load_model(backdoored.path, device="cpu")
    ds = backdoored.train
    truth = np.asarray(ds.poisoned)
    res = PerturbationConsistencyDetector().detect(DetectorInput(model=model, labels=ds.y, data=ds))
    tp = int((res.flags & truth).sum())
    assert tp / truth.sum() >= 0.9
    assert tp / max(int(res.flags.sum()), 1) >= 0.9
    assert res.evidence["target_classes"] == [TARGET]
    # The backdoor makes clean target-class samples survive superimposition too: they are
    # candidates, and the input-space confirmation keeps them out of the flags.
    clean_target = (ds.y == TARGET) & ~truth
    cand = np.asarray(res.scores)[clean_target]
    assert res.evidence["candidates"] > res.evidence["confirmed"]
    assert (cand > res.threshold).mean() < 0.05
    assert res.calibration.method == "robust-z"


def test_clean_model_flags_almost_nothing(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("mlxtend")
    from tripwire.io import load_dataset
    from tripwire.models.loading import model_from_module
    from tripwire.models.train import TrainConfig, train_model

    torch.set_num_threads(1)
    full = load_dataset("bundled:mnist")
    ds = full.subset(np.sort(np.random.default_rng(1).choice(len(full), 2000, replace=False)))
    trained = train_model(ds, TrainConfig(epochs=8, seed=0, threads=1), show_progress=False)
    assert trained.train_accuracy > 0.5, "the clean test model did not train"
    net = trained.model
    res = PerturbationConsistencyDetector().detect(
        DetectorInput(model=model_from_module(net), labels=ds.y, data=ds)
    )
    assert res.flags.mean() <= 0.005
    assert res.evidence["target_classes"] == []
    assert np.all(np.isfinite(res.scores))


def test_a_collapsed_model_gives_no_candidates() -> None:
    """A model that answers every mixture alike (untrained, collapsed) has no spread of
    entropies; the scale floor keeps rounding noise from becoming flags."""
    from tripwire.io import make_dataset

    class Flat:
        def logits(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
            rng = np.random.default_rng(len(x))
            return (1e-4 * rng.normal(size=(len(x), 10))).astype(np.float32)

    rng = np.random.default_rng(0)
    ds = make_dataset(rng.random((300, 1, 8, 8)).astype(np.float32), rng.integers(0, 10, 300))
    res = PerturbationConsistencyDetector().detect(
        DetectorInput(model=Flat(), labels=ds.y, data=ds)  # type: ignore[arg-type]
    )
    assert res.evidence["candidates"] == 0 and not res.flags.any()


def test_overlays_never_share_the_label_and_bad_input_is_refused() -> None:
    rng = np.random.default_rng(0)
    y = np.array([0] * 95 + [1] * 5)
    idx = np.arange(100)
    ov = _other_label_draws(y, idx, 6, rng)
    assert ov.shape == (100, 6)
    assert np.all(y[ov] != y[idx][:, None])
    with pytest.raises(InputError):
        _other_label_draws(np.zeros(10, np.int64), np.arange(10), 2, rng)
    with pytest.raises(InputError):
        PerturbationConsistencyDetector(n_overlays=0).fit(
            DetectorInput(labels=y, model=object(), data=object())  # type: ignore[arg-type]
        )
