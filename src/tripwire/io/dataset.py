"""The one typed dataset object every loader returns and every command consumes.

A :class:`Dataset` keeps the samples exactly as they were stored (``x`` in its native
dtype, shape and value range) so that a dataset written back is byte-identical where
nothing changed; models see a float32 NCHW view in [0, 1] through
:meth:`Dataset.model_input`. Labels are validated integers, every sample has an id and
a source, and any other field of the input travels along untouched in ``extra``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from tripwire.errors import InputError

#: How ``x`` is laid out. ``NHW`` grey images, ``NHWC`` channel-last images (the usual
#: uint8 storage), ``NCHW`` channel-first float images in [0, 1], ``ND`` tables.
Layout = Literal["NHW", "NHWC", "NCHW", "ND"]

#: Field names with a meaning of their own; everything else goes to ``extra``.
RESERVED_FIELDS = ("x", "y", "sample_id", "source", "classes", "poisoned", "attack")


@dataclass(frozen=True)
class Dataset:
    """Samples, labels and their provenance.

    Attributes
    ----------
    x
        Samples as stored: uint8 ``(N, H, W)`` / ``(N, H, W, C)``, float ``(N, C, H, W)``
        or ``(N, H, W)`` in [0, 1], or a float table ``(N, D)``.
    y
        Integer labels, shape ``(N,)``, int64.
    layout
        How ``x`` is laid out (see :data:`Layout`).
    sample_id
        A string id per sample; positional (``"train/000017"``) when the source has none.
    source
        The supplier of each sample (vendor, file, folder), shape ``(N,)``.
    classes
        Class names, one per label value, or ``None`` when unknown.
    poisoned
        Ground truth written only by ``tripwire attack``. Scans must never read it; only
        benchmarks and ``clean --retrain`` evaluation do.
    attack
        The attack description (JSON object) written by ``tripwire attack``.
    extra
        Every other field of the input, kept to be written back unchanged.
    path
        Where the data came from, for messages.
    split
        ``"train"``/``"test"`` for split-keyed sources, else ``None``.
    """

    x: np.ndarray
    y: npt.NDArray[np.int64]
    layout: Layout
    sample_id: npt.NDArray[np.str_]
    source: npt.NDArray[np.str_]
    classes: tuple[str, ...] | None = None
    poisoned: npt.NDArray[np.bool_] | None = None
    attack: dict[str, Any] | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    path: str | None = None
    split: str | None = None
    #: The npz keys this split was read from, so that writing back keeps the format.
    split_keys: bool = False

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def n_classes(self) -> int:
        """Number of classes: the class names if known, else ``max(y) + 1``."""
        if self.classes is not None:
            return len(self.classes)
        return int(self.y.max()) + 1 if len(self) else 0

    @property
    def is_image(self) -> bool:
        return self.layout != "ND"

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one model input: ``(C, H, W)`` for images, ``(D,)`` for tables."""
        return tuple(int(s) for s in to_model_space(self.x[:1], self.layout).shape[1:])

    def model_input(
        self, indices: npt.NDArray[np.integer[Any]] | slice | None = None
    ) -> npt.NDArray[np.float32]:
        """The samples as models take them: float32 NCHW in [0, 1] (or ``(N, D)``)."""
        x = self.x if indices is None else self.x[indices]
        return to_model_space(x, self.layout)

    def subset(self, indices: npt.ArrayLike) -> Dataset:
        """The samples at ``indices`` (in that order), every per-sample field included."""
        idx = np.asarray(indices)
        n = len(self)
        extra = {
            k: (v[idx] if v.ndim >= 1 and v.shape[0] == n and not is_split_key(k) else v)
            for k, v in self.extra.items()
        }
        return replace(
            self,
            x=self.x[idx],
            y=self.y[idx],
            sample_id=self.sample_id[idx],
            source=self.source[idx],
            poisoned=None if self.poisoned is None else self.poisoned[idx],
            extra=extra,
        )

    def with_samples(self, x_model: npt.NDArray[np.floating[Any]]) -> Dataset:
        """A copy whose samples are replaced by model-space arrays, stored natively."""
        return replace(self, x=from_model_space(x_model, self.layout, self.x.dtype))

    def sample_hashes(self) -> list[str]:
        """sha256 of each sample's stored bytes (dtype and shape included)."""
        header = f"{self.x.dtype.str}{self.x.shape[1:]}".encode()
        return [
            hashlib.sha256(header + np.ascontiguousarray(s).tobytes()).hexdigest() for s in self.x
        ]

    def content_sha256(self) -> str:
        """One sha256 over samples and labels, to tie models and reports to data."""
        h = hashlib.sha256()
        h.update(f"{self.x.dtype.str}{self.x.shape}".encode())
        h.update(np.ascontiguousarray(self.x).tobytes())
        h.update(np.ascontiguousarray(self.y.astype("<i8")).tobytes())
        return h.hexdigest()

    def describe(self) -> dict[str, Any]:
        """A short JSON-ready summary for reports."""
        return {
            "path": self.path,
            "split": self.split,
            "samples": len(self),
            "shape": list(self.x.shape[1:]),
            "dtype": str(self.x.dtype),
            "layout": self.layout,
            "classes": self.n_classes,
            "sources": sorted({str(s) for s in self.source}),
            "sha256": self.content_sha256(),
        }


