"""Run-time detection of triggered inputs, in two tiers, for Python callers and the gateway.

Tier 1 (cheap, every input): a feature-space outlier score. The penultimate activations of
an input are compared with the clean reference activations of the class the model
*predicts* for it (per-class shrunk Mahalanobis distance in a PCA space, as in
:mod:`tripwire.detectors.backdoor.feature_outlier`). A trigger drives an input to its
target class by a path that clean inputs of that class do not take, so its activations sit
away from theirs. Where the model exports ``forward_features`` the score comes from the
same forward pass as the prediction: :meth:`TriggeredInputDetector.score_outputs` takes
the logits and features the gateway already has, and costs two small matrix products.

Tier 2 (deeper, on demand): STRIP. The input is superimposed on ``n`` clean reference
images and the entropy of the model's predictions is averaged; a trigger keeps forcing its
target class whatever the background, so triggered inputs have low entropy. It costs
``n`` forward passes per input, so it runs only on what tier 1 finds suspicious or on a
sampled share of traffic.

Both thresholds are calibrated to a false-rejection rate on clean reference inputs held
out from the fit (conformal order statistic), never guessed.

References: Lee et al., "A Simple Unified Framework for Detecting Out-of-Distribution
Samples and Adversarial Attacks", NeurIPS 2018; Gao et al., "STRIP: A Defence Against
Trojan Attacks on Deep Neural Networks", ACSAC 2019.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Self

import numpy as np
import numpy.typing as npt

from tripwire.detectors.backdoor.feature_outlier import fit_class_gaussians
from tripwire.detectors.base import Calibration
from tripwire.detectors.calibration import threshold_at_fpr
from tripwire.errors import InputError, NotFittedError

if TYPE_CHECKING:
    from tripwire.models.loading import Model

FloatArray = npt.NDArray[np.float64]
Blend = Literal["add", "mean"]
Combine = Literal["any", "confirm"]

NAME = "input-trigger"


# -- pure functions --------------------------------------------------------------------------
def softmax(logits: npt.ArrayLike) -> FloatArray:
    """Row-wise softmax in float64 (stable)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=1, keepdims=True), dtype=np.float64)


def whitening_maps(gaussians: dict[str, Any]) -> tuple[FloatArray, FloatArray]:
    """Fold the PCA projection and each class's precision into one linear map per class.

    With ``precision_c = L_c L_c^T`` (Cholesky), the squared Mahalanobis distance of raw
    features ``f`` to class ``c`` is ``||f @ A_c - b_c||^2`` with
    ``A_c = components^T L_c`` ``(F, d)`` and ``b_c = (mean @ components^T + mu_c) L_c``.
    At run time that is one ``(F, d)`` product per input, the cheapest form of tier 1.
    Returns ``A`` ``(K, F, d)`` and ``b`` ``(K, d)`` (zeros for classes not fitted).
    """
    comps = np.asarray(gaussians["components"], dtype=np.float64)
    mean = np.asarray(gaussians["mean"], dtype=np.float64)
    present = gaussians["present"]
    k, d, f = len(present), comps.shape[0], comps.shape[1]
    maps = np.zeros((k, f, d), dtype=np.float64)
    offsets = np.zeros((k, d), dtype=np.float64)
    for c in np.flatnonzero(present):
        prec = np.asarray(gaussians["precision"][c], dtype=np.float64)
        prec = 0.5 * (prec + prec.T)
        try:
            chol = np.linalg.cholesky(prec)
        except np.linalg.LinAlgError:
            # Not numerically positive definite: a symmetric square root does the same job.
            w, v = np.linalg.eigh(prec)
            chol = v * np.sqrt(np.clip(w, 0.0, None))
        maps[c] = comps.T @ chol
        offsets[c] = (mean @ comps.T + gaussians["class_mean"][c]) @ chol
    return maps, offsets


