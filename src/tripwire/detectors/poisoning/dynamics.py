"""Training dynamics: flipped labels are fought over before they are memorised.

A network trained on data with some wrong labels fits the clean items early and the
mislabelled ones late: until it memorises an item, the item's look-alikes pull its
logits towards its true class, so its margin ``z_label - max_{j != label} z_j`` stays
low or negative for many epochs. The area under that margin (AUM) over a training run
ranks mislabelled items far better than any score of the finished model, which has
memorised them (Pleiss et al., "Identifying Mislabeled Data using the Area Under the
Margin Ranking", NeurIPS 2020).

The margins come from the training passes themselves
(:func:`~tripwire.models.train.train_model` with ``record_margins``), so a scan that
trains a proxy anyway gets them at no cost; a scan of a given model pays one training
run (:func:`record_dynamics`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import numpy.typing as npt

from tripwire.detectors.base import (
    BaseDetector,
    DetectorInput,
    Need,
    Threat,
    class_flag_counts,
)
from tripwire.detectors.registry import register
from tripwire.errors import InputError

if TYPE_CHECKING:
    from tripwire.io import Dataset

#: Fewest recorded epochs whose area means anything (one epoch is only a snapshot).
MIN_EPOCHS = 2


def area_under_margin(margins: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Each item's mean margin over the recorded epochs: ``(epochs, N)`` -> ``(N,)``.

    Raises
    ------
    InputError
        Not 2-D, fewer than :data:`MIN_EPOCHS` epochs, or an item never recorded (NaN in
        every epoch: held out of the training run) or an infinite margin.
    """
    m = np.asarray(margins, dtype=np.float64)
    if m.ndim != 2:
        raise InputError(f"margins must be (epochs, N), got shape {m.shape}", "training-margin")
    if m.shape[0] < MIN_EPOCHS:
        raise InputError(
            f"needs the margins of at least {MIN_EPOCHS} epochs, got {m.shape[0]}",
            "training-margin",
        )
    if np.isinf(m).any():
        raise InputError("margins contain infinite values", "training-margin")
    seen = ~np.isnan(m)
    unseen = int((~seen.any(axis=0)).sum())
    if unseen:
        raise InputError(
            f"{unseen} items have no recorded margin (held out of the training run)",
            "training-margin",
        )
    return np.asarray(np.where(seen, m, 0.0).sum(axis=0) / seen.sum(axis=0), dtype=np.float64)


def record_dynamics(
    ds: Dataset,
    *,
    epochs: int | None = None,
    arch: str = "auto",
    seed: int = 0,
    show_progress: bool = True,
) -> npt.NDArray[np.float32]:
    """Train a proxy on every item of ``ds`` and return its ``(epochs, N)`` margins.

    One training run of the reference recipe (``arch``, ``epochs`` as
    ``tripwire train`` picks them), with no validation hold-out so that every item has
    a margin in every epoch.
    """
    from tripwire.models.train import TrainConfig, train_model

    res = train_model(
        ds,
        TrainConfig(arch=arch, epochs=epochs, seed=seed, val_fraction=0.0),
        show_progress=show_progress,
        record_margins=True,
    )
    if res.margins is None:  # pragma: no cover - record_margins always fills it
        raise RuntimeError("the training run recorded no margins")
    return res.margins


@register
class TrainingMarginDetector(BaseDetector):
    """Flag items whose margin stayed low through a training run on the data (AUM).

    Needs ``labels`` and the run's ``margins`` (``DetectorInput.margins``, recorded where
    tripwire trains). The score is minus the area under the margin, so a label the
    network kept disputing scores high; the threshold is the robust cut of the
    scores (or, given verified samples or a clean set, their false-alarm rate).

    It reads the data's own labels only: a dirty-label backdoor's poisons, learnt
    early through their trigger, score low (the opposite of a flip).

    Parameters
    ----------
    fpr, z
        See :class:`~tripwire.detectors.base.BaseDetector`.
    """

    name: ClassVar[str] = "training-margin"
    threat: ClassVar[Threat] = Threat.POISONING
    needs: ClassVar[frozenset[Need]] = frozenset({Need.LABELS, Need.DYNAMICS})

    def _fit(self, inputs: DetectorInput) -> None:
        if inputs.margins is None or inputs.labels is None:  # pragma: no cover - require()
            raise InputError("needs labels and margins", self.name)
        aum = area_under_margin(inputs.margins)
        if len(aum) != len(inputs.labels):
            raise InputError(
                f"margins cover {len(aum)} items, the labels {len(inputs.labels)}", self.name
            )
        self.aum_ = aum
        self.epochs_ = int(np.asarray(inputs.margins).shape[0])

    def calibrate(self, reference: DetectorInput) -> TrainingMarginDetector:
        """A separate clean set has no margins of this run (it was not trained on): the
        robust cut stays. Verified samples of the data do calibrate it
        (:meth:`calibrate_fitted`)."""
        if reference.margins is None:
            return self
        return super().calibrate(reference)

    def _score(self, inputs: DetectorInput) -> npt.NDArray[np.float64]:
        if inputs.margins is None:  # pragma: no cover - require() checked it
            raise InputError("needs margins", self.name)
        return -area_under_margin(inputs.margins)

    def _evidence(
        self, inputs: DetectorInput, scores: npt.NDArray[np.float64], flags: npt.NDArray[np.bool_]
    ) -> dict[str, Any]:
        return {
            "epochs": self.epochs_,
            "negative_area": int((self.aum_ < 0).sum()),
            "per_class": class_flag_counts(inputs.labels, flags),
        }
