"""The pixel-noise rule (TW310) on colour images: scikit-learn's two sample photographs.

Crops of real colour photographs stand in for a colour victim's data (no dataset ships
with the packages): the rule must pass natural crops and smooth changes, and flag uniform
noise and gradient-sign-like steps, which pooled-input distances cannot see. The photos
are reduced 4x before cropping so that a 32x32 crop shows whole objects, as CIFAR-10 and
GTSRB images do; at full resolution the flower's fine texture is as rough as a +-0.1
step everywhere, and no smoothness statistic can tell the two apart.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from tripwire.detectors.extraction import QueryBatch, Reference, StreamMonitor
from tripwire.detectors.extraction.monitor import NOISE_FLOOR, pixel_noise, pixel_noise_above

SIDE = 32


@pytest.fixture(scope="module")
def crops() -> npt.NDArray[np.float32]:
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(0)
    out = []
    for img in load_sample_images().images:
        h, w = img.shape[0] // 4, img.shape[1] // 4
        small = img[: h * 4, : w * 4].reshape(h, 4, w, 4, 3).mean(axis=(1, 3))
        for _ in range(700):
            i, j = rng.integers(0, h - SIDE), rng.integers(0, w - SIDE)
            out.append(small[i : i + SIDE, j : j + SIDE].transpose(2, 0, 1))
    x = np.asarray(out, dtype=np.float32) / 255.0
    return x[rng.permutation(len(x))]


def _probs(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """A fixed 5-class answer of the crops (mean colour through a random map)."""
    w = np.random.default_rng(1).normal(size=(3, 5))
    z = x.mean(axis=(2, 3)) @ w * 4.0
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return np.asarray(e / e.sum(axis=1, keepdims=True), dtype=np.float32)


@pytest.fixture(scope="module")
def monitor(crops: npt.NDArray[np.float32]) -> StreamMonitor:
    ref = crops[:600]
    return StreamMonitor(classifier=None).fit(Reference(ref, _probs(ref), 5, (3, SIDE, SIDE)))


def _stream(mon: StreamMonitor, x: npt.NDArray[np.float32], per_request: int = 4) -> list:
    st = mon.new_state()
    obs = []
    for s in range(0, len(x), per_request):
        xb = x[s : s + per_request]
        for o in mon.observe(st, QueryBatch(xb, _probs(xb), float(s))):
            obs.append((s + len(xb), o))
    return [(n, o) for n, o in obs if o.rule_id == "TW310"]


def test_pixel_noise_separates_photographs_from_noise(crops: npt.NDArray[np.float32]) -> None:
    rng = np.random.default_rng(2)
    natural = pixel_noise(crops[:500])
    uniform = pixel_noise(rng.random((100, 3, SIDE, SIDE), dtype=np.float32))
    assert np.quantile(natural, 0.99) < 0.1
    assert np.all(uniform > 0.2) and abs(float(np.median(uniform)) - 0.29) < 0.03
    # A constant image has no neighbour differences at all.
    assert pixel_noise(np.full((1, 3, 8, 8), 0.5, np.float32))[0] == 0.0


def test_rule_passes_natural_crops_and_smooth_changes(
    monitor: StreamMonitor, crops: npt.NDArray[np.float32]
) -> None:
    held = crops[600:1400]
    assert monitor.fitted_.noise_threshold >= NOISE_FLOOR
    assert _stream(monitor, held) == []
    brighter = np.clip(held[:300] + 0.1, 0.0, 1.0).astype(np.float32)
    assert _stream(monitor, brighter) == []


@pytest.mark.parametrize("kind", ["uniform", "sign-steps"])
def test_rule_flags_noise_queries(
    monitor: StreamMonitor, crops: npt.NDArray[np.float32], kind: str
) -> None:
    rng = np.random.default_rng(3)
    held = crops[600:800]
    if kind == "uniform":
        x = rng.random(held.shape, dtype=np.float32)
    else:
        # Jacobian-based augmentation's step: +-0.1 at every pixel of a natural input.
        x = np.clip(held + 0.1 * np.sign(rng.normal(size=held.shape)), 0, 1).astype(np.float32)
    found = _stream(monitor, x)
    assert len(found) == 1  # reported once per client
    n, obs = found[0]
    assert n <= 48
    assert obs.severity is not None and str(obs.severity) == "medium"
    assert obs.evidence["rate"] > 0.5 and obs.evidence["p_value"] < 1e-6


def test_rule_needs_a_large_share(monitor: StreamMonitor, crops: npt.NDArray[np.float32]) -> None:
    """A client with a few noisy inputs among natural ones (one in ten) is not flagged,
    however long it runs: the rule wants most of a stream, not a significant trickle."""
    rng = np.random.default_rng(4)
    x = crops[600:1400].copy()
    noisy = np.arange(0, len(x), 10)
    x[noisy] = rng.random((len(noisy), 3, SIDE, SIDE), dtype=np.float32)
    assert _stream(monitor, x) == []


@pytest.mark.parametrize("shape", [(1, 1, 28, 28), (16, 3, 32, 32), (7, 3, 5, 9), (3, 2, 2, 6)])
def test_the_fast_comparison_equals_the_median(shape: tuple[int, int, int, int]) -> None:
    rng = np.random.default_rng(5)
    x = rng.random(shape, dtype=np.float32)
    x[: len(x) // 2] *= 0.3  # smoother images: medians on both sides of the thresholds
    med = pixel_noise(x)
    for thr in (0.01, 0.05, 0.1, 0.2, 0.3, float(np.median(med))):
        np.testing.assert_array_equal(pixel_noise_above(x, thr), med > thr)
