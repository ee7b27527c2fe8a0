"""The shared input space: one embedding and one neighbour search per scan."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.neighbors import NearestNeighbors

import tripwire.detectors.input_space as input_space
from tripwire.detectors import DetectorInput
from tripwire.detectors.input_space import (
    SHARED_NEIGHBOURS,
    InputSpace,
    group_spread,
    input_embedding,
    label_disagreement,
    neighbours_among,
    other_class_confirmation,
    without_self,
)
from tripwire.detectors.oos import knn_label_probabilities, space_label_probabilities
from tripwire.errors import InputError
from tripwire.io import make_dataset


def _digits() -> tuple[np.ndarray, np.ndarray]:
    d = load_digits()
    x = (d.images[:600] / 16.0).astype(np.float32)[:, None]  # (N, 1, 8, 8)
    return x, d.target[:600].astype(np.int64)


def test_neighbours_match_a_direct_search_and_are_searched_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    x, _ = _digits()
    calls: list[int] = []

    class Counting(NearestNeighbors):  # type: ignore[misc]
        def kneighbors(self, *a, **kw):  # type: ignore[no-untyped-def]
            calls.append(1)
            return super().kneighbors(*a, **kw)

    monkeypatch.setattr(input_space, "NearestNeighbors", Counting)
    space = InputSpace(x)
    emb = input_embedding(x)
    np.testing.assert_allclose(space.embedding(), emb, rtol=1e-5, atol=1e-5)
    assert space.inputs is None  # the pixels are released once embedded
    d6, i6 = space.neighbours(6)
    dd, ii = NearestNeighbors(n_neighbors=6).fit(emb).kneighbors(emb)
    np.testing.assert_allclose(d6, dd, rtol=1e-4, atol=1e-4)
    assert np.mean(i6 == ii) > 0.99  # ties may order differently
    d81, _ = space.neighbours(SHARED_NEIGHBOURS)
    assert d81.shape == (600, SHARED_NEIGHBOURS) and np.all(np.diff(d81, axis=1) >= 0)
    assert len(calls) == 1  # every width up to SHARED_NEIGHBOURS from the one search
    space.neighbours(SHARED_NEIGHBOURS + 5)
    assert len(calls) == 2 and space.neighbours(10_000)[1].shape == (600, 600)
    with pytest.raises(InputError):
        space.neighbours(0)


def test_label_frequencies_from_the_shared_graph_equal_a_fresh_search() -> None:
    x, y = _digits()
    fresh = knn_label_probabilities(input_embedding(x), y, k=10)
    shared = space_label_probabilities(InputSpace(x), y, k=10)
    assert np.mean(np.all(np.isclose(fresh, shared), axis=1)) > 0.99
    with pytest.raises(InputError):
        space_label_probabilities(InputSpace(x[:10]), y)


def test_without_self_drops_the_item_or_else_the_farthest() -> None:
    dist = np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 2.0]])
    idx = np.array([[0, 5, 7], [5, 0, 8]])  # row 1 (item 1): a duplicate hides it
    d, i = without_self(dist, idx, 0, 2)
    assert i.tolist() == [[5, 7], [5, 0]] and d.shape == (2, 2)


def test_detector_input_serves_the_shared_space_or_builds_one() -> None:
    x, y = _digits()
    ds = make_dataset((x[:, 0] * 255).astype(np.uint8), y)
    shared = InputSpace(ds.model_input())
    assert DetectorInput(labels=y, data=ds, input_space=shared).space() is shared
    own = DetectorInput(labels=y, data=ds).space()
    assert own is not shared and len(own) == len(ds)
    with pytest.raises(InputError, match="shared input space"):
        DetectorInput(labels=y, data=ds, input_space=InputSpace(x[:5])).space()
    with pytest.raises(InputError, match="raw data"):
        DetectorInput(labels=y).space()
    with pytest.raises(InputError):
        InputSpace(np.zeros(3))


def test_other_class_confirmation_asks_the_unflagged_neighbours() -> None:
    x, y = _digits()
    flipped = y.copy()
    flipped[:30] = (y[:30] + 1) % 10
    space = InputSpace(x)
    dis = label_disagreement(space, flipped)
    assert dis.shape == (600,) and dis.min() >= 0.0 and dis.max() <= 1.0
    confirm = other_class_confirmation(space, flipped)
    assert confirm is not None
    cand = np.zeros(600, dtype=bool)
    cand[:60] = True  # 30 flips and 30 clean items
    ok = confirm(cand)
    assert ok[:30].mean() > 0.9 and ok[30:60].mean() < 0.1 and not ok[60:].any()
    # Poisons that are each other's nearest inputs (a shared blended trigger) under
    # the target label: alone they vouch for each other, the unflagged items do not.
    copies = np.concatenate([x, np.repeat(x[:1] * 0.5 + 0.5, 40, axis=0)])
    labels = np.concatenate([y, np.full(40, (y[0] + 1) % 10)])
    near = InputSpace(copies)
    assert label_disagreement(near, labels)[600:].max() == 0.0
    marked = np.zeros(640, dtype=bool)
    marked[600:] = True
    check = other_class_confirmation(near, labels)
    assert check is not None and check(marked)[600:].all()
    # Labels the inputs cannot predict: no evidence either way.
    rng = np.random.default_rng(0)
    assert other_class_confirmation(space, rng.integers(0, 10, 600)) is None
    with pytest.raises(InputError):
        label_disagreement(space, y[:10])


def test_neighbours_among_members_equal_a_search_among_the_members_alone() -> None:
    """From the shared graph where it holds enough members, by an exact search where it
    does not (a tight cluster of non-members): the same answer either way."""
    x, _ = _digits()
    rng = np.random.default_rng(0)
    # 60 non-members scattered, plus 90 non-members crowded together (each other's
    # nearest items, as a blended trigger's poisons are): those rows need the fallback.
    x = x.copy()
    crowd = np.arange(100, 190)
    x[crowd] = x[100] + rng.normal(0.0, 1e-3, x[crowd].shape).astype(np.float32)
    members = np.ones(len(x), dtype=bool)
    members[rng.choice(np.setdiff1d(np.arange(len(x)), crowd), 60, replace=False)] = False
    members[crowd] = False
    space = InputSpace(x)
    emb = space.embedding()
    query = np.arange(len(x))
    got = neighbours_among(space, members, query, 10)
    pool = np.flatnonzero(members)
    _, want = NearestNeighbors(n_neighbors=11).fit(emb[pool]).kneighbors(emb)
    want = pool[want]
    for q in query:
        expected = [j for j in want[q] if j != q][:10]
        assert set(got[q]) == set(expected), q  # ties may order differently
        assert q not in got[q] and members[got[q]].all()
    _, graph = space.neighbours(SHARED_NEIGHBOURS)
    crowded_rows = members[graph[crowd]].sum(axis=1) < 10
    assert crowded_rows.any()  # the fallback path really ran
    with pytest.raises(InputError):
        neighbours_among(space, np.zeros(len(x), dtype=bool), query[:3], 10)


def test_embed_places_other_inputs_in_the_same_embedding() -> None:
    x, _ = _digits()
    space = InputSpace(x[:400], random_state=0)
    emb = space.embedding()
    # The space's own items land where the space put them; others by the same projection.
    np.testing.assert_allclose(space.embed(x[:400]), emb, atol=1e-4)
    other = space.embed(x[400:])
    assert other.shape == (200, emb.shape[1])
    with pytest.raises(InputError, match="do not match"):
        space.embed(np.zeros((3, 1, 9, 9), np.float32))


def test_group_spread_tells_near_copies_from_a_draw_of_the_class() -> None:
    """Frames of one track (a few source images, each copied with a little noise) are
    far tighter than the rest of their class; a random draw of the class is not, and a
    group that a blended pattern (alpha 0.3) pulled together is only as much tighter as
    the blend shrinks it."""
    rng = np.random.default_rng(0)
    images, labels = load_digits(return_X_y=True)
    x = (images / 16.0).astype(np.float32)
    y = labels.copy()
    cls = np.flatnonzero(y == 3)
    # Twelve source images, five frames each, replacing 60 of class 3's items.
    track = cls[:60]
    sources = x[cls[60:72]]
    x[track] = np.repeat(sources, 5, axis=0) + rng.normal(0, 0.02, (60, 64)).astype(np.float32)
    blended = np.zeros(len(y), bool)
    blended[np.flatnonzero(y == 7)[:60]] = True
    x[blended] = 0.7 * x[blended] + 0.3 * rng.random(64, dtype=np.float32)
    space = InputSpace(x, random_state=0)
    spread = group_spread(space, y, random_state=0)
    tracks = np.zeros(len(y), bool)
    tracks[track] = True
    drawn = np.zeros(len(y), bool)
    drawn[rng.choice(np.flatnonzero(y == 5), 60, replace=False)] = True
    assert spread(tracks) < 0.3
    assert 0.7 < spread(drawn) < 1.4
    assert 0.55 < spread(blended) < 0.9
    # The same group asked twice gets the same answer.
    assert spread(drawn) == spread(drawn)
    # Too few items to tell, a group across classes, a mask of the wrong length.
    two = np.zeros(len(y), bool)
    two[np.flatnonzero(y == 5)[:2]] = True
    assert np.isnan(spread(two))
    mixed = two.copy()
    mixed[np.flatnonzero(y == 6)[0]] = True
    with pytest.raises(InputError, match="one class"):
        spread(mixed)
    with pytest.raises(InputError):
        spread(tracks[:-1])
    with pytest.raises(InputError):
        group_spread(space, y[:-1])
