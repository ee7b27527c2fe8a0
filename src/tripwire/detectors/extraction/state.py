"""Per-client detector state: fixed-shape NumPy arrays, serialised without pickle.

Every array's shape is fixed when the state is created (by the monitor's dimensions), so
a client's state never grows: the PRADA growing set is a bounded pool, distances are a
reservoir, coverage is a bitmap, distinct inputs a k-minimum-values sketch.

Wire format (:func:`encode` / :func:`decode`): ``b"TWX1"``, a little-endian ``uint32``
header length, a JSON header ``{"fields": [[name, dtype, shape], ...]}``, then each
array's raw bytes in that order. No pickle, no code execution on load, and byte-exact
round trips.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from tripwire.errors import InputError

MAGIC = b"TWX1"

#: Slots of the ``scalars`` array, by name (float64 each).
SCALARS = (
    "n",  # samples observed
    "n_req",  # requests observed
    "t_first",
    "t_last",
    "gap_log_sum",  # sum of log(1 + gap seconds) between requests
    "ood_count",  # samples above the calibrated out-of-distribution threshold
    "ood_log_sum",  # sum of log(score / threshold), clipped to [0, 3]
    "ring_n",  # samples written to the ring of recent queries
    "top1_sum",
    "lowmargin_count",  # top-1 minus top-2 probability below the reference's 10% quantile
    "gs_used",  # filled slots of the growing-set pool
    "gs_added",  # samples PRADA added to its growing sets
    "dist_seen",  # PRADA distances seen (reservoir counter)
    "prada_w",  # latest Shapiro-Wilk W (1 before the test can run)
    "prada_w_min",
    "prada_alarm_n",  # query count at PRADA's first alarm (0 = none)
    "clf_score",  # latest stream-classifier probability
    "clf_score_max",
    "alert_level",  # highest severity rank already reported (0 = none)
    "noted",  # bit mask of timeline observations already made (one bit per rule)
    "pend_n",  # samples buffered in ``pend_r``/``pend_p``, not yet seen by the detectors
    "noise_count",  # samples whose pixel noise is above the reference's 1% level (TW310)
)
_IDX = {name: i for i, name in enumerate(SCALARS)}


@dataclass
class StreamState:
    """One client's state (implements :class:`~tripwire.detectors.extraction.base.ClientState`).

    Attributes
    ----------
    scalars
        Counters and summaries, see :data:`SCALARS`.
    class_hist
        Predicted-class counts ``(C,)``.
    gs_emb, gs_cls
        PRADA's growing sets as one bounded pool: embeddings ``(G, k)`` and the class of
        each slot (-1 = empty). Embeddings are rounded to float16 precision when stored,
        held as float32 for speed and written as float16.
    cls_sum, cls_sq, cls_cnt
        Per class, sum, sum of squares and count of the growing-set distances (PRADA's
        per-class threshold is their mean minus their standard deviation).
    dists
        Reservoir of PRADA minimum distances ``(M,)``.
    ring_emb
        The most recent queries' embeddings ``(R, k)`` (a ring; stored like ``gs_emb``).
    nn_hist
        Counts of each query's distance to its nearest stored earlier query, binned at
        the reference's natural nearest-neighbour quantiles (exact repeat first).
    cells
        Coverage bitmap over the reference's PCA sign cells (packed bits).
    kmv
        The smallest hashes of quantised inputs seen (k-minimum-values distinct count).
    pend_r, pend_p, pend_o
        Samples answered but not yet run through the detectors: pooled inputs ``(B, r)``,
        returned probabilities ``(B, C)`` and whether each input's image statistics are
        off the reference's (``(B,)``, measured on the raw input on arrival; the monitor
        runs its detectors once per ``B`` samples; ``B = 0`` runs them on every request).
    recent_r
        The last few queries' pooled inputs ``(W, r)`` (a ring on ``ring_n``, float16 when
        written): TW311 leaves out a query that shares much of its pooled pixels with one
        of them (an explanation tool's masked variant of an input).
    off_cls, off_cell
        Off-distribution image statistics (TW311): per predicted class ``(2, C)`` and per
        input-space cell ``(2, K)``, the count of the client's new queries (row 0) and of
        those off the reference (row 1).
    """

    scalars: npt.NDArray[np.float64]
    class_hist: npt.NDArray[np.int64]
    gs_emb: npt.NDArray[np.float32]
    gs_cls: npt.NDArray[np.int16]
    cls_sum: npt.NDArray[np.float64]
    cls_sq: npt.NDArray[np.float64]
    cls_cnt: npt.NDArray[np.int64]
    dists: npt.NDArray[np.float32]
    ring_emb: npt.NDArray[np.float32]
    nn_hist: npt.NDArray[np.int64]
    cells: npt.NDArray[np.uint8]
    kmv: npt.NDArray[np.uint32]
    pend_r: npt.NDArray[np.float32]
    pend_p: npt.NDArray[np.float32]
    pend_o: npt.NDArray[np.uint8]
    recent_r: npt.NDArray[np.float32]
    off_cls: npt.NDArray[np.uint32]
    off_cell: npt.NDArray[np.uint32]
    _fields: tuple[str, ...] = field(
        default=(
            "scalars",
            "class_hist",
            "gs_emb",
            "gs_cls",
            "cls_sum",
            "cls_sq",
            "cls_cnt",
            "dists",
            "ring_emb",
            "nn_hist",
            "cells",
            "kmv",
            "pend_r",
            "pend_p",
            "pend_o",
            "recent_r",
            "off_cls",
            "off_cell",
        ),
        repr=False,
    )

    @classmethod
    def empty(
        cls,
        n_classes: int,
        pool: int,
        dim: int,
        reservoir: int,
        cell_bits: int,
        kmv: int,
        ring: int = 0,
        nn_bins: int = 1,
        pending: int = 0,
        pooled_dim: int = 0,
        off_cells: int = 0,
        recent: int = 0,
    ) -> StreamState:
        s = np.zeros(len(SCALARS), dtype=np.float64)
        s[_IDX["prada_w"]] = 1.0
        s[_IDX["prada_w_min"]] = 1.0
        return cls(
            scalars=s,
            class_hist=np.zeros(n_classes, dtype=np.int64),
            gs_emb=np.zeros((pool, dim), dtype=np.float32),
            gs_cls=np.full(pool, -1, dtype=np.int16),
            cls_sum=np.zeros(n_classes, dtype=np.float64),
            cls_sq=np.zeros(n_classes, dtype=np.float64),
            cls_cnt=np.zeros(n_classes, dtype=np.int64),
            dists=np.zeros(reservoir, dtype=np.float32),
            ring_emb=np.zeros((ring, dim), dtype=np.float32),
            nn_hist=np.zeros(nn_bins, dtype=np.int64),
            cells=np.zeros((cell_bits + 7) // 8, dtype=np.uint8),
            kmv=np.full(kmv, np.iinfo(np.uint32).max, dtype=np.uint32),
            pend_r=np.zeros((pending, pooled_dim), dtype=np.float32),
            pend_p=np.zeros((pending, n_classes), dtype=np.float32),
            pend_o=np.zeros(pending, dtype=np.uint8),
            recent_r=np.zeros((recent, pooled_dim), dtype=np.float32),
            off_cls=np.zeros((2, n_classes), dtype=np.uint32),
            off_cell=np.zeros((2, off_cells), dtype=np.uint32),
        )

    def get(self, name: str) -> float:
        return float(self.scalars[_IDX[name]])

    def set(self, name: str, value: float) -> None:
        self.scalars[_IDX[name]] = value

    def add(self, name: str, value: float) -> None:
        self.scalars[_IDX[name]] += value

    @property
    def query_count(self) -> int:
        """Cumulative number of samples this client queried (buffered ones included)."""
        return int(self.scalars[_IDX["n"]] + self.scalars[_IDX["pend_n"]])

    def copy(self) -> StreamState:
        """An independent copy (same bytes)."""
        return StreamState(**{k: v.copy() for k, v in self.arrays().items()})  # type: ignore[arg-type]

    def arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        return {name: getattr(self, name) for name in self._fields}

    def equals(self, other: StreamState) -> bool:
        """Whether two states hold the same bytes (what a round trip must keep)."""
        a, b = self.arrays(), other.arrays()
        return all(
            a[k].dtype == b[k].dtype
            and a[k].shape == b[k].shape
            and a[k].tobytes() == b[k].tobytes()
            for k in a
        )


def encode(state: StreamState) -> bytes:
    """The state as compact bytes (see the module docstring)."""
    arrays = state.arrays()
    # Exact: embeddings are rounded to float16 precision when they are stored.
    arrays["gs_emb"] = arrays["gs_emb"].astype(np.float16)
    arrays["ring_emb"] = arrays["ring_emb"].astype(np.float16)
    arrays["recent_r"] = arrays["recent_r"].astype(np.float16)
    header = json.dumps(
        {"fields": [[k, v.dtype.str, list(v.shape)] for k, v in arrays.items()]},
        separators=(",", ":"),
    ).encode()
    parts = [MAGIC, struct.pack("<I", len(header)), header]
    parts.extend(np.ascontiguousarray(v).tobytes() for v in arrays.values())
    return b"".join(parts)


_ALLOWED = {"<f8", "<i8", "<f2", "<i2", "<f4", "|u1", "<u4"}


def decode(data: bytes, source: str = "state") -> StreamState:
    """A state from :func:`encode`'s bytes.

    Raises
    ------
    InputError
        Not a tripwire extraction state, or a truncated or inconsistent one.
    """
    buf = memoryview(data)
    if len(buf) < 8 or bytes(buf[:4]) != MAGIC:
        raise InputError("not a tripwire extraction-detector state (bad magic)", source)
    (hlen,) = struct.unpack("<I", bytes(buf[4:8]))
    try:
        header = json.loads(bytes(buf[8 : 8 + hlen]))
        fields = header["fields"]
    except (ValueError, KeyError, TypeError):
        raise InputError("corrupt extraction-detector state header", source) from None
    pos = 8 + hlen
    out: dict[str, npt.NDArray[np.generic]] = {}
    expected = set(StreamState.__dataclass_fields__) - {"_fields"}
    for item in fields:
        try:
            name, dt, shape = str(item[0]), str(item[1]), tuple(int(s) for s in item[2])
        except (IndexError, TypeError, ValueError):
            raise InputError("corrupt extraction-detector state header", source) from None
        if name not in expected or dt not in _ALLOWED or any(s < 0 for s in shape):
            raise InputError(f"unexpected field {name!r} in extraction state", source)
        dtype = np.dtype(dt)
        size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if pos + size > len(buf):
            raise InputError("truncated extraction-detector state", source)
        out[name] = np.frombuffer(buf[pos : pos + size], dtype=dtype).reshape(shape).copy()
        pos += size
    if pos != len(buf):
        raise InputError("truncated extraction-detector state", source)
    _upgrade(out)
    if set(out) != expected:
        raise InputError("incomplete extraction-detector state", source)
    out["gs_emb"] = out["gs_emb"].astype(np.float32)
    out["ring_emb"] = out["ring_emb"].astype(np.float32)
    out["recent_r"] = out["recent_r"].astype(np.float32)
    return StreamState(**out)  # type: ignore[arg-type]


def _upgrade(out: dict[str, npt.NDArray[np.generic]]) -> None:
    """Fill the fields that a state written before TW311 lacks with empty counters, so
    that a gateway upgrade keeps every client's evidence (the monitor sizes ``off_cell``
    and ``recent_r`` in :meth:`~tripwire.detectors.extraction.monitor.StreamMonitor.loads`)."""
    new = {"pend_o", "recent_r", "off_cls", "off_cell"}
    if {"class_hist", "pend_r"} <= set(out) and not new & set(out):
        out["pend_o"] = np.zeros(len(out["pend_r"]), dtype=np.uint8)
        out["recent_r"] = np.zeros((0, out["pend_r"].shape[1]), dtype=np.float16)
        out["off_cls"] = np.zeros((2, len(out["class_hist"])), dtype=np.uint32)
        out["off_cell"] = np.zeros((2, 0), dtype=np.uint32)


def kmv_merge(a: npt.NDArray[np.uint32], b: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint32]:
    """The ``len(a)`` smallest distinct values of ``a`` and ``b`` (padded with the empty mark)."""
    merged = np.union1d(a, b)[: len(a)]
    empty = np.iinfo(np.uint32).max
    return np.asarray(np.pad(merged, (0, len(a) - merged.size), constant_values=empty), np.uint32)


def state_index(name: str) -> int:
    """Position of scalar ``name`` in :attr:`StreamState.scalars`."""
    return _IDX[name]
