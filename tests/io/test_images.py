from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import tar_tree, write_image_tree
from tripwire.errors import InputError, MissingSplitError
from tripwire.io import load_dataset


def test_image_folder(image_tree: Path) -> None:
    ds = load_dataset(image_tree)
    assert ds.x.shape == (6, 12, 12, 3) and ds.x.dtype == np.uint8
    assert ds.classes == ("cat", "dog")
    assert list(ds.y) == [0, 0, 0, 1, 1, 1]
    assert ds.sample_id[0] == "cat/000.png"
    expected = np.asarray(Image.open(image_tree / "cat" / "000.png"))
    assert np.array_equal(ds.x[0], expected)


def test_grey_folder_is_nhw(tmp_path: Path) -> None:
    ds = load_dataset(write_image_tree(tmp_path / "g", mode="L"))
    assert ds.layout == "NHW" and ds.input_shape == (1, 12, 12)


def test_split_folders_and_tar_gz(tmp_path: Path) -> None:
    root = write_image_tree(tmp_path / "s", splits=True, n_per_class=2)
    archive = tar_tree(root, tmp_path / "s.tar.gz", arcname="wrapped")
    for spec in (root, archive):
        tr = load_dataset(spec)
        te = load_dataset(spec, split="test")
        assert (len(tr), len(te)) == (4, 4)
        assert tr.sample_id[0].startswith("train/cat/")
    a = load_dataset(archive, split="test")
    d = load_dataset(root, split="test")
    assert np.array_equal(a.x, d.x) and np.array_equal(a.y, d.y)


def test_plain_tar_without_extracting(tmp_path: Path, image_tree: Path) -> None:
    archive = tar_tree(image_tree, tmp_path / "imgs.tar")
    before = set(tmp_path.rglob("*"))
    ds = load_dataset(archive)
    assert len(ds) == 6
    assert set(tmp_path.rglob("*")) == before  # nothing extracted


def test_no_test_split(image_tree: Path) -> None:
    with pytest.raises(MissingSplitError):
        load_dataset(image_tree, split="test")


def test_corrupt_image_in_folder(image_tree: Path) -> None:
    (image_tree / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(InputError) as err:
        load_dataset(image_tree)
    assert "dog/broken.png" in str(err.value) and "cannot decode" in str(err.value)


def test_corrupt_image_in_archive(tmp_path: Path, image_tree: Path) -> None:
    (image_tree / "cat" / "bad.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    archive = tar_tree(image_tree, tmp_path / "a.tar.gz")
    with pytest.raises(InputError) as err:
        load_dataset(archive)
    assert str(archive) in str(err.value) and "cat/bad.jpg" in str(err.value)


def test_truncated_archive(tmp_path: Path, image_tree: Path) -> None:
    archive = tar_tree(image_tree, tmp_path / "a.tar.gz")
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(archive.read_bytes()[:200])
    with pytest.raises(InputError, match="tar archive"):
        load_dataset(cut)


def test_mixed_sizes_need_resize(image_tree: Path) -> None:
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(image_tree / "cat" / "big.png")
    with pytest.raises(InputError, match="--image-size"):
        load_dataset(image_tree)
    ds = load_dataset(image_tree, image_size=(10, 10))
    assert ds.x.shape[1:] == (10, 10, 3)


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    with pytest.raises(InputError, match="contains no images"):
        load_dataset(tmp_path / "empty")
