"""Benchmark suites: which data, attacks, rates and seeds make up the matrix."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
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
    #: This dataset's own attack settings (None: the suite's).
    attacks: tuple[AttackCell, ...] | None = None


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
    #: Datasets (DataSpec names) to retrain on (None: all).
    retrain_data: tuple[str, ...] | None = None
    extraction: bool = True
    needs_data_dir: bool = False
    description: str = ""

    def attacks_for(self, spec: DataSpec) -> tuple[AttackCell, ...]:
        """The attack settings run on ``spec``."""
        return self.attacks if spec.attacks is None else spec.attacks


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

#: Issue #4's grid: backdoors at 1/5/10%, label flips at 1/5/20%.
GRID_ATTACKS = (
    AttackCell("clean", rates=(0.0,)),
    AttackCell("badnets", rates=(0.01, 0.05, 0.1), target=0),
    AttackCell("blend", rates=(0.01, 0.05, 0.1), target=0),
    AttackCell("sig", rates=(0.01, 0.05, 0.1), target=0),
    # WaNet at the paper's s=0.5 is not learnt in a short CPU training run (measured in
    # tests/attacks): the suites use a stronger warp so that the backdoor is real.
    AttackCell("wanet", rates=(0.01, 0.05, 0.1), target=0, params={"s": 5.0}),
    AttackCell("label-consistent", rates=(0.01, 0.05, 0.1), target=0),
    AttackCell("label-flip", rates=(0.01, 0.05, 0.2), target=None),
    AttackCell("pair-flip", rates=(0.01, 0.05, 0.2), target=None),
)


def _one_rate(backdoor: float, flip: float) -> tuple[AttackCell, ...]:
    """Every attack of the grid at one rate (``backdoor`` for triggers, ``flip`` for
    label flips), and the clean control."""
    return tuple(
        a
        if a.kind == "clean"
        else AttackCell(
            a.kind,
            rates=(flip if a.target is None else backdoor,),
            target=a.target,
            source=a.source,
            params=a.params,
        )
        for a in GRID_ATTACKS
    )


MNIST = DataSpec(name="mnist", spec="{data_dir}/mnist.npz", seeds=(0, 1, 2), epochs=4)
CIFAR10_10K = DataSpec(
    name="cifar10-10k",
    spec="{data_dir}/cifar10-jpeg.tar.gz",
    seeds=(0,),
    epochs=18,
    train_subset=10_000,
    test_subset=2_000,
)
GTSRB = DataSpec(name="gtsrb", spec="{data_dir}/gtsrb_subset.npz", seeds=(0,), epochs=18)

# The standard suite is one cross-section of the grid, sized for about three hours on
# 2 CPU cores (training is most of it: 40 models, CIFAR-10's and GTSRB's 18 epochs at
# about 250 s each). Backdoors at 1% on MNIST and GTSRB (where issue #4 sets its
# retraining bar; GTSRB's classes hold at most 300 images, too few for clean-label
# poisons at 5%), at 5% on CIFAR-10 (a 10,000-image subset learns a trigger less
# readily); label flips at 5%. The whole grid is the `full` suite; both share models
# and finished cells through the cache.
STANDARD = Suite(
    name="standard",
    needs_data_dir=True,
    # Retraining is the suite's largest cost after training itself: only the verdict a
    # user gets (the ensemble), at the 1% rate, on MNIST.
    retrain_rates=(0.01,),
    retrain_detectors=("tripwire:ensemble",),
    retrain_data=("mnist",),
    description=(
        "full MNIST (3 seeds; backdoors at 1%, label flips at 5%), a 10,000-image "
        "CIFAR-10 subset (every attack at 5%) and the GTSRB subset (backdoors at 1%, "
        "label flips at 5%), one seed each, clean controls; about three hours on 2 CPU "
        "cores; resumable"
    ),
    data=(
        replace(MNIST, attacks=_one_rate(0.01, 0.05)),
        replace(CIFAR10_10K, attacks=_one_rate(0.05, 0.05)),
        replace(GTSRB, attacks=_one_rate(0.01, 0.05)),
    ),
    attacks=GRID_ATTACKS,
)

FULL = Suite(
    name="full",
    needs_data_dir=True,
    retrain_rates=(0.01,),
    retrain_detectors=("tripwire:ensemble",),
    description=(
        "issue #4's whole grid on the standard suite's data: backdoors at 1/5/10%, label "
        "flips at 1/5/20%, full MNIST (3 seeds), CIFAR-10 subset and GTSRB subset (1 "
        "seed); about ten hours on 2 CPU cores, resumable across runs"
    ),
    data=(MNIST, CIFAR10_10K, GTSRB),
    attacks=GRID_ATTACKS,
)

SUITES = {s.name: s for s in (QUICK, STANDARD, FULL)}


def _refuse_unknown(suite: Suite, what: str, asked: list[str], known: set[str], flag: str) -> None:
    unknown = sorted(set(asked) - known)
    if unknown:
        raise InputError(
            f"the {suite.name} suite has no {what} {', '.join(unknown)} "
            f"(it has {', '.join(sorted(known))})",
            flag,
        )


def only_data(suite: Suite, names: list[str]) -> Suite:
    """``suite`` with only its datasets named in ``names``.

    Raises
    ------
    InputError
        A name that is not one of the suite's datasets.
    """
    _refuse_unknown(suite, "dataset", names, {d.name for d in suite.data}, "--data")
    return replace(suite, data=tuple(d for d in suite.data if d.name in names))


def only_attacks(suite: Suite, kinds: list[str]) -> Suite:
    """``suite`` with only the attack settings of ``kinds`` (``clean`` is one) on each
    dataset; the cells keep their cache keys, so runs over different attacks complete
    one suite.

    Raises
    ------
    InputError
        A kind that no dataset of the suite runs.
    """
    _refuse_unknown(
        suite,
        "attack",
        kinds,
        {a.kind for d in suite.data for a in suite.attacks_for(d)},
        "--attacks",
    )

    def keep(cells: tuple[AttackCell, ...]) -> tuple[AttackCell, ...]:
        return tuple(a for a in cells if a.kind in kinds)

    return replace(
        suite,
        attacks=keep(suite.attacks),
        data=tuple(
            d if d.attacks is None else replace(d, attacks=keep(d.attacks)) for d in suite.data
        ),
    )


def with_arch(suite: Suite, arch: str) -> Suite:
    """``suite`` with every dataset's models of architecture ``arch`` instead of the
    suite's own: issue #4's check against tuning detectors to one architecture.

    Each dataset is renamed ``<name>@<arch>`` so that its rows, tables and cached cells
    stay apart from those of the suite's own models (the models' cache key holds the
    architecture already); retraining follows the renamed datasets.

    Raises
    ------
    InputError
        ``arch`` is not an image architecture ``tripwire train`` builds.
    """
    from tripwire.models.arch import ARCHITECTURES

    images = [a for a in ARCHITECTURES if a != "mlp"]
    if arch not in images:
        raise InputError(f"unknown image architecture (choose from {', '.join(images)})", arch)

    def renamed(name: str) -> str:
        return f"{name}@{arch}"

    return replace(
        suite,
        data=tuple(replace(d, name=renamed(d.name), arch=arch) for d in suite.data),
        retrain_data=None
        if suite.retrain_data is None
        else tuple(renamed(n) for n in suite.retrain_data),
    )


def get_suite(name: str) -> Suite:
    if name not in SUITES:
        raise InputError(f"unknown suite (choose from {', '.join(SUITES)})", name)
    return SUITES[name]
