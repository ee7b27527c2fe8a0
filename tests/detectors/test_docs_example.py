"""The 'Adding a detector' example of docs/architecture.md, kept working."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np

from tripwire.detectors import BaseDetector, DetectorInput, Need, Threat, register

DOC = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"


@register
class LossOutlier(BaseDetector):
    """Flags samples whose out-of-sample loss is unusually high."""

    name: ClassVar[str] = "loss-outlier"
    threat: ClassVar[Threat] = Threat.POISONING
    needs: ClassVar[frozenset[Need]] = frozenset({Need.PROBS, Need.LABELS})

    def _fit(self, inputs: DetectorInput) -> None:
        pass  # nothing to learn: the score is per sample

    def _score(self, inputs: DetectorInput) -> np.ndarray:
        assert inputs.probs is not None and inputs.labels is not None
        p = inputs.probs[np.arange(len(inputs.labels)), inputs.labels]
        return -np.log(np.clip(p, 1e-12, 1.0))


def test_example_is_in_the_doc() -> None:
    text = DOC.read_text()
    assert 'name: ClassVar[str] = "loss-outlier"' in text
    assert "return -np.log(np.clip(p, 1e-12, 1.0))" in text


def test_example_flags_flipped_labels() -> None:
    rng = np.random.default_rng(0)
    n, k = 500, 5
    labels = rng.integers(0, k, n)
    probs = np.full((n, k), 0.05)
    probs[np.arange(n), labels] = 0.8
    flipped = np.arange(0, n, 50)
    labels_seen = labels.copy()
    labels_seen[flipped] = (labels[flipped] + 1) % k  # the model disagrees with these
    probs += rng.uniform(0, 0.01, probs.shape)
    probs /= probs.sum(1, keepdims=True)
    result = LossOutlier(z=3.5).detect(DetectorInput(probs=probs, labels=labels_seen))
    assert result.flagged == sorted(flipped.tolist())
