"""Benchmark suites: which data, attacks, rates and seeds make up the matrix."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tripwire.errors import InputError


@dataclass(frozen=True)
class AttackCell:
    """One attack setting of the matrix (``kind="clean"`` for the 0%-poisoned control)."""

    kind: str
    rates: tuple[float, ...]
    target: int | None = 0
    source: int | None = None
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DataSpec:
    """A dataset of the suite and how to train on it."""

    name: str
    spec: str  # what load_dataset takes; "{data_dir}" is replaced by --data-dir
    seeds: tuple[int, ...]
    epochs: int
    arch: str = "auto"
    train_subset: int | None = None  # stratified subset of the training split
    test_subset: int | None = None


@dataclass(frozen=True)
class Suite:
    name: str
    data: tuple[DataSpec, ...]
    attacks: tuple[AttackCell, ...]
    #: Retrain after removing each detector's flags (backdoor cells, first seed only).
    retrain: bool = True
    #: Rates at which to retrain (None: all); retraining dominates the suite's time.
    retrain_rates: tuple[float, ...] | None = None
    #: Rows (detector names) to retrain for (None: every row that flagged something).
    retrain_detectors: tuple[str, ...] | None = None
    extraction: bool = True
    needs_data_dir: bool = False
    description: str = ""


QUICK = Suite(
    name="quick",
    description=(
        "bundled MNIST digits (4,000 train / 1,000 test), 3+ poisoning attacks x every "
        "data detector x 2 rates x 2 seeds, clean cells, one extraction cell; under 10 "
        "minutes on 2 CPU cores"
    ),
    data=(DataSpec(name="mnist-5k", spec="bundled:mnist", seeds=(0, 1), epochs=5),),
    retrain_rates=(0.05,),
    attacks=(
        AttackCell("clean", rates=(0.0,)),
        AttackCell("badnets", rates=(0.05, 0.1), target=0),
        AttackCell("blend", rates=(0.05, 0.1), target=0),
        AttackCell("label-flip", rates=(0.05, 0.1), target=None),
    ),
)

STANDARD = Suite(
    name="standard",
    needs_data_dir=True,
    # Retraining is the suite's largest cost after training itself: only the verdict a
    # user gets (the ensemble), at the 1% rate where issue #4 sets its bar.
    retrain_rates=(0.01,),
    retrain_detectors=("tripwire:ensemble",),
    description=(
        "full MNIST (3 seeds), a 10,000-image CIFAR-10 subset and the GTSRB subset (1 seed); "
        "backdoors at 1/5/10%, label flips at 1/5/20%; resumable"
    ),
    data=(
        DataSpec(name="mnist", spec="{data_dir}/mnist.npz", seeds=(0, 1, 2), epochs=4),
        DataSpec(
            name="cifar10-10k",
            spec="{data_dir}/cifar10-jpeg.tar.gz",
            seeds=(0,),
            epochs=18,
            train_subset=10_000,
            test_subset=2_000,
        ),
        DataSpec(name="gtsrb", spec="{data_dir}/gtsrb_subset.npz", seeds=(0,), epochs=18),
    ),
    attacks=(
        AttackCell("clean", rates=(0.0,)),
        AttackCell("badnets", rates=(0.01, 0.05, 0.1), target=0),
        AttackCell("blend", rates=(0.01, 0.05, 0.1), target=0),
        AttackCell("sig", rates=(0.01, 0.05, 0.1), target=0),
        # WaNet at the paper's s=0.5 is not learnt in a short CPU training run (measured in
        # tests/attacks): the suite uses a stronger warp so that the backdoor is real.
        AttackCell("wanet", rates=(0.01, 0.05, 0.1), target=0, params={"s": 5.0}),
        AttackCell("label-consistent", rates=(0.01, 0.05, 0.1), target=0),
        AttackCell("label-flip", rates=(0.01, 0.05, 0.2), target=None),
        AttackCell("pair-flip", rates=(0.01, 0.05, 0.2), target=None),
    ),
)

SUITES = {s.name: s for s in (QUICK, STANDARD)}


def get_suite(name: str) -> Suite:
    if name not in SUITES:
        raise InputError(f"unknown suite (choose from {', '.join(SUITES)})", name)
    return SUITES[name]
