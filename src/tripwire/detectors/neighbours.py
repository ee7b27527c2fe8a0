"""Every item's ``k`` nearest items, exactly, without an all-pairs search.

The scan asks two all-items neighbour questions of large sets: the input-space graph
(:class:`~tripwire.detectors.input_space.InputSpace`) and ``knn-label``'s search in
the model's feature space. Brute force compares every pair: on 60,000 MNIST items that
is 3.6e9 distances and 8-12 s on 2 CPU cores each, more than the forward pass that
made the features.

:func:`nearest_neighbours` searches by cells instead (an inverted file): k-means
centroids cut the items into Voronoi cells, each item is compared with the members of
the ``n_probe`` cells whose centroids are nearest to it, and then with the members of
every other cell that could still hold a nearer item. That second pass makes the search
exact, not approximate: an item ``m`` of cell ``c`` is at least as close to centroid
``c`` as to the query's home centroid ``h``, so it lies beyond the bisecting hyperplane
of ``c`` and ``h``, and ``|q - m| >= (|q - c|^2 - |q - h|^2) / (2 |c - h|)``. A cell
whose bound (or its centroid distance less its radius) is at least the query's
``k``-th distance found so far cannot improve it and is skipped; all others are
searched. On features of a trained network the items sit in tight class clusters and
about a tenth of all pairs are compared (``knn-label`` on full MNIST: 5.5x faster than
all pairs). Pooled pixels are spread too evenly for the bound to prune (41% of the
pairs for 11 neighbours on MNIST), so the input-space graph stays an all-pairs search,
and the search falls back to one by itself where :data:`BRUTE_SHARE` of the pairs
would be needed.

Every comparison of a block of rows with a cell is made first in float32, as lower
bounds of the squared distances (the float32 products less a bound on their rounding
error). Most of the certificate's blocks hold nothing nearer (on full MNIST features,
1.6% of the row-cell blocks hold a nearer item): their rows are screened on the items'
top :data:`SCREEN_DIMS` principal coordinates first (a distance in a subspace never
exceeds the full one), then on all coordinates, and a row whose bounds all stay at or
beyond its current ``k``-th distance is left as it is. For the others the bounds pick
the candidates: the members at or below a cut that at least ``k`` members' upper
bounds reach, about a dozen per row, which alone are measured in float64. A row-wise
selection over a whole cell would cost ten times the block's product; the cut needs
only the minima of groups of members. The screens and the cut do not change the
answer (full MNIST's features: 2.3 s -> 1.5 s with the screens, session 20; 2.4-2.9 s
-> 1.9-2.2 s with the cut and a parallel last pass, session 30, on a slower day of this
machine; docs/benchmarks.md).

The answer is what ``NearestNeighbors(n_neighbors=k).fit(x).kneighbors(x)`` returns
(each item normally first, at distance 0), up to the order of equal distances, which
here is by position. Distances are recomputed from the coordinates at the end, so an
exact copy is at distance exactly 0.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import numpy.typing as npt
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.neighbors import NearestNeighbors
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from tripwire.detectors.parallel import worker_count
from tripwire.detectors.projection import top_directions
from tripwire.errors import InputError

#: Below this many items the all-pairs search is cheap enough and used as it is.
EXACT_BELOW = 20_000
#: Cells nearest to an item searched before the certificate (the first pass).
N_PROBE = 2
#: Items per cell aimed at: cells of a few hundred keep each block product efficient.
ITEMS_PER_CELL = 470
#: Share of all pairs above which the certificate's pass costs more than brute force.
BRUTE_SHARE = 0.3
#: Rows of one block of distances (bounds memory to ``ROWS x cell size`` floats).
BLOCK_ROWS = 4096
#: Principal coordinates of the first, cheaper screen (see :class:`_Screen`).
SCREEN_DIMS = 32
#: Rounding bound per coordinate: a float32 squared distance over ``d`` coordinates
#: errs by at most about ``2 (d + 3) 2**-24`` of ``|q|^2 + |m|^2``; twice that.
SCREEN_RTOL_PER_DIM = 2.4e-7
#: Distances per screening block (float32: 1 MB, within a core's L2 cache).
SCREEN_BLOCK = 1 << 18


def nearest_neighbours(
    x: npt.ArrayLike,
    k: int,
    *,
    random_state: int = 0,
    exact_below: int = EXACT_BELOW,
    n_cells: int | None = None,
    n_probe: int = N_PROBE,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Distances and positions of each row's ``k`` nearest rows of ``x``, itself
    included, nearest first: both ``(N, k)``.

    Parameters
    ----------
    x
        ``(N, D)`` rows.
    k
        Neighbours per row, at most ``N``.
    random_state
        Seed of the cells' k-means (the answer does not depend on it; the time does).
    exact_below
        Sets smaller than this are searched pair by pair (scikit-learn).
    n_cells
        Cells of the search; default about one per :data:`ITEMS_PER_CELL` items.
    n_probe
        Nearest cells searched for every row before the exactness certificate.

    Raises
    ------
    InputError
        ``x`` not 2-D, not finite, or ``k`` outside ``[1, N]``.
    """
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise InputError(f"needs (N, D) rows, not shape {arr.shape}", "neighbours")
    n = len(arr)
    if not 1 <= k <= n:
        raise InputError(f"k must lie in [1, {n}], got {k}", "neighbours")
    if not np.isfinite(arr).all():
        raise InputError("rows must be finite", "neighbours")
    cells = n_cells if n_cells is not None else n // ITEMS_PER_CELL
    if n < exact_below or cells < 2:
        return _brute(arr, k)
    return _cell_search(arr, k, min(cells, n), max(1, n_probe), random_state)


