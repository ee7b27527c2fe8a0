"""CSV tables: one row per sample, numeric feature columns, one label column."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from tripwire.errors import InputError
from tripwire.io.dataset import Dataset, make_dataset

#: Bound on the size of a CSV read into memory at once.
MAX_CSV_BYTES = 2 * 1024**3


def load_csv(
    path: str | Path,
    *,
    label_column: str | None,
    id_column: str | None = None,
    source_column: str | None = None,
) -> Dataset:
    """Load a CSV table with a header row.

    Parameters
    ----------
    path
        The file.
    label_column
        Name of the label column. Integer labels are used as they are; any other
        labels (``"cat"``) are mapped to the sorted class names.
    id_column, source_column
        Optional columns holding each row's sample id and source; neither is a feature.
    """
    p = str(path)
    if label_column is None:
        raise InputError("a CSV dataset needs --label-column NAME", p)
    try:
        if Path(p).stat().st_size > MAX_CSV_BYTES:
            raise InputError("CSV file is larger than 2 GiB", p)
        with open(p, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except FileNotFoundError:
        raise InputError("no such file", p) from None
    except UnicodeDecodeError:
        raise InputError("is not a UTF-8 text CSV file", p) from None
    except (OSError, csv.Error) as exc:
        raise InputError(f"cannot read CSV ({exc})", p) from None
    if not rows:
        raise InputError("the dataset is empty", p)
    header = [h.strip() for h in rows[0]]
    body = [r for r in rows[1:] if any(c.strip() for c in r)]
    if not body:
        raise InputError("the dataset is empty (header only)", p)
    for name in (label_column, id_column, source_column):
        if name is not None and name not in header:
            raise InputError(f"no column named '{name}' (columns: {', '.join(header)})", p)
    special = {c for c in (label_column, id_column, source_column) if c is not None}
    feat_idx = [i for i, h in enumerate(header) if h not in special]
    if not feat_idx:
        raise InputError("has no feature columns besides the label column", p)
    width = len(header)
    x = np.empty((len(body), len(feat_idx)), dtype=np.float64)
    for r, row in enumerate(body):
        if len(row) != width:
            raise InputError(f"row {r + 2} has {len(row)} fields, the header has {width}", p)
        for j, i in enumerate(feat_idx):
            try:
                x[r, j] = float(row[i])
            except ValueError:
                raise InputError(
                    f"row {r + 2}, column '{header[i]}': '{row[i]}' is not a number", p
                ) from None
    li = header.index(label_column)
    raw_labels = [row[li].strip() for row in body]
    classes: list[str] | None = None
    try:
        as_float = np.array([float(v) for v in raw_labels])
        y: np.ndarray = as_float
    except ValueError:
        classes = sorted(set(raw_labels))
        lookup = {c: k for k, c in enumerate(classes)}
        y = np.array([lookup[v] for v in raw_labels], dtype=np.int64)
    ids = None if id_column is None else [row[header.index(id_column)] for row in body]
    if ids is None:
        ids = [f"row{r + 2:06d}" for r in range(len(body))]
    src = None if source_column is None else [row[header.index(source_column)] for row in body]
    return make_dataset(
        x.astype(np.float32),
        y,
        path=p,
        classes=classes,
        sample_id=np.array(ids),
        source=None if src is None else np.array(src),
        extra={"feature_names": np.array([header[i] for i in feat_idx])},
        layout="ND",
    )
