"""Generated feature-space data where the poisons are known, shared by detector tests."""

from __future__ import annotations

import numpy as np


def backdoor_data(
    frac: float,
    *,
    shift: float = 10.0,
    seed: int = 0,
    noise_seed: int | None = None,
    n: int = 300,
    k: int = 3,
    dim: int = 32,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``k`` anisotropic Gaussian classes of ``n`` items in ``dim`` dimensions; poisons
    (``frac * n`` of them) are a tight cluster ``shift`` away from class 0's mean along
    a random direction, labelled 0. ``seed`` fixes the classes and the poison
    direction, ``noise_seed`` the draws (fresh draws of the same classes)."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(k, dim)) * 4.0
    direction = rng.normal(size=dim)
    direction /= np.linalg.norm(direction)
    noise = np.random.default_rng(seed + 1000 if noise_seed is None else noise_seed)
    scales = np.linspace(2.0, 0.5, dim)  # the clean classes' own largest variance
    y = np.repeat(np.arange(k), n)
    x = means[y] + noise.normal(size=(k * n, dim)) * scales
    n_p = round(frac * n)
    poisons = means[0] + shift * direction + 0.5 * noise.normal(size=(n_p, dim))
    truth = np.r_[np.zeros(k * n, dtype=bool), np.ones(n_p, dtype=bool)]
    return np.vstack([x, poisons]), np.r_[y, np.zeros(n_p, dtype=np.int64)], truth