def _cell_search(
    raw: npt.NDArray[np.float64], k: int, n_cells: int, n_probe: int, random_state: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    # Centred: |q|^2 + |m|^2 - 2 q.m then cancels far less where the items sit far
    # from the origin (a translation keeps every distance).
    x = raw - raw.mean(axis=0)
    n = len(x)
    rng = np.random.default_rng(random_state)
    # Centroids from a sample: the cells only need to be compact, not optimal.
    sample = x[rng.choice(n, min(n, 40 * n_cells), replace=False)]
    with warnings.catch_warnings():
        # Fewer distinct rows than cells leaves some cells empty; the search allows it.
        warnings.simplefilter("ignore", ConvergenceWarning)
        km = KMeans(n_cells, n_init=1, max_iter=20, random_state=random_state).fit(sample)
    cent = np.asarray(km.cluster_centers_, dtype=np.float64)
    sq = np.einsum("ij,ij->i", x, x)
    n_probe = min(n_probe, n_cells)
    home = np.empty(n, dtype=np.int64)
    first = np.empty((n, n_probe), dtype=np.int64)  # each row's nearest cells
    radius = np.zeros(n_cells)
    for start, d in _to_centroids(x, sq, cent):
        block = np.arange(start, start + len(d))
        home[block] = d.argmin(axis=1)
        np.maximum.at(radius, home[block], np.sqrt(d[np.arange(len(d)), home[block]]))
        first[block] = np.argpartition(d, n_probe - 1, axis=1)[:, :n_probe]
    members = _groups(home, n_cells)
    other = first != home[:, None]
    best_d = np.full((n, k), np.inf)
    best_i = np.full((n, k), -1, dtype=np.int64)
    screen = _Screen(x, sq)
    if not screen.finite():
        # Coordinates beyond float32's range: no bounds to search by.
        return _brute(raw, k)
    prescreen = False

    def search(rows: npt.NDArray[np.int64], cells: npt.NDArray[np.int64]) -> None:
        _search(x, sq, members, rows, cells, best_d, best_i, screen, prescreen)

    # Home cells first: every row then has a k-th distance that rules out other cells.
    _in_parallel(search, np.arange(n), home)
    _in_parallel(search, np.nonzero(other)[0], first[other])

    # The certificate: cells that could still hold a nearer item than the k-th found.
    cc = np.sqrt(_squared(cent, np.einsum("ij,ij->i", cent, cent), cent))
    sizes = np.array([len(m) for m in members])
    kth = np.sqrt(np.maximum(best_d[:, -1], 0.0))
    rows, cells = [], []
    for start, d in _to_centroids(x, sq, cent):
        block = np.arange(start, start + len(d))
        h = home[block]
        gap = 2.0 * cc[h]
        gap[np.arange(len(d)), h] = np.inf  # the home cell is always probed
        # Two coinciding centroids (duplicates in the sample) bound nothing: searched.
        bound = np.divide(
            d - d[np.arange(len(d)), h][:, None], gap, out=np.full_like(d, -np.inf), where=gap > 0
        )
        # ... and no member of a cell is nearer than its centroid less its radius.
        bound = np.maximum(bound, np.sqrt(d) - radius[None, :])
        # Slack for rounding in the squared distances: a borderline cell is searched.
        more = bound <= kth[block, None] * (1 + 1e-6) + 1e-9
        more[np.arange(len(d))[:, None], first[block]] = False  # searched already
        more[:, sizes == 0] = False
        r, c = np.nonzero(more)
        rows.append(block[r])
        cells.append(c)
    more_rows, more_cells = np.concatenate(rows), np.concatenate(cells)
    if sizes[more_cells].sum() > BRUTE_SHARE * float(n) * n:
        # Cells that do not prune (items spread evenly, as raw pixels are): the
        # all-pairs search is the cheaper way to the same answer.
        return _brute(raw, k)
    # Most of these blocks hold nothing nearer: the principal coordinates rule them out.
    prescreen = True
    _in_parallel(search, more_rows, more_cells)
    return _exact_order(raw, best_i)


def _brute(
    x: npt.NDArray[np.float64], k: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    dist, idx = NearestNeighbors(n_neighbors=k).fit(x).kneighbors(x)
    return np.asarray(dist, dtype=np.float64), np.asarray(idx, dtype=np.int64)


def _to_centroids(
    x: npt.NDArray[np.float64], sq: npt.NDArray[np.float64], cent: npt.NDArray[np.float64]
) -> Iterator[tuple[int, npt.NDArray[np.float64]]]:
    """Blocks of rows' squared distances to the centroids (memory: a block, not N x C)."""
    for start in range(0, len(x), BLOCK_ROWS):
        stop = min(start + BLOCK_ROWS, len(x))
        yield start, _squared(x[start:stop], sq[start:stop], cent)


def _squared(
    x: npt.NDArray[np.float64], sq: npt.NDArray[np.float64], y: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Squared distances of rows of ``x`` (squared norms ``sq``) to rows of ``y``."""
    d = sq[:, None] - 2.0 * (x @ y.T) + np.einsum("ij,ij->i", y, y)[None, :]
    return np.asarray(np.maximum(d, 0.0), dtype=np.float64)


class _Screen:
    """Float32 copies of the (centred) items: all coordinates (``full``), and the top
    :data:`SCREEN_DIMS` principal ones (``low``, where there are more than twice as
    many columns), whose distances are lower bounds of the full ones (a rotation keeps
    distances, dropping coordinates can only shorten them). Each as the view, ``-2``
    times it, and the squared norms less their share of the rounding bound, so that
    ``-2 q.m + low[m] + low[q]`` never exceeds the exact squared distance."""

    def __init__(self, xc: npt.NDArray[np.float64], sq: npt.NDArray[np.float64]) -> None:
        self.full = _screen_copy(xc)  # the rows come centred, ``sq`` their squared norms
        # Each row's share of the rounding width: an upper bound of a squared distance
        # exceeds the lower bound by at most the two rows' shares.
        # (The float32 norms the bounds use differ from these by far less than 1e-6.)
        rtol = SCREEN_RTOL_PER_DIM * (xc.shape[1] + 8) * (1.0 + 1e-6)
        self._share = np.asarray(2.0 * rtol * sq, dtype=np.float64)
        self.low: tuple[npt.NDArray[np.float32], ...] | None = None
        if xc.shape[1] > 2 * SCREEN_DIMS:
            # Any orthonormal directions give lower bounds; a sample's principal ones
            # make them tight where the items spread most.
            comps = top_directions(xc[:: max(1, len(xc) // 4096)], SCREEN_DIMS)
            self.low = _screen_copy(xc @ comps.T)

    def finite(self) -> bool:
        """Whether every float32 copy (and so every bound) is finite."""
        copies = [self.full] if self.low is None else [self.full, self.low]
        return all(bool(np.isfinite(a).all()) for copy in copies for a in copy)

    def width(self, mem: npt.NDArray[np.int64]) -> float:
        """The largest share of the rounding width among the rows ``mem``."""
        return float(self._share[mem].max())

    def width_of(self, q: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        """Each row's share of the rounding width."""
        return np.asarray(self._share[q], dtype=np.float64)


def _screen_copy(z: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float32], ...]:
    view = np.ascontiguousarray(z, dtype=np.float32)
    vsq = np.einsum("ij,ij->i", view, view)
    rtol = np.float32(SCREEN_RTOL_PER_DIM * (z.shape[1] + 8))
    return view, np.float32(-2.0) * view, vsq * (np.float32(1.0) - rtol)


def _bounds(
    copy: tuple[npt.NDArray[np.float32], ...], q: npt.NDArray[np.int64], mem: npt.NDArray[np.int64]
) -> npt.NDArray[np.float32]:
    """``(len(q), len(mem))`` lower bounds of the squared distances, less ``low[q]``
    (the same along a row): add a row's ``low[q]`` for the bound itself."""
    view, neg2, low = copy
    d = neg2[q] @ view[mem].T
    d += low[mem][None, :]
    return np.asarray(d, dtype=np.float32)


def _groups(cell: npt.NDArray[np.int64], n_cells: int) -> list[npt.NDArray[np.int64]]:
    """Positions ``j`` with ``cell[j] == c``, for each ``c`` in ``range(n_cells)``."""
    order = np.argsort(cell, kind="stable")
    bounds = np.searchsorted(cell[order], np.arange(n_cells + 1))
    return [order[bounds[c] : bounds[c + 1]] for c in range(n_cells)]


def _in_parallel(
    search: Callable[[npt.NDArray[np.int64], npt.NDArray[np.int64]], None],
    rows: npt.NDArray[np.int64],
    cells: npt.NDArray[np.int64],
) -> None:
    """``search(rows, cells)`` (a :func:`_search`), the rows dealt out to one worker per
    core (disjoint rows, so the workers never touch the same row of the results). Each
    worker's products run on one BLAS thread: the selection and merging around them
    then use the cores too."""
    workers = worker_count(None, 8)
    if workers == 1 or len(rows) < 2 * BLOCK_ROWS:
        search(rows, cells)
        return
    part = rows % workers
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
        jobs = [pool.submit(search, rows[part == w], cells[part == w]) for w in range(workers)]
        for job in jobs:
            job.result()


def _search(
    x: npt.NDArray[np.float64],
    sq: npt.NDArray[np.float64],
    members: list[npt.NDArray[np.int64]],
    rows: npt.NDArray[np.int64],
    cells: npt.NDArray[np.int64],
    best_d: npt.NDArray[np.float64],
    best_i: npt.NDArray[np.int64],
    screen: _Screen,
    prescreen: bool = False,
) -> None:
    """Compare row ``rows[j]`` with the members of cell ``cells[j]`` for every ``j``,
    keeping the ``k`` nearest in ``best_d`` (squared) and ``best_i`` (in place).

    A block of rows is compared with a cell in float32 (:class:`_Screen`), as lower
    bounds of the squared distances. A row's candidates are the members whose bound
    is below both its current ``k``-th distance and its **cut**: the ``k``-th smallest
    of the bounds' minima over groups of members, plus the rounding width (an upper
    bound less a lower one). At least ``k`` members (those minima) lie within the
    cut, so the new ``k``-th distance does too, and a member beyond it cannot be
    nearer: only the candidates, a dozen or so per row, are measured in float64, and
    the answer is exact. The cut needs no per-row selection over all members (a
    row-wise partition of a block costs ten times its product). With ``prescreen``
    the rows are first screened on the principal coordinates' bounds alone, a quarter
    of the cost: worth it where most blocks hold nothing nearer (the certificate's
    cells), not where most do (the probed ones).
    """
    k = best_d.shape[1]
    worst = best_d.max(axis=1)
    low_q = screen.full[2]
    for mem, pairs in zip(members, _groups(cells, len(members)), strict=True):
        queries = rows[pairs]
        if len(mem) == 0 or len(queries) == 0:
            continue
        # Groups of members whose minima give the cut: at least k of them.
        size = max(1, len(mem) // (2 * k))
        starts = np.arange(0, len(mem), size)
        width = screen.width(mem)
        whole = _compare_whole(k, x.shape[1], len(mem))
        # Blocks whose float32 bounds stay in a core's cache (the product runs twice
        # as fast there).
        step = max(1, SCREEN_BLOCK // len(mem))
        if prescreen and screen.low is not None:
            queries = queries[_may_come_nearer(screen.low, queries, mem, worst, step)]
        for start in range(0, len(queries), step):
            q = queries[start : start + step]
            bound = _bounds(screen.full, q, mem)
            room = worst[q] - low_q[q]
            near = bound.min(axis=1) <= room
            if not near.all():
                q, bound, room = q[near], bound[near], room[near]
                if len(q) == 0:
                    continue
            if whole:
                _compare_all(x, sq, mem, q, best_d, best_i, worst)
                continue
            if len(starts) > k and not np.isfinite(room).all():
                minima = np.minimum.reduceat(bound, starts, axis=1)
                cut = np.partition(minima, k - 1, axis=1)[:, k - 1] + width + screen.width_of(q)
                room = np.minimum(room, cut)
            # At or below the cut: the group minima themselves are candidates.
            r, c = np.nonzero(bound <= room[:, None])
            if len(r) == 0:
                continue
            cand = mem[c]
            d = np.einsum("ij,ij->i", x[q[r]], x[cand])
            d *= -2.0
            d += sq[cand]
            d += sq[q[r]]
            # The candidates as rows padded with infinities, merged with the kept.
            counts = np.bincount(r, minlength=len(q))
            has = np.flatnonzero(counts)
            first = np.cumsum(counts) - counts
            pad_d = np.full((len(q), int(counts.max())), np.inf)
            pad_i = np.full(pad_d.shape, -1, dtype=np.int64)
            col = np.arange(len(r)) - first[r]
            pad_d[r, col], pad_i[r, col] = d, cand
            rows_q = q[has]
            best_d[rows_q], best_i[rows_q] = _merged(
                best_d[rows_q], best_i[rows_q], pad_d[has], pad_i[has], k
            )
            worst[rows_q] = best_d[rows_q].max(axis=1)


def _compare_whole(k: int, dims: int, members: int) -> bool:
    """Whether rows are compared with every member of a cell in float64 rather than with
    their candidates. Measuring a dozen candidates per row gathers their coordinates;
    where ``k`` and the columns are many, the whole block's product and a row-wise
    partition cost less (generated sets of 22,000-30,000 rows, cells of about 470:
    16-128 columns and k = 5-11, candidates 1.2-1.4x faster; 256 columns and k = 40,
    whole cells 1.4x; ``benchmarks/probes/neighbour_search.py --path``)."""
    return k * dims >= members * (dims / 50 + 4)


def _compare_all(
    x: npt.NDArray[np.float64],
    sq: npt.NDArray[np.float64],
    mem: npt.NDArray[np.int64],
    q: npt.NDArray[np.int64],
    best_d: npt.NDArray[np.float64],
    best_i: npt.NDArray[np.int64],
    worst: npt.NDArray[np.float64],
) -> None:
    """Rows ``q`` against every member of one cell in float64, the ``k`` nearest kept
    (:func:`_search`'s blocks where that costs less than measuring candidates)."""
    k = best_d.shape[1]
    kk = min(k, len(mem))
    d = x[q] @ x[mem].T
    d *= -2.0
    d += sq[mem][None, :]
    d += sq[q][:, None]
    if kk < len(mem):
        part = np.argpartition(d, kk - 1, axis=1)[:, :kk]
        d, cand = np.take_along_axis(d, part, axis=1), mem[part]
    else:
        cand = np.broadcast_to(mem, d.shape)
    best_d[q], best_i[q] = _merged(best_d[q], best_i[q], d, cand, k)
    worst[q] = best_d[q].max(axis=1)


def _may_come_nearer(
    copy: tuple[npt.NDArray[np.float32], ...],
    q: npt.NDArray[np.int64],
    mem: npt.NDArray[np.int64],
    worst: npt.NDArray[np.float64],
    step: int,
) -> npt.NDArray[np.bool_]:
    """Rows ``q`` that some member of ``mem`` may come nearer to than their current
    ``k``-th squared distance ``worst``, by the bounds of ``copy``."""
    closest = np.empty(len(q), dtype=np.float32)
    for start in range(0, len(q), step):
        closest[start : start + step] = _bounds(copy, q[start : start + step], mem).min(axis=1)
    return np.asarray(closest < worst[q] - copy[2][q], dtype=np.bool_)


def _merged(
    old_d: npt.NDArray[np.float64],
    old_i: npt.NDArray[np.int64],
    new_d: npt.NDArray[np.float64],
    new_i: npt.NDArray[np.int64],
    k: int,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """The ``k`` smallest of each row's old and new squared distances, with positions."""
    all_d = np.concatenate([old_d, new_d], axis=1)
    all_i = np.concatenate([old_i, new_i], axis=1)
    keep = np.argpartition(all_d, k - 1, axis=1)[:, :k]
    return np.take_along_axis(all_d, keep, axis=1), np.take_along_axis(all_i, keep, axis=1)


def _exact_order(
    x: npt.NDArray[np.float64], idx: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Distances of the found neighbours from the coordinates themselves (no
    cancellation: an exact copy is at 0), rows sorted by distance, then position."""
    n, k = idx.shape
    dist = np.empty((n, k))
    rows = max(1, BLOCK_ROWS * 64 // max(k * x.shape[1], 1))

    def measure(starts: range) -> None:
        for start in starts:
            block = idx[start : start + rows]
            diff = x[block] - x[start : start + rows, None, :]
            dist[start : start + rows] = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))

    # Gathers and sums outside BLAS, which release the GIL: one share per core.
    starts = range(0, n, rows)
    workers = worker_count(None, len(starts))
    with ThreadPoolExecutor(workers) as pool:
        for job in [pool.submit(measure, starts[w::workers]) for w in range(workers)]:
            job.result()
    order = np.lexsort((idx, dist), axis=1)
    return np.take_along_axis(dist, order, axis=1), np.take_along_axis(idx, order, axis=1)
