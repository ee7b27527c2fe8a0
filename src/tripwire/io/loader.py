"""One entry point for every dataset format: :func:`load_dataset` and :func:`save_dataset`."""

from __future__ import annotations

from pathlib import Path

from tripwire.errors import InputError, MissingSplitError
from tripwire.io.bundled import PREFIX, load_bundled
from tripwire.io.dataset import Dataset
from tripwire.io.images import is_archive, load_image_folder
from tripwire.io.npz import load_npz, save_npz
from tripwire.io.tabular import load_csv


def load_dataset(
    spec: str | Path,
    *,
    split: str = "train",
    label_column: str | None = None,
    image_size: tuple[int, int] | None = None,
    show_progress: bool = True,
) -> Dataset:
    """Load a dataset from any supported source.

    Parameters
    ----------
    spec
        ``bundled:digits`` / ``bundled:mnist``, an ``.npz`` file, a ``.csv`` file, an
        ImageFolder directory, or a ``.tar``/``.tar.gz``/``.tgz`` archive of one.
    split
        ``train`` (default) or ``test``, for sources that have splits.
    label_column
        The label column of a CSV table.
    image_size
        ``(height, width)`` to resize images of a folder or archive to.

    Raises
    ------
    InputError
        With the path and the problem, for anything that cannot be used.
    """
    s = str(spec)
    if split not in ("train", "test"):
        raise InputError(f"unknown split '{split}' (expected train or test)", s)
    if s.startswith(PREFIX):
        return load_bundled(s[len(PREFIX) :], split)
    p = Path(s)
    lower = s.lower()
    if lower.endswith(".npz"):
        return load_npz(p, split)
    if lower.endswith(".csv"):
        if split == "test":
            raise MissingSplitError("a CSV table has no test split", s)
        return load_csv(p, label_column=label_column)
    if p.is_dir() or is_archive(p):
        return load_image_folder(p, split, image_size=image_size, show_progress=show_progress)
    if not p.exists():
        raise InputError("no such file or directory", s)
    raise InputError(
        "unknown dataset format (expected .npz, .csv, an image folder, a .tar/.tar.gz "
        "archive of one, or bundled:digits / bundled:mnist)",
        s,
    )


def save_dataset(ds: Dataset, path: str | Path) -> None:
    """Write a dataset as ``.npz``, keeping dtype, shape, value range and every field."""
    if not str(path).lower().endswith(".npz"):
        raise InputError("datasets are written as .npz files", path)
    save_npz(ds, path)


def load_test_split(
    spec: str | Path,
    *,
    label_column: str | None = None,
    image_size: tuple[int, int] | None = None,
    show_progress: bool = True,
) -> Dataset | None:
    """The test split of ``spec`` if it has one, else ``None`` (other errors propagate)."""
    try:
        return load_dataset(
            spec,
            split="test",
            label_column=label_column,
            image_size=image_size,
            show_progress=show_progress,
        )
    except MissingSplitError:
        return None