def is_split_key(key: str) -> bool:
    """Whether an extra field belongs to one split of a split-keyed file (``x_test``):
    beside a dataset read from another split, such fields are not its own."""
    return key.endswith(("_train", "_test"))


def infer_layout(x: np.ndarray, path: str | None = None) -> Layout:
    """Decide how an array of samples is laid out, or raise :class:`InputError`."""
    if x.ndim == 2:
        return "ND"
    if x.ndim == 3:
        return "NHW"
    if x.ndim == 4:
        channels_first = x.shape[1] in (1, 3)
        channels_last = x.shape[3] in (1, 3, 4)
        if np.issubdtype(x.dtype, np.floating):
            if channels_first:
                return "NCHW"
            if channels_last:
                return "NHWC"
        else:
            if channels_last:
                return "NHWC"
            if channels_first:
                return "NCHW"
        raise InputError(
            f"cannot tell the channel axis of image array with shape {x.shape} "
            "(expected (N,H,W,C) or (N,C,H,W) with 1 or 3 channels)",
            path,
        )
    raise InputError(
        f"samples must be (N,D), (N,H,W) or 4-D images, got an array of shape {x.shape}", path
    )


def to_model_space(x: np.ndarray, layout: Layout) -> npt.NDArray[np.float32]:
    """Convert stored samples to float32 NCHW in [0, 1] (tables: float32 as they are)."""
    if layout == "ND":
        return np.asarray(x, dtype=np.float32)
    scale = 255.0 if x.dtype == np.uint8 else 1.0
    xf = np.asarray(x, dtype=np.float32)
    if scale != 1.0:
        xf = xf / np.float32(scale)
    if layout == "NHW":
        xf = xf[:, None, :, :]
    elif layout == "NHWC":
        xf = np.transpose(xf, (0, 3, 1, 2))
    return np.ascontiguousarray(xf)


def from_model_space(x: np.ndarray, layout: Layout, dtype: np.dtype[Any]) -> np.ndarray:
    """Inverse of :func:`to_model_space`: back to the stored layout, dtype and range."""
    if layout == "ND":
        return np.asarray(x).astype(dtype, copy=False)
    xs = np.asarray(x, dtype=np.float32)
    if layout == "NHW":
        xs = xs[:, 0]
    elif layout == "NHWC":
        xs = np.transpose(xs, (0, 2, 3, 1))
    if np.dtype(dtype) == np.uint8:
        out: np.ndarray = np.clip(np.rint(xs * 255.0), 0, 255).astype(np.uint8)
    else:
        out = np.clip(xs, 0.0, 1.0).astype(dtype)
    return out


def validate_labels(
    y_raw: np.ndarray, n: int, n_classes: int | None, path: str | None
) -> npt.NDArray[np.int64]:
    """Check that labels are finite integers in range and return them as int64."""
    y = np.asarray(y_raw)
    if y.ndim != 1 or y.shape[0] != n:
        raise InputError(f"labels must have shape ({n},), got {y.shape}", path)
    if y.dtype.kind == "b" or y.dtype.kind not in "iuf":
        raise InputError(f"labels must be integers, got dtype {y.dtype}", path)
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)):
            raise InputError("labels contain NaN or infinite values", path)
        bad = np.flatnonzero(y != np.round(y))
        if bad.size:
            raise InputError(
                f"labels must be integers; sample {int(bad[0])} has label {y[bad[0]]!r}", path
            )
    yi = y.astype(np.int64)
    neg = np.flatnonzero(yi < 0)
    if neg.size:
        raise InputError(f"label {int(yi[neg[0]])} of sample {int(neg[0])} is negative", path)
    if n_classes is not None:
        over = np.flatnonzero(yi >= n_classes)
        if over.size:
            raise InputError(
                f"label {int(yi[over[0]])} of sample {int(over[0])} is out of range "
                f"for {n_classes} classes",
                path,
            )
    return yi


