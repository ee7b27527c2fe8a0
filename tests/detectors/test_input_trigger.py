"""Run-time triggered-input detector on a real BadNets-backdoored MNIST model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.audit_models import TARGET, BackdooredModel, train_badnets_model
from tripwire.errors import InputError, NotFittedError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def backdoored(tmp_path_factory: pytest.TempPathFactory) -> BackdooredModel:
    return train_badnets_model(tmp_path_factory.mktemp("input-trigger"))


@pytest.fixture(scope="module")
def fitted(backdoored: BackdooredModel):  # type: ignore[no-untyped-def]
    from tripwire.detectors.backdoor.input_trigger import TriggeredInputDetector
    from tripwire.models.loading import load_model

    model = load_model(backdoored.path, device="cpu")
    x = backdoored.test.model_input()
    ref = np.arange(400)
    det = TriggeredInputDetector(strip_overlays=16, random_state=0).fit(
        model, x[ref], backdoored.test.y[ref], frr=0.05
    )
    return det, model


def _triggered(backdoored: BackdooredModel, model, x: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    from tripwire.attacks import apply_trigger

    xt = apply_trigger(x, backdoored.attack)
    hit = model.logits(xt).argmax(1) == TARGET
    assert hit.mean() > 0.8, "the backdoor was not learnt; the test model is unusable"
    return xt[hit]


def test_triggered_inputs_score_above_clean_in_both_tiers(fitted, backdoored) -> None:  # type: ignore[no-untyped-def]
    det, model = fitted
    held = backdoored.test.subset(np.arange(400, 1000))
    x_clean = held.model_input()
    x_trig = _triggered(backdoored, model, x_clean[held.y != TARGET])
    for scorer in (det.score, det.strip_scores):
        s_clean, s_trig = scorer(x_clean), scorer(x_trig)
        # AUROC by ranks: share of (triggered, clean) pairs ordered correctly.
        auc = (s_trig[:, None] > s_clean[None, :]).mean()
        assert auc > 0.9, scorer.__name__
        assert np.median(s_trig) > np.quantile(s_clean, 0.95), scorer.__name__


def test_calibration_holds_the_requested_frr_on_held_out_clean(fitted, backdoored) -> None:  # type: ignore[no-untyped-def]
    det, _ = fitted
    x = backdoored.test.model_input()[400:]
    for scores, cal in (
        (det.score(x), det.feature_calibration_),
        (det.strip_scores(x), det.strip_calibration_),
    ):
        frr = float((scores > cal.threshold).mean())
        # Calibrated at 5% on 160 held-out reference items: the rate on 600 fresh clean
        # inputs must be near it, not near zero or far above.
        assert 0.005 <= frr <= 0.12, (cal.details["tier"], frr)
        assert cal.target_fpr == 0.05


def test_score_outputs_reuses_the_callers_forward_pass(fitted, backdoored) -> None:  # type: ignore[no-untyped-def]
    det, model = fitted
    x = backdoored.test.model_input()[400:464]
    logits, feats = model.logits_and_features(x)
    np.testing.assert_allclose(det.score_outputs(logits, feats), det.score(x), rtol=1e-6)
    with pytest.raises(InputError, match="logits must be"):
        det.score_outputs(logits[:, :3], feats)


def test_check_escalates_suspects_and_says_which_tier_fired(fitted, backdoored) -> None:  # type: ignore[no-untyped-def]
    det, model = fitted
    x_clean = backdoored.test.model_input()[400:600]
    x_trig = _triggered(backdoored, model, x_clean[backdoored.test.y[400:600] != TARGET])
    res = det.check(np.concatenate([x_clean, x_trig]))
    n = len(x_clean)
    # Tier 2 runs on tier-1 suspects only (strip_share 0) and nowhere else.
    assert np.array_equal(res.strip_ran, res.feature_flags)
    assert np.isnan(res.strip_scores[~res.strip_ran]).all()
    assert res.flags[n:].mean() > 0.9
    assert res.flags[:n].mean() < 0.15
    assert {f for f in res.fired} <= {"none", "feature", "strip", "both"}
    assert res.fired.count("none") == int((~res.flags).sum())
    d = res.to_dict()
    assert d["n_flagged"] == int(res.flags.sum())
    # A sampled share sends passing inputs to tier 2 as well.
    all_checked = det.check(x_clean[:50], strip_share=1.0)
    assert all_checked.strip_ran.all()
    assert np.isfinite(all_checked.strip_scores).all()


def test_bad_input(fitted, backdoored, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from tripwire.detectors.backdoor.input_trigger import TriggeredInputDetector

    det, model = fitted
    with pytest.raises(NotFittedError):
        TriggeredInputDetector().score(np.zeros((1, 1, 28, 28), np.float32))
    with pytest.raises(InputError, match="do not match"):
        det.score(np.zeros((2, 3, 28, 28), np.float32))
    x, y = backdoored.test.model_input()[:300], backdoored.test.y[:300]
    with pytest.raises(InputError, match="does not cover"):
        TriggeredInputDetector().fit(model, x[y != 3], y[y != 3])
    with pytest.raises(InputError, match="at least 20"):
        TriggeredInputDetector().fit(model, x[:5], y[:5])
    with pytest.raises(InputError, match="frr"):
        TriggeredInputDetector().fit(model, x, y, frr=1.5)


def test_model_without_features_falls_back_to_logits(tmp_path: Path) -> None:
    """A contract model that exports only forward(): tier 1 runs on the logits, and says so."""
    torch = pytest.importorskip("torch")
    from tripwire.detectors.backdoor.input_trigger import TriggeredInputDetector
    from tripwire.models.loading import load_model

    class Bands(torch.nn.Module):  # class = the brightest of three horizontal bands
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 10.0 * torch.stack(
                [
                    x[:, :, 0:3].mean((1, 2, 3)),
                    x[:, :, 3:6].mean((1, 2, 3)),
                    x[:, :, 6:9].mean((1, 2, 3)),
                ],
                dim=1,
            )

    path = tmp_path / "bands.pt"
    torch.jit.script(Bands()).save(str(path))
    model = load_model(path, device="cpu")
    assert not model.has_features
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    x = rng.random((300, 1, 9, 9)).astype(np.float32) * 0.3
    for i, c in enumerate(y):
        x[i, :, 3 * c : 3 * c + 3] += 0.5
    det = TriggeredInputDetector(strip_overlays=4).fit(model, x, y)
    assert det.feature_source_ == "logits"
    assert det.to_dict()["feature_source"] == "logits"
    odd = np.ones((5, 1, 9, 9), np.float32)  # all bands saturated: far from every class
    assert (det.score(odd) > det.feature_calibration_.threshold).all()


def test_gateway_hook_fitted_on_reference_flags_triggered_inputs(backdoored) -> None:  # type: ignore[no-untyped-def]
    from tripwire.gateway.hooks import ReferenceTriggerCheck, TriggerCheck, flagged
    from tripwire.models.loading import load_model
    from tripwire.reports import get_rule

    model = load_model(backdoored.path, device="cpu")
    x = backdoored.test.model_input()
    check = ReferenceTriggerCheck.fit(model, x[:400], frr=0.05)
    assert isinstance(check, TriggerCheck)
    clean = x[400:800]
    trig = _triggered(backdoored, model, clean)
    # The gateway hands over its own serving pass: logits and features.
    logits_c, feats_c = model.logits_and_features(clean)
    logits_t, feats_t = model.logits_and_features(trig)
    _, flags_c = flagged(check, logits_c, feats_c)
    _, flags_t = flagged(check, logits_t, feats_t)
    assert flags_t.mean() > 0.9
    assert flags_c.mean() < 0.15
    assert get_rule("TW250").name == "triggered-input"
