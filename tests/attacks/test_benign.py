"""Benign query workloads: shapes, determinism and the character of each kind."""

from __future__ import annotations

import numpy as np
import pytest

from tripwire.attacks.benign import (
    BENIGN_KINDS,
    EXPLAINER_PER_INPUT,
    REPEATER_POOL,
    QueryStream,
    benign_stream,
    lime_masks,
    occlusion_windows,
)
from tripwire.errors import InputError
from tripwire.io import Dataset, load_dataset
from tripwire.io.dataset import make_dataset


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("bundled:digits")


@pytest.mark.parametrize("kind", sorted(BENIGN_KINDS))
def test_stream_shapes(digits: Dataset, kind: str) -> None:
    s = benign_stream(digits, kind, n_queries=500, seed=1, client_id="app-7", start=100.0)
    assert s.kind == kind
    assert s.x.shape == (500, *digits.input_shape) and s.x.dtype == np.float32
    assert s.x.min() >= 0.0 and s.x.max() <= 1.0
    assert s.clients == ["app-7"]
    assert s.t[0] == 100.0 and np.all(np.diff(s.t) >= 0)
    assert s.origin.min() >= 0 and s.origin.max() < len(digits)
    sizes = [len(x) for _, _, x in s.requests()]
    assert sum(sizes) == 500
    assert s.to_dict()["queries"] == 500


@pytest.mark.parametrize("kind", sorted(BENIGN_KINDS))
def test_stream_is_deterministic(digits: Dataset, kind: str) -> None:
    a = benign_stream(digits, kind, n_queries=300, seed=3)
    b = benign_stream(digits, kind, n_queries=300, seed=3)
    c = benign_stream(digits, kind, n_queries=300, seed=4)
    for name in ("x", "t", "request", "origin", "client_id"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.x, c.x) or not np.array_equal(a.t, c.t)


def test_ordinary_and_batch_scorer_send_data_samples(digits: Dataset) -> None:
    for kind in ("ordinary", "batch-scorer"):
        s = benign_stream(digits, kind, n_queries=600, seed=0)
        np.testing.assert_array_equal(s.x, digits.model_input(s.origin))
    small = [len(x) for _, _, x in benign_stream(digits, "ordinary", n_queries=600).requests()]
    assert max(small) <= 8
    batch = benign_stream(digits, "batch-scorer", n_queries=600, seed=0)
    assert [len(x) for _, _, x in batch.requests()] == [256, 256, 88]
    # One pass over the data before any sample repeats.
    assert len(np.unique(batch.origin)) == 600


def test_class_sweep_reads_class_by_class(digits: Dataset) -> None:
    n = len(digits) + 300  # one full pass, then part of a second
    s = benign_stream(digits, "class-sweep", n_queries=n, seed=2)
    np.testing.assert_array_equal(s.x, digits.model_input(s.origin))
    first, second = s.origin[: len(digits)], s.origin[len(digits) :]
    # A pass sends every sample once, and each class in one contiguous run.
    assert np.array_equal(np.sort(first), np.arange(len(digits)))
    labels = digits.y[first]
    runs = 1 + int(np.count_nonzero(np.diff(labels)))
    assert runs == digits.n_classes
    assert 1 + int(np.count_nonzero(np.diff(digits.y[second]))) <= digits.n_classes
    assert all(8 <= len(x) <= 32 for _, _, x in list(s.requests())[:-1])
    # The first class differs between seeds (the order is rotated at random).
    starts = {
        int(digits.y[benign_stream(digits, "class-sweep", n_queries=5, seed=k).origin[0]])
        for k in range(8)
    }
    assert len(starts) > 1


def test_repeater_repeats_a_small_pool(digits: Dataset) -> None:
    s = benign_stream(digits, "repeater", n_queries=400, seed=0)
    assert len(np.unique(s.origin)) <= REPEATER_POOL
    assert len(np.unique(s.x.reshape(400, -1), axis=0)) <= REPEATER_POOL


