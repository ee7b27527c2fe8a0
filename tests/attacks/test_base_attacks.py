"""The attack contract, and measured effects of badnets, blend and label-flip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tripwire.attacks import apply_trigger, attack_success_rate, kinds, poison_dataset
from tripwire.errors import InputError
from tripwire.io import Dataset, load_dataset, make_dataset, save_dataset


def check_contract(clean: Dataset, bad: Dataset) -> None:
    assert bad.x.shape == clean.x.shape and bad.x.dtype == clean.x.dtype
    assert len(bad) == len(clean)
    assert np.array_equal(bad.sample_id, clean.sample_id)
    m = bad.poisoned
    assert m is not None
    # untouched samples are byte-identical; poisoned ones really changed
    assert np.array_equal(bad.x[~m], clean.x[~m]) and np.array_equal(bad.y[~m], clean.y[~m])
    changed = (bad.x[m] != clean.x[m]).reshape(m.sum(), -1).any(1) | (bad.y[m] != clean.y[m])
    assert changed.all()


@pytest.mark.parametrize("kind", ["badnets", "blend", "label-flip"])
def test_contract_and_rate(kind: str) -> None:
    ds = load_dataset("bundled:digits")
    bad = poison_dataset(ds, kind, rate=0.1, target=3, seed=0)
    check_contract(ds, bad)
    assert bad.poisoned is not None and bad.poisoned.sum() == round(0.1 * len(ds))
    assert bad.attack is not None and bad.attack["kind"] == kind and bad.attack["target"] == 3
    if kind != "label-flip":
        assert (bad.y[bad.poisoned] == 3).all()
    again = poison_dataset(ds, kind, rate=0.1, target=3, seed=0)
    assert np.array_equal(again.x, bad.x) and np.array_equal(again.y, bad.y)  # seeded


def test_round_trip_keeps_attack_record(tmp_path: Path) -> None:
    ds = load_dataset("bundled:digits")
    bad = poison_dataset(ds, "badnets", rate=0.05, target=1, seed=2, position="random")
    save_dataset(bad, tmp_path / "bad.npz")
    back = load_dataset(tmp_path / "bad.npz")
    assert back.attack == bad.attack
    assert back.poisoned is not None and np.array_equal(back.poisoned, bad.poisoned)
    assert np.array_equal(back.x, bad.x)


def test_trigger_reapplies_exactly() -> None:
    ds = load_dataset("bundled:digits")
    bad = poison_dataset(ds, "badnets", rate=0.05, target=1, seed=0)
    assert bad.poisoned is not None and bad.attack is not None
    idx = np.flatnonzero(bad.poisoned)
    again = apply_trigger(ds.model_input(idx), bad.attack)
    stored = bad.model_input(idx)
    np.testing.assert_allclose(again, stored, atol=1 / 255 + 1e-6)


def test_all_to_all() -> None:
    ds = load_dataset("bundled:digits")
    bad = poison_dataset(ds, "badnets", rate=0.1, all_to_all=True, seed=0)
    assert bad.poisoned is not None
    m = bad.poisoned
    assert np.array_equal(bad.y[m], (ds.y[m] + 1) % 10)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "nope", "rate": 0.1, "target": 1}, "unknown attack kind"),
        ({"kind": "badnets", "rate": 0.0, "target": 1}, "(0, 1)"),
        ({"kind": "badnets", "rate": 1.5, "target": 1}, "(0, 1)"),
        ({"kind": "badnets", "rate": 0.1, "target": 42}, "not in the data"),
        ({"kind": "badnets", "rate": 0.1}, "--target"),
        ({"kind": "badnets", "rate": 0.1, "target": 1, "wobble": 3}, "unknown parameter"),
        ({"kind": "badnets", "rate": 0.0001, "target": 1}, "too small"),
        ({"kind": "badnets", "rate": 0.5, "target": 1, "source": 2}, "too small"),
    ],
)
def test_bad_requests(kwargs: dict[str, object], message: str) -> None:
    ds = load_dataset("bundled:digits")
    kind = str(kwargs.pop("kind"))
    with pytest.raises(InputError) as err:
        poison_dataset(ds, kind, **kwargs)  # type: ignore[arg-type]
    assert message in str(err.value)


def test_image_attack_on_table_is_refused() -> None:
    ds = make_dataset(np.zeros((50, 4), np.float32), np.arange(50) % 2)
    with pytest.raises(InputError, match="needs image data"):
        poison_dataset(ds, "badnets", rate=0.1, target=1)
    assert poison_dataset(ds, "label-flip", rate=0.1).poisoned is not None


def test_already_poisoned_is_refused() -> None:
    ds = load_dataset("bundled:digits")
    bad = poison_dataset(ds, "label-flip", rate=0.1)
    with pytest.raises(InputError, match="already poisoned"):
        poison_dataset(bad, "badnets", rate=0.1, target=1)


def test_registry_lists_kinds() -> None:
    names = set(kinds())
    assert {"badnets", "blend", "label-flip"} <= names


@pytest.mark.slow
# Blend at alpha 0.3: at 0.2 and 5% on 2,000 digits, 6 epochs, the backdoor is learnt
# or not depending on the seed and the CPU's kernels (attack success 0.34 to 1.0 over
# three seeds on one machine); at 0.3 it was 1.0 on all three.
@pytest.mark.parametrize(("kind", "params"), [("badnets", {}), ("blend", {"alpha": 0.3})])
def test_backdoor_effect(kind: str, params: dict[str, object], mnist_small, quick_train) -> None:  # type: ignore[no-untyped-def]
    train, test = mnist_small
    bad = poison_dataset(train, kind, rate=0.05, target=0, seed=0, **params)
    assert bad.attack is not None
    acc, predict = quick_train(bad, test)
    asr = attack_success_rate(predict, test, bad.attack)
    assert asr > 0.9, asr
    assert acc > 0.85, acc


@pytest.mark.slow
def test_label_flip_costs_accuracy(mnist_small, quick_train) -> None:  # type: ignore[no-untyped-def]
    train, test = mnist_small
    clean_acc, _ = quick_train(train, test)
    # 60% of labels flipped uniformly (the true class still the most common label):
    # test accuracy 0.39 to 0.50 against 0.94 clean over three seeds; at 40% the loss
    # ranged from 1 to 17 points, too close to the machine's noise to assert on.
    flipped = poison_dataset(train, "label-flip", rate=0.6, seed=0)
    flip_acc, _ = quick_train(flipped, test)
    assert flip_acc < clean_acc - 0.2, (clean_acc, flip_acc)
