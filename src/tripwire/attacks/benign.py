"""Benign query workloads: the false-positive side of every extraction detector.

An extraction detector that flags an attacker is only useful if it leaves ordinary
clients alone, and ordinary clients are not all alike. Each generator here turns a
:class:`~tripwire.io.Dataset` into a seeded :class:`QueryStream` (model-space inputs,
client ids and simulated request times) that a gateway or benchmark can replay:

- ``ordinary``: an application scoring i.i.d. samples of the data distribution in
  small requests (1 to 8 inputs) a couple of seconds apart.
- ``batch-scorer``: an offline job scoring the data set in large requests (256 inputs)
  back to back; high volume, yet every input is in distribution.
- ``repeater``: a client that asks about the same few inputs over and over (a
  dashboard refreshing, a retry loop); low diversity but no exploration.
- ``class-sweep``: an evaluation job reading a labelled set stored class by class (per
  class folders, or a sorted sample such as the bundled MNIST one): hundreds of inputs
  of one class, then the next. Its early queries cover one class only, which a detector
  that reads low class diversity as probing must not mistake for an attack.
- ``explainer``: an explanation tool perturbing a few inputs many times: LIME-style
  random masking of superpixels (Ribeiro et al., "Why Should I Trust You?", KDD 2016),
  filled with each superpixel's mean as LIME does, and occlusion sliding windows
  (Zeiler and Fergus, "Visualizing and Understanding Convolutional Networks", ECCV
  2014). Its queries are off-distribution and dense around a few points, which is
  what naive extraction detectors (PRADA-style distance tests, Juuti et al., EuroS&P
  2019) mistake for an attack.

:class:`QueryStream` is shared with :mod:`tripwire.attacks.extraction`, whose attacks
log their queries in the same form. Time is simulated: nothing sleeps.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from tripwire.errors import InputError
from tripwire.io.dataset import Dataset

#: The benign kinds :func:`benign_stream` knows, with a one-line description each.
BENIGN_KINDS: dict[str, str] = {
    "ordinary": "i.i.d. samples of the data distribution in small requests",
    "batch-scorer": "large requests of in-distribution data, back to back",
    "repeater": "the same few inputs asked again and again",
    "class-sweep": "an evaluation job reading its data class by class",
    "explainer": "LIME masks and occlusion windows around a few inputs",
}

#: Per-kind request size range (inclusive) and mean seconds between requests.
_PACE: dict[str, tuple[int, int, float]] = {
    "ordinary": (1, 8, 2.0),
    "batch-scorer": (256, 256, 1.0),
    "repeater": (1, 4, 5.0),
    "class-sweep": (8, 32, 0.5),
    "explainer": (64, 64, 0.5),
}

#: How many distinct inputs a repeater cycles through.
REPEATER_POOL = 10
#: How many perturbed queries an explainer makes per explained input.
EXPLAINER_PER_INPUT = 200


@dataclass(frozen=True)
class QueryStream:
    """A log of queries to a model: what was asked, by whom and when.

    Attributes
    ----------
    x
        The inputs, float32 NCHW in [0, 1] (or ``(N, D)`` for tables).
    client_id
        The client each query came from, shape ``(N,)``.
    t
        Simulated send time of each query in seconds, non-decreasing.
    request
        Queries with the same value were sent in one request (one HTTP call).
    origin
        Index of the data sample a query was made from (in the generator's data set),
        or -1 for synthetic inputs.
    kind
        The workload or attack kind that produced the stream.
    """

    x: npt.NDArray[np.float32]
    client_id: npt.NDArray[np.str_]
    t: npt.NDArray[np.float64]
    request: npt.NDArray[np.int64]
    origin: npt.NDArray[np.int64]
    kind: str = ""

    def __post_init__(self) -> None:
        n = int(self.x.shape[0]) if self.x.ndim >= 1 else -1
        if self.x.ndim < 2:
            raise InputError(f"queries must be at least 2-D, got shape {self.x.shape}", "x")
        for name in ("client_id", "t", "request", "origin"):
            arr = getattr(self, name)
            if arr.shape != (n,):
                raise InputError(f"'{name}' must have shape ({n},), got {arr.shape}", name)
        if n and (not np.all(np.isfinite(self.t)) or np.any(np.diff(self.t) < 0)):
            raise InputError("query times must be finite and non-decreasing", "t")

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def clients(self) -> list[str]:
        """The distinct client ids, sorted."""
        return sorted({str(c) for c in self.client_id})

    @property
    def duration(self) -> float:
        """Seconds from the first query to the last (0 for fewer than two queries)."""
        return float(self.t[-1] - self.t[0]) if len(self) > 1 else 0.0

    def per_client(self) -> dict[str, int]:
        """Number of queries of each client."""
        ids, counts = np.unique(self.client_id, return_counts=True)
        return {str(i): int(c) for i, c in zip(ids, counts, strict=True)}

    def requests(self) -> Iterator[tuple[str, float, npt.NDArray[np.float32]]]:
        """The requests in send order: ``(client_id, t, inputs)`` per request."""
        if not len(self):
            return
        _, first, group = np.unique(self.request, return_index=True, return_inverse=True)
        # Group positions by request once (stable, so a request keeps its query order).
        order = np.argsort(group, kind="stable")
        bounds = np.concatenate([[0], np.cumsum(np.bincount(group))])
        for g in np.argsort(first, kind="stable"):
            idx = order[bounds[g] : bounds[g + 1]]
            yield str(self.client_id[idx[0]]), float(self.t[idx[0]]), self.x[idx]

    def subset(self, indices: npt.ArrayLike) -> QueryStream:
        """The queries at ``indices``, which must keep time order."""
        idx = np.asarray(indices)
        return QueryStream(
            x=self.x[idx],
            client_id=self.client_id[idx],
            t=self.t[idx],
            request=self.request[idx],
            origin=self.origin[idx],
            kind=self.kind,
        )

    @staticmethod
    def merge(streams: Sequence[QueryStream], kind: str = "mixed") -> QueryStream:
        """Interleave streams by time (stable), keeping request ids distinct.

        Raises
        ------
        InputError
            No streams, or streams whose inputs differ in shape.
        """
        if not streams:
            raise InputError("nothing to merge", "streams")
        shapes = {s.x.shape[1:] for s in streams}
        if len(shapes) > 1:
            raise InputError(f"streams have different input shapes {sorted(shapes)}", "streams")
        offsets = np.cumsum([0] + [int(s.request.max()) + 1 if len(s) else 0 for s in streams])
        t = np.concatenate([s.t for s in streams])
        order = np.argsort(t, kind="stable")
        return QueryStream(
            x=np.concatenate([s.x for s in streams])[order],
            client_id=np.concatenate([s.client_id for s in streams])[order],
            t=t[order],
            request=np.concatenate(
                [s.request + off for s, off in zip(streams, offsets[:-1], strict=True)]
            )[order],
            origin=np.concatenate([s.origin for s in streams])[order],
            kind=kind,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (no arrays)."""
        return {
            "kind": self.kind,
            "queries": len(self),
            "requests": len(np.unique(self.request)),
            "clients": self.per_client(),
            "duration_s": round(self.duration, 3),
            "input_shape": list(self.x.shape[1:]),
        }


def request_times(
    rng: np.random.Generator, n_requests: int, mean_interval: float, start: float = 0.0
) -> npt.NDArray[np.float64]:
    """Send times of ``n_requests`` requests with exponential gaps of ``mean_interval``."""
    if n_requests == 0:
        return np.zeros(0, dtype=np.float64)
    gaps = rng.exponential(mean_interval, n_requests)
    gaps[0] = 0.0
    return np.asarray(start + np.cumsum(gaps), dtype=np.float64)


def request_sizes(rng: np.random.Generator, n_queries: int, lo: int, hi: int) -> list[int]:
    """Split ``n_queries`` into request sizes drawn uniformly from ``lo..hi``."""
    sizes: list[int] = []
    left = n_queries
    while left > 0:
        k = min(left, int(rng.integers(lo, hi + 1)))
        sizes.append(k)
        left -= k
    return sizes


def benign_stream(
    ds: Dataset,
    kind: str,
    *,
    n_queries: int,
    seed: int = 0,
    client_id: str = "benign-0",
    start: float = 0.0,
) -> QueryStream:
    """A benign client's queries drawn from ``ds`` (see the module docstring).

    Parameters
    ----------
    ds
        The data the client's inputs come from (the victim's own distribution).
    kind
        One of :data:`BENIGN_KINDS`.
    n_queries
        Number of inputs to send (not requests).
    seed
        Seeds every choice, so that a stream can be regenerated exactly.
    client_id
        The id every query of the stream carries.
    start
        Simulated time of the first request, in seconds.

    Raises
    ------
    InputError
        Unknown kind, ``n_queries < 1``, an empty dataset or an empty client id.
    """
    if kind not in BENIGN_KINDS:
        raise InputError(f"unknown benign kind (choose from {', '.join(BENIGN_KINDS)})", kind)
    if n_queries < 1:
        raise InputError(f"n_queries must be at least 1, got {n_queries}", "n_queries")
    if len(ds) == 0:
        raise InputError("the dataset is empty", ds.path)
    if not client_id:
        raise InputError("the client id must not be empty", "client_id")
    rng = np.random.default_rng(seed)
    if kind == "ordinary":
        origin = rng.integers(0, len(ds), n_queries).astype(np.int64)
        x = ds.model_input(origin)
    elif kind == "batch-scorer":
        # Whole passes over the data in a fresh order each pass, as a scoring job reads it.
        passes = -(-n_queries // len(ds))
        origin = np.concatenate([rng.permutation(len(ds)) for _ in range(passes)])[:n_queries]
        origin = origin.astype(np.int64)
        x = ds.model_input(origin)
    elif kind == "repeater":
        pool = rng.choice(len(ds), min(REPEATER_POOL, len(ds)), replace=False)
        origin = pool[rng.integers(0, pool.size, n_queries)].astype(np.int64)
        x = ds.model_input(origin)
    elif kind == "class-sweep":
        origin = _class_sweep(ds.y, n_queries, rng)
        x = ds.model_input(origin)
    else:
        x, origin = _explainer_queries(ds, n_queries, rng)
    lo, hi, interval = _PACE[kind]
    sizes = request_sizes(rng, n_queries, lo, hi)
    t_req = request_times(rng, len(sizes), interval, start)
    request = np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)
    return QueryStream(
        x=np.ascontiguousarray(x, dtype=np.float32),
        client_id=np.full(n_queries, client_id),
        t=t_req[request],
        request=request,
        origin=origin,
        kind=kind,
    )


def _class_sweep(
    y: npt.NDArray[np.int64], n_queries: int, rng: np.random.Generator
) -> npt.NDArray[np.int64]:
    """Passes over the data, each class by class from a random first class (random order
    within a class), as an evaluation loop over class folders reads it."""
    classes = np.unique(y)
    out: list[npt.NDArray[np.int64]] = []
    left = n_queries
    while left > 0:
        perm = rng.permutation(len(y))
        # Rank of each sample's class in this pass's class order (rotated at random).
        rank = (np.searchsorted(classes, y[perm]) - int(rng.integers(classes.size))) % classes.size
        out.append(perm[np.argsort(rank, kind="stable")][:left].astype(np.int64))
        left -= len(out[-1])
    return np.concatenate(out)


def _explainer_queries(
    ds: Dataset, n_queries: int, rng: np.random.Generator
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Per explained input: the input itself, every occlusion window, then LIME masks."""
    n_inputs = -(-n_queries // EXPLAINER_PER_INPUT)
    bases = rng.choice(len(ds), n_inputs, replace=n_inputs > len(ds)).astype(np.int64)
    xs: list[npt.NDArray[np.float32]] = []
    origins: list[npt.NDArray[np.int64]] = []
    left = n_queries
    for b in bases:
        k = min(left, EXPLAINER_PER_INPUT)
        base = ds.model_input(np.array([b]))[0]
        occl = occlusion_windows(base)
        n_occl = min(len(occl), max(0, k - 1) // 2)
        lime = lime_masks(base, k - 1 - n_occl, rng)
        xs.append(np.concatenate([base[None], occl[:n_occl], lime])[:k])
        origins.append(np.full(k, b, dtype=np.int64))
        left -= k
    return np.concatenate(xs), np.concatenate(origins)


def _segments(spatial: tuple[int, ...], n_side: int = 4) -> npt.NDArray[np.int64]:
    """A grid of about ``n_side`` x ``n_side`` superpixels (``n_side**2`` feature groups)."""
    if len(spatial) == 2:
        h, w = spatial
        rows = np.minimum(np.arange(h) * n_side // h, n_side - 1)
        cols = np.minimum(np.arange(w) * n_side // w, n_side - 1)
        return np.asarray(rows[:, None] * n_side + cols[None, :], dtype=np.int64)
    (d,) = spatial
    groups = n_side * n_side
    return np.asarray(np.arange(d) * groups // d, dtype=np.int64)


def lime_masks(
    x: npt.NDArray[np.float32], n: int, rng: np.random.Generator
) -> npt.NDArray[np.float32]:
    """``n`` LIME-style perturbations of one input ``x`` (``(C, H, W)`` or ``(D,)``).

    Superpixels are a regular grid (LIME would use quickshift; a grid keeps this
    dependency-free and has the same statistics for a detector). Each perturbation
    hides every superpixel with probability 1/2, filling it with its mean value.
    """
    if n <= 0:
        return np.zeros((0, *x.shape), dtype=np.float32)
    image = x.ndim == 3
    seg = _segments(x.shape[1:] if image else x.shape)
    n_seg = int(seg.max()) + 1
    flat = x.reshape(x.shape[0], -1) if image else x[None, :]
    seg_flat = seg.reshape(-1)
    counts = np.maximum(np.bincount(seg_flat, minlength=n_seg), 1)
    means = np.stack([np.bincount(seg_flat, weights=ch, minlength=n_seg) / counts for ch in flat])
    fill = means[:, seg_flat].reshape(x.shape).astype(np.float32)
    keep = rng.random((n, n_seg)) < 0.5
    keep_px = keep[:, seg_flat].reshape((n, *([1] if image else []), *seg.shape))
    return np.where(keep_px, x[None], fill[None]).astype(np.float32)


def occlusion_windows(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Every occlusion of ``x`` by a zero window of a quarter of its side, stride 1/8."""
    if x.ndim == 3:
        _, h, w = x.shape
        wh, ww = max(1, h // 4), max(1, w // 4)
        sh, sw = max(1, h // 8), max(1, w // 8)
        out = []
        for r in range(0, h - wh + 1, sh):
            for c in range(0, w - ww + 1, sw):
                o = x.copy()
                o[:, r : r + wh, c : c + ww] = 0.0
                out.append(o)
        return np.stack(out).astype(np.float32)
    (d,) = x.shape
    win, stride = max(1, d // 4), max(1, d // 8)
    outs = []
    for s in range(0, d - win + 1, stride):
        o = x.copy()
        o[s : s + win] = 0.0
        outs.append(o)
    return np.stack(outs).astype(np.float32)


__all__ = [
    "BENIGN_KINDS",
    "EXPLAINER_PER_INPUT",
    "REPEATER_POOL",
    "QueryStream",
    "benign_stream",
    "lime_masks",
    "occlusion_windows",
    "request_sizes",
    "request_times",
]