def validate_samples(x: np.ndarray, layout: Layout, path: str | None) -> None:
    """Refuse empty, non-numeric, non-finite or out-of-range samples."""
    if x.shape[0] == 0:
        raise InputError("the dataset is empty", path)
    if x.dtype.kind not in "iuf" or x.dtype.kind == "b":
        raise InputError(f"samples must be numeric, got dtype {x.dtype}", path)
    if x.dtype.kind == "f":
        finite = np.isfinite(x)
        if not finite.all():
            first = int(np.flatnonzero(~finite.reshape(len(x), -1).all(axis=1))[0])
            raise InputError(f"sample {first} contains NaN or infinite values", path)
        if layout != "ND" and (x.min() < 0.0 or x.max() > 1.0):
            raise InputError(
                f"float images must lie in [0, 1], found values in [{x.min():.3g}, {x.max():.3g}]",
                path,
            )
    elif layout != "ND" and x.dtype != np.uint8 and (x.min() < 0 or x.max() > 255):
        raise InputError("integer images must lie in [0, 255]", path)


def make_dataset(
    x: np.ndarray,
    y: npt.ArrayLike,
    *,
    path: str | None = None,
    classes: Sequence[str] | None = None,
    sample_id: npt.ArrayLike | None = None,
    source: npt.ArrayLike | str | None = None,
    poisoned: npt.ArrayLike | None = None,
    attack: dict[str, Any] | None = None,
    extra: dict[str, np.ndarray] | None = None,
    split: str | None = None,
    split_keys: bool = False,
    layout: Layout | None = None,
) -> Dataset:
    """Validate raw arrays and build a :class:`Dataset`.

    Raises
    ------
    InputError
        Empty data, non-finite values, labels that are not integers or out of range,
        per-sample fields of the wrong length.
    """
    x = np.asarray(x)
    if x.ndim < 2:
        raise InputError(f"samples must have at least 2 dimensions, got shape {x.shape}", path)
    if x.dtype != np.uint8 and x.dtype.kind in "iu" and x.ndim >= 3:
        # Integer images other than uint8 are normalised to uint8 once, after checking range.
        if x.size and (x.min() < 0 or x.max() > 255):
            raise InputError("integer images must lie in [0, 255]", path)
        x = x.astype(np.uint8)
    lay = layout or infer_layout(x, path)
    validate_samples(x, lay, path)
    n = int(x.shape[0])
    class_names = None if classes is None else tuple(str(c) for c in classes)
    if class_names is not None and len(class_names) == 0:
        class_names = None
    labels = validate_labels(
        np.asarray(y), n, None if class_names is None else len(class_names), path
    )

    prefix = f"{split}/" if split else ""
    ids = (
        np.array([f"{prefix}{i:06d}" for i in range(n)])
        if sample_id is None
        else _per_sample_str(sample_id, n, "sample_id", path)
    )
    if len(set(ids.tolist())) != n:
        raise InputError("sample_id values are not unique", path)
    default_source = "unknown" if path is None else _stem(path)
    src = (
        np.full(n, default_source)
        if source is None
        else _per_sample_str(source, n, "source", path, broadcast=True)
    )
    pois = None
    if poisoned is not None:
        p = np.asarray(poisoned)
        if p.shape != (n,):
            raise InputError(f"'poisoned' must have shape ({n},), got {p.shape}", path)
        pois = p.astype(bool)
    return Dataset(
        x=x,
        y=labels,
        layout=lay,
        sample_id=ids,
        source=src,
        classes=class_names,
        poisoned=pois,
        attack=attack,
        extra=dict(extra or {}),
        path=path,
        split=split,
        split_keys=split_keys,
    )


def _stem(path: str) -> str:
    name = path.rstrip("/").rsplit("/", 1)[-1]
    for suffix in (".tar.gz", ".tgz", ".tar", ".npz", ".csv"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _per_sample_str(
    value: npt.ArrayLike | str, n: int, name: str, path: str | None, *, broadcast: bool = False
) -> npt.NDArray[np.str_]:
    arr = np.asarray(value)
    if arr.ndim == 0:
        if not broadcast:
            raise InputError(f"'{name}' must have one value per sample", path)
        return np.full(n, str(arr.item()))
    if arr.shape != (n,):
        raise InputError(f"'{name}' must have shape ({n},), got {arr.shape}", path)
    return arr.astype(str)
