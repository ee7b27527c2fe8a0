"""Activation clustering: a poisoned class splits into two clusters, a clean one does not.

Within the target class of a backdoor, the network represents the poisons through the
trigger and the clean items through the class's own features, so the class's
activations fall into two clusters, and the smaller one holds the poisons. Each class
is reduced to a few principal dimensions and split by 2-means.

2-means splits every class into two, so the split alone proves nothing. Its evidence
is weighed: a class is flagged only when

- the split is **better than chance**: its silhouette beats the silhouettes that
  2-means reaches on Gaussian data with the class's own variances (simulated), by
  ``min_silhouette_z`` standard deviations; and
- the smaller cluster is **small**: at most ``max_cluster_share`` of the class (an
  even split is a class with two modes, not a poisoned one).

In a flagged class the smaller cluster then sheds the clean items that bridge it to
the class (:func:`shed_bridges`): poisons whose trigger the network represents only
in part (a warp) pull a band of the class's clean items onto their side of the split,
a band whose centre lies nearer to the class than to the poisons. On full MNIST with
1% WaNet the split held all 600 poisons among 1,524 items, the flagged cluster after
shedding 585 among 592 (``benchmarks/probes/refresh.py``, session 15).

2-means then draws a straight border (nearest centre) through the class, but poisons
are no single round blob: a blend over many source classes leaves a few sources'
poisons in a mode of their own, between the clean items and the rest of the poisons,
on the clean side of that border. So the flagged cluster **grows by a neighbour vote**
(:func:`grow_by_vote`): an item on the clean side joins it where most of itself and its
``vote_neighbours`` nearest items of the class (in the same reduced space) are in it,
repeated until no item joins. On the GTSRB subset with a 1% blend (123 poisons, 37% of
the target class) the border left 13 poisons on the clean side, many with half or more
of their neighbours flagged, while no clean item of the class had a flagged neighbour;
the vote takes 7 of them (docs/benchmarks.md, session 26). The vote only adds: a
majority vote both ways also drops the rims of clean sub-modes that 2-means cut
through, but it drops a compact mode of poisons that the border cut through nearer
its clean side as well (tested on generated classes), and a found poison should stay
found.

Score of an item: its within-class rank of distance to the centre of its class's
larger cluster, in [0, 1) (see :func:`continuous_rank`); plus ``2 + silhouette`` for
items in the flagged cluster (nearer the smaller cluster's centre than to the larger
one's and to every shed bridge's, or joined by the neighbour vote), in a flagged
class. With no flagged class every score lies below 1, which the robust-z threshold
(about 1.8 for ranks) does not reach; flagged clusters score above 2.

Known limits: 2-means on about 10 principal dimensions needs poisons that are well
separated from the clean items; very few poisons (about 1% of a class) seldom form a
cluster of their own; poisons near half of a class are not flagged (the share rule).

Reference: Chen et al., "Detecting Backdoor Attacks on Deep Neural Networks by
Activation Clustering", AAAI SafeAI workshop, 2019 (arXiv:1811.03728, 2018).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
from sklearn.neighbors import NearestNeighbors

from tripwire.detectors.base import BaseDetector, DetectorInput, Need, Threat
from tripwire.detectors.input_space import without_self
from tripwire.detectors.kmeans import k_means_many
from tripwire.detectors.neighbours import nearest_neighbours
from tripwire.detectors.parallel import map_in_threads
from tripwire.detectors.poisoning.spectral import (
    MIN_CLASS_SIZE,
    check_known_classes,
    check_width,
    class_indices,
    features_and_labels,
    integer_labels,
    split_by_size,
)
from tripwire.detectors.projection import top_directions
from tripwire.detectors.registry import register
from tripwire.errors import InputError

#: Extra score of the items in the smaller cluster of a flagged class (plus silhouette).
FLAG_OFFSET = 2.0

#: Most rounds of :func:`shed_bridges` (each sheds one bridge of clean items).
MAX_BRIDGE_ROUNDS = 3
#: Fewest items a part must hold for :func:`shed_bridges` to shed it.
MIN_BRIDGE_PART = 10

#: Nearest items of its class whose side of the split votes with an item's own.
VOTE_NEIGHBOURS = 10
#: Most rounds of the vote (each adds the items that the last one's joiners tipped).
MAX_VOTE_ROUNDS = 20

#: Smallest standard deviation assumed for the null silhouettes (a handful of draws can
#: agree by chance).
_MIN_NULL_SD = 0.01


def two_means(
    z: npt.NDArray[np.float64], *, random_state: int | None, n_init: int
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float64]]:
    """2-means of ``z``: assignments with 0 = larger cluster, 1 = smaller, and the two
    centres in that order."""
    seed = np.random.default_rng().integers(2**31 - 1) if random_state is None else random_state
    return two_means_many([z], seeds=[int(seed)], n_init=[n_init])[0]


def two_means_many(
    problems: Sequence[npt.NDArray[np.float64]], *, seeds: Sequence[int], n_init: Sequence[int]
) -> list[tuple[npt.NDArray[np.intp], npt.NDArray[np.float64]]]:
    """:func:`two_means` of each problem (one seed and restart count each), all in one
    batch (:func:`~tripwire.detectors.kmeans.k_means_many`)."""
    out = []
    for fit in k_means_many(problems, 2, n_init=n_init, seeds=seeds):
        assign, centres = fit.labels, fit.centres
        if int((assign == 1).sum()) > int((assign == 0).sum()):
            assign = 1 - assign
            centres = centres[::-1]
        out.append((np.asarray(assign, dtype=np.intp), np.asarray(centres, dtype=np.float64)))
    return out


def silhouette(
    z: npt.NDArray[np.float64],
    assign: npt.NDArray[np.intp],
    *,
    max_samples: int,
    random_state: int | None,
) -> float:
    """Mean silhouette of a 2-cluster split, on at most ``max_samples`` items (the
    pairwise distances are then at most ``max_samples**2``, computed in chunks)."""
    if np.unique(assign).size < 2:
        return 0.0
    if len(z) > max_samples:
        # The sample scikit-learn's silhouette_score(sample_size=...) draws, so that
        # the value does not depend on which implementation computed it.
        pick = np.random.RandomState(random_state).permutation(len(z))[:max_samples]
        z, assign = z[pick], assign[pick]
    return two_cluster_silhouette(z, assign)


def two_cluster_silhouette(z: npt.NDArray[np.float64], assign: npt.NDArray[np.intp]) -> float:
    """Mean silhouette of a split into clusters 0 and 1 (both non-empty), as
    scikit-learn defines it (an item alone in its cluster scores 0).

    One product with the cluster indicators gives each item's distance sums to both
    clusters: six times faster than scikit-learn's general chunked version on the
    1,000-item samples this detector scores dozens of times per scan.
    """
    sq = np.einsum("ij,ij->i", z, z)
    # |a|^2 + |b|^2 - 2 a.b in place (doubling is exact, so the same values as the
    # plain expression, without its three temporary n x n arrays).
    dist = np.add.outer(sq, sq)
    gram = z @ z.T
    gram *= 2.0
    dist -= gram
    np.maximum(dist, 0.0, out=dist)
    np.sqrt(dist, out=dist)
    np.fill_diagonal(dist, 0.0)
    ones = np.stack([assign == 0, assign == 1], axis=1).astype(np.float64)
    sums = dist @ ones
    sizes = ones.sum(axis=0)
    own = assign.astype(np.intp)
    rows = np.arange(len(z))
    with np.errstate(divide="ignore", invalid="ignore"):
        a = sums[rows, own] / (sizes[own] - 1.0)
        b = sums[rows, 1 - own] / sizes[1 - own]
        s = (b - a) / np.maximum(a, b)
    return float(np.mean(np.nan_to_num(s)))


NullDraws = list[tuple[npt.NDArray[np.float64], int]]


def draw_null(
    n: int, dims: int, *, draws: int, max_samples: int, rng: np.random.Generator
) -> NullDraws:
    """The random input of :func:`null_silhouettes`: ``draws`` standard normal samples
    of ``min(n, max_samples)`` items in ``dims`` dimensions, each with its 2-means
    seed, drawn from ``rng`` in that order."""
    m = min(n, max_samples)
    return [(rng.standard_normal((m, dims)), int(rng.integers(2**31 - 1))) for _ in range(draws)]


def null_silhouettes(
    variances: npt.NDArray[np.float64],
    n: int,
    *,
    draws: int,
    max_samples: int,
    rng: np.random.Generator,
) -> npt.NDArray[np.float64]:
    """Silhouettes of 2-means on ``draws`` Gaussian samples with the given variances
    (the class's principal variances): what a split of an unimodal class reaches."""
    normals = draw_null(n, len(variances), draws=draws, max_samples=max_samples, rng=rng)
    return silhouettes_of(variances, normals, max_samples=max_samples)


def silhouettes_of(
    variances: npt.NDArray[np.float64], normals: NullDraws, *, max_samples: int
) -> npt.NDArray[np.float64]:
    """:func:`null_silhouettes` of samples already drawn (:func:`draw_null`)."""
    samples, seeds = null_samples(variances, normals)
    # Fewer restarts than for the class itself: a Gaussian sample has one split.
    fits = two_means_many(samples, seeds=seeds, n_init=[3] * len(samples))
    return null_silhouettes_of(samples, seeds, fits, max_samples=max_samples)


def null_samples(
    variances: npt.NDArray[np.float64], normals: NullDraws
) -> tuple[list[npt.NDArray[np.float64]], list[int]]:
    """The null draws scaled to the class's principal variances, and their 2-means seeds."""
    return [normal * np.sqrt(variances) for normal, _ in normals], [s for _, s in normals]


def null_silhouettes_of(
    samples: Sequence[npt.NDArray[np.float64]],
    seeds: Sequence[int],
    fits: Sequence[tuple[npt.NDArray[np.intp], npt.NDArray[np.float64]]],
    *,
    max_samples: int,
) -> npt.NDArray[np.float64]:
    """Silhouettes of the null samples' 2-means splits ``fits``."""
    return np.array(
        [
            silhouette(g, assign, max_samples=max_samples, random_state=seed)
            for g, seed, (assign, _) in zip(samples, seeds, fits, strict=True)
        ],
        dtype=np.float64,
    )


def shed_bridges(
    z: npt.NDArray[np.float64],
    small: npt.NDArray[np.bool_],
    main_centre: npt.NDArray[np.float64],
    *,
    random_state: int | None,
    n_init: int,
    max_rounds: int = MAX_BRIDGE_ROUNDS,
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float64], list[npt.NDArray[np.float64]]]:
    """The smaller cluster without the clean items that bridge it to the class.

    Poisons whose trigger the network represents only in part (a warp) sit between
    the clean class and the pure poison mode, and 2-means over the whole class puts a
    band of the class's clean items nearest to them on the poisons' side (on full
    MNIST with 1% WaNet: 1,524 items, 600 of them poisons). Split the smaller cluster
    by 2-means again: when one part's centre lies nearer to the larger cluster's centre
    than to the other part's, that part is a bridge to the class, not a mode of its
    own, and is shed; repeat on the rest. A compact poison cluster (a patch, a blend)
    splits into two parts farther from the class than from each other and is kept
    whole. Returns the kept items (a mask over ``z``), their centre, and the centres
    of the shed parts (items nearest to those are not flagged when scoring).
    """
    keep = np.asarray(small, dtype=bool).copy()
    bridges: list[npt.NDArray[np.float64]] = []
    centre = np.asarray(z[keep].mean(axis=0), dtype=np.float64)
    for _ in range(max_rounds):
        rows = np.flatnonzero(keep)
        if rows.size < 2 * MIN_BRIDGE_PART:
            break
        assign, parts = two_means(z[rows], random_state=random_state, n_init=n_init)
        to_main = np.linalg.norm(parts - main_centre, axis=1)
        near = int(np.argmin(to_main))
        if int((assign == near).sum()) < MIN_BRIDGE_PART or to_main[near] >= float(
            np.linalg.norm(parts[0] - parts[1])
        ):
            break
        bridges.append(parts[near])
        keep[rows[assign == near]] = False
        centre = parts[1 - near]
    return keep, centre, bridges


