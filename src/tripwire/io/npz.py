"""NumPy ``.npz`` datasets, flat (``x``, ``y``) or split-keyed (``x_train``, ``y_test``...).

Files are opened with ``allow_pickle=False``: an object array in an npz would be a
pickle, and tripwire never unpickles input.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from tripwire.errors import InputError, MissingSplitError
from tripwire.io.dataset import RESERVED_FIELDS, Dataset, is_split_key, make_dataset

SPLITS = ("train", "test")


def read_npz_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Read every array of an npz file, refusing pickles and reporting corruption."""
    p = str(path)
    try:
        with np.load(p, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise InputError("no such file", p) from None
    except IsADirectoryError:
        raise InputError("is a directory, not an .npz file", p) from None
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise InputError(
                "contains a pickled object array; tripwire never unpickles input files", p
            ) from None
        raise InputError(f"not a readable .npz file ({exc})", p) from None
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise InputError(f"not a readable .npz file (truncated or corrupt: {exc})", p) from None


def split_keys_present(arrays: dict[str, np.ndarray]) -> list[str]:
    """The splits a split-keyed file holds, in canonical order."""
    return [s for s in SPLITS if f"x_{s}" in arrays and f"y_{s}" in arrays]


def load_npz(path: str | Path, split: str = "train") -> Dataset:
    """Load an npz dataset.

    Parameters
    ----------
    path
        The file. Flat files hold ``x`` and ``y``; split-keyed files hold ``x_<split>`` and
        ``y_<split>``. Optional fields: ``sample_id``, ``source`` (per sample or a scalar),
        ``classes``, ``poisoned``, ``attack`` (a JSON string); in split-keyed files the
        per-sample ones may carry the split suffix (``poisoned_train``).
    split
        Which split of a split-keyed file to read. Flat files have no split and ignore
        ``"train"``; asking a flat file for ``"test"`` is an error.
    """
    p = str(path)
    arrays = read_npz_arrays(p)
    if split not in SPLITS:
        raise InputError(f"unknown split '{split}' (expected train or test)", p)
    splits = split_keys_present(arrays)
    if "x" in arrays or "y" in arrays:
        if "x" not in arrays or "y" not in arrays:
            raise InputError("an npz dataset needs both 'x' and 'y'", p)
        if split == "test":
            raise MissingSplitError("has no test split (no x_test/y_test arrays)", p)
        return _build(arrays, p, suffix="", split=None, split_keys=False)
    if not splits:
        raise InputError(
            "no 'x'/'y' or 'x_train'/'y_train' arrays "
            f"(found: {', '.join(sorted(arrays)) or 'none'})",
            p,
        )
    if split not in splits:
        raise MissingSplitError(f"has no {split} split (no x_{split}/y_{split} arrays)", p)
    return _build(arrays, p, suffix=f"_{split}", split=split, split_keys=True)


def _field(arrays: dict[str, np.ndarray], name: str, suffix: str) -> np.ndarray | None:
    if suffix and f"{name}{suffix}" in arrays:
        return arrays[f"{name}{suffix}"]
    return arrays.get(name)


def _build(
    arrays: dict[str, np.ndarray], p: str, *, suffix: str, split: str | None, split_keys: bool
) -> Dataset:
    x = arrays[f"x{suffix}"]
    y = arrays[f"y{suffix}"]
    classes = _field(arrays, "classes", suffix)
    attack_raw = _field(arrays, "attack", suffix)
    attack: dict[str, Any] | None = None
    if attack_raw is not None:
        try:
            attack = json.loads(str(attack_raw.item() if attack_raw.ndim == 0 else attack_raw[0]))
        except (ValueError, IndexError) as exc:
            raise InputError(f"field 'attack' is not a JSON object ({exc})", p) from None
        if not isinstance(attack, dict):
            raise InputError("field 'attack' is not a JSON object", p)
    used = {f"{f}{suffix}" for f in RESERVED_FIELDS} | set(RESERVED_FIELDS)
    extra = {k: v for k, v in arrays.items() if k not in used}
    return make_dataset(
        x,
        y,
        path=p,
        classes=None if classes is None else [str(c) for c in np.atleast_1d(classes)],
        sample_id=_field(arrays, "sample_id", suffix),
        source=_field(arrays, "source", suffix),
        poisoned=_field(arrays, "poisoned", suffix),
        attack=attack,
        extra=extra,
        split=split,
        split_keys=split_keys,
    )


def dataset_to_arrays(ds: Dataset) -> dict[str, np.ndarray]:
    """The npz fields that represent ``ds``, in the key scheme it was read with.

    A train split keeps the file's other splits beside it (a poisoned training set
    travels with its clean test split). Any other split is written as a flat file of
    its own samples, without the rest: beside a train split, the file's default split
    would be that train split, a different dataset from the one written (a clean set
    drawn from MNIST's test split was read back as the 60,000 training digits).
    """
    alone = ds.split_keys and ds.split not in (None, "train")
    suffix = f"_{ds.split}" if ds.split_keys and ds.split and not alone else ""
    out: dict[str, np.ndarray] = {
        k: v for k, v in ds.extra.items() if not (alone and is_split_key(k))
    }
    out[f"x{suffix}"] = ds.x
    out[f"y{suffix}"] = ds.y
    out[f"sample_id{suffix}"] = ds.sample_id
    sources = np.unique(ds.source)
    # A single source stays a scalar, as the shared datasets store it.
    out[f"source{suffix}"] = np.array(sources[0]) if sources.size == 1 else ds.source
    if ds.classes is not None:
        out["classes"] = np.array(ds.classes)
    if ds.poisoned is not None:
        out[f"poisoned{suffix}"] = ds.poisoned
    if ds.attack is not None:
        out[f"attack{suffix}"] = np.array(json.dumps(ds.attack, sort_keys=True))
    return out


def save_npz(ds: Dataset, path: str | Path, *, compress: bool = True) -> None:
    """Write ``ds`` to ``path`` atomically, keeping dtype, shape, range and every field."""
    write_npz_arrays(dataset_to_arrays(ds), path, compress=compress)


def write_npz_arrays(
    arrays: dict[str, np.ndarray], path: str | Path, *, compress: bool = True
) -> None:
    """Write arrays to an npz atomically (temp file then rename: no half-written output)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".npz")
    os.close(fd)
    try:
        if compress:
            np.savez_compressed(tmp, **arrays)  # type: ignore[arg-type]
        else:
            np.savez(tmp, **arrays)  # type: ignore[arg-type]
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise InputError(f"cannot write ({exc.strerror or exc})", target) from None