def test_explainer_queries_cluster_around_few_inputs(digits: Dataset) -> None:
    n = 450
    s = benign_stream(digits, "explainer", n_queries=n, seed=0)
    bases = np.unique(s.origin)
    assert len(bases) == -(-n // EXPLAINER_PER_INPUT)
    flat = s.x.reshape(n, -1)
    base_x = digits.model_input(s.origin).reshape(n, -1)
    to_own = np.linalg.norm(flat - base_x, axis=1)
    rng = np.random.default_rng(0)
    pairs = rng.integers(0, len(digits), (500, 2))
    data = digits.model_input().reshape(len(digits), -1)
    between = np.linalg.norm(data[pairs[:, 0]] - data[pairs[:, 1]], axis=1)
    # Perturbations sit much closer to their own input than data points to each other.
    assert np.median(to_own) < 0.6 * np.median(between)
    # Each explained input is queried unperturbed once, then perturbed.
    first = [np.flatnonzero(s.origin == b)[0] for b in bases]
    np.testing.assert_array_equal(flat[first], digits.model_input(bases).reshape(len(bases), -1))
    assert (to_own > 0).mean() > 0.9
    # Bursty: large requests, fast.
    assert max(len(x) for _, _, x in s.requests()) == 64


def test_occlusion_and_lime_perturbations() -> None:
    x = np.full((1, 8, 8), 0.5, dtype=np.float32)
    x[0, :4] = 1.0
    occl = occlusion_windows(x)
    assert occl.shape == (49, 1, 8, 8)  # 2x2 windows, stride 1
    assert np.all((occl == 0).sum(axis=(1, 2, 3)) == 4)
    masks = lime_masks(x, 20, np.random.default_rng(0))
    assert masks.shape == (20, 1, 8, 8)
    # Hidden superpixels (2x2 here) take their own mean, so values stay in the input's set.
    assert set(np.unique(masks).tolist()) <= {0.5, 1.0}
    rgb = np.random.default_rng(1).random((3, 12, 12), dtype=np.float32)
    m = lime_masks(rgb, 5, np.random.default_rng(0))
    assert m.shape == (5, 3, 12, 12)
    # All channels of a pixel are hidden together.
    changed = m != rgb[None]
    assert np.array_equal(changed.any(axis=1), changed.all(axis=1))


def test_tables_are_supported() -> None:
    rng = np.random.default_rng(0)
    ds = make_dataset(rng.normal(size=(50, 20)).astype(np.float32), np.arange(50) % 2)
    s = benign_stream(ds, "explainer", n_queries=120, seed=0)
    assert s.x.shape == (120, 20)
    assert occlusion_windows(ds.model_input()[0]).shape == (8, 20)  # width 5, stride 2


def test_merge_interleaves_by_time(digits: Dataset) -> None:
    a = benign_stream(digits, "ordinary", n_queries=50, seed=0, client_id="a")
    b = benign_stream(digits, "batch-scorer", n_queries=300, seed=0, client_id="b", start=3.0)
    m = QueryStream.merge([a, b])
    assert len(m) == 350 and np.all(np.diff(m.t) >= 0)
    assert m.per_client() == {"a": 50, "b": 300}
    reqs = list(m.requests())
    assert len(reqs) == len(np.unique(a.request)) + len(np.unique(b.request))
    for r in np.unique(m.request):  # ids stay distinct: no request mixes two clients
        assert len(set(m.client_id[m.request == r].tolist())) == 1


def test_validation(digits: Dataset) -> None:
    with pytest.raises(InputError, match="unknown benign kind"):
        benign_stream(digits, "scraper", n_queries=10)
    with pytest.raises(InputError, match="at least 1"):
        benign_stream(digits, "ordinary", n_queries=0)
    with pytest.raises(InputError, match="client id"):
        benign_stream(digits, "ordinary", n_queries=5, client_id="")
    s = benign_stream(digits, "ordinary", n_queries=5)
    with pytest.raises(InputError, match="non-decreasing"):
        QueryStream(s.x, s.client_id, s.t[::-1].copy(), s.request, s.origin)
    with pytest.raises(InputError, match="shape"):
        QueryStream(s.x, s.client_id[:3], s.t, s.request, s.origin)
    with pytest.raises(InputError, match="nothing to merge"):
        QueryStream.merge([])
