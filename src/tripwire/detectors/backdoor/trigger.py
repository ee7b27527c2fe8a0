"""A reversed backdoor trigger: the mask and pattern a model-scanning method recovered.

Every trigger-search method of ``scan-model`` expresses what it found in one form,
``x' = x * (1 - mask) + pattern * mask``: a patch method finds a small, mostly binary
mask; a full-image method (blend, SIG, warping) finds a dense, small-valued mask over a
full-image pattern. ``apply`` is the one way to stamp a reversed trigger on inputs, so
that ``tripwire repair`` and the run-time detectors use whatever method found it alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from tripwire.errors import InputError


@dataclass
class ReversedTrigger:
    """The trigger that sends clean inputs to ``target``.

    Attributes
    ----------
    target
        The class the trigger sends inputs to.
    mask
        float32 ``(H, W)`` in [0, 1]: where (and how strongly) the pattern replaces the input.
    pattern
        float32 ``(C, H, W)`` in [0, 1]: what is stamped.
    method
        The search that found it (``"patch-batched"``, ``"blend-batched"``, ``"neural-cleanse"``).
    attack_success
        Share of clean inputs not of ``target`` that the trigger sends to ``target``.
    """

    target: int
    mask: npt.NDArray[np.float32]
    pattern: npt.NDArray[np.float32]
    method: str
    attack_success: float
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.mask = np.asarray(self.mask, dtype=np.float32)
        self.pattern = np.asarray(self.pattern, dtype=np.float32)
        if self.mask.ndim != 2:
            raise InputError(f"a trigger mask must be (H, W), got {self.mask.shape}", self.method)
        if self.pattern.ndim != 3 or self.pattern.shape[1:] != self.mask.shape:
            raise InputError(
                f"a trigger pattern must be (C, H, W) with (H, W) = {self.mask.shape}, "
                f"got {self.pattern.shape}",
                self.method,
            )
        for name, arr in (("mask", self.mask), ("pattern", self.pattern)):
            if not np.all(np.isfinite(arr)) or arr.min() < 0.0 or arr.max() > 1.0:
                raise InputError(f"a trigger {name} must lie in [0, 1]", self.method)

    @property
    def norm(self) -> float:
        """L1 norm of the mask (Neural Cleanse's trigger size)."""
        return float(np.abs(self.mask).sum())

    def apply(self, x: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Stamp the trigger on float32 NCHW inputs in [0, 1]: ``x*(1-mask)+pattern*mask``."""
        arr = np.asarray(x, dtype=np.float32)
        if arr.ndim != 4 or arr.shape[1:] != self.pattern.shape:
            raise InputError(
                f"inputs of shape {arr.shape} do not fit a trigger of shape {self.pattern.shape}",
                self.method,
            )
        m = self.mask[None, None]
        return np.asarray(arr * (1.0 - m) + self.pattern[None] * m, dtype=np.float32)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the arrays go to the ``.triggers.npz`` file, not here)."""
        return {
            "target": int(self.target),
            "method": self.method,
            "attack_success": round(float(self.attack_success), 4),
            "mask_l1": round(self.norm, 4),
            **self.extra,
        }


def save_triggers(path: str, triggers: list[ReversedTrigger]) -> None:
    """Write triggers to ``path`` (npz, no pickles): ``target``, ``mask``, ``pattern``,
    ``method`` and ``attack_success`` arrays, one row per trigger."""
    if not triggers:
        raise ValueError("no triggers to save")
    np.savez_compressed(
        path,
        target=np.asarray([t.target for t in triggers], dtype=np.int64),
        mask=np.stack([t.mask for t in triggers]).astype(np.float32),
        pattern=np.stack([t.pattern for t in triggers]).astype(np.float32),
        method=np.asarray([t.method for t in triggers], dtype=np.str_),
        attack_success=np.asarray([t.attack_success for t in triggers], dtype=np.float64),
    )


def load_triggers(path: str) -> list[ReversedTrigger]:
    """Read triggers written by :func:`save_triggers` (``allow_pickle=False``).

    Raises
    ------
    InputError
        Missing file, not an npz, missing arrays or inconsistent shapes.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise InputError("no such file", path) from None
    except (OSError, ValueError) as exc:
        raise InputError(f"not a readable triggers .npz ({exc})", path) from None
    missing = {"target", "mask", "pattern", "method"} - set(arrays)
    if missing:
        raise InputError(f"lacks the arrays {sorted(missing)}", path)
    k = len(arrays["target"])
    if any(len(arrays[n]) != k for n in ("mask", "pattern", "method")):
        raise InputError("has arrays of different lengths", path)
    success = arrays.get("attack_success", np.full(k, np.nan))
    return [
        ReversedTrigger(
            target=int(arrays["target"][i]),
            mask=arrays["mask"][i],
            pattern=arrays["pattern"][i],
            method=str(arrays["method"][i]),
            attack_success=float(success[i]),
        )
        for i in range(k)
    ]