def in_flagged_cluster(
    z: npt.NDArray[np.float64],
    centres: npt.NDArray[np.float64],
    bridges: Sequence[npt.NDArray[np.float64]],
) -> npt.NDArray[np.bool_]:
    """Items nearer to the smaller cluster's centre (``centres[1]``) than to the larger
    one's and to every shed bridge's (:func:`shed_bridges`)."""
    d_small = np.linalg.norm(z - centres[1], axis=1)
    nearest_other = np.linalg.norm(z - centres[0], axis=1)
    for b in bridges:
        nearest_other = np.minimum(nearest_other, np.linalg.norm(z - b, axis=1))
    return np.asarray(d_small < nearest_other, dtype=bool)


def neighbour_vote(
    side: npt.NDArray[np.bool_], neighbour_sides: npt.NDArray[np.bool_]
) -> npt.NDArray[np.bool_]:
    """Majority of each item's own ``side`` (``(n,)``, True: the flagged side of the
    split) and its neighbours' (``(n, k)``): True where more than half of the ``k + 1``
    votes are. Without neighbours (``k = 0``) the item's own side stands."""
    votes = side.astype(np.int64) + neighbour_sides.sum(axis=1)
    return np.asarray(2 * votes > neighbour_sides.shape[1] + 1, dtype=bool)


