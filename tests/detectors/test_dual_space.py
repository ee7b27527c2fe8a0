"""Dual-space consistency on bundled digits with model-like features planted by hand.

The features stand in for a model that learned its labels (one tight direction per
label) and, for poisons, the trigger (one extra direction): the poisons then sit inside
the target class in feature space while their pixels are still their source digits.
"""

from __future__ import annotations

import numpy as np
import pytest

from tripwire.detectors import DetectorInput
from tripwire.detectors.input_space import input_embedding
from tripwire.detectors.poisoning.dual_space import DualSpaceDetector
from tripwire.io import load_dataset, make_dataset


def _planted(rate: float, seed: int = 0):
    ds = load_dataset("bundled:digits")
    rng = np.random.default_rng(seed)
    y = ds.y.copy()
    poisoned = np.zeros(len(y), bool)
    if rate:
        cand = np.flatnonzero(y != 0)
        poisoned[rng.choice(cand, int(rate * len(y)), replace=False)] = True
        y[poisoned] = 0
    feats = np.zeros((len(y), ds.n_classes + 1))
    feats[np.arange(len(y)), y] = 5.0
    feats[poisoned, -1] = 3.0
    feats += rng.normal(scale=0.5, size=feats.shape)
    data = make_dataset(ds.x, y, path="digits-planted")
    return DetectorInput(features=feats, labels=y, data=data), poisoned


@pytest.mark.parametrize("rate", [0.05, 0.1])
def test_flags_dirty_label_poisons_and_names_the_target(rate: float) -> None:
    inputs, poisoned = _planted(rate)
    res = DualSpaceDetector().detect(inputs)
    flagged = res.flags
    recall = (flagged & poisoned).sum() / poisoned.sum()
    precision = (flagged & poisoned).sum() / max(flagged.sum(), 1)
    assert recall >= 0.8
    assert precision >= 0.95
    assert res.evidence["target_classes"] == [0]
    # The ranking holds beyond the threshold: poisons outscore clean items.
    assert res.scores[poisoned].mean() > res.scores[~poisoned].mean() + 0.5


def test_clean_data_has_no_flags() -> None:
    inputs, _ = _planted(0.0)
    res = DualSpaceDetector().detect(inputs)
    assert not res.flags.any()
    assert res.evidence["target_classes"] == []
    assert res.calibration.method == "robust-z"


def test_needs_the_raw_data() -> None:
    inputs, _ = _planted(0.05)
    inputs.data = None
    with pytest.raises(Exception, match="needs data"):
        DualSpaceDetector().fit(inputs)


def test_input_embedding_pools_large_images() -> None:
    x = np.random.default_rng(0).random((50, 3, 32, 32), dtype=np.float32)
    emb = input_embedding(x, n_components=20)
    assert emb.shape == (50, 20)


def test_abstains_when_inputs_carry_no_label_information() -> None:
    inputs, _ = _planted(0.05)
    assert inputs.data is not None and inputs.labels is not None
    noise = np.random.default_rng(1).integers(0, 17, inputs.data.x.shape).astype(np.uint8)
    inputs.data = make_dataset(noise, inputs.labels, path="noise")
    res = DualSpaceDetector().detect(inputs)
    assert res.evidence["abstained"] is True
    assert not res.flags.any()


def test_a_cluster_surrounded_by_itself_agrees_with_its_label() -> None:
    """k-means can leave a class's clean items in one cluster beside a poison cluster:
    their nearest items are then their own cluster, and they must not count as looking
    like another class (a search beyond the shared graph found other digits for them)."""
    from tripwire.detectors.input_space import SHARED_NEIGHBOURS, InputSpace
    from tripwire.detectors.poisoning.dual_space import leave_cluster_out_disagreement

    rng = np.random.default_rng(0)
    n_blob = SHARED_NEIGHBOURS + 40  # each item's shared-graph neighbours: its own blob
    clean0 = rng.normal(0.0, 0.1, (n_blob, 6))
    others = rng.normal(0.0, 0.1, (n_blob, 6)) + 5.0  # another digit, far away
    poisons = rng.normal(0.0, 0.1, (30, 6)) + 5.0  # look like it, labelled 0
    x = np.vstack([clean0, others, poisons]).astype(np.float32)
    labels = np.repeat([0, 1, 0], [n_blob, n_blob, 30])
    clusters = np.repeat([0, 1, 2], [n_blob, n_blob, 30])  # class 0: clean, poisons
    dis = leave_cluster_out_disagreement(InputSpace.from_embedding(x), labels, clusters, 10)
    assert np.all(dis[:n_blob] == 0.0)  # clean 0s: nothing but their own cluster nearby
    assert np.all(dis[-30:] >= 0.9)  # poisons: the other digit's items next door


def test_feature_clusters_split_big_classes_and_keep_small_ones_whole() -> None:
    """Each class large enough gets ``n_clusters`` ids of its own (the k-means of all
    classes run as one batch), a small class one id; the planted poisons share a
    cluster of the target class that holds no clean item."""
    from tripwire.detectors.poisoning.dual_space import feature_clusters
    from tripwire.detectors.poisoning.spectral import MIN_CLASS_SIZE

    inputs, poisoned = _planted(0.05)
    feats, y = np.asarray(inputs.features), np.asarray(inputs.labels)
    small = np.flatnonzero(y == 9)[: MIN_CLASS_SIZE * 3 - 1]
    keep = np.ones(len(y), bool)
    keep[np.setdiff1d(np.flatnonzero(y == 9), small)] = False
    feats, y, poisoned = feats[keep], y[keep], poisoned[keep]
    clusters = feature_clusters(feats, y, n_clusters=3, n_dims=5, random_state=0)
    for c in range(10):
        ids = np.unique(clusters[y == c])
        assert len(ids) == (1 if c == 9 else 3)
        assert not np.isin(ids, clusters[y != c]).any()  # ids never shared across classes
    poison_ids = np.unique(clusters[poisoned])
    assert len(poison_ids) == 1
    assert not (np.isin(clusters, poison_ids) & ~poisoned).any()
    again = feature_clusters(feats, y, n_clusters=3, n_dims=5, random_state=0)
    np.testing.assert_array_equal(clusters, again)
