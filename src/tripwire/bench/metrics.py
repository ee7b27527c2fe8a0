"""Detection metrics from continuous scores and from flags, robust to degenerate cells.

Every figure the benchmark reports comes from here: precision, recall and F1 of the
flags; AUROC, AUPRC and TPR at 1% FPR of the scores (threshold-free, so a detector is
not judged by its threshold alone); and the flag rate, which on clean data (0% poisoned)
is the false-alarm rate.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve


def tpr_at_fpr(truth: npt.NDArray[np.bool_], scores: npt.NDArray[np.float64], fpr: float) -> float:
    """The best true-positive rate whose false-positive rate is at most ``fpr``."""
    f, t, _ = roc_curve(truth, scores)
    ok = f <= fpr
    return float(t[ok].max()) if ok.any() else 0.0


def flag_metrics(truth: npt.ArrayLike, flags: npt.ArrayLike) -> dict[str, Any]:
    """Precision, recall and F1 of boolean verdicts against the ground truth.

    Returns ``precision``, ``recall``, ``f1``, ``flag_rate``, ``n_flagged`` and
    ``n_positive``. With no positives (a clean cell) recall and F1 are ``None`` and
    precision is 1 when nothing is flagged, else 0; with positives and no flags,
    precision is 0.
    """
    t = np.asarray(truth, dtype=bool)
    f = np.asarray(flags, dtype=bool)
    if t.shape != f.shape:
        raise ValueError(f"truth and flags differ in shape: {t.shape}, {f.shape}")
    tp = int((t & f).sum())
    n_flag = int(f.sum())
    n_pos = int(t.sum())
    precision = tp / n_flag if n_flag else (1.0 if n_pos == 0 else 0.0)
    recall = tp / n_pos if n_pos else None
    f1 = (
        2 * precision * recall / (precision + recall)
        if recall is not None and precision + recall > 0
        else (0.0 if recall is not None else None)
    )
    return {
        "precision": round(precision, 6),
        "recall": None if recall is None else round(recall, 6),
        "f1": None if f1 is None else round(f1, 6),
        "flag_rate": round(n_flag / max(1, t.size), 6),
        "n_flagged": n_flag,
        "n_positive": n_pos,
    }


def detection_metrics(
    truth: npt.ArrayLike, scores: npt.ArrayLike, flags: npt.ArrayLike
) -> dict[str, Any]:
    """Metrics of one detector on one cell.

    Parameters
    ----------
    truth
        ``True`` for poisoned items (ground truth, read only by the benchmark).
    scores
        Continuous scores, higher = more suspicious.
    flags
        The detector's boolean verdicts.

    Returns
    -------
    dict
        ``precision``, ``recall``, ``f1``, ``auroc``, ``auprc``, ``tpr_at_1fpr``,
        ``flag_rate``, ``n_flagged``, ``n_positive`` (the flags' part as
        :func:`flag_metrics`). Score metrics are ``None`` where undefined (a clean cell
        has no positives).
    """
    t = np.asarray(truth, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    f = np.asarray(flags, dtype=bool)
    if not (t.shape == s.shape == f.shape):
        raise ValueError(
            f"truth, scores and flags differ in shape: {t.shape}, {s.shape}, {f.shape}"
        )
    fm = flag_metrics(t, f)
    both = 0 < fm["n_positive"] < t.size
    return {
        "precision": fm["precision"],
        "recall": fm["recall"],
        "f1": fm["f1"],
        "auroc": round(float(roc_auc_score(t, s)), 6) if both else None,
        "auprc": round(float(average_precision_score(t, s)), 6) if both else None,
        "tpr_at_1fpr": round(tpr_at_fpr(t, s, 0.01), 6) if both else None,
        "flag_rate": fm["flag_rate"],
        "n_flagged": fm["n_flagged"],
        "n_positive": fm["n_positive"],
    }


def curve_points(
    truth: npt.ArrayLike, scores: npt.ArrayLike, max_points: int = 60
) -> dict[str, list[float]]:
    """Down-sampled ROC and PR curves for the report (``None`` inputs give empty lists)."""
    from sklearn.metrics import precision_recall_curve

    t = np.asarray(truth, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    if not 0 < t.sum() < t.size:
        return {"fpr": [], "tpr": [], "recall": [], "precision": []}
    f, tp, _ = roc_curve(t, s)
    p, r, _ = precision_recall_curve(t, s)

    def thin(a: np.ndarray, b: np.ndarray) -> tuple[list[float], list[float]]:
        idx = np.unique(np.linspace(0, len(a) - 1, min(max_points, len(a))).astype(int))
        return [round(float(v), 4) for v in a[idx]], [round(float(v), 4) for v in b[idx]]

    fx, ty = thin(f, tp)
    rx, py = thin(r[::-1], p[::-1])
    return {"fpr": fx, "tpr": ty, "recall": rx, "precision": py}


def summarise(values: list[float | None]) -> dict[str, float | None]:
    """Mean and standard deviation over seeds, ignoring undefined values."""
    v = np.array([x for x in values if x is not None], dtype=np.float64)
    if v.size == 0:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": round(float(v.mean()), 6), "std": round(float(v.std()), 6), "n": int(v.size)}
