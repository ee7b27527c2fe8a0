"""Out-of-sample probabilities: the feature proxy, input-space neighbours, the pool."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score

from tripwire.detectors.input_space import InputSpace
from tripwire.detectors.oos import (
    FEATURE_VIEW,
    POOLED_VIEWS,
    knn_label_probabilities,
    label_probabilities,
    oos_probabilities,
    pooled_probabilities,
    reference_probabilities,
)
from tripwire.errors import InputError


def test_knn_label_probabilities_leave_each_item_out() -> None:
    # Two tight clusters; one item of cluster A carries B's label.
    rng = np.random.default_rng(0)
    z = np.vstack([rng.normal(0, 0.1, (20, 2)), rng.normal(5, 0.1, (20, 2))])
    y = np.repeat([0, 1], 20)
    y[3] = 1
    p = knn_label_probabilities(z, y, k=5, smoothing=0.1)
    assert p.shape == (40, 2)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    # Its neighbours (itself excluded) all say 0.
    assert p[3, 0] == pytest.approx((5 + 0.1) / (5 + 0.2))
    assert p[25, 1] > 0.95
    # Exact duplicates: an item's copy counts, the item itself does not.
    zz = np.zeros((4, 2))
    pd = knn_label_probabilities(zz, np.array([0, 0, 1, 1]), k=3, smoothing=0.0)
    np.testing.assert_allclose(pd.sum(axis=1), 1.0)
    assert np.all(pd.max(axis=1) < 1.0)  # never only its own label
    with pytest.raises(InputError):
        knn_label_probabilities(z[:1], y[:1])
    with pytest.raises(InputError):
        knn_label_probabilities(z, y[:-1])


def test_pooled_probabilities_doubt_where_either_view_does() -> None:
    a = np.array([[0.9, 0.1], [0.5, 0.5]])
    b = np.array([[0.9, 0.1], [0.01, 0.99]])
    p = pooled_probabilities(a, b)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    np.testing.assert_allclose(p[0], [0.9, 0.1])
    assert p[1, 0] == pytest.approx(np.sqrt(0.005) / (np.sqrt(0.005) + np.sqrt(0.495)))
    with pytest.raises(ValueError):
        pooled_probabilities()


def test_label_probabilities_pool_input_space_on_images() -> None:
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    y = digits.target.astype(np.int64).copy()
    rng = np.random.default_rng(0)
    flipped = rng.choice(len(y), 90, replace=False)
    y[flipped] = (y[flipped] + 1 + rng.integers(0, 9, 90)) % 10
    # Features that have absorbed the flips (the labels' one-hot beside a coarse view of
    # the image), as a model trained on the flipped labels learns them.
    feats = np.hstack([np.eye(10)[y] * 0.6, x.reshape(len(y), -1)[:, ::8]])
    p_feat, origin_f = label_probabilities(feats, y, n_classes=10)
    p_pool, origin_p = label_probabilities(feats, y, images=x, n_classes=10)
    assert origin_f == FEATURE_VIEW and origin_p == POOLED_VIEWS
    np.testing.assert_allclose(p_feat, oos_probabilities(feats, y, n_classes=10))
    rows = np.arange(len(y))
    mask = np.zeros(len(y), bool)
    mask[flipped] = True
    # The features absorbed the flips: their proxy cannot rank them; the input view can.
    assert roc_auc_score(mask, 1 - p_feat[rows, y]) < 0.7
    assert roc_auc_score(mask, 1 - p_pool[rows, y]) > 0.95
    assert np.median(p_pool[rows, y][~mask]) > 0.9


def test_reference_probabilities_score_a_trusted_set_with_the_suspect_data_proxy() -> None:
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    y = digits.target.astype(np.int64)
    feats = x.reshape(len(y), -1)
    data, ref = np.arange(1200), np.arange(1200, len(y))
    p = reference_probabilities(feats[data], y[data], feats[ref], n_classes=10)
    assert p.shape == (len(ref), 10)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    # A proxy fitted on the suspect items, none of which is a trusted one.
    assert (p.argmax(axis=1) == y[ref]).mean() > 0.9
    space = InputSpace(x[data])
    pooled = reference_probabilities(
        feats[data], y[data], feats[ref], n_classes=10, space=space, reference_images=x[ref]
    )
    # Both views: the trusted items' true labels stay likely, wrong ones do not.
    rows = np.arange(len(ref))
    wrong = (y[ref] + 1 + np.arange(len(ref)) % 9) % 10
    assert np.median(pooled[rows, y[ref]]) > 0.9
    assert np.median(pooled[rows, wrong]) < 0.01
    with pytest.raises(InputError, match="do not match"):
        reference_probabilities(feats[data], y[data], feats[ref][:, :10], n_classes=10)
