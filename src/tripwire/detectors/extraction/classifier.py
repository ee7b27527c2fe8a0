"""The learned stream classifier: logistic regression over stream features, as JSON.

Weights ship as package data, never as a pickle: ``data/stream_classifier.json`` (trained
on grey digits) and ``data/stream_classifier_colour.json`` (colour victims among the
streams; the default for colour images of at least 16x16). The JSON holds the feature
names (checked against :data:`FEATURES` on load), the standardisation, the
coefficients, and the alert thresholds calibrated on benign workloads only (low,
medium, high), with a record of what it was trained on. Retrain with
``tripwire guard-train``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tripwire.errors import InputError

#: The stream features, in the classifier's order (see ``monitor.stream_features``).
FEATURES: tuple[str, ...] = (
    "log_n",
    "ood_rate",
    "ood_log_mean",
    "repeat_rate",
    "nn_q01_rate",
    "nn_q05_rate",
    "nn_q25_rate",
    "nn_q50_rate",
    "class_entropy",
    "lowmargin_excess",
    "top1_deficit",
    "coverage_ratio",
    "distinct_ratio",
    "prada_w_deficit",
    "prada_add_rate",
    "chain_x_entropy",
    "ood_x_entropy",
)

DEFAULT_FILE = "stream_classifier.json"
#: The default for colour images of at least 16x16 (where TW311 runs). Trained with
#: colour victims among its streams: explanation tools on a colour victim answered with
#: many classes look like exploring attacks to a classifier trained on digits only.
COLOUR_FILE = "stream_classifier_colour.json"
#: Colour images at least this wide and high count as images (TW311 and the colour
#: classifier); smaller inputs are treated as grey digits are.
COLOUR_MIN_SIDE = 16


def is_colour_image(input_shape: tuple[int, ...]) -> bool:
    """Whether ``input_shape`` (CHW) is a colour image of at least
    :data:`COLOUR_MIN_SIDE` pixels a side (the inputs TW311 watches)."""
    return len(input_shape) == 3 and input_shape[0] >= 3 and min(input_shape[1:]) >= COLOUR_MIN_SIDE


@dataclass(frozen=True)
class StreamClassifier:
    """Logistic regression ``p = sigmoid(coef . (f - mean) / scale + intercept)``.

    ``thresholds`` are ascending probabilities for severities low, medium and high.
    """

    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    thresholds: tuple[float, float, float]
    info: dict[str, Any] = field(default_factory=dict)

    def score(self, features: npt.ArrayLike) -> float:
        """Probability that the stream is extraction."""
        f = np.asarray(features, dtype=np.float64)
        z = float(((f - np.asarray(self.mean)) / np.asarray(self.scale)) @ np.asarray(self.coef))
        z += self.intercept
        return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0

    def scores(self, features: npt.ArrayLike) -> npt.NDArray[np.float64]:
        f = np.asarray(features, dtype=np.float64)
        z = ((f - np.asarray(self.mean)) / np.asarray(self.scale)) @ np.asarray(self.coef)
        return np.asarray(1.0 / (1.0 + np.exp(-(z + self.intercept))), dtype=np.float64)

    def severity_rank(self, p: float) -> int:
        """0 below the low threshold, else 1 (low), 2 (medium) or 3 (high)."""
        return int(sum(p >= t for t in self.thresholds))

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "tripwire-stream-classifier/1",
            "features": list(FEATURES),
            "mean": list(self.mean),
            "scale": list(self.scale),
            "coef": list(self.coef),
            "intercept": self.intercept,
            "thresholds": list(self.thresholds),
            "info": self.info,
        }

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def from_dict(cls, d: Any, source: str = "classifier") -> StreamClassifier:
        """Read and validate the JSON form.

        Raises
        ------
        InputError
            Wrong format, features that differ from :data:`FEATURES`, bad numbers.
        """
        try:
            fmt = d["format"]
            features = tuple(d["features"])
            vec = [tuple(float(v) for v in d[k]) for k in ("mean", "scale", "coef")]
            thr = tuple(float(v) for v in d["thresholds"])
            intercept = float(d["intercept"])
        except (KeyError, TypeError, ValueError):
            raise InputError("malformed stream-classifier JSON", source) from None
        # Checked outside the try: InputError is a ValueError, and the message matters.
        if fmt != "tripwire-stream-classifier/1":
            raise InputError(f"unknown classifier format {fmt!r}", source)
        if features != FEATURES:
            raise InputError(
                "the classifier's features differ from this version's "
                "(retrain it with `tripwire guard-train`)",
                source,
            )
        if any(len(v) != len(FEATURES) for v in vec) or len(thr) != 3:
            raise InputError("stream-classifier vectors have the wrong length", source)
        if not all(math.isfinite(v) for vv in vec for v in vv) or min(vec[1]) <= 0:
            raise InputError("stream-classifier weights must be finite, scales positive", source)
        if list(thr) != sorted(thr) or not 0 < thr[0] <= 1:
            raise InputError("stream-classifier thresholds must ascend within (0, 1]", source)
        return cls(
            vec[0], vec[1], vec[2], intercept, (thr[0], thr[1], thr[2]), dict(d.get("info", {}))
        )

    @classmethod
    def load(cls, path: str | Path) -> StreamClassifier:
        p = Path(path)
        try:
            data = json.loads(p.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read the stream classifier: {exc}", str(p)) from None
        return cls.from_dict(data, str(p))

    @classmethod
    def default(cls, input_shape: tuple[int, ...] | None = None) -> StreamClassifier | None:
        """The weights shipped with the package for inputs of ``input_shape`` (the colour
        classifier for colour images of at least 16x16, else the digits-trained one);
        ``None`` if none ship."""
        name = COLOUR_FILE if input_shape and is_colour_image(input_shape) else DEFAULT_FILE
        res = resources.files("tripwire.detectors.extraction") / "data" / name
        if not res.is_file():
            return None
        return cls.from_dict(json.loads(res.read_text()), name)


def fit_logistic(
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.int64],
    *,
    l2: float = 1.0,
    weight: npt.NDArray[np.float64] | None = None,
    iters: int = 50,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64], float]:
    """L2-regularised logistic regression by Newton's method on standardised features.

    Returns ``mean, scale, coef, intercept``.
    """
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    xs = (x - mean) / scale
    a = np.hstack([xs, np.ones((len(xs), 1))])
    w = np.zeros(a.shape[1])
    sw = np.ones(len(y)) if weight is None else weight
    reg = np.full(a.shape[1], l2)
    reg[-1] = 0.0
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(a @ w, -30, 30)))
        g = a.T @ (sw * (p - y)) + reg * w
        h = (a * (sw * p * (1 - p))[:, None]).T @ a + np.diag(reg + 1e-9)
        step = np.linalg.solve(h, g)
        w -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return mean, scale, w[:-1], float(w[-1])
