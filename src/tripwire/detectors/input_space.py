"""The inputs' own geometry, computed once per scan and shared by the checks that read it.

Several data checks ask what a sample looks like *as an input*, apart from what the
(possibly poisoned) model learned: the label checks' neighbour view
(:func:`~tripwire.detectors.oos.label_probabilities`), ``dual-space``,
``duplicate-labels`` and ``perturbation-consistency``'s confirmation. They all read the
same small embedding (average-pooled pixels, then PCA) and three of them the same
all-items nearest-neighbour search over it. Built separately, on 60,000 MNIST images
that cost about 3 s per embedding and 13 s per search (2 CPU cores), four and three
times over. A scan builds one :class:`InputSpace` and hands it to every detector through
:attr:`~tripwire.detectors.base.DetectorInput.input_space`; a detector run alone builds
its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors

from tripwire.errors import InputError

#: Largest side (pixels) the inputs are pooled to before the input-space embedding:
#: pooling blurs small patch triggers away and bounds the neighbour search.
MAX_POOLED_SIDE = 14
#: Neighbours (self included) the shared search keeps per item: wide enough that the
#: "nearest items outside a set" questions (``dual-space``'s own cluster, the flagged
#: items) are mostly answered from it (:func:`neighbours_among` searches only the rest);
#: fewer are served as a prefix. Widening it costs little (13.5 s for 11, 15.4 s for 81
#: on 60,000 items).
SHARED_NEIGHBOURS = 81
#: An item "looks like another class" when more than this share of its nearest other
#: items in input space carry another label (dual-space and perturbation-consistency
#: confirm with the same share).
LOOKS_OTHER_SHARE = 0.5

#: The gates a group of one class's items must pass to stand as a foreign
#: sub-population (the ensemble's feature-cluster groups, ``input-pattern``'s
#: dirty-label sets): at least this share of its class ...
MIN_GROUP_SHARE = 0.05
#: ... at least this share of it looking like another class as inputs ...
MIN_GROUP_LOOKS_OTHER = 0.8
#: ... and at least this spread against random draws of its class (:func:`group_spread`;
#: a group of near-copies, one video track's frames, scores far below 1).
MIN_GROUP_SPREAD = 0.5


#: Components of the input-space embedding's PCA.
EMBEDDING_COMPONENTS = 40


def pooled_rows(x: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.float32]:
    """Images average-pooled to at most :data:`MAX_POOLED_SIDE` pixels a side and
    flattened, ``(N, D)`` rows as they are."""
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim == 4:
        n, c, h, w = arr.shape
        f = max(1, int(np.ceil(max(h, w) / MAX_POOLED_SIDE)))
        hh, ww = (h // f) * f, (w // f) * f
        arr = arr[:, :, :hh, :ww].reshape(n, c, hh // f, f, ww // f, f).mean(axis=(3, 5))
    return arr.reshape(arr.shape[0], -1)


def _embedding_and_pca(
    x: npt.NDArray[np.floating[Any]], n_components: int, random_state: int
) -> tuple[npt.NDArray[np.float32], PCA | None]:
    flat = pooled_rows(x)
    k = min(n_components, flat.shape[1], flat.shape[0])
    if k >= flat.shape[1]:
        return flat, None
    pca = PCA(k, random_state=random_state)
    return np.asarray(pca.fit_transform(flat), dtype=np.float32), pca


def input_embedding(
    x: npt.NDArray[np.floating[Any]],
    n_components: int = EMBEDDING_COMPONENTS,
    random_state: int = 0,
) -> npt.NDArray[np.float32]:
    """A small input-space embedding: average-pool images, flatten, PCA.

    ``x`` is ``(N, C, H, W)`` in [0, 1] or ``(N, D)``.
    """
    return _embedding_and_pca(x, n_components, random_state)[0]


@dataclass(eq=False)
class InputSpace:
    """One dataset's input-space embedding and neighbour graph, each built on first use.

    Parameters
    ----------
    inputs
        ``(N, C, H, W)`` images in [0, 1] or ``(N, D)`` rows (a dataset's model input).
    random_state
        Seed of the embedding's PCA.
    """

    inputs: npt.NDArray[np.floating[Any]] | None = field(repr=False)
    random_state: int = 0
    _n: int = field(default=0, init=False, repr=False)
    _embedding: npt.NDArray[np.float32] | None = field(default=None, init=False, repr=False)
    _dist: npt.NDArray[np.float32] | None = field(default=None, init=False, repr=False)
    _idx: npt.NDArray[np.int64] | None = field(default=None, init=False, repr=False)
    _pca: PCA | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.inputs is None or np.ndim(self.inputs) < 2:
            raise InputError("needs (N, ...) inputs", "input space")
        self._n = int(np.shape(self.inputs)[0])

    def __len__(self) -> int:
        return self._n

    @classmethod
    def from_embedding(
        cls, embedding: npt.NDArray[np.floating[Any]], random_state: int = 0
    ) -> InputSpace:
        """A space over an embedding the caller already has (used as it is)."""
        arr = np.asarray(embedding, dtype=np.float32)
        if arr.ndim != 2:
            raise InputError(f"needs an (N, D) embedding, not {arr.shape}", "input space")
        space = cls(arr, random_state=random_state)
        space._embedding, space.inputs = arr, None
        return space

    def embedding(self) -> npt.NDArray[np.float32]:
        """The ``(N, <=40)`` embedding (:func:`input_embedding`). The inputs are released
        once it exists (a float32 copy of the data is the largest thing a scan holds)."""
        if self._embedding is None:
            if self.inputs is None:  # pragma: no cover - released only after embedding
                raise RuntimeError("input space lost its inputs")
            self._embedding, self._pca = _embedding_and_pca(
                self.inputs, EMBEDDING_COMPONENTS, random_state=self.random_state
            )
            self.inputs = None
        return self._embedding

    def embed(self, other: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.float32]:
        """Other inputs of the same shape (a trusted set) placed in this space's
        embedding: pooled and projected as this space's items were, not refitted."""
        emb = self.embedding()
        flat = pooled_rows(other)
        if flat.shape[1] != (emb.shape[1] if self._pca is None else self._pca.n_features_in_):
            raise InputError(
                f"inputs of shape {np.shape(other)[1:]} do not match this input space",
                "input space",
            )
        if self._pca is None:
            return flat
        return np.asarray(self._pca.transform(flat), dtype=np.float32)

    def neighbours(self, k: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """Distances and positions of every item's ``k`` nearest items, itself included,
        nearest first (what ``NearestNeighbors(k).fit(e).kneighbors(e)`` returns);
        ``k`` is capped at ``N``. Searched once, for at least :data:`SHARED_NEIGHBOURS`."""
        if k < 1:
            raise InputError("needs at least one neighbour", "input space")
        n = len(self)
        k = min(k, n)
        if self._idx is None or self._idx.shape[1] < k:
            emb = self.embedding()
            width = min(n, max(k, SHARED_NEIGHBOURS))
            dist, idx = NearestNeighbors(n_neighbors=width).fit(emb).kneighbors(emb)
            self._dist = np.asarray(dist, dtype=np.float32)
            self._idx = np.asarray(idx, dtype=np.int64)
        if self._dist is None:  # pragma: no cover - set together with _idx
            raise RuntimeError("neighbour graph lost its distances")
        return self._dist[:, :k], self._idx[:, :k]


def without_self(
    dist: npt.NDArray[Any],
    idx: npt.NDArray[np.int64],
    start: int | npt.NDArray[np.int64],
    k: int,
) -> tuple[npt.NDArray[Any], npt.NDArray[np.int64]]:
    """From ``k + 1`` neighbours of items ``start, start + 1, ...`` (or of the items at
    the positions ``start`` lists), the ``k`` nearest others: each row drops its item,
    or its farthest neighbour where the item is not in its list."""
    m = idx.shape[0]
    items = np.arange(start, start + m) if isinstance(start, int) else np.asarray(start)
    keep = idx[:, : k + 1] != items[:, None]
    # An exact duplicate can push an item out of its own list: drop the farthest.
    keep[keep.all(axis=1), -1] = False
    return dist[:, : k + 1][keep].reshape(m, k), idx[:, : k + 1][keep].reshape(m, k)


def neighbour_labels(
    space: InputSpace, labels: npt.ArrayLike, k: int = 10
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The labels as integers, and the labels of each item's ``k`` nearest other items
    in input space (``(N, min(k, N - 1))``, nearest first), from the shared graph.

    Raises
    ------
    InputError
        Fewer than two items, or not one label per item.
    """
    y = np.asarray(labels, dtype=np.int64)
    if y.shape != (len(space),) or len(y) < 2:
        raise InputError(
            f"needs at least two items and one label each ({y.shape} for {len(space)})",
            "input space",
        )
    kk = min(k, len(y) - 1)
    dist, idx = space.neighbours(kk + 1)
    _, others = without_self(dist, idx, 0, kk)
    return y, y[others]


def neighbours_among(
    space: InputSpace, members: npt.NDArray[np.bool_], query: npt.NDArray[np.int64], k: int
) -> npt.NDArray[np.int64]:
    """Positions of the ``k`` nearest **members** of each ``query`` item in input space,
    nearest first, the item itself left out: ``(len(query), k)``.

    Read from the shared graph where an item's :data:`SHARED_NEIGHBOURS` nearest items
    hold ``k`` members (the common case: the non-members are a few flagged items); the
    rows that do not (an item inside a tight cluster of non-members, as a blended
    trigger makes of its poisons) get an exact search among the members. Either way the
    answer is the search among the members alone, up to ties in distance.

    Raises
    ------
    InputError
        Fewer than ``k`` members other than a query item.
    """
    members = np.asarray(members, dtype=bool)
    q = np.asarray(query, dtype=np.int64)
    if members.shape != (len(space),):
        raise InputError(f"needs one flag per item ({members.shape})", "input space")
    if k < 1 or int(members.sum()) - 1 < k:
        raise InputError(f"needs more than {k} members to find {k} neighbours", "input space")
    out = np.empty((len(q), k), dtype=np.int64)
    if q.size == 0:
        return out
    _, idx = space.neighbours(SHARED_NEIGHBOURS)
    near = idx[q]
    ok = members[near] & (near != q[:, None])
    enough = ok.sum(axis=1) >= k
    # First k members of each row, in the graph's (nearest-first) order.
    cols = np.argsort(~ok[enough], axis=1, kind="stable")[:, :k]
    out[enough] = np.take_along_axis(near[enough], cols, axis=1)
    short = np.flatnonzero(~enough)
    if short.size:
        pool = np.flatnonzero(members)
        emb = space.embedding()
        index = NearestNeighbors(n_neighbors=k + 1).fit(emb[pool])
        dist, found = index.kneighbors(emb[q[short]], n_neighbors=k + 1)
        _, out[short] = without_self(dist, pool[found], q[short], k)
    return out


def label_disagreement(
    space: InputSpace, labels: npt.ArrayLike, k: int = 10
) -> npt.NDArray[np.float64]:
    """Share of each item's ``k`` nearest other items in input space whose label differs
    from its own."""
    y, near = neighbour_labels(space, labels, k)
    return np.asarray((near != y[:, None]).mean(axis=1), dtype=np.float64)


def other_class_confirmation(
    space: InputSpace, labels: npt.NDArray[np.int64], k: int = 10
) -> Callable[[npt.NDArray[np.bool_]], npt.NDArray[np.bool_]] | None:
    """A check that flagged items look like another class as inputs, or None where the
    inputs do not predict their labels at all (the median item's neighbours disagree
    with it at least half the time, as pooled pixels of natural colour images can).

    The returned function takes a boolean mask of candidates and returns which of them
    have more than :data:`LOOKS_OTHER_SHARE` of their ``k`` nearest input-space
    neighbours **among the non-candidates** carrying another label. Candidates cannot
    vouch for each other: a blended or warped trigger makes its poisons each other's
    nearest neighbours, all under the target's label.
    """
    y = np.asarray(labels, dtype=np.int64)
    if float(np.median(label_disagreement(space, y, k))) >= LOOKS_OTHER_SHARE:
        return None

    def confirm(candidates: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
        cand = np.flatnonzero(candidates)
        rest = np.flatnonzero(~np.asarray(candidates, dtype=bool))
        out = np.zeros(len(y), dtype=bool)
        if cand.size == 0 or rest.size <= k:
            return out
        nb = neighbours_among(space, ~np.asarray(candidates, dtype=bool), cand, k)
        out[cand] = (y[nb] != y[cand][:, None]).mean(axis=1) > LOOKS_OTHER_SHARE
        return out

    return confirm


def group_class(
    group: npt.ArrayLike, labels: npt.NDArray[Any], where: str
) -> tuple[npt.NDArray[np.bool_], Any]:
    """A group of one class's items as a mask over all items, and that class.

    Raises
    ------
    InputError
        An empty mask, not one flag per item, or items of several classes (``where``
        names the check in the message).
    """
    g = np.asarray(group, dtype=bool)
    if g.shape != labels.shape or not g.any():
        raise InputError("needs a non-empty group mask, one flag per item", where)
    classes = np.unique(labels[g])
    if classes.size != 1:
        raise InputError("a group must hold items of one class", where)
    return g, classes[0]


#: A group's spread is measured on at most this many of its items, and on as many of
#: the rest of its class per draw (the nearest-member search is exact, so bounded).
SPREAD_SAMPLE = 1000
#: Random draws from the rest of the class that a group's spread is measured against.
SPREAD_DRAWS = 5


def _nearest_median(x: npt.NDArray[np.float32]) -> float:
    """Median distance from each row of ``x`` to its nearest other row."""
    dist, _ = NearestNeighbors(n_neighbors=2).fit(x).kneighbors(x)
    return float(np.median(dist[:, 1]))


def group_spread(
    space: InputSpace,
    labels: npt.ArrayLike,
    *,
    draws: int = SPREAD_DRAWS,
    random_state: int = 0,
) -> Callable[[npt.NDArray[np.bool_]], float]:
    """How spread out a group of one class's items is in input space, against its class.

    The returned function takes a group (a mask over the items, all of one label) and
    returns the median distance from a member to its nearest other member, over the
    median of the same for ``draws`` random draws of as many items from the rest of the
    class. Both sides are taken at the same size (at most :data:`SPREAD_SAMPLE`; the
    larger side subsampled), because nearest-member distances shrink as a sample grows.
    NaN where the group or the rest of its class has fewer than three items.

    A set of near-copies (frames of one physical sign cut from a video track, as GTSRB
    is) scores far below 1: each member has a twin in the group. A group drawn from many
    unrelated source images, as a backdoor's poisons are, scores about 1 or above.

    Raises
    ------
    InputError
        Not one label per item.
    """
    y = np.asarray(labels)
    if y.shape != (len(space),):
        raise InputError(f"needs one label per item ({y.shape} for {len(space)})", "input space")
    if draws < 1:
        raise InputError("needs at least one draw", "input space")

    def spread(group: npt.NDArray[np.bool_]) -> float:
        g, cls = group_class(group, y, "input space")
        idx = np.flatnonzero(g)
        rest = np.flatnonzero((y == cls) & ~g)
        m = min(idx.size, rest.size, SPREAD_SAMPLE)
        if m < 3:
            return float("nan")
        # Seeded per group: the same group gets the same answer in any order of calls.
        rng = np.random.default_rng([random_state, int(idx[0]), idx.size])
        emb = space.embedding()
        mine = _nearest_median(emb[rng.choice(idx, m, replace=False)])
        others = np.median(
            [_nearest_median(emb[rng.choice(rest, m, replace=False)]) for _ in range(draws)]
        )
        # A class of exact copies gives no scale to measure against.
        return float(mine / others) if others > 0 else float("nan")

    return spread
