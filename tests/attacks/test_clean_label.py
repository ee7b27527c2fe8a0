"""The ``label-consistent`` and ``adaptive`` backdoors: contract, triggers, effect."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import log_softmax

from tripwire.attacks import apply_trigger, attack_success_rate, kinds, poison_dataset
from tripwire.attacks.backdoor import blend_pattern
from tripwire.attacks.clean_label import _fit_surrogate, pgd_linear, piece_masks
from tripwire.errors import InputError
from tripwire.io import Dataset, load_dataset

ATOL = 1 / 255 + 1e-6


def check_contract(clean: Dataset, bad: Dataset) -> None:
    assert bad.x.shape == clean.x.shape and bad.x.dtype == clean.x.dtype
    assert np.array_equal(bad.sample_id, clean.sample_id)
    m = bad.poisoned
    assert m is not None
    assert np.array_equal(bad.x[~m], clean.x[~m]) and np.array_equal(bad.y[~m], clean.y[~m])
    changed = (bad.x[m] != clean.x[m]).reshape(m.sum(), -1).any(1) | (bad.y[m] != clean.y[m])
    assert changed.all()


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("bundled:digits")


def test_kinds_registered() -> None:
    ks = kinds()
    assert ks["label-consistent"].clean_label and ks["label-consistent"].trigger is not None
    assert not ks["adaptive"].clean_label and ks["adaptive"].trigger is not None


# ----------------------------------------------------------------- label-consistent


@pytest.fixture(scope="module")
def lc(digits: Dataset) -> Dataset:
    return poison_dataset(digits, "label-consistent", rate=0.05, target=3, seed=0, eps=0.1)


def corner_mask(h: int, w: int, size: int, margin: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    for oy in (margin, h - size - margin):
        for ox in (margin, w - size - margin):
            m[oy : oy + size, ox : ox + size] = True
    return m


def test_label_consistent_contract(digits: Dataset, lc: Dataset) -> None:
    check_contract(digits, lc)
    m = lc.poisoned
    assert m is not None and lc.attack is not None
    assert m.sum() == round(0.05 * len(digits))
    assert (digits.y[m] == 3).all() and np.array_equal(lc.y, digits.y)  # labels kept
    assert lc.attack["clean_label"] and lc.attack["target"] == 3
    again = poison_dataset(digits, "label-consistent", rate=0.05, target=3, seed=0, eps=0.1)
    assert np.array_equal(again.x, lc.x)


def test_label_consistent_patch_and_perturbation(digits: Dataset, lc: Dataset) -> None:
    assert lc.poisoned is not None and lc.attack is not None
    idx = np.flatnonzero(lc.poisoned)
    clean, stored = digits.model_input(idx), lc.model_input(idx)
    p = lc.attack["params"]
    patch = corner_mask(8, 8, p["size"], p["margin"])
    # the four corner patches are exactly the test trigger ...
    triggered = apply_trigger(clean, lc.attack)
    np.testing.assert_allclose(stored[..., patch], triggered[..., patch], atol=ATOL)
    # ... and the rest is the adversarial perturbation, inside the eps ball
    diff = np.abs(stored - clean)[..., ~patch]
    assert diff.max() <= 0.1 + ATOL
    assert (diff.reshape(len(idx), -1) > 0.05).any(1).all()  # every victim was perturbed


def test_label_consistent_one_corner_and_amplitude(digits: Dataset) -> None:
    bad = poison_dataset(
        digits, "label-consistent", rate=0.05, target=3, corners=1, amplitude=0.5,
        test_amplitude=1.0, position="top-left", eps=0.05,
    )  # fmt: skip
    assert bad.attack is not None
    x = np.full((1, 1, 8, 8), 0.5, np.float32)
    out = apply_trigger(x, bad.attack)
    changed = np.flatnonzero((out != x).reshape(-1))
    assert set(changed.tolist()) <= {9, 10, 17, 18}  # the 2x2 patch at (1, 1)
    params = {**bad.attack, "params": {**bad.attack["params"], "test_amplitude": 0.5}}
    half = apply_trigger(np.zeros((1, 1, 8, 8), np.float32), params)
    assert half.max() == pytest.approx(0.5)  # a white checker square blended at half


def test_surrogate_pgd_makes_victims_hard(digits: Dataset) -> None:
    x = digits.model_input().reshape(len(digits), -1)
    w, b = _fit_surrogate(x, digits.y, 10)
    assert ((x @ w + b).argmax(1) == digits.y).mean() > 0.9
    idx = np.flatnonzero(digits.y == 3)
    x3 = digits.model_input(idx)
    adv = pgd_linear(x3, digits.y[idx], w, b, eps=0.1, steps=10)
    assert np.abs(adv - x3).max() <= 0.1 + 1e-6 and adv.min() >= 0 and adv.max() <= 1

    def loss(z: np.ndarray) -> float:
        return float(-log_softmax(z.reshape(len(z), -1) @ w + b, axis=1)[:, 3].mean())

    assert loss(adv) > 3 * loss(x3)  # the victims' true class became much less likely


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate": 0.05}, "--target"),
        ({"rate": 0.05, "all_to_all": True}, "--target"),
        ({"rate": 0.05, "target": 3, "source": 1}, "clean-label"),
        ({"rate": 0.2, "target": 3}, "too small"),
        ({"rate": 0.05, "target": 3, "eps": 0.0}, "eps"),
        ({"rate": 0.05, "target": 3, "steps": 0}, "steps"),
        ({"rate": 0.05, "target": 3, "corners": 2}, "corners"),
        ({"rate": 0.05, "target": 3, "amplitude": 1.5}, "amplitude"),
        ({"rate": 0.05, "target": 3, "size": 7}, "does not fit"),
    ],
)
def test_label_consistent_bad_requests(
    digits: Dataset, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(InputError, match=message.replace("-", r"\-")):
        poison_dataset(digits, "label-consistent", **kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------------- adaptive


def test_adaptive_contract_and_covers(digits: Dataset) -> None:
    bad = poison_dataset(digits, "adaptive", rate=0.05, target=3, seed=0)
    check_contract(digits, bad)
    m = bad.poisoned
    assert m is not None and bad.attack is not None
    n = round(0.05 * len(digits))
    assert m.sum() == 2 * n  # victims plus as many cover samples (cover_rate = rate)
    victims = m & (bad.y != digits.y)
    assert victims.sum() == n and (bad.y[victims] == 3).all()
    assert bad.attack["params"]["cover_rate"] == 0.05
    again = poison_dataset(digits, "adaptive", rate=0.05, target=3, seed=0)
    assert np.array_equal(again.x, bad.x) and np.array_equal(again.y, bad.y)


def test_adaptive_triggers_are_partial_at_train_time_full_at_test(digits: Dataset) -> None:
    bad = poison_dataset(digits, "adaptive", rate=0.05, target=3, pieces=16, keep=0.5)
    assert bad.poisoned is not None and bad.attack is not None
    idx = np.flatnonzero(bad.poisoned)
    clean, stored = digits.model_input(idx), bad.model_input(idx)
    diff = np.abs(stored - clean)
    assert diff.max() <= 0.2 + ATOL  # alpha
    masks = piece_masks(8, 8, 16)
    # each sample carries at most 8 of the 16 pieces: no change outside them
    for d in diff[:, 0]:
        touched = [(d[mk] > 0).any() for mk in masks]
        assert 0 < sum(touched) <= 8
    # at test time: the whole pattern, at test_alpha
    pattern = blend_pattern((1, 8, 8), "stripes", 0)
    full = apply_trigger(clean, bad.attack)
    np.testing.assert_allclose(full, clean + 0.3 * (pattern - clean), atol=1e-6)


def test_adaptive_options(digits: Dataset) -> None:
    a2a = poison_dataset(digits, "adaptive", rate=0.05, all_to_all=True, cover_rate=0.0)
    m = a2a.poisoned
    assert m is not None and m.sum() == round(0.05 * len(digits))
    assert np.array_equal(a2a.y[m], (digits.y[m] + 1) % 10)
    many = poison_dataset(digits, "adaptive", rate=0.05, target=1, cover_rate=0.2)
    assert many.poisoned is not None
    assert many.poisoned.sum() == round(0.05 * len(digits)) + round(0.2 * len(digits))


def test_piece_masks_tile_the_image() -> None:
    masks = piece_masks(28, 28, 16)
    assert masks.shape == (16, 28, 28)
    np.testing.assert_array_equal(masks.sum(0), np.ones((28, 28)))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate": 0.05}, "--target"),
        ({"rate": 0.05, "target": 3, "pieces": 10}, "square"),
        ({"rate": 0.05, "target": 3, "pieces": 81}, "square"),  # 9x9 pieces on 8x8
        ({"rate": 0.05, "target": 3, "keep": 0.0}, "keep"),
        ({"rate": 0.05, "target": 3, "alpha": 2.0}, "alpha"),
        ({"rate": 0.05, "target": 3, "cover_rate": 1.0}, "cover_rate"),
        ({"rate": 0.5, "target": 3, "cover_rate": 0.6}, "too small"),
    ],
)
def test_adaptive_bad_requests(digits: Dataset, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message.replace("-", r"\-")):
        poison_dataset(digits, "adaptive", **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- effects


@pytest.mark.slow
def test_label_consistent_effect(mnist_small, quick_train) -> None:  # type: ignore[no-untyped-def]
    # LC_EFFECT
    train, test = mnist_small
    bad = poison_dataset(train, "label-consistent", rate=0.05, target=0, seed=0)
    assert bad.attack is not None
    _, clean_predict = quick_train(train, test)
    acc, predict = quick_train(bad, test)
    clean_asr = attack_success_rate(clean_predict, test, bad.attack)
    asr = attack_success_rate(predict, test, bad.attack)
    assert asr - clean_asr > 0.3, (asr, clean_asr)
    assert acc > 0.85, acc


@pytest.mark.slow
def test_adaptive_effect(mnist_small, quick_train) -> None:  # type: ignore[no-untyped-def]
    # ADAPTIVE_EFFECT
    train, test = mnist_small
    bad = poison_dataset(train, "adaptive", rate=0.05, target=0, seed=0)
    assert bad.attack is not None
    acc, predict = quick_train(bad, test)
    asr = attack_success_rate(predict, test, bad.attack)
    assert asr > 0.5, asr
    assert acc > 0.85, acc