def class_outlier_scores(
    features: npt.ArrayLike,
    predicted: npt.ArrayLike,
    maps: FloatArray,
    offsets: FloatArray,
    present: npt.NDArray[np.bool_],
) -> FloatArray:
    """Dimension-normalised Mahalanobis distance of each item to its predicted class.

    ``maps`` and ``offsets`` come from :func:`whitening_maps`. Items predicted as a class
    the reference did not cover get ``inf`` (nothing clean was ever seen there).
    """
    f = np.asarray(features, dtype=np.float64)
    pred = np.asarray(predicted, dtype=np.int64)
    out = np.full(len(pred), np.inf, dtype=np.float64)
    dim = maps.shape[2]
    if len(pred) == 1:  # the gateway's common case: no grouping needed
        c = int(pred[0])
        if 0 <= c < len(present) and present[c]:
            r = f[0] @ maps[c] - offsets[c]
            out[0] = np.sqrt(float(r @ r) / dim)
        return out
    known = (pred >= 0) & (pred < len(present))
    known[known] = present[pred[known]]
    for c in np.unique(pred[known]):
        sel = pred == c
        r = f[sel] @ maps[c] - offsets[c]
        out[sel] = np.sqrt(np.einsum("ni,ni->n", r, r) / dim)
    return out


def superimpose(
    x: npt.NDArray[np.float32], overlays: npt.NDArray[np.float32], blend: Blend
) -> npt.NDArray[np.float32]:
    """Every input over every overlay: ``(N, ...)`` x ``(M, ...)`` -> ``(N * M, ...)``.

    ``add`` is STRIP's own superimposition (pixel sum, saturated at 1: a bright patch
    survives it intact); ``mean`` averages the two images.
    """
    a = x[:, None]
    b = overlays[None]
    mixed = np.clip(a + b, 0.0, 1.0) if blend == "add" else 0.5 * (a + b)
    return np.asarray(mixed.reshape(-1, *x.shape[1:]), dtype=np.float32)


def strip_entropy(
    model: Model,
    x: npt.NDArray[np.float32],
    overlays: npt.NDArray[np.float32],
    *,
    blend: Blend = "add",
    chunk: int = 64,
) -> FloatArray:
    """Mean prediction entropy (nats) of each input superimposed on each overlay."""
    n, m = len(x), len(overlays)
    out = np.empty(n, dtype=np.float64)
    for s in range(0, n, chunk):
        xb = x[s : s + chunk]
        p = softmax(model.logits(superimpose(xb, overlays, blend), batch_size=512))
        ent = -(p * np.log(np.clip(p, 1e-12, None))).sum(axis=1)
        out[s : s + len(xb)] = ent.reshape(len(xb), m).mean(axis=1)
    return out


