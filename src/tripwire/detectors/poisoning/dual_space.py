"""Dual-space consistency: dirty-label poisons agree with their label only through the model.

A dirty-label backdoor (BadNets, blended, WaNet) or a block of flipped labels makes the
network learn "trigger -> target": in the trained model's feature space the poisons sit
together inside the target class, but as *inputs* they still look like the classes they
were taken from. Clean items agree with their label in both spaces. This detector asks
the second question of each feature-space cluster:

1. within each class, split the model's features into a few clusters (k-means on the
   top principal dimensions);
2. embed the raw inputs (average-pooled to at most 14x14 per channel, then PCA), and for
   every item find its nearest neighbours in that input space **outside its own
   cluster**, so that poisons cannot vouch for each other; its disagreement is the share
   of those neighbours whose label differs from its own;
3. a cluster's disagreement is the mean over its items. Clean clusters of a class still
   find their class next door in input space (the other clusters of the class, which
   look alike); a cluster of poisons finds the source classes.

Score of an item: ``min(cluster disagreement, own disagreement)``, so an item is flagged
only when its cluster as a whole and the item itself look like another class. The
threshold is robust over clusters (median + z * 1.4826 * MAD of the cluster
disagreements, and at least one half: a flagged item's input-space neighbours mostly
carry another label), so the poison rate is never assumed.

Why clusters and not single items: single-item input-space disagreement is high for
every hard or ambiguous clean sample (pixel-space kNN errs on a few percent of clean
MNIST), while a cluster of them is not. Why leave the cluster out: blended and warped
poisons share their trigger, so their nearest input-space neighbours are each other.

Known limits: clean-label attacks (SIG, label-consistent) keep true labels, so there is
nothing to disagree with (they are the feature-space detectors' job); a pixel-space
neighbourhood is a weak classifier on natural colour images, so on CIFAR-10-like data
clean clusters disagree more and the margin shrinks; very few poisons (about 1% of a
class) may share a cluster with clean items, where the item-level condition keeps the
clean ones out. Where the inputs do not predict their labels at all (the median cluster
disagrees at least half the time), the detector abstains and flags nothing.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from tripwire.detectors.base import (
    BaseDetector,
    Calibration,
    DetectorInput,
    Need,
    Threat,
    fitted_scores,
)
from tripwire.detectors.calibration import MAD_TO_SD
from tripwire.detectors.input_space import SHARED_NEIGHBOURS, InputSpace
from tripwire.detectors.kmeans import k_means_many
from tripwire.detectors.parallel import map_in_threads
from tripwire.detectors.poisoning.spectral import MIN_CLASS_SIZE, features_and_labels
from tripwire.detectors.projection import top_directions
from tripwire.detectors.registry import register
from tripwire.errors import InputError


def feature_clusters(
    features: npt.NDArray[np.float64],
    labels: npt.NDArray[np.int64],
    *,
    n_clusters: int,
    n_dims: int,
    random_state: int,
) -> npt.NDArray[np.int64]:
    """Cluster id of every item: k-means within each class on its top principal dims.

    Classes smaller than ``MIN_CLASS_SIZE * n_clusters`` stay one cluster.
    """
    classes = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    split = [idx for idx in classes if idx.size >= MIN_CLASS_SIZE * n_clusters]

    def project(idx: npt.NDArray[np.intp]) -> npt.NDArray[np.float64]:
        fc = features[idx] - features[idx].mean(axis=0)
        dims = min(n_dims, fc.shape[1], idx.size - 1)
        return np.asarray(fc @ top_directions(fc, dims).T, dtype=np.float64)

    # The projections one class per worker; the k-means fits of all classes in one
    # batch, each seeded alike (nothing drawn in turn).
    fits = k_means_many(
        map_in_threads(project, split), n_clusters, n_init=4, seeds=[random_state] * len(split)
    )
    each = iter(fits)
    out = np.full(labels.shape[0], -1, dtype=np.int64)
    next_id = 0
    for idx in classes:
        if idx.size >= MIN_CLASS_SIZE * n_clusters:
            out[idx] = next(each).labels + next_id
            next_id += n_clusters
        else:
            out[idx] = next_id
            next_id += 1
    return out


def leave_cluster_out_disagreement(
    space: InputSpace,
    labels: npt.NDArray[np.int64],
    clusters: npt.NDArray[np.int64],
    k: int,
) -> npt.NDArray[np.float64]:
    """Per item: how many of its ``k`` nearest input-space neighbours outside its own
    cluster carry another label, over ``k``, looking no farther than the shared graph's
    :data:`~tripwire.detectors.input_space.SHARED_NEIGHBOURS` nearest items.

    An item whose nearest items are nearly all its own cluster agrees with its label as
    far as input space can tell: the places it cannot fill count as agreement. Searching
    farther out (exactly) asks the wrong question of a class that k-means left in one
    clean cluster beside poison clusters: with the clean cluster left out, the nearest
    other items of a clean 0 are other digits (measured: a clean cluster of 5,923 MNIST
    0s at disagreement 0.95), and of a tight cluster of 1s, the 7s and 4s beyond it.
    """
    _, near = space.neighbours(SHARED_NEIGHBOURS)
    outside = clusters[near] != clusters[:, None]  # the item itself is in its own cluster
    # The first k outside-cluster neighbours of each row, nearest first.
    first = outside & (np.cumsum(outside, axis=1) <= k)
    differs = labels[near] != labels[:, None]
    return np.asarray((first & differs).sum(axis=1) / float(k), dtype=np.float64)


@register
class DualSpaceDetector(BaseDetector):
    """Flag clusters of a class that agree with their label in feature space only.

    Needs ``features`` (the suspect model's penultimate activations), ``labels`` and
    ``data`` (the raw inputs). See the module docstring for the method.

    Parameters
    ----------
    n_clusters
        Feature-space clusters per class.
    n_dims
        Principal dimensions of a class's features that are clustered.
    k
        Input-space neighbours per item.
    min_disagreement
        Floor of the threshold: a flagged item's neighbours mostly carry another label.
    random_state
        Seed of the input-space embedding and of k-means.
    """

    name: ClassVar[str] = "dual-space"
    threat: ClassVar[Threat] = Threat.BACKDOOR
    needs: ClassVar[frozenset[Need]] = frozenset({Need.FEATURES, Need.LABELS, Need.DATA})
    #: A trusted set has no clusters of its own: the threshold over clusters stands.
    reference_calibrated: ClassVar[bool] = False

    def __init__(
        self,
        *,
        n_clusters: int = 3,
        n_dims: int = 10,
        k: int = 10,
        min_disagreement: float = 0.5,
        random_state: int = 0,
        fpr: float = 0.01,
        z: float = 3.5,
    ) -> None:
        super().__init__(fpr=fpr, z=z)
        self.n_clusters = n_clusters
        self.n_dims = n_dims
        self.k = k
        self.min_disagreement = min_disagreement
        self.random_state = random_state

    def _check_params(self) -> None:
        super()._check_params()
        if self.n_clusters < 2 or self.k < 1 or self.n_dims < 1:
            raise InputError("n_clusters must be >= 2, k and n_dims >= 1", self.name)
        if not 0.0 < self.min_disagreement < 1.0:
            raise InputError("min_disagreement must lie in (0, 1)", self.name)

    def _fit(self, inputs: DetectorInput) -> None:
        feats, y = features_and_labels(inputs, self.name)
        data = inputs.data
        if data is None or len(data) != y.shape[0]:
            raise InputError("needs the raw data, one item per label", self.name)
        space = inputs.space(self.random_state)
        clusters = feature_clusters(
            feats,
            y,
            n_clusters=self.n_clusters,
            n_dims=self.n_dims,
            random_state=self.random_state,
        )
        own = leave_cluster_out_disagreement(space, y, clusters, self.k)
        ids = np.unique(clusters)
        cluster_dis = np.array([own[clusters == u].mean() for u in ids])
        per_item_cluster = cluster_dis[np.searchsorted(ids, clusters)]
        med = float(np.median(cluster_dis))
        mad = float(np.median(np.abs(cluster_dis - med))) * MAD_TO_SD
        threshold = max(self.min_disagreement, med + self.z * mad)
        # Abstain where the inputs themselves do not predict the labels (typical
        # clusters disagree as often as not): there is no input-space evidence to weigh.
        self.abstained_ = med >= self.min_disagreement
        if self.abstained_:
            threshold = 1.0
        # The threshold comes from the clusters' robust statistics, not from the items'.
        self.calibration_ = Calibration(
            method="robust-z",
            threshold=threshold,
            n_reference=int(ids.size),
            details={"z": self.z, "over": "clusters", "floor": self.min_disagreement},
        )
        self.clusters_ = clusters
        self.cluster_ids_ = ids
        self.cluster_disagreement_ = cluster_dis
        self.item_disagreement_ = own
        self.scores_ = np.minimum(per_item_cluster, own)
        self.n_items_ = y.shape[0]

    def _score(self, inputs: DetectorInput) -> npt.NDArray[np.float64]:
        return fitted_scores(
            inputs, self.scores_, self.n_items_, self.name, " (its clusters are of that data)"
        )

    def _evidence(
        self, inputs: DetectorInput, scores: npt.NDArray[np.float64], flags: npt.NDArray[np.bool_]
    ) -> dict[str, Any]:
        y = np.asarray(inputs.labels)
        thr = self.calibration_.threshold
        rows = []
        for u, dis in zip(self.cluster_ids_, self.cluster_disagreement_, strict=True):
            members = self.clusters_ == u
            rows.append(
                {
                    "class": int(y[members][0]),
                    "size": int(members.sum()),
                    "disagreement": round(float(dis), 4),
                    "flagged_items": int(flags[members].sum()),
                }
            )
        suspicious = [r for r in rows if r["disagreement"] > thr]
        return {
            "abstained": bool(self.abstained_),
            "clusters_per_class": self.n_clusters,
            "median_cluster_disagreement": round(float(np.median(self.cluster_disagreement_)), 4),
            "flagged_clusters": suspicious,
            "target_classes": sorted({r["class"] for r in suspicious if r["flagged_items"]}),
        }