def grow_by_vote(
    side: npt.NDArray[np.bool_], near: npt.NDArray[np.intp], *, max_rounds: int = MAX_VOTE_ROUNDS
) -> npt.NDArray[np.bool_]:
    """The flagged ``side`` and every item that :func:`neighbour_vote` of itself and its
    neighbours ``near`` (``(n, k)`` positions) puts there, repeated until no item joins
    (at most ``max_rounds``). Flagged items stay flagged.

    An item that joins turns the vote of its own neighbours: poisons strewn beyond the
    split's border join from the flagged side inwards, not by the nearest rim alone.
    """
    flags = np.asarray(side, dtype=bool)
    for _ in range(max_rounds):
        grown = flags | neighbour_vote(flags, flags[near])
        if np.array_equal(grown, flags):
            break
        flags = grown
    return flags


def vote_neighbours_of(
    z: npt.NDArray[np.float64], fitted: npt.NDArray[np.float64], k: int
) -> npt.NDArray[np.intp]:
    """Positions ``(n, k)`` in ``fitted`` of each row of ``z``'s ``k`` nearest fitted
    rows (items other than the fitted ones, looked up among them)."""
    k = min(k, len(fitted))
    if k < 1:
        return np.zeros((len(z), 0), dtype=np.intp)
    index = NearestNeighbors(n_neighbors=k).fit(fitted)
    return np.asarray(index.kneighbors(z, return_distance=False), dtype=np.intp)