def split_reference(
    y: npt.NDArray[np.int64], share: float, rng: np.random.Generator
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Stratified split of reference positions into (fit, calibration)."""
    cal = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        k = round(len(idx) * share)
        if len(idx) - k >= 2:  # every class keeps at least two items to fit on
            cal[idx[:k]] = True
    return np.flatnonzero(~cal), np.flatnonzero(cal)


# -- typed result ----------------------------------------------------------------------------
@dataclass
class InputCheck:
    """What :meth:`TriggeredInputDetector.check` found for a batch of inputs.

    Attributes
    ----------
    predictions
        The model's class for each input.
    feature_scores, feature_flags
        Tier 1 score (higher = more suspicious) and whether it exceeded its threshold.
    strip_scores, strip_flags
        Tier 2 score (negative mean entropy: higher = more suspicious) for inputs it ran
        on (``nan`` elsewhere) and its flags (False where it did not run).
    strip_ran
        Which inputs tier 2 checked (tier-1 suspects plus the sampled share).
    flags
        The final decision per input (see ``combine`` of the detector).
    fired
        Per input: ``"none"``, ``"feature"``, ``"strip"`` or ``"both"``.
    """

    predictions: npt.NDArray[np.int64]
    feature_scores: FloatArray
    feature_flags: npt.NDArray[np.bool_]
    strip_scores: FloatArray
    strip_flags: npt.NDArray[np.bool_]
    strip_ran: npt.NDArray[np.bool_]
    flags: npt.NDArray[np.bool_]
    fired: list[str]

    def to_dict(self) -> dict[str, Any]:
        def num(v: float) -> float | None:
            return None if not np.isfinite(v) else round(float(v), 6)

        return {
            "n_inputs": len(self.predictions),
            "n_flagged": int(self.flags.sum()),
            "n_strip_checked": int(self.strip_ran.sum()),
            "inputs": [
                {
                    "prediction": int(self.predictions[i]),
                    "feature_score": num(self.feature_scores[i]),
                    "strip_score": num(self.strip_scores[i]),
                    "flagged": bool(self.flags[i]),
                    "fired": self.fired[i],
                }
                for i in range(len(self.predictions))
            ],
        }


# -- the detector ----------------------------------------------------------------------------
class TriggeredInputDetector:
    """Two-tier run-time detector of backdoor-triggered inputs.

    Parameters
    ----------
    frr
        False-rejection rate each tier's threshold is calibrated to on held-out clean
        reference inputs (``fit`` may override it).
    n_components
        PCA dimensions of the tier-1 class Gaussians.
    strip_overlays
        Clean reference images each input is superimposed on in tier 2 (STRIP: 100 in the
        paper; a few dozen suffice on small models).
    strip_blend
        ``add`` (STRIP's saturating sum) or ``mean``.
    strip_share
        Share of inputs that tier 1 passes that :meth:`check` still sends to tier 2.
    combine
        ``any``: flag what either tier flags. ``confirm``: an input tier 1 flags is
        flagged only if tier 2 agrees (fewer false rejections, tier 2 decides); inputs
        sampled into tier 2 are flagged when it fires.
    calibration_share
        Share of the reference held out to calibrate thresholds (the rest is fitted on).
    random_state
        Seeds the reference split, overlay choice and traffic sampling.
    """

    name = NAME

    def __init__(
        self,
        *,
        frr: float = 0.01,
        n_components: int = 32,
        strip_overlays: int = 32,
        strip_blend: Blend = "add",
        strip_share: float = 0.0,
        combine: Combine = "any",
        calibration_share: float = 0.4,
        random_state: int = 0,
    ) -> None:
        self.frr = frr
        self.n_components = n_components
        self.strip_overlays = strip_overlays
        self.strip_blend = strip_blend
        self.strip_share = strip_share
        self.combine = combine
        self.calibration_share = calibration_share
        self.random_state = random_state

    # -- fitting ---------------------------------------------------------------------------
    def _validate(self, frr: float) -> None:
        if not 0.0 < frr < 1.0:
            raise InputError(f"frr must lie in (0, 1), got {frr}", NAME)
        if not 0.0 < self.calibration_share < 1.0:
            raise InputError("calibration_share must lie in (0, 1)", NAME)
        if not 0.0 <= self.strip_share <= 1.0:
            raise InputError("strip_share must lie in [0, 1]", NAME)
        if self.strip_overlays < 1 or self.n_components < 1:
            raise InputError("strip_overlays and n_components must be at least 1", NAME)
        if self.strip_blend not in ("add", "mean"):
            raise InputError("strip_blend must be 'add' or 'mean'", NAME)
        if self.combine not in ("any", "confirm"):
            raise InputError("combine must be 'any' or 'confirm'", NAME)

    def fit(
        self,
        model: Model,
        reference_x: npt.ArrayLike,
        reference_y: npt.ArrayLike | None = None,
        frr: float | None = None,
    ) -> Self:
        """Fit both tiers on a small clean reference set and calibrate their thresholds.

        Parameters
        ----------
        model
            A loaded :class:`~tripwire.models.loading.Model`. Without ``features`` the
            logits stand in for them (weaker; ``feature_source_`` says so).
        reference_x
            Clean model-space inputs (float32 NCHW in [0, 1]).
        reference_y
            Their true labels. Tier 1 then fits only on items the model classifies
            correctly; without labels it fits on the model's predictions.
        frr
            Target false-rejection rate (default: the constructor's).

        Raises
        ------
        InputError
            Too small a reference, or one that does not cover the model's classes.
        """
        target_frr = self.frr if frr is None else frr
        self._validate(target_frr)
        x = np.ascontiguousarray(np.asarray(reference_x, dtype=np.float32))
        if x.ndim < 2 or len(x) < 20:
            raise InputError(
                f"the clean reference needs at least 20 inputs, got {len(x)}", "reference"
            )
        if model.kind == "onnx":
            raise InputError("needs a TorchScript model (ONNX models export no features)", NAME)
        self.feature_source_ = "features" if model.has_features else "logits"
        logits, feats = self._outputs(model, x)
        pred = logits.argmax(axis=1).astype(np.int64)
        n_classes = int(logits.shape[1])
        if reference_y is None:
            y = pred
        else:
            y = np.asarray(reference_y, dtype=np.int64)
            if y.shape != (len(x),):
                raise InputError("reference_y must have one label per reference input", NAME)
        rng = np.random.default_rng(self.random_state)
        fit_idx, cal_idx = split_reference(y, self.calibration_share, rng)
        if len(cal_idx) < 10:
            raise InputError(
                f"the clean reference leaves only {len(cal_idx)} inputs to calibrate on; "
                "give more reference inputs",
                "reference",
            )
        # Tier 1 fits on what the model gets right: a misclassified clean input is not
        # what clean activations of its predicted class look like.
        good = fit_idx[pred[fit_idx] == y[fit_idx]]
        missing = sorted(set(range(n_classes)) - set(np.unique(y[good]).tolist()))
        if missing:
            raise InputError(
                f"the clean reference does not cover the model's classes {missing[:10]} "
                "(with correct predictions); tier 1 needs clean activations of every class",
                "reference",
            )
        self.gaussians_ = fit_class_gaussians(feats[good], y[good], n_components=self.n_components)
        self.maps_, self.offsets_ = whitening_maps(self.gaussians_)
        self.n_classes_ = n_classes
        cal_feature = self._class_scores(feats[cal_idx], pred[cal_idx])
        self.feature_calibration_ = Calibration(
            method="fpr",
            threshold=threshold_at_fpr(cal_feature, target_frr),
            target_fpr=target_frr,
            n_reference=len(cal_idx),
            details={"tier": "feature", "source": self.feature_source_},
        )
        # Tier 2: overlays from the fit part, calibrated on the held-out part.
        k = min(self.strip_overlays, len(fit_idx))
        self.overlays_ = x[rng.choice(fit_idx, size=k, replace=False)]
        cal_strip = -strip_entropy(model, x[cal_idx], self.overlays_, blend=self.strip_blend)
        self.strip_calibration_ = Calibration(
            method="fpr",
            threshold=threshold_at_fpr(cal_strip, target_frr),
            target_fpr=target_frr,
            n_reference=len(cal_idx),
            details={"tier": "strip", "overlays": k, "blend": self.strip_blend},
        )
        self.model_ = model
        self.frr_ = target_frr
        self.input_shape_ = tuple(x.shape[1:])
        self._rng = np.random.default_rng(self.random_state + 1)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "gaussians_"):
            raise NotFittedError(f"{NAME}: call fit() before scoring")

    def _outputs(
        self, model: Model, x: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        if model.has_features:
            return model.logits_and_features(x)
        z = model.logits(x)
        return z, z

    def _inputs(self, x: npt.ArrayLike) -> npt.NDArray[np.float32]:
        arr = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
        if arr.shape[1:] != self.input_shape_:
            raise InputError(
                f"inputs of shape {arr.shape[1:]} do not match the reference's {self.input_shape_}",
                NAME,
            )
        return arr

    # -- tier 1 ----------------------------------------------------------------------------
    def score_outputs(self, logits: npt.ArrayLike, features: npt.ArrayLike) -> FloatArray:
        """Tier-1 scores from outputs the caller already has (the gateway's own pass).

        ``features`` are the penultimate activations from ``forward_features`` (or the
        logits again when the model was fitted without features).
        """
        self._check_fitted()
        z = np.asarray(logits)
        if z.ndim != 2 or z.shape[1] != self.n_classes_:
            raise InputError(f"logits must be (N, {self.n_classes_}), got {z.shape}", NAME)
        return self._class_scores(features, z.argmax(axis=1))

    def _class_scores(self, features: npt.ArrayLike, pred: npt.ArrayLike) -> FloatArray:
        return class_outlier_scores(
            features, pred, self.maps_, self.offsets_, self.gaussians_["present"]
        )

    def score(self, x: npt.ArrayLike) -> FloatArray:
        """Tier-1 scores (higher = more suspicious), running the forward pass itself."""
        self._check_fitted()
        logits, feats = self._outputs(self.model_, self._inputs(x))
        return self.score_outputs(logits, feats)

    # -- tier 2 ----------------------------------------------------------------------------
    def strip_scores(self, x: npt.ArrayLike) -> FloatArray:
        """Tier-2 scores: negative mean STRIP entropy (higher = more suspicious)."""
        self._check_fitted()
        return -strip_entropy(self.model_, self._inputs(x), self.overlays_, blend=self.strip_blend)

    # -- both ------------------------------------------------------------------------------
    def check(self, x: npt.ArrayLike, *, strip_share: float | None = None) -> InputCheck:
        """Score a batch with tier 1, escalate suspects (and a sampled share) to tier 2."""
        self._check_fitted()
        arr = self._inputs(x)
        logits, feats = self._outputs(self.model_, arr)
        return self.check_outputs(arr, logits, feats, strip_share=strip_share)

    def check_outputs(
        self,
        x: npt.ArrayLike,
        logits: npt.ArrayLike,
        features: npt.ArrayLike,
        *,
        strip_share: float | None = None,
    ) -> InputCheck:
        """:meth:`check` for a caller that already ran the forward pass."""
        share = self.strip_share if strip_share is None else strip_share
        if not 0.0 <= share <= 1.0:
            raise InputError("strip_share must lie in [0, 1]", NAME)
        arr = self._inputs(x)
        pred = np.asarray(logits).argmax(axis=1).astype(np.int64)
        f_scores = self.score_outputs(logits, features)
        f_flags = f_scores > self.feature_calibration_.threshold
        sampled = self._rng.random(len(arr)) < share
        ran = f_flags | sampled
        s_scores = np.full(len(arr), np.nan, dtype=np.float64)
        if ran.any():
            s_scores[ran] = self.strip_scores(arr[ran])
        s_flags = np.zeros(len(arr), dtype=bool)
        s_flags[ran] = s_scores[ran] > self.strip_calibration_.threshold
        # confirm: tier 2 has the last word on everything it checked.
        flags = s_flags if self.combine == "confirm" else f_flags | s_flags
        fired = [
            "both" if a and b else "feature" if a else "strip" if b else "none"
            for a, b in zip(f_flags.tolist(), s_flags.tolist(), strict=True)
        ]
        return InputCheck(
            predictions=pred,
            feature_scores=f_scores,
            feature_flags=f_flags,
            strip_scores=s_scores,
            strip_flags=s_flags,
            strip_ran=ran,
            flags=np.asarray(flags, dtype=bool),
            fired=fired,
        )

    def to_dict(self) -> dict[str, Any]:
        """The fitted configuration, JSON-ready."""
        self._check_fitted()
        return {
            "detector": NAME,
            "frr": self.frr_,
            "feature_source": self.feature_source_,
            "pca_dim": int(self.gaussians_["dim"]),
            "feature_calibration": self.feature_calibration_.to_dict(),
            "strip_calibration": self.strip_calibration_.to_dict(),
            "strip_share": self.strip_share,
            "combine": self.combine,
        }


__all__ = [
    "InputCheck",
    "TriggeredInputDetector",
    "class_outlier_scores",
    "split_reference",
    "strip_entropy",
    "superimpose",
    "whitening_maps",
]
