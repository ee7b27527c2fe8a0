"""Shared fixtures: small generated datasets and a quickly trained TorchScript model."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


def write_image_tree(
    root: Path,
    *,
    n_per_class: int = 3,
    size: int = 12,
    mode: str = "RGB",
    splits: bool = False,
    seed: int = 0,
) -> Path:
    """An ImageFolder tree of random PNGs with classes 'cat' and 'dog'."""
    rng = np.random.default_rng(seed)
    for split in ("train", "test") if splits else ("",):
        for cls in ("cat", "dog"):
            d = root / split / cls if split else root / cls
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n_per_class):
                shape = (size, size, 3) if mode == "RGB" else (size, size)
                arr = rng.integers(0, 256, size=shape, dtype=np.uint8)
                Image.fromarray(arr, mode=None).convert(mode).save(d / f"{i:03d}.png")
    return root


def tar_tree(src: Path, dest: Path, arcname: str = "data") -> Path:
    with tarfile.open(dest, "w:gz" if dest.name.endswith("gz") else "w") as tf:
        tf.add(src, arcname=arcname)
    return dest


@pytest.fixture
def image_tree(tmp_path: Path) -> Path:
    return write_image_tree(tmp_path / "imgs")


@pytest.fixture
def small_npz(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "small.npz"
    np.savez(
        path,
        x=rng.integers(0, 256, (30, 8, 8), dtype=np.uint8),
        y=np.arange(30) % 3,
        classes=np.array(["a", "b", "c"]),
    )
    return path


@pytest.fixture(scope="session")
def digits_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cnn-small TorchScript model trained for one epoch on bundled digits."""
    pytest.importorskip("torch")
    from tripwire.io import load_dataset
    from tripwire.models.train import TrainConfig, save_model, train_model

    out = tmp_path_factory.mktemp("model") / "digits.pt"
    train = load_dataset("bundled:digits")
    result = train_model(train, TrainConfig(epochs=2, seed=0), show_progress=False)
    save_model(result, out, train)
    return out


@pytest.fixture
def pickle_bomb(tmp_path: Path) -> tuple[Path, Path]:
    """A pickle that would create a marker file if anything unpickled it."""
    marker = tmp_path / "PWNED"
    payload = (
        b"\x80\x04cbuiltins\nexec\n(V"
        + f"open({str(marker)!r}, 'w').write('x')".encode()
        + b"\ntR."
    )
    bomb = tmp_path / "model.pt"
    bomb.write_bytes(payload)
    return bomb, marker


def png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/datasets is absent")


@pytest.fixture(autouse=True)
def _builtin_detectors_only() -> Iterator[None]:
    """Each test sees the shipped detectors only, and leaves the registry as it found it.

    Tests register toy detectors (the contract test's, the documentation example's, at
    import); left in the process-wide registry they would join every later default
    scan-data run and change its verdicts.
    """
    from tripwire.detectors import registry

    registry._load_all()
    saved = dict(registry._REGISTRY)
    registry._REGISTRY.clear()
    registry._REGISTRY.update(
        {k: v for k, v in saved.items() if v.__module__.startswith("tripwire.")}
    )
    try:
        yield
    finally:
        registry._REGISTRY.clear()
        registry._REGISTRY.update(saved)
