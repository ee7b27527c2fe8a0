"""Loaders on the real shared datasets; skipped where ../shared/datasets is absent."""

from __future__ import annotations

import numpy as np

from tests.conftest import SHARED, shared
from tripwire.io import load_dataset


@shared
def test_mnist_npz_splits() -> None:
    tr = load_dataset(SHARED / "mnist.npz")
    te = load_dataset(SHARED / "mnist.npz", split="test")
    assert tr.x.shape == (60000, 28, 28) and te.x.shape == (10000, 28, 28)
    assert tr.classes == tuple(str(i) for i in range(10))
    assert tr.input_shape == (1, 28, 28)


@shared
def test_gtsrb_subset() -> None:
    te = load_dataset(SHARED / "gtsrb_subset.npz", split="test")
    assert te.layout == "NHWC" and te.input_shape == (3, 32, 32)
    assert te.n_classes == 43


@shared
def test_cifar_archive_test_split() -> None:
    te = load_dataset(SHARED / "cifar10-jpeg.tar.gz", split="test", show_progress=False)
    assert te.x.shape == (10000, 32, 32, 3) and te.x.dtype == np.uint8
    assert te.classes is not None and te.classes[0] == "airplane"
    assert np.bincount(te.y).tolist() == [1000] * 10
