from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tripwire.errors import InputError, MissingSplitError
from tripwire.io import load_dataset, save_dataset
from tripwire.io.dataset import from_model_space, to_model_space


def test_flat_npz_fields(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    p = tmp_path / "d.npz"
    np.savez(
        p,
        x=rng.integers(0, 256, (6, 5, 5, 3), dtype=np.uint8),
        y=np.array([0, 1, 2, 0, 1, 2]),
        sample_id=np.array([f"s{i}" for i in range(6)]),
        source=np.array(["vendorA"] * 3 + ["vendorB"] * 3),
        classes=np.array(["a", "b", "c"]),
        poisoned=np.array([0, 0, 1, 0, 0, 0], dtype=bool),
        attack=np.array(json.dumps({"kind": "badnets", "target": 2})),
        weights=np.arange(6.0),
    )
    ds = load_dataset(p)
    assert ds.layout == "NHWC"
    assert ds.input_shape == (3, 5, 5)
    assert ds.classes == ("a", "b", "c")
    assert list(ds.source[:4]) == ["vendorA"] * 3 + ["vendorB"]
    assert ds.poisoned is not None and ds.poisoned.sum() == 1
    assert ds.attack == {"kind": "badnets", "target": 2}
    assert "weights" in ds.extra
    x = ds.model_input()
    assert x.dtype == np.float32 and x.shape == (6, 3, 5, 5)
    assert x.min() >= 0.0 and x.max() <= 1.0


def test_round_trip_keeps_everything(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    src = tmp_path / "in.npz"
    x = rng.integers(0, 256, (8, 4, 4), dtype=np.uint8)
    np.savez(src, x=x, y=np.arange(8) % 2, source=np.array("vendor"), note=np.array([1, 2, 3]))
    ds = load_dataset(src)
    out = tmp_path / "out.npz"
    save_dataset(ds, out)
    back = load_dataset(out)
    assert back.x.dtype == np.uint8 and np.array_equal(back.x, x)
    assert np.array_equal(back.y, ds.y)
    assert np.array_equal(back.sample_id, ds.sample_id)
    assert set(back.source) == {"vendor"}
    with np.load(out) as z:
        assert np.array_equal(z["note"], [1, 2, 3])
        assert z["source"].ndim == 0  # a single source stays a scalar


def test_split_keyed_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    src = tmp_path / "split.npz"
    np.savez(
        src,
        x_train=rng.integers(0, 256, (10, 6, 6), dtype=np.uint8),
        y_train=np.arange(10) % 2,
        x_test=rng.integers(0, 256, (4, 6, 6), dtype=np.uint8),
        y_test=np.arange(4) % 2,
        classes=np.array(["0", "1"]),
    )
    tr = load_dataset(src)
    te = load_dataset(src, split="test")
    assert (len(tr), len(te)) == (10, 4)
    assert tr.sample_id[0] == "train/000000" and te.sample_id[0] == "test/000000"
    out = tmp_path / "out.npz"
    save_dataset(tr.subset([0, 2, 4]), out)
    with np.load(out) as z:
        assert {"x_train", "y_train", "x_test", "y_test"} <= set(z.files)
        assert z["x_train"].shape == (3, 6, 6)
        assert z["x_test"].shape == (4, 6, 6)
    # A test split (a clean set drawn from it) is written alone: read back with the
    # default split, the file gives exactly those samples, not the train split.
    save_dataset(te.subset([1, 3]), out)
    back = load_dataset(out)
    assert np.array_equal(back.x, te.x[[1, 3]]) and np.array_equal(back.y, te.y[[1, 3]])
    assert list(back.sample_id) == ["test/000001", "test/000003"]
    assert back.classes == ("0", "1")
    with np.load(out) as z:
        assert not any(k.endswith(("_train", "_test")) for k in z.files)


def test_float_nchw_round_trip_exact() -> None:
    rng = np.random.default_rng(4)
    x = rng.random((3, 3, 4, 4)).astype(np.float32)
    assert np.array_equal(from_model_space(to_model_space(x, "NCHW"), "NCHW", x.dtype), x)
    u = rng.integers(0, 256, (3, 4, 4, 3), dtype=np.uint8)
    assert np.array_equal(from_model_space(to_model_space(u, "NHWC"), "NHWC", u.dtype), u)


def test_missing_test_split_is_typed(small_npz: Path) -> None:
    with pytest.raises(MissingSplitError):
        load_dataset(small_npz, split="test")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"x": np.zeros((0, 4, 4), np.uint8), "y": np.zeros(0, int)}, "empty"),
        ({"x": np.full((3, 4), np.nan), "y": np.zeros(3, int)}, "NaN or infinite"),
        ({"x": np.full((3, 4), np.inf), "y": np.zeros(3, int)}, "NaN or infinite"),
        ({"x": np.zeros((3, 4)), "y": np.array([0, 1.5, 2])}, "must be integers"),
        ({"x": np.zeros((3, 4)), "y": np.array(["a", "b", "c"])}, "must be integers"),
        ({"x": np.zeros((3, 4)), "y": np.array([0, -1, 1])}, "negative"),
        (
            {"x": np.zeros((3, 4)), "y": np.array([0, 1, 5]), "classes": np.array(["a", "b"])},
            "out of range",
        ),
        ({"x": np.zeros((3, 4)), "y": np.zeros(4, int)}, "shape (3,)"),
        ({"x": np.full((2, 1, 4, 4), 2.0, np.float32), "y": np.zeros(2, int)}, "[0, 1]"),
        ({"x": np.zeros((3, 4))}, "both 'x' and 'y'"),
        ({"images": np.zeros((3, 4))}, "no 'x'/'y'"),
    ],
)
def test_bad_npz_contents(tmp_path: Path, fields: dict[str, np.ndarray], message: str) -> None:
    p = tmp_path / "bad.npz"
    np.savez(p, **fields)
    with pytest.raises(InputError) as err:
        load_dataset(p)
    assert message in str(err.value)
    assert str(p) in str(err.value)


def test_truncated_npz(tmp_path: Path, small_npz: Path) -> None:
    data = small_npz.read_bytes()
    p = tmp_path / "cut.npz"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"not a readable \.npz"):
        load_dataset(p)


def test_object_array_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "obj.npz"
    np.savez(p, x=np.array([{"a": 1}, {"b": 2}], dtype=object), y=np.array([0, 1]))
    with pytest.raises(InputError, match="never unpickles"):
        load_dataset(p)


def test_unknown_format_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "data.parquet").write_text("x")
    with pytest.raises(InputError, match="unknown dataset format"):
        load_dataset(tmp_path / "data.parquet")
    with pytest.raises(InputError, match="no such file"):
        load_dataset(tmp_path / "absent.npz")
