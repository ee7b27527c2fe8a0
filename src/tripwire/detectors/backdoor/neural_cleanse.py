"""A faithful class-by-class Neural Cleanse (Wang et al., S&P 2019), the baseline.

Published defaults (bolunwang/backdoor, ``gtsrb_visualize_example.py``): per class, up
to 1000 epochs over the clean sample in batches of 32, Adam (lr 0.1, betas 0.5/0.9),
initial cost 1e-3 set once the attack succeeds at 99% for 5 epochs, cost x2 / / 2**1.5
after 5 epochs above / below 99%, early stop after 25 epochs without the best mask norm
shrinking (once the cost has moved both ways); then the MAD rule on the L1 norms
(``mad_outlier_detection.py``): classes below the median with anomaly index > 2.

``scan-model`` uses the same engine batched over all classes with shorter patience;
this module exists to measure that speed-up honestly, on the same model and data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tripwire.detectors.backdoor.reverse import (
    NEURAL_CLEANSE_DEFAULTS,
    SearchConfig,
    SearchResult,
    mad_anomaly,
    search_triggers,
)
from tripwire.models.loading import Model

#: Neural Cleanse's decision threshold on the anomaly index.
NC_THRESHOLD = 2.0


@dataclass
class NeuralCleanseResult:
    """Per-class mask norms and anomaly indices, the flagged classes and the run time."""

    search: SearchResult
    anomaly_index: npt.NDArray[np.float64]
    flagged: list[int]

    @property
    def time_s(self) -> float:
        return self.search.time_s


def neural_cleanse(
    model: Model,
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    *,
    config: SearchConfig = NEURAL_CLEANSE_DEFAULTS,
    random_state: int = 0,
) -> NeuralCleanseResult:
    """Run Neural Cleanse class by class and apply its MAD rule to the L1 norms."""
    res = search_triggers(
        model, x, y, config=config, random_state=random_state, class_by_class=True
    )
    idx, med, _ = mad_anomaly(res.norms)
    flagged = [
        t.target
        for t, a, n in zip(res.triggers, idx, res.norms, strict=True)
        if n < med and a > NC_THRESHOLD
    ]
    return NeuralCleanseResult(search=res, anomaly_index=idx, flagged=flagged)
