"""Dirty-label backdoors with local and global triggers: ``badnets`` and ``blend``.

Triggers are pure functions of model-space inputs (float32 NCHW in [0, 1]) and the
recorded parameters, so a trigger planted at training time is re-applied exactly to
test inputs. Randomness that must repeat (a random patch or blend pattern) is drawn
from a ``pattern_seed`` kept in the parameters.

References: Gu et al., "BadNets", 2017; Chen et al., "Targeted Backdoor Attacks on Deep
Learning Systems Using Data Poisoning" (blended injection), 2017.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from tripwire.attacks.base import (
    PoisonOutcome,
    PoisonRequest,
    dirty_labels,
    register_kind,
    victims_for_target,
)
from tripwire.errors import InputError
from tripwire.io.dataset import Dataset

POSITIONS = ("bottom-right", "bottom-left", "top-right", "top-left", "center", "random")
PATTERNS = ("checker", "solid", "random")


def _patch(
    channels: int, size: int, pattern: str, color: float, pattern_seed: int
) -> npt.NDArray[np.float32]:
    if pattern == "solid":
        return np.full((channels, size, size), color, dtype=np.float32)
    if pattern == "checker":
        yy, xx = np.indices((size, size))
        board = ((yy + xx) % 2 == 0).astype(np.float32)
        # The checker alternates the colour with its opposite, so it shows on any image.
        vals = board * color + (1.0 - board) * (1.0 - color)
        return np.broadcast_to(vals, (channels, size, size)).astype(np.float32)
    if pattern == "random":
        rng = np.random.default_rng(pattern_seed)
        return (rng.random((channels, size, size)) > 0.5).astype(np.float32)
    raise InputError(f"unknown patch pattern (choose from {', '.join(PATTERNS)})", pattern)


def _offsets(position: str, h: int, w: int, size: int, margin: int) -> tuple[int, int]:
    far_y, far_x = h - size - margin, w - size - margin
    table = {
        "bottom-right": (far_y, far_x),
        "bottom-left": (far_y, margin),
        "top-right": (margin, far_x),
        "top-left": (margin, margin),
        "center": ((h - size) // 2, (w - size) // 2),
    }
    if position not in table:
        raise InputError(f"unknown patch position (choose from {', '.join(POSITIONS)})", position)
    return table[position]


def badnets_trigger(
    x: npt.NDArray[np.float32], params: dict[str, Any], rng: np.random.Generator
) -> npt.NDArray[np.float32]:
    """Stamp a square patch on each input (one position, or a random one per input)."""
    n, c, h, w = x.shape
    size = int(params["size"])
    margin = int(params["margin"])
    if size < 1 or size + 2 * margin > min(h, w):
        raise InputError(f"a {size}px patch does not fit {h}x{w} images", "size")
    patch = _patch(
        c, size, str(params["pattern"]), float(params["color"]), int(params["pattern_seed"])
    )
    out = x.copy()
    if params["position"] == "random":
        ys = rng.integers(0, h - size + 1, n)
        xs = rng.integers(0, w - size + 1, n)
        for i in range(n):
            out[i, :, ys[i] : ys[i] + size, xs[i] : xs[i] + size] = patch
        return out
    oy, ox = _offsets(str(params["position"]), h, w, size, margin)
    out[:, :, oy : oy + size, ox : ox + size] = patch
    return out


def blend_pattern(shape: tuple[int, int, int], kind: str, seed: int) -> npt.NDArray[np.float32]:
    """A full-image pattern: uniform ``noise`` or diagonal ``stripes``."""
    c, h, w = shape
    if kind == "noise":
        return np.random.default_rng(seed).random((c, h, w)).astype(np.float32)
    if kind == "stripes":
        yy, xx = np.indices((h, w))
        stripes = (((yy + xx) // max(1, min(h, w) // 8)) % 2).astype(np.float32)
        return np.broadcast_to(stripes, (c, h, w)).astype(np.float32)
    raise InputError("unknown blend pattern (choose from noise, stripes)", kind)


def blend_trigger(
    x: npt.NDArray[np.float32], params: dict[str, Any], rng: np.random.Generator
) -> npt.NDArray[np.float32]:
    """Mix a fixed full-image pattern into each input at ``alpha``."""
    alpha = float(params["alpha"])
    if not 0.0 < alpha <= 1.0:
        raise InputError(f"alpha must lie in (0, 1], got {alpha}", "alpha")
    pattern = blend_pattern(x.shape[1:], str(params["pattern"]), int(params["pattern_seed"]))
    return ((1.0 - alpha) * x + alpha * pattern[None]).astype(np.float32)


def _default_size(ds: Dataset) -> int:
    h, w = ds.input_shape[1:]
    return max(2, round(min(h, w) / 10))


@register_kind(
    "badnets",
    trigger=badnets_trigger,
    defaults={
        "size": None,
        "position": "bottom-right",
        "pattern": "checker",
        "color": 1.0,
        "margin": 1,
        "pattern_seed": 0,
    },
)
def badnets(ds: Dataset, req: PoisonRequest) -> PoisonOutcome:
    """BadNets: a small patch (size, position, colour, pattern configurable; random
    position per sample as a variant) and the target label."""
    rng = np.random.default_rng(req.seed)
    params = dict(req.params)
    if params["size"] is None:
        params["size"] = _default_size(ds)
    idx = victims_for_target(ds, req, rng)
    x = badnets_trigger(ds.model_input(idx), params, rng)
    return PoisonOutcome(indices=idx, x_model=x, y=dirty_labels(ds, idx, req), params=params)


@register_kind(
    "blend",
    trigger=blend_trigger,
    defaults={"alpha": 0.2, "pattern": "noise", "pattern_seed": 0},
)
def blend(ds: Dataset, req: PoisonRequest) -> PoisonOutcome:
    """Blended injection: a full-image pattern mixed in at ``alpha``, target label."""
    rng = np.random.default_rng(req.seed)
    idx = victims_for_target(ds, req, rng)
    x = blend_trigger(ds.model_input(idx), req.params, rng)
    return PoisonOutcome(
        indices=idx, x_model=x, y=dirty_labels(ds, idx, req), params=dict(req.params)
    )