def neighbours_within(z: npt.NDArray[np.float64], k: int, seed: int) -> npt.NDArray[np.intp]:
    """Each item's ``min(k, n - 1)`` nearest other items of ``z``, ``(n, k)`` positions
    (the scan's exact all-items search, each item then left out of its own list)."""
    k = min(k, len(z) - 1)
    if k < 1:
        return np.zeros((len(z), 0), dtype=np.intp)
    dist, idx = nearest_neighbours(z, k + 1, random_state=seed)
    return np.asarray(without_self(dist, idx, 0, k)[1], dtype=np.intp)


def continuous_rank(
    values: npt.NDArray[np.float64], sorted_reference: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Rank of each value among ``sorted_reference``, in [0, 1), made continuous.

    A value with ``i`` reference values below it lands in ``[i, i + 1) / (n + 1)``, at
    ``v / (v + median)`` of the bin: the order is kept, ranks stay uniform for the
    reference items themselves, and two classes of equal size no longer share the same
    grid of ranks (ties across classes would blunt AUROC).
    """
    n = sorted_reference.size
    below = np.searchsorted(sorted_reference, values, side="left")
    med = float(np.median(sorted_reference)) if n else 0.0
    inside = values / (values + med) if med > 0.0 else np.full(values.shape, 0.5)
    return np.asarray((below + inside) / (n + 1.0), dtype=np.float64)


def fit_activation_clusters(
    features: npt.NDArray[np.float64],
    labels: npt.NDArray[np.int64],
    *,
    n_components: int = 10,
    min_silhouette_z: float = 3.0,
    max_cluster_share: float = 0.35,
    null_draws: int = 5,
    max_silhouette_samples: int = 1000,
    min_class_size: int = MIN_CLASS_SIZE,
    vote_neighbours: int = VOTE_NEIGHBOURS,
    random_state: int | None = 0,
    detector: str = "activation-clustering",
) -> dict[str, Any]:
    """Per class: principal projection, 2-means split, its evidence, the flagged cluster
    grown by the neighbour vote (``vote_neighbours`` nearest items; 0: the split's
    border stands) and the distances that rank the items.

    Returns ``classes`` (class -> fitted arrays and evidence) and ``skipped`` (classes
    smaller than ``min_class_size``, not scored).
    """
    rng = np.random.default_rng(random_state)
    groups = class_indices(labels)
    big, small = split_by_size(groups, min_class_size, detector)
    # Every random draw in the calling thread, class by class in a fixed order (the
    # draws each class made when the classes ran one after another), so that the
    # result does not depend on the number of workers.
    plan: dict[int, tuple[int, NullDraws]] = {}
    for c in big:
        dims = max(1, min(n_components, len(groups[c]) - 1, features.shape[1]))
        seed = int(rng.integers(2**31 - 1))
        plan[c] = (
            seed,
            draw_null(
                len(groups[c]), dims, draws=null_draws, max_samples=max_silhouette_samples, rng=rng
            ),
        )

    def fit_one(c: int) -> dict[str, Any]:
        return _fit_class(
            features[groups[c]],
            *plan[c],
            n_components=n_components,
            min_silhouette_z=min_silhouette_z,
            max_cluster_share=max_cluster_share,
            max_silhouette_samples=max_silhouette_samples,
            vote_neighbours=vote_neighbours,
        )

    # Dozens of small fits per class: one class per worker uses the cores.
    fits = map_in_threads(fit_one, big)
    classes = dict(zip(big, fits, strict=True))
    return {"classes": classes, "skipped": small, "width": int(features.shape[1])}


def _fit_class(
    xc: npt.NDArray[np.float64],
    seed: int,
    normals: NullDraws,
    *,
    n_components: int,
    min_silhouette_z: float,
    max_cluster_share: float,
    max_silhouette_samples: int,
    vote_neighbours: int,
) -> dict[str, Any]:
    """One class's projection, split, evidence and ranking distances
    (:func:`fit_activation_clusters`), its random draws made by the caller."""
    mean = xc.mean(axis=0)
    centred = xc - mean
    comps = top_directions(centred, min(n_components, xc.shape[0] - 1, xc.shape[1]))
    z = centred @ comps.T
    # The class's split and its Gaussian null samples' splits in one batch.
    samples, null_seeds = null_samples(z.var(axis=0), normals)
    fits = two_means_many(
        [z, *samples], seeds=[seed, *null_seeds], n_init=[10] + [3] * len(samples)
    )
    assign, centres = fits[0]
    sil = silhouette(z, assign, max_samples=max_silhouette_samples, random_state=seed)
    null = null_silhouettes_of(samples, null_seeds, fits[1:], max_samples=max_silhouette_samples)
    null_sd = max(float(null.std(ddof=1)), _MIN_NULL_SD)
    sil_z = (sil - float(null.mean())) / null_sd
    n_small = int((assign == 1).sum())
    share = n_small / len(z)
    sizes = [len(z) - n_small, n_small]
    flagged = bool(sil_z >= min_silhouette_z and 0 < share <= max_cluster_share)
    bridges: list[npt.NDArray[np.float64]] = []
    vote: dict[str, Any] = {}
    border_size = 0
    if flagged:
        _, centre, bridges = shed_bridges(z, assign == 1, centres[0], random_state=seed, n_init=10)
        if bridges:  # the kept part's centre; else 2-means' own stands
            centres = np.stack([centres[0], centre])
        side = in_flagged_cluster(z, centres, bridges)
        border_size = int(side.sum())
        # The fitted items and their grown flags: new items are looked up among them.
        grown = grow_by_vote(side, neighbours_within(z, vote_neighbours, seed))
        vote = {"vote_z": z, "vote_flags": grown}
    dist = np.linalg.norm(z - centres[0], axis=1)
    return {
        **vote,
        "vote_neighbours": vote_neighbours,
        "mean": mean,
        "components": comps,
        "centres": centres,
        "bridges": np.asarray(bridges, dtype=np.float64).reshape(len(bridges), z.shape[1]),
        "flagged_size": int(vote["vote_flags"].sum()) if vote else 0,
        "border_size": border_size,
        "sorted_dist": np.sort(dist),
        "flagged": flagged,
        "silhouette": sil,
        "null_silhouette_mean": float(null.mean()),
        "null_silhouette_sd": null_sd,
        "silhouette_z": float(sil_z),
        "sizes": sizes,
        "small_share": float(share),
    }


def activation_cluster_scores(
    features: npt.NDArray[np.float64],
    labels: npt.NDArray[np.int64],
    model: dict[str, Any],
    *,
    detector: str = "activation-clustering",
) -> npt.NDArray[np.float64]:
    """Rank of distance to the larger cluster's centre within the class, in [0, 1),
    plus ``FLAG_OFFSET + silhouette`` for items nearer the smaller cluster's centre of
    a flagged class; 0 for items of skipped classes."""
    classes: dict[int, dict[str, Any]] = model["classes"]
    check_known_classes(labels, classes.keys() | set(model["skipped"]), detector)
    check_width(features, model["width"], detector)
    scores = np.zeros(labels.size, dtype=np.float64)
    for c, idx in class_indices(labels).items():
        m = classes.get(c)
        if m is None:
            continue
        z = (features[idx] - m["mean"]) @ m["components"].T
        d_large = np.linalg.norm(z - m["centres"][0], axis=1)
        rank = continuous_rank(d_large, m["sorted_dist"])
        if m["flagged"]:
            fitted = m["vote_z"]
            if z.shape == fitted.shape and bool(np.array_equal(z, fitted)):
                in_small = m["vote_flags"]  # the fitted items: their own vote
            else:
                side = in_flagged_cluster(z, m["centres"], m["bridges"])
                near = vote_neighbours_of(z, fitted, m["vote_neighbours"])
                in_small = side | neighbour_vote(side, m["vote_flags"][near])
            rank = rank + in_small * (FLAG_OFFSET + m["silhouette"])
        scores[idx] = rank
    return scores


@register
class ActivationClusteringDetector(BaseDetector):
    """Split each class's activations by 2-means and flag small, well-separated clusters.

    Needs ``features`` (penultimate-layer activations on the training data) and
    ``labels``. See the module docstring for the evidence that flags a class and for
    the score. Classes with fewer than ``min_class_size`` items are not scored
    (score 0) and are listed in the evidence under ``skipped_classes``.

    Parameters
    ----------
    n_components
        Principal dimensions each class is reduced to before clustering (the paper
        uses 10 independent components; principal ones are deterministic).
    min_silhouette_z
        How many null standard deviations the class's silhouette must beat.
    max_cluster_share
        Largest share of its class that the smaller cluster may hold to be flagged.
    null_draws
        Gaussian samples simulated per class for the null silhouette (at least 2).
    max_silhouette_samples
        Items per class the silhouette is computed on (bounds time and memory).
    min_class_size
        Smallest class that is clustered.
    vote_neighbours
        Nearest items of its class whose sides of a flagged class's split vote with an
        item's own on whether it joins the flagged cluster (the module docstring); 0
        keeps 2-means' border as it is.
    random_state
        Seed of k-means and of the null simulations.
    fpr, z
        See :class:`~tripwire.detectors.base.BaseDetector`.
    """

    name: ClassVar[str] = "activation-clustering"
    threat: ClassVar[Threat] = Threat.POISONING
    needs: ClassVar[frozenset[Need]] = frozenset({Need.FEATURES, Need.LABELS})

    def __init__(
        self,
        *,
        n_components: int = 10,
        min_silhouette_z: float = 3.0,
        max_cluster_share: float = 0.35,
        null_draws: int = 5,
        max_silhouette_samples: int = 1000,
        min_class_size: int = MIN_CLASS_SIZE,
        vote_neighbours: int = VOTE_NEIGHBOURS,
        random_state: int | None = 0,
        fpr: float = 0.01,
        z: float = 3.5,
    ) -> None:
        super().__init__(fpr=fpr, z=z)
        self.n_components = n_components
        self.min_silhouette_z = min_silhouette_z
        self.max_cluster_share = max_cluster_share
        self.null_draws = null_draws
        self.max_silhouette_samples = max_silhouette_samples
        self.min_class_size = min_class_size
        self.vote_neighbours = vote_neighbours
        self.random_state = random_state

    def _fit(self, inputs: DetectorInput) -> None:
        if self.n_components < 1:
            raise InputError("n_components must be at least 1", self.name)
        if not 0.0 < self.max_cluster_share <= 0.5:
            raise InputError(
                f"max_cluster_share must lie in (0, 0.5], got {self.max_cluster_share}",
                self.name,
            )
        if self.null_draws < 2:
            raise InputError("null_draws must be at least 2", self.name)
        if self.max_silhouette_samples < 10:
            raise InputError("max_silhouette_samples must be at least 10", self.name)
        if self.min_class_size < 4:
            raise InputError("min_class_size must be at least 4", self.name)
        if self.vote_neighbours < 0:
            raise InputError(
                f"vote_neighbours must be at least 0, got {self.vote_neighbours}", self.name
            )
        x, y = features_and_labels(inputs, self.name)
        self.model_ = fit_activation_clusters(
            x,
            y,
            n_components=self.n_components,
            min_silhouette_z=self.min_silhouette_z,
            max_cluster_share=self.max_cluster_share,
            null_draws=self.null_draws,
            max_silhouette_samples=self.max_silhouette_samples,
            min_class_size=self.min_class_size,
            vote_neighbours=self.vote_neighbours,
            random_state=self.random_state,
            detector=self.name,
        )

    def _score(self, inputs: DetectorInput) -> npt.NDArray[np.float64]:
        x, y = features_and_labels(inputs, self.name)
        return activation_cluster_scores(x, y, self.model_, detector=self.name)

    def _evidence(
        self, inputs: DetectorInput, scores: npt.NDArray[np.float64], flags: npt.NDArray[np.bool_]
    ) -> dict[str, Any]:
        y = integer_labels(inputs.labels if inputs.labels is not None else [], self.name)
        per_class: dict[int, dict[str, Any]] = {}
        for c, idx in class_indices(y).items():
            m = self.model_["classes"].get(c)
            if m is None:
                continue
            per_class[c] = {
                "items": int(idx.size),
                "flagged_items": int(flags[idx].sum()),
                "silhouette": round(float(m["silhouette"]), 4),
                "null_silhouette_mean": round(float(m["null_silhouette_mean"]), 4),
                "null_silhouette_sd": round(float(m["null_silhouette_sd"]), 4),
                "silhouette_z": round(float(m["silhouette_z"]), 2),
                "cluster_sizes": list(m["sizes"]),
                "small_cluster_share": round(float(m["small_share"]), 4),
                "bridges_shed": len(m["bridges"]),
                "flagged_cluster_size": int(m["flagged_size"]),
                "split_border_size": int(m["border_size"]),
                "class_flagged": bool(m["flagged"]),
            }
        flagged = sorted(c for c, m in self.model_["classes"].items() if m["flagged"])
        return {
            "per_class": per_class,
            "flagged_classes": flagged,
            "skipped_classes": list(self.model_["skipped"]),
        }
