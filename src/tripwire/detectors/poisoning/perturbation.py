"""Perturbation consistency of training samples: poisons whose label survives superimposition.

A model trained on backdoor poisons answers "target" to the trigger whatever else the
image shows. STRIP (Gao et al., ACSAC 2019) uses this at run time: an input superimposed
on other images keeps a low-entropy prediction when it carries a dominant trigger. Here
the same test runs over the **training set**, with the model trained on it (the suspect
model, or the proxy that ``scan-data`` trains): each sample is superimposed (pixel sum,
saturated at 1, STRIP's blend) on ``n_overlays`` samples of other labels, and its score is
``-log10`` of the mean prediction entropy. A poison's trigger survives and the model stays
certain (entropy 1e-3 to 1e-12 for patch and blended triggers); a clean sample mixed with
another digit makes the model hesitate.

Three steps, because a backdoor also makes the *target class's clean samples* robust to
superimposition (the model learned that class as the default for mixed inputs):

1. candidates: samples whose score exceeds the robust threshold over all samples
   (median + z * 1.4826 MAD), so the poison rate is never assumed;
2. confirmation: a dirty-label poison is an image of another class carrying the target's
   label, so most of its nearest neighbours in input space (pooled pixels, PCA), searched
   among the samples that are **not** candidates (poisons cannot vouch for each other,
   a blended trigger pulls them together), carry another label; a clean sample of the
   target class finds its own class. A candidate is flagged when more than
   ``min_disagreement`` of its neighbours disagree.

3. class gate: some clean classes survive superimposition by themselves (a dense digit
   such as 8 keeps its label under most sums) and a tenth of their candidates look like
   other digits; a class's confirmations count only when they exceed that class's own
   rate of look-alikes among its other samples (one-sided binomial, Bonferroni over
   classes, p < :data:`CLASS_P`). A target class's poisons all look like other classes.

Score of a sample: ``min(z / z_threshold, disagreement / min_disagreement)`` for
candidates (at most 1 in a class the gate holds back) and ``z / z_threshold`` (below 1)
for the rest; flagged above 1. Four overlays by default: on the quick suite's cells the
first four of eight draws gave the same flags as all eight, at half the cost.

Known limits, measured (docs/benchmarks.md): warping triggers (WaNet) do not survive a
pixel sum, so their poisons are not candidates; clean-label poisons (label-consistent,
SIG) are candidates but, carrying their true label, are not confirmed: they show in the
evidence as a class with far more candidates than the others, not as flags; a backdoor
the model did not learn (too few poisons for its training) leaves nothing to see.
Cost: ``n_overlays`` forward passes over the data; the neighbours come from the scan's
shared input-space graph (:func:`~tripwire.detectors.input_space.neighbours_among`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import numpy.typing as npt
from scipy import stats

from tripwire.detectors.backdoor.input_trigger import softmax
from tripwire.detectors.base import (
    BaseDetector,
    Calibration,
    DetectorInput,
    Need,
    Threat,
    fitted_scores,
)
from tripwire.detectors.calibration import MAD_TO_SD
from tripwire.detectors.input_space import neighbours_among
from tripwire.detectors.registry import register
from tripwire.errors import InputError

if TYPE_CHECKING:
    from tripwire.models.loading import Model

#: Entropy floor (nats) before the log: float32 softmax saturates far below it.
_MIN_ENTROPY = 1e-12
#: Floor of the robust scale of ``-log10`` entropies: a model that answers every mixture
#: alike (an untrained or collapsed one: all entropies within a few percent of log C)
#: would otherwise turn rounding-level differences into huge z-scores. Trained models
#: spread far wider (MAD 0.15 to 0.3 on MNIST), so the floor never binds there.
MIN_LOG_SCALE = 0.1
#: A class's confirmations must exceed its own rate of look-alikes at this significance
#: (the class-level standard of ``scan-data``'s TW104): on clean MNIST, dense digits
#: (8) survive superimposition and a tenth of their candidates look like other digits.
CLASS_P = 1e-6


def superimposition_entropy(
    model: Model,
    x: npt.NDArray[np.float32],
    labels: npt.NDArray[np.int64],
    *,
    n_overlays: int,
    rng: np.random.Generator,
    chunk: int = 256,
) -> npt.NDArray[np.float64]:
    """Mean prediction entropy (nats) of each sample superimposed on ``n_overlays`` samples
    of other labels (pixel sum saturated at 1)."""
    n = len(x)
    out = np.empty(n, dtype=np.float64)
    for s in range(0, n, chunk):
        idx = np.arange(s, min(n, s + chunk))
        ov = _other_label_draws(labels, idx, n_overlays, rng)
        mixed = np.clip(x[idx][:, None] + x[ov], 0.0, 1.0).reshape(-1, *x.shape[1:])
        p = softmax(model.logits(mixed, batch_size=256))
        ent = -(p * np.log(np.clip(p, 1e-30, None))).sum(axis=1)
        out[idx] = ent.reshape(len(idx), n_overlays).mean(axis=1)
    return out


def _other_label_draws(
    labels: npt.NDArray[np.int64], idx: npt.NDArray[np.int64], k: int, rng: np.random.Generator
) -> npt.NDArray[np.int64]:
    """For each position in ``idx``, ``k`` random positions whose label differs."""
    n = len(labels)
    out = rng.integers(0, n, size=(len(idx), k))
    bad = labels[out] == labels[idx][:, None]
    for _ in range(4):  # cheap redraws settle almost every collision
        if not bad.any():
            return out
        out[bad] = rng.integers(0, n, size=int(bad.sum()))
        bad = labels[out] == labels[idx][:, None]
    # The rest (a class holding most of the data): draw from the other labels directly.
    rows, cols = np.nonzero(bad)
    for c in np.unique(labels[idx][rows]):
        others = np.flatnonzero(labels != c)
        if others.size == 0:
            raise InputError("needs samples of at least two labels to superimpose", "labels")
        sel = labels[idx][rows] == c
        out[rows[sel], cols[sel]] = rng.choice(others, int(sel.sum()))
    return out


@register
class PerturbationConsistencyDetector(BaseDetector):
    """Flag training samples whose label survives superimposition and whose input looks
    like another class (see the module docstring).

    Needs ``model`` (trained on this data), ``labels`` and ``data``.

    Parameters
    ----------
    n_overlays
        Images each sample is superimposed on (each costs one forward pass over the data).
    k
        Input-space neighbours of a candidate.
    min_disagreement
        Share of a candidate's neighbours that must carry another label.
    random_state
        Seeds the overlay draws and the input embedding.
    """

    name: ClassVar[str] = "perturbation-consistency"
    threat: ClassVar[Threat] = Threat.BACKDOOR
    needs: ClassVar[frozenset[Need]] = frozenset({Need.MODEL, Need.LABELS, Need.DATA})
    #: Confirmation needs this data's own neighbourhoods: the robust threshold stands.
    reference_calibrated: ClassVar[bool] = False

    def __init__(
        self,
        *,
        n_overlays: int = 4,
        k: int = 10,
        min_disagreement: float = 0.5,
        random_state: int = 0,
        fpr: float = 0.01,
        z: float = 3.5,
    ) -> None:
        super().__init__(fpr=fpr, z=z)
        self.n_overlays = n_overlays
        self.k = k
        self.min_disagreement = min_disagreement
        self.random_state = random_state

    def _check_params(self) -> None:
        super()._check_params()
        if self.n_overlays < 1 or self.k < 1:
            raise InputError("n_overlays and k must be at least 1", self.name)
        if not 0.0 < self.min_disagreement < 1.0:
            raise InputError("min_disagreement must lie in (0, 1)", self.name)

    def _fit(self, inputs: DetectorInput) -> None:
        model, data, y = inputs.model, inputs.data, inputs.labels
        if model is None or data is None or y is None or len(data) != len(y):
            raise InputError("needs the model, the data and one label per sample", self.name)
        y = np.asarray(y, dtype=np.int64)
        if len(np.unique(y)) < 2 or len(y) <= self.k:
            raise InputError(f"needs at least two labels and more than {self.k} samples", self.name)
        x = np.ascontiguousarray(data.model_input(), dtype=np.float32)
        rng = np.random.default_rng(self.random_state)
        ent = superimposition_entropy(model, x, y, n_overlays=self.n_overlays, rng=rng)
        s = -np.log10(np.maximum(ent, _MIN_ENTROPY))
        med = float(np.median(s))
        scale = max(float(np.median(np.abs(s - med))) * MAD_TO_SD, MIN_LOG_SCALE)
        z = (s - med) / scale
        cand = z > self.z
        dis = np.zeros(len(y))
        rest = np.flatnonzero(~cand)
        ci = np.flatnonzero(cand)
        gate: dict[int, dict[str, float]] = {}
        if ci.size and rest.size > self.k:
            space = inputs.space(self.random_state)
            # Every sample's nearest non-candidates (itself left out): for a candidate
            # the confirmation, for the class's other samples its natural rate of
            # samples that look like another class.
            nb = neighbours_among(space, ~cand, np.arange(len(y)), self.k)
            dis = (y[nb] != y[:, None]).mean(axis=1)
            gate = self._class_gate(y, cand, dis)
        rel = z / self.z
        confirmed = cand & (dis > self.min_disagreement)
        for c, g in gate.items():
            if g["p_value"] >= CLASS_P:
                confirmed &= y != c
        score = np.where(cand, np.minimum(rel, dis / self.min_disagreement), rel)
        # Candidates of a class whose confirmations are not beyond that class's own rate
        # stay just under the threshold: ranked, not flagged.
        self.scores_ = np.where(cand & ~confirmed, np.minimum(score, 1.0), score)
        self.class_gate_ = gate
        self.entropy_ = ent
        self.z_ = z
        self.candidates_ = cand
        self.disagreement_ = dis
        self.labels_ = y
        self.calibration_ = Calibration(
            method="robust-z",
            threshold=1.0,
            n_reference=len(y),
            details={
                "z": self.z,
                "over": "-log10 superimposition entropy of all samples",
                "entropy_median": float(10 ** (-med)),
                "min_disagreement": self.min_disagreement,
                "n_overlays": self.n_overlays,
            },
        )

    def _class_gate(
        self, y: npt.NDArray[np.int64], cand: npt.NDArray[np.bool_], dis: npt.NDArray[np.float64]
    ) -> dict[int, dict[str, float]]:
        """Per class with candidates: confirmed candidates against the class's own rate of
        samples whose neighbours mostly carry another label (one-sided binomial,
        Bonferroni over classes)."""
        classes = np.unique(y)
        out: dict[int, dict[str, float]] = {}
        for c in np.unique(y[cand]):
            mine = y == c
            n_c = int((cand & mine).sum())
            k_c = int((cand & mine & (dis > self.min_disagreement)).sum())
            others = ~cand & mine
            base = (float((dis[others] > self.min_disagreement).sum()) + 1.0) / (
                float(others.sum()) + 2.0
            )
            p = float(min(stats.binom.sf(k_c - 1, n_c, base) * len(classes), 1.0))
            out[int(c)] = {"candidates": n_c, "confirmed": k_c, "base_rate": base, "p_value": p}
        return out

    def _score(self, inputs: DetectorInput) -> npt.NDArray[np.float64]:
        return fitted_scores(inputs, self.scores_, len(self.scores_), self.name)

    def _evidence(
        self, inputs: DetectorInput, scores: npt.NDArray[np.float64], flags: npt.NDArray[np.bool_]
    ) -> dict[str, Any]:
        y = self.labels_
        classes = np.unique(y)
        n_cls = np.array([(y == c).sum() for c in classes])
        cand = np.array([int((self.candidates_ & (y == c)).sum()) for c in classes])
        conf = np.array([int((flags & (y == c)).sum()) for c in classes])
        # A class with far more candidates than its share (Bonferroni over classes, one-sided
        # binomial) and few confirmed: the signature of clean-label poisons, which keep
        # their true label; reported for a person to look at, never flagged per sample.
        pvals = _class_excess(cand, n_cls)
        p_flag = _class_excess(conf, n_cls)
        unconfirmed = [
            {"class": int(c), "candidates": int(k), "samples": int(m), "p_value": float(p)}
            for c, k, m, p, f in zip(classes, cand, n_cls, pvals, conf, strict=True)
            if p < 1e-6 and f < 0.5 * k
        ]
        return {
            "n_overlays": self.n_overlays,
            "candidates": int(self.candidates_.sum()),
            "confirmed": int(flags.sum()),
            "per_class": [
                {"class": int(c), "candidates": int(k), "flagged": int(f)}
                for c, k, f in zip(classes, cand, conf, strict=True)
            ],
            # Classes whose flags are beyond their share, not every class with a stray flag.
            "target_classes": [
                int(c) for c, f, p in zip(classes, conf, p_flag, strict=True) if f and p < 1e-6
            ],
            "unconfirmed_excess_classes": unconfirmed,
            "class_gate": {
                str(c): {k: round(v, 6) if isinstance(v, float) else v for k, v in g.items()}
                for c, g in self.class_gate_.items()
            },
        }


def _class_excess(
    counts: npt.NDArray[np.int64], sizes: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    """Bonferroni-corrected one-sided binomial p-value of each class's count against the
    overall rate spread over classes by size."""
    rate = min(max(float(counts.sum()) / max(float(sizes.sum()), 1.0), 1e-9), 1.0)
    p = stats.binom.sf(counts - 1, sizes, rate) * len(counts)
    return np.asarray(np.minimum(p, 1.0), dtype=np.float64)
