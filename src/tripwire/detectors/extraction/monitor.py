"""The per-client streaming extraction monitor (implements ``ExtractionMonitor``).

One :class:`StreamMonitor` holds what ``fit`` learnt from the reference (pooling and
projection of inputs, the reference bank for distances, calibrated thresholds); each
client's evidence lives in a bounded :class:`~.state.StreamState`. ``observe`` updates:

- PRADA (Juuti et al., EuroS&P 2019, official code ``src/growing_set.py``): per predicted
  class a growing set; each query's minimum L2 distance to its class's set is recorded,
  the query joins the set when that distance exceeds the class threshold (mean minus
  standard deviation of the set's distances); once more than 100 distances are in, every
  10 new distances the Shapiro-Wilk W of the distances (3-sigma outliers removed) is
  recomputed; W below ``delta`` (0.9 in the official demo) is PRADA's alarm. Bounded
  here: the sets share a pool of fixed size (oldest additions replaced), distances are a
  reservoir sample, and distances are measured between JL projections of pooled inputs.
- Out of distribution: distance of the pooled input to its nearest reference sample,
  over the median of held-out reference samples' distances; the per-query threshold is
  calibrated at ``fpr`` on held-out reference data, and the client's count of exceedances
  is tested against Binomial(n, fpr).
- Near-duplicate chains: each query's distance to the nearest of the client's stored
  queries (the growing-set pool and a ring of the most recent ones), binned at the 1%,
  5%, 25% and 50% quantiles of natural nearest-neighbour distances to a set of the same
  size, exact repeats apart (Blacklight's similarity signal, Li et al., USENIX Security
  2022, on projections of quantised inputs; Jacobian augmentation makes chains of
  small steps).
- Confidence profile: answers whose top-1 minus top-2 probability is below the
  reference's 10% quantile; mean top-1.
- Coverage: occupied cells of the sign pattern of the reference's first principal
  components, against a natural sample of the same size; class entropy; distinct inputs
  (k-minimum-values sketch of quantised inputs).
- Timing: request gaps (context in evidence only, never a feature: rate is not intent).
- Pixel noise (TW310): raw queries rougher than any reference image (noise, gradient
  signs), counted on arrival.
- Image statistics (TW311): each raw query's global statistics (channel means and
  spreads, edge strength, texture density, colourfulness) against the reference's
  (Mahalanobis distance, 10% tail threshold), counted on arrival; queries near one of the
  client's earlier ones are left out, and the excess is tested with the queries grouped
  by input-space cell and by predicted class (cluster-level t-tests), so that one
  perturbed input or one unusual class cannot make it. Colour images only (see
  OFF_MIN_SIDE). Pooled pixels cannot tell CIFAR-10 from GTSRB; these statistics can.

A stream classifier (:mod:`.classifier`) over these features raises the alerts; the
single-feature detectors add timeline observations (severity ``None``).

Buffering: a client's samples are pooled on arrival and held in its state until
``flush_every`` of them are in, then the detectors run over them in one call. At one image
per request the detectors' cost is almost all per-call overhead (some fifty small NumPy
operations), so running them once per 16 samples cuts the monitor's cost per request
several times over; evidence and alerts are the same as sample by sample, only raised at
the request that completes a buffer (at most ``flush_every - 1`` samples late, with the
true query count). :meth:`StreamMonitor.features`, the correlation and the drift report
read a settled copy that includes the buffered samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import special, stats

from tripwire.detectors.calibration import threshold_at_fpr
from tripwire.detectors.extraction import rules
from tripwire.detectors.extraction.base import (
    DEFAULT_STATE_BUDGET,
    ClientState,
    Observation,
    QueryBatch,
    Reference,
)
from tripwire.detectors.extraction.classifier import (
    COLOUR_MIN_SIDE,
    FEATURES,
    StreamClassifier,
    is_colour_image,
)
from tripwire.detectors.extraction.state import StreamState, decode, encode, kmv_merge
from tripwire.errors import InputError
from tripwire.reports.findings import Rule, Severity

#: Side of the pooled image per channel, and dimension of the stored projections.
POOL_SIDE = 8
PROJ_DIM = 64
#: Principal components whose sign pattern defines the coverage cells.
CELL_BITS = 10
#: PRADA defaults from the official code and demo.
PRADA_DELTA = 0.9
PRADA_MIN_DISTANCES = 100
PRADA_EVERY = 10
#: Natural nearest-neighbour quantiles that bin a client's query-to-query distances.
NN_QUANTILES = (0.01, 0.05, 0.25, 0.5)
#: Recent queries kept per client (besides PRADA's pool).
RING = 64
#: Significance of the timeline tests (one-sided binomial).
TIMELINE_ALPHA = 1e-4
#: Noise-like queries (TW310): a query counts when its pixel noise (:func:`pixel_noise`)
#: is NOISE_MARGIN times the level that NOISE_FPR of the reference reaches (about its
#: roughest sample), and at least NOISE_FLOOR (5 grey levels: on data with exactly flat
#: backgrounds, MNIST, that level is 0 and sensor noise must not count). The margin is
#: there because explanation tools query dozens of variants of one input: when that input
#: is itself among the roughest natural images (1 of 10 CIFAR-10 explainers at the bare
#: 0.1% level), every variant counts. Uniform noise sits at 3x the roughest CIFAR-10 or
#: GTSRB image. An alert needs a share of NOISE_MIN_SHARE of the client's queries (an
#: effect size, not only significance) and a binomial p below NOISE_ALPHA.
NOISE_FPR = 0.001
NOISE_MARGIN = 1.5
NOISE_MIN_SHARE = 0.2
NOISE_ALPHA = 1e-6
NOISE_FLOOR = 0.02

#: Off-distribution image statistics (TW311): per query, the reference's OFF_FPR tail of
#: the Mahalanobis distance of :func:`image_statistics`; an alert needs the mean share of
#: off queries per group (input-space cell: OFF_CELL_BITS PCA sign bits; predicted class)
#: at least OFF_MIN_SHARE, in at least OFF_MIN_GROUPS groups of OFF_MIN_PER_GROUP queries,
#: significant over cells at OFF_ALPHA_CELLS and over classes at OFF_ALPHA_CLASSES (ten
#: classes give a t-test little power; that test only has to rule out that a few classes
#: carry the excess, as when a client sweeps the classes one after another and some
#: classes' images differ from the reference's). Queries whose nearest earlier query of
#: the client is closer than the natural OFF_GATE_Q quantile are left out.
OFF_FPR = 0.1
OFF_MIN_SHARE = 0.2
OFF_MIN_GROUPS = 8
OFF_MIN_PER_GROUP = 3
OFF_ALPHA_CELLS = 1e-4
OFF_ALPHA_CLASSES = 1e-2
OFF_CELL_BITS = 6
OFF_GATE_Q = 0.05
#: ... and queries that share at least OFF_SHARED of their pooled pixels (within
#: OFF_MATCH_TOL, about float16 storage precision) with one of the client's OFF_RECENT
#: previous queries: a masked variant (LIME, occlusion, RISE-style) keeps part of its
#: input exactly, and two different natural images never agree on a quarter of their
#: pooled pixels. Variants of one input are evidence about one input, not many.
OFF_RECENT = 8
OFF_SHARED = 0.25
OFF_MATCH_TOL = 2e-3
#: TW311 runs on colour images of at least this side. On grey digits an explanation
#: tool's masked variants (LIME, occlusion) shift exactly these statistics (brightness,
#: contrast, edges) and pass the near-duplicate screen, so its explainers were alerted
#: (bundled MNIST and 8x8 digits); there the pooled distances and the stream classifier
#: already catch other-domain queries.
OFF_MIN_SIDE = COLOUR_MIN_SIDE

_NOTE_BITS = {
    "TW301": 1,
    "TW302": 2,
    "TW303": 4,
    "TW304": 8,
    "TW305": 16,
    "TW310": 32,
    "TW311": 64,
}
_SEVERITY_BY_RANK = {1: Severity.LOW, 2: Severity.MEDIUM, 3: Severity.HIGH}


@dataclass
class _Fitted:
    """What ``fit`` learnt (all NumPy, no reference samples beyond the bank)."""

    input_shape: tuple[int, ...]
    n_classes: int
    pool_h: npt.NDArray[np.float32] | None  # (h, H) averaging matrix
    pool_w: npt.NDArray[np.float32] | None
    pool_1d: npt.NDArray[np.float32] | None  # (D, d) for flat inputs
    proj: npt.NDArray[np.float32] | None  # (r, PROJ_DIM) or None = identity
    dim: int
    has_reference: bool
    bank: npt.NDArray[np.float32]  # pooled reference samples (B, r)
    bank_sq: npt.NDArray[np.float32]
    ood_scale: float
    ood_threshold: float
    nn_edges: npt.NDArray[np.float64]  # exact, q01, q05, q25, q50 of natural NN distances
    margin_q10: float
    ref_top1: float
    ref_class_p: npt.NDArray[np.float64]
    pca_mean: npt.NDArray[np.float32]
    pca_comp: npt.NDArray[np.float32]  # (r, CELL_BITS)
    pca_median: npt.NDArray[np.float32]
    occ_n: npt.NDArray[np.float64]  # sample sizes
    occ_cells: npt.NDArray[np.float64]  # cells a natural sample of that size occupies
    hash_w: npt.NDArray[np.uint64]
    noise_threshold: float = math.inf  # NOISE_MARGIN x the reference's NOISE_FPR level
    stat_t0: float = 0.0  # texture level of image_statistics (reference median noise)
    stat_center: npt.NDArray[np.float64] | None = None  # image statistics' mean
    stat_icov: npt.NDArray[np.float64] | None = None  # and inverse covariance
    stat_threshold: float = math.inf  # the reference's OFF_FPR tail of the distance
    off_gate: float = 0.0  # natural OFF_GATE_Q nearest-neighbour distance (TW311)


def pixel_noise(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """Per image (N, C, H, W): the median absolute difference of vertically and
    horizontally neighbouring pixels.

    Natural images are locally smooth: most neighbours agree and edges, however sharp,
    are a minority of pairs, so the median stays near zero (its 99% level on GTSRB and
    CIFAR-10 is 0.07). Noise is dense: uniform noise gives about 0.29, and a gradient-sign
    step of +-e at every pixel puts half the pairs e*2 apart.
    """
    n = len(x)
    dv = np.abs(np.diff(x, axis=2)).reshape(n, -1)
    dh = np.abs(np.diff(x, axis=3)).reshape(n, -1)
    d = np.concatenate([dv, dh], axis=1)
    k = d.shape[1] // 2
    return np.asarray(np.partition(d, k, axis=1)[:, k], dtype=np.float64)


def neighbour_diffs(
    x: npt.NDArray[np.float32],
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Absolute differences of vertically and horizontally neighbouring pixels of images
    (N, C, H, W), one row per image: computed once per request for TW310 and TW311."""
    n = len(x)
    return np.abs(np.diff(x, axis=2)).reshape(n, -1), np.abs(np.diff(x, axis=3)).reshape(n, -1)


def pixel_noise_above(
    x: npt.NDArray[np.float32],
    threshold: float,
    diffs: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]] | None = None,
) -> npt.NDArray[np.bool_]:
    """``pixel_noise(x) > threshold`` without the sort (the hot path of ``observe``): the
    median is above the threshold exactly when at least as many pairs are above it as the
    median's rank leaves (up to float32 rounding of a difference equal to the threshold).
    ``diffs``: :func:`neighbour_diffs` of ``x`` where already computed."""
    dv, dh = diffs if diffs is not None else neighbour_diffs(x)
    above = np.count_nonzero(dv > threshold, axis=1) + np.count_nonzero(dh > threshold, axis=1)
    pairs = x.shape[1] * ((x.shape[2] - 1) * x.shape[3] + x.shape[2] * (x.shape[3] - 1))
    return np.asarray(above >= pairs - pairs // 2, dtype=np.bool_)


def image_statistics(
    x: npt.NDArray[np.float32],
    t0: float,
    diffs: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]] | None = None,
) -> npt.NDArray[np.float64]:
    """Global statistics of images (N, C, H, W): per channel mean and standard deviation,
    the mean absolute difference of neighbouring pixels (edge strength), the share of
    neighbour pairs that differ by more than ``t0`` (texture density: with ``t0`` the
    reference's typical pixel noise, a smooth sign and a textured photograph differ
    here most) and, for colour, the mean spread between channels (colourfulness).

    Cheap (two passes over the pixels, no sort): ``observe`` computes them per request,
    with the ``diffs`` (:func:`neighbour_diffs`) that TW310 uses too.
    """
    dv, dh = diffs if diffs is not None else neighbour_diffs(x)
    pairs = dv.shape[1] + dh.shape[1]
    cols = [
        x.mean(axis=(2, 3)),
        x.std(axis=(2, 3)),
        ((dv.sum(axis=1) + dh.sum(axis=1)) / max(pairs, 1))[:, None],
        ((np.count_nonzero(dv > t0, axis=1) + np.count_nonzero(dh > t0, axis=1)) / max(pairs, 1))[
            :, None
        ],
    ]
    if x.shape[1] > 1:
        cols.append((x.max(axis=1) - x.min(axis=1)).mean(axis=(1, 2))[:, None])
    return np.asarray(np.concatenate(cols, axis=1), dtype=np.float64)


def _mahalanobis(
    v: npt.NDArray[np.float64], center: npt.NDArray[np.float64], icov: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    d = v - center
    out: npt.NDArray[np.float64] = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", d, icov, d), 0.0))
    return out


def clustered_excess(
    n_group: npt.NDArray[np.generic],
    k_group: npt.NDArray[np.generic],
    rate: float,
    min_groups: int = OFF_MIN_GROUPS,
) -> tuple[float, float, int]:
    """Mean share of flagged queries over groups, and the one-sided p-value of its excess
    over ``rate`` with the groups as the units (a t-test over groups of at least
    OFF_MIN_PER_GROUP queries; a cluster-robust test: queries of one group are not
    independent evidence). Shares are shrunk towards ``rate`` by two pseudo-queries.

    Returns ``(mean share, p-value, groups)``; p is 1 below ``min_groups`` groups.
    """
    n = np.asarray(n_group, dtype=np.float64)
    k = np.asarray(k_group, dtype=np.float64)
    ok = n >= OFF_MIN_PER_GROUP
    groups = int(ok.sum())
    if groups < max(min_groups, 2):
        return rate, 1.0, groups
    share = (k[ok] + 2.0 * rate) / (n[ok] + 2.0)
    mean = float(share.mean())
    se = max(float(share.std(ddof=1)) / math.sqrt(groups), 1e-9)
    return mean, float(stats.t.sf((mean - rate) / se, groups - 1)), groups


def _rate_test(
    detector: str,
    rule: Rule,
    k: float,
    n: float,
    rate: float,
    alpha: float,
    severity: Severity | None,
    **evidence: Any,
) -> Observation | None:
    """An observation when ``k`` of ``n`` queries is a significant excess over the
    per-query ``rate`` (one-sided binomial p-value under ``alpha``), else ``None``."""
    pval = float(stats.binom.sf(k - 1, int(n), rate))
    if pval >= alpha:
        return None
    return Observation(
        detector,
        rule.id,
        float(k / n),
        severity,
        rules.ATLAS_EXTRACT,
        {"rate": round(k / n, 4), "expected": rate, "p_value": pval, "queries": int(n), **evidence},
    )


class StreamMonitor:
    """Per-client streaming extraction detectors (see the module docstring).

    Parameters
    ----------
    state_budget
        Maximum bytes of one client's serialised state.
    classifier
        The stream classifier: ``"default"`` (the weights shipped with the package),
        a :class:`~.classifier.StreamClassifier`, or ``None`` for no learned alerts.
    prada_alerts
        Whether PRADA's alarm is an alert (severity medium) rather than a timeline
        observation; ``True`` gives plain PRADA, the baseline.
    prada_delta
        PRADA's Shapiro-Wilk threshold.
    fpr
        Per-query false-positive rate at which the out-of-distribution threshold is
        calibrated on held-out reference data.
    min_queries
        No alert before a client has sent this many samples.
    reservoir
        PRADA distances kept per client.
    flush_every
        Samples buffered per client before the detectors run over them (see the module
        docstring); 1 runs them on every request. Capped so that the buffer takes at most
        a quarter of ``state_budget``.
    random_state
        Seeds the reference split, the projection and the hashes.
    """

    def __init__(
        self,
        state_budget: int = DEFAULT_STATE_BUDGET,
        classifier: StreamClassifier | str | None = "default",
        prada_alerts: bool = False,
        prada_delta: float = PRADA_DELTA,
        fpr: float = 0.01,
        min_queries: int = 20,
        reservoir: int = 512,
        flush_every: int = 16,
        random_state: int = 0,
    ) -> None:
        self.state_budget = state_budget
        self.classifier = classifier
        self.prada_alerts = prada_alerts
        self.prada_delta = prada_delta
        self.fpr = fpr
        self.min_queries = min_queries
        self.reservoir = reservoir
        self.flush_every = flush_every
        self.random_state = random_state

    # -- fitting ---------------------------------------------------------------------------

    def fit(self, reference: Reference) -> StreamMonitor:
        """Learn the input pooling, reference distances and calibrated thresholds.

        Raises
        ------
        InputError
            A reference whose shapes disagree, or an option out of range.
        """
        if not 0.0 < self.fpr < 0.5:
            raise InputError(f"fpr must lie in (0, 0.5), got {self.fpr}", "fpr")
        if self.flush_every < 1:
            raise InputError(
                f"flush_every must be at least 1, got {self.flush_every}", "flush_every"
            )
        if self.state_budget < 4096:
            raise InputError(
                f"state_budget must be at least 4096 bytes, got {self.state_budget}",
                "state_budget",
            )
        shape = tuple(int(s) for s in reference.input_shape)
        c = int(reference.n_classes)
        if c < 2 or len(shape) not in (1, 3):
            raise InputError(
                f"need n_classes >= 2 and a (C, H, W) or (D,) input shape, got {c}, {shape}",
                "reference",
            )
        rng = np.random.default_rng(self.random_state)
        pool_h = pool_w = pool_1d = None
        if len(shape) == 3:
            ch, hh, ww = shape
            pool_h, pool_w = _avg_matrix(hh, POOL_SIDE), _avg_matrix(ww, POOL_SIDE)
            rdim = ch * pool_h.shape[0] * pool_w.shape[0]
        else:
            pool_1d = _avg_matrix(shape[0], 3 * PROJ_DIM).T
            rdim = pool_1d.shape[1]
        proj = None
        dim = rdim
        if rdim > PROJ_DIM:
            q, _ = np.linalg.qr(rng.normal(size=(rdim, PROJ_DIM)))
            # Orthonormal columns scaled so that projected distances estimate pooled ones.
            proj = (q * math.sqrt(rdim / PROJ_DIM)).astype(np.float32)
            dim = PROJ_DIM
        hash_w = rng.integers(1, 2**63, size=rdim, dtype=np.uint64) | np.uint64(1)
        f = _Fitted(
            input_shape=shape,
            n_classes=c,
            pool_h=pool_h,
            pool_w=pool_w,
            pool_1d=pool_1d,
            proj=proj,
            dim=dim,
            has_reference=False,
            bank=np.zeros((0, rdim), np.float32),
            bank_sq=np.zeros(0, np.float32),
            ood_scale=1.0,
            ood_threshold=math.inf,
            nn_edges=np.array([1e-6, 0.0, 0.0, 0.0, 0.0]),
            margin_q10=0.0,
            ref_top1=1.0,
            ref_class_p=np.full(c, 1.0 / c),
            pca_mean=np.zeros(rdim, np.float32),
            pca_comp=np.zeros((rdim, CELL_BITS), np.float32),
            pca_median=np.zeros(CELL_BITS, np.float32),
            occ_n=np.array([1.0]),
            occ_cells=np.array([1.0]),
            hash_w=hash_w,
        )
        self.fitted_ = f
        self.ring_ = RING if self.state_budget >= 32 * 1024 else RING // 4
        self.recent_ = OFF_RECENT if self.state_budget >= 32 * 1024 else OFF_RECENT // 2
        per_sample = 4 * (rdim + c)
        fits = self.state_budget // 4 // per_sample
        self.buffer_ = min(self.flush_every, fits) if min(self.flush_every, fits) > 1 else 0
        self.pool_size_ = self._pool_size(dim, c)
        if reference.x is not None and reference.probs is not None:
            self._fit_reference(reference, rng)
        self.classifier_ = _resolve_classifier(self.classifier, f.input_shape)
        return self

    def _pool_size(self, dim: int, n_classes: int) -> int:
        fixed = encode(
            StreamState.empty(
                n_classes,
                0,
                dim,
                self.reservoir,
                1 << CELL_BITS,
                128,
                ring=self.ring_,
                nn_bins=len(NN_QUANTILES) + 2,
                pending=self.buffer_,
                pooled_dim=self.fitted_.bank.shape[1],
                off_cells=1 << OFF_CELL_BITS,
                recent=self.recent_,
            )
        )
        per_slot = dim * 2 + 2
        room = int(0.95 * self.state_budget) - len(fixed)
        if room < per_slot * 16:
            raise InputError(
                f"state_budget {self.state_budget} leaves room for fewer than 16 stored queries",
                "state_budget",
            )
        return min(256, room // per_slot)

    def _fit_reference(self, reference: Reference, rng: np.random.Generator) -> None:
        f = self.fitted_
        x = np.asarray(reference.x, dtype=np.float32)
        p = np.asarray(reference.probs, dtype=np.float64)
        if x.shape[1:] != f.input_shape or p.shape != (len(x), f.n_classes) or len(x) < 40:
            raise InputError(
                f"reference x {x.shape} / probs {p.shape} do not fit input shape "
                f"{f.input_shape} and {f.n_classes} classes (need at least 40 samples)",
                "reference",
            )
        order = rng.permutation(len(x))[:2000]
        r = self._pool(x[order])
        half = len(r) // 2
        bank, held = r[:half], r[half:]
        f.bank = np.ascontiguousarray(bank)
        f.bank_sq = np.einsum("ij,ij->i", bank, bank)
        d_held = np.sqrt(_min_sqdist(held, f.bank, f.bank_sq))
        f.ood_scale = float(np.median(d_held)) or 1.0
        f.ood_threshold = threshold_at_fpr(d_held / f.ood_scale, self.fpr)
        # Natural nearest-neighbour distances to a set as large as a client's pool.
        zb, zh = self._project(bank[: self.pool_size_]), self._project(held)
        d_pool = np.sqrt(_min_sqdist(zh, zb, np.einsum("ij,ij->i", zb, zb)))
        f.nn_edges = np.concatenate([[1e-6], np.quantile(d_pool, NN_QUANTILES)])
        f.off_gate = float(np.quantile(d_pool, OFF_GATE_Q))
        srt = np.sort(p, axis=1)
        f.margin_q10 = float(np.quantile(srt[:, -1] - srt[:, -2], 0.1))
        f.ref_top1 = float(srt[:, -1].mean())
        hist = np.bincount(p.argmax(axis=1), minlength=f.n_classes).astype(np.float64)
        f.ref_class_p = (hist + 0.5) / (hist.sum() + 0.5 * f.n_classes)
        f.pca_mean = bank.mean(axis=0)
        _, _, vt = np.linalg.svd(bank - f.pca_mean, full_matrices=False)
        k = min(CELL_BITS, vt.shape[0])
        comp = np.zeros((bank.shape[1], CELL_BITS), np.float32)
        comp[:, :k] = vt[:k].T
        f.pca_comp = comp
        f.pca_median = np.median((bank - f.pca_mean) @ comp, axis=0).astype(np.float32)
        cells = self._cells(held)
        sizes = np.unique(np.geomspace(1, len(held), 24).astype(int))
        occ = [
            np.mean([np.unique(rng.choice(cells, n, replace=False)).size for _ in range(5)])
            for n in sizes
        ]
        f.occ_n, f.occ_cells = sizes.astype(np.float64), np.asarray(occ, np.float64)
        if len(f.input_shape) == 3 and min(f.input_shape[1:]) > 1:
            # Every reference sample (not only the held-out half): a 0.1% tail needs them.
            level = threshold_at_fpr(pixel_noise(x[order]), NOISE_FPR)
            f.noise_threshold = max(NOISE_MARGIN * level, NOISE_FLOOR)
            if is_colour_image(f.input_shape):  # OFF_MIN_SIDE and up
                self._fit_image_statistics(x[order])
        f.has_reference = True

    def _fit_image_statistics(self, x: npt.NDArray[np.float32]) -> None:
        """Centre, covariance and OFF_FPR threshold of :func:`image_statistics`: moments
        from one half of the reference sample, the threshold from the other."""
        f = self.fitted_
        f.stat_t0 = max(float(np.median(pixel_noise(x))), 1.0 / 255.0)
        v = image_statistics(x, f.stat_t0)
        half = len(v) // 2
        center = v[:half].mean(axis=0)
        cov = np.atleast_2d(np.cov(v[:half].T))
        # A relative ridge: constant statistics (the black border of every MNIST digit)
        # must not make the inverse explode.
        cov += np.diag(1e-3 * np.diag(cov) + 1e-9)
        icov = np.asarray(np.linalg.inv(cov), dtype=np.float64)
        f.stat_center, f.stat_icov = center, icov
        f.stat_threshold = threshold_at_fpr(_mahalanobis(v[half:], center, icov), OFF_FPR)

    # -- embeddings ------------------------------------------------------------------------

    def _pool(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        f = self.fitted_
        if f.pool_1d is not None:
            return np.asarray(x.reshape(len(x), -1) @ f.pool_1d, dtype=np.float32)
        if f.pool_h is None or f.pool_w is None:  # pragma: no cover - set together in fit
            raise InputError("the monitor's pooling is not fitted", "monitor")
        y = np.matmul(np.matmul(f.pool_h, x), f.pool_w.T)
        return np.ascontiguousarray(y.reshape(len(x), -1), dtype=np.float32)

    def _project(self, r: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        p = self.fitted_.proj
        return r if p is None else np.asarray(r @ p, dtype=np.float32)

    def _cells(self, r: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]:
        f = self.fitted_
        bits = ((r - f.pca_mean) @ f.pca_comp) > f.pca_median
        return np.asarray(bits @ (1 << np.arange(CELL_BITS)), dtype=np.int64)

    # -- state -----------------------------------------------------------------------------

    def new_state(self) -> StreamState:
        f = self._fitted()
        return StreamState.empty(
            f.n_classes,
            self.pool_size_,
            f.dim,
            self.reservoir,
            1 << CELL_BITS,
            128,
            ring=self.ring_,
            nn_bins=len(NN_QUANTILES) + 2,
            pending=self.buffer_,
            pooled_dim=f.bank.shape[1],
            off_cells=1 << OFF_CELL_BITS,
            recent=self.recent_,
        )

    def dumps(self, state: ClientState) -> bytes:
        data = encode(_as_stream(state))
        if len(data) > self.state_budget:  # pragma: no cover - sized in fit
            raise InputError(
                f"client state of {len(data)} bytes exceeds the budget {self.state_budget}",
                "state",
            )
        return data

    def loads(self, data: bytes) -> StreamState:
        s = decode(data)
        template = self.new_state().arrays()
        if s.off_cell.size == 0:  # written before TW311 (see state._upgrade)
            s.off_cell = np.zeros_like(template["off_cell"])
            s.recent_r = np.zeros_like(template["recent_r"])
        if any(v.shape != template[k].shape for k, v in s.arrays().items()):
            raise InputError("client state was written by a differently fitted monitor", "state")
        return s

    # -- observing -------------------------------------------------------------------------

    def observe(self, state: ClientState, batch: QueryBatch) -> list[Observation]:
        """Update ``state`` with one answered request; return what is new to report."""
        f = self._fitted()
        s = _as_stream(state)
        x = np.asarray(batch.x, dtype=np.float32)
        probs = np.asarray(batch.probs, dtype=np.float32)
        n_b = len(x)
        if x.shape[1:] != f.input_shape or probs.shape != (n_b, f.n_classes):
            raise InputError(
                f"batch x {x.shape} / probs {probs.shape} do not fit the monitor "
                f"({f.input_shape}, {f.n_classes} classes)",
                "batch",
            )
        if n_b == 0:
            return []
        # Timing: context only.
        if s.get("n_req") > 0:
            s.add("gap_log_sum", math.log1p(max(0.0, batch.t - s.get("t_last"))))
        else:
            s.set("t_first", batch.t)
        s.set("t_last", batch.t)
        s.add("n_req", 1)
        diffs = neighbour_diffs(x) if math.isfinite(f.noise_threshold) else None
        if diffs is not None:
            # Counted on the raw inputs now: pooling, which the buffer keeps, averages
            # pixel noise away.
            s.add("noise_count", float(np.sum(pixel_noise_above(x, f.noise_threshold, diffs))))
        off = np.zeros(n_b, dtype=np.uint8)
        if f.stat_icov is not None and f.stat_center is not None:
            stats_x = image_statistics(x, f.stat_t0, diffs)
            dist = _mahalanobis(stats_x, f.stat_center, f.stat_icov)
            off = (dist > f.stat_threshold).astype(np.uint8)
        r = self._pool(x)
        cap = len(s.pend_r)
        k = int(s.get("pend_n"))
        if cap and k + n_b < cap:
            s.pend_r[k : k + n_b] = r
            s.pend_p[k : k + n_b] = probs
            s.pend_o[k : k + n_b] = off
            s.set("pend_n", k + n_b)
            return []
        if k:
            r = np.concatenate([s.pend_r[:k], r])
            probs = np.concatenate([s.pend_p[:k], probs])
            off = np.concatenate([s.pend_o[:k], off])
            s.set("pend_n", 0)
        return self._detect(s, r, probs, off)

    def flush(self, state: ClientState) -> list[Observation]:
        """Run the detectors over the client's buffered samples now; what is new to report."""
        self._fitted()
        s = _as_stream(state)
        k = int(s.get("pend_n"))
        if k == 0:
            return []
        s.set("pend_n", 0)
        return self._detect(s, s.pend_r[:k].copy(), s.pend_p[:k].copy(), s.pend_o[:k].copy())

    def settled(self, state: ClientState) -> StreamState:
        """``state`` itself when nothing is buffered, else a copy with the buffer run."""
        s = _as_stream(state)
        if s.get("pend_n") == 0:
            return s
        c = s.copy()
        self.flush(c)
        return c

    def _detect(
        self,
        s: StreamState,
        r: npt.NDArray[np.float32],
        probs: npt.NDArray[np.float32],
        off: npt.NDArray[np.uint8],
    ) -> list[Observation]:
        """Every detector over pooled samples ``r``, their answers ``probs`` and whether
        their image statistics were off the reference's (``off``)."""
        f = self.fitted_
        n_before = s.get("n")
        s.add("n", len(r))
        z = self._project(r)
        pred = probs.argmax(axis=1)
        s.class_hist += np.bincount(pred, minlength=f.n_classes)
        top2 = np.partition(probs, -2, axis=1)[:, -2:]
        s.add("top1_sum", float(top2[:, 1].sum()))
        s.add("lowmargin_count", float(np.sum(top2[:, 1] - top2[:, 0] < f.margin_q10)))
        if f.has_reference:
            ood = np.sqrt(_min_sqdist(r, f.bank, f.bank_sq)) / f.ood_scale
            s.add("ood_count", float(np.sum(ood > f.ood_threshold)))
            # Only the excess over the threshold counts: being closer to the reference than
            # usual (re-sending training data) is no evidence of extraction.
            s.add(
                "ood_log_sum",
                float(np.clip(np.log(np.maximum(ood, 1e-6) / f.ood_threshold), 0, 3).sum()),
            )
            cells = self._cells(r)
            np.bitwise_or.at(s.cells, cells >> 3, (1 << (cells & 7)).astype(np.uint8))
        _kmv_update(s, r, f.hash_w)
        off_rule = f.has_reference and f.stat_icov is not None
        # Only TW311 reads it; before the ring counter moves on.
        derived = _shares_pixels(s, r) if off_rule else None
        nn = self._prada_and_chains(s, z, pred, int(n_before))
        if off_rule and derived is not None:
            # New inputs only: a query next to one of the client's earlier queries (an
            # explainer's variant, a repeat) is no independent sample of its data.
            new = (nn >= f.off_gate) & ~derived
            flagged = new & (off > 0)
            g = cells & ((1 << OFF_CELL_BITS) - 1)
            s.off_cls[0] += np.bincount(pred[new], minlength=f.n_classes).astype(np.uint32)
            s.off_cls[1] += np.bincount(pred[flagged], minlength=f.n_classes).astype(np.uint32)
            s.off_cell[0] += np.bincount(g[new], minlength=len(s.off_cell[0])).astype(np.uint32)
            s.off_cell[1] += np.bincount(g[flagged], minlength=len(s.off_cell[0])).astype(np.uint32)
        return self._report(s, n_before)

    def _prada_and_chains(
        self,
        s: StreamState,
        z: npt.NDArray[np.float32],
        pred: npt.NDArray[np.int64],
        n_before: int,
    ) -> npt.NDArray[np.float64]:
        """PRADA and the near-duplicate histogram; returns each sample's distance to its
        nearest earlier stored query of the client (inf for the first)."""
        f = self.fitted_
        pool = self.pool_size_
        used = int(s.get("gs_used"))
        added = int(s.get("gs_added"))
        seen = int(s.get("dist_seen"))
        ring_n0 = int(s.get("ring_n"))
        emb, ring = s.gs_emb, s.ring_emb
        n_ring = len(ring)
        b = len(z)
        z16 = z.astype(np.float16).astype(np.float32)  # stored precision (exact round trips)
        zz = np.einsum("ij,ij->i", z16, z16)
        steps = np.arange(b)
        # Every squared distance the batch needs, in three products: to the growing-set pool
        # and the ring as they were, and within the batch. The loop below only masks them.
        d_in = zz[:, None] - 2.0 * (z16 @ z16.T) + zz[None, :]
        nn2 = np.full(b, np.inf)
        if n_ring:
            # Ring membership does not depend on the data: old slot k is overwritten by
            # batch sample (k - ring_n0) mod R, batch sample j stays for R samples.
            rsq = np.einsum("ij,ij->i", ring, ring)
            d_r = rsq[:, None] - 2.0 * (ring @ z16.T) + zz[None, :]
            dies = (np.arange(n_ring) - ring_n0) % n_ring
            alive = (dies[:, None] >= steps[None, :]) & (
                np.arange(n_ring)[:, None] < min(ring_n0, n_ring)
            )
            nn2 = np.where(alive, d_r, np.inf).min(axis=0, initial=np.inf)
            back = steps[None, :] - steps[:, None]  # i - j
            recent = (back > 0) & (back <= n_ring)
            nn2 = np.minimum(nn2, np.where(recent, d_in, np.inf).min(axis=0, initial=np.inf))
            last = steps[-n_ring:]
            ring[(ring_n0 + last) % n_ring] = z16[last]
            s.set("ring_n", ring_n0 + b)
        sq = np.einsum("ij,ij->i", emb, emb)
        d_g = sq[:, None] - 2.0 * (emb @ z16.T) + zz[None, :]  # (pool, b)
        d_g[used:] = np.inf
        old_cls = s.gs_cls.copy()
        # Nearest old slot of any class and of the sample's class, for the whole batch at
        # once; a sample looks again only if that slot was evicted by an earlier join.
        arg_all = d_g.argmin(axis=0)
        best_all0 = d_g[arg_all, steps]
        d_mine = np.where(old_cls[:, None] == pred[None, :], d_g, np.inf)
        arg_mine = d_mine.argmin(axis=0)
        best_mine0 = d_mine[arg_mine, steps]
        evicted: set[int] = set()
        joined: dict[int, int] = {}  # pool slot -> batch sample now holding it
        m = len(s.dists)
        for i in range(b):
            c = int(pred[i])
            col = d_g[:, i]
            best_all = float(best_all0[i])
            if int(arg_all[i]) in evicted:
                best_all = float(col.min())
            best_mine = float(best_mine0[i])
            if int(arg_mine[i]) in evicted:
                mine_old = old_cls == c
                best_mine = float(col[mine_old].min()) if mine_old.any() else math.inf
            for j in joined.values():
                dj = float(d_in[j, i])
                best_all = min(best_all, dj)
                if int(pred[j]) == c:
                    best_mine = min(best_mine, dj)
            nn2[i] = min(nn2[i], best_all)
            if math.isinf(best_mine):
                join = True
            else:
                d = math.sqrt(max(best_mine, 0.0))
                # Reservoir of distances (deterministic slot: the state round-trips exactly).
                if seen < m:
                    s.dists[seen] = d
                else:
                    k = _mix(seen) % (seen + 1)
                    if k < m:
                        s.dists[k] = d
                seen += 1
                if seen > PRADA_MIN_DISTANCES and seen % PRADA_EVERY == 0:
                    # PRADA's test every 10 distances, at that query (not at the end of
                    # the request or buffer), so buffering changes nothing.
                    self._prada_test(s, min(seen, m), n_before + i + 1)
                cnt = s.cls_cnt[c]
                thr = 0.0
                if cnt:
                    mean = s.cls_sum[c] / cnt
                    thr = max(mean - math.sqrt(max(s.cls_sq[c] / cnt - mean * mean, 0.0)), 0.0)
                join = d > thr
                if join:
                    s.cls_sum[c] += d
                    s.cls_sq[c] += d * d
                    s.cls_cnt[c] += 1
            if join:
                slot = used if used < pool else added % pool
                # The slot's previous holder leaves the set for the samples after this one.
                d_g[slot, i + 1 :] = np.inf
                old_cls[slot] = -1
                evicted.add(slot)
                joined[slot] = i
                used = min(used + 1, pool)
                added += 1
        for slot, i in joined.items():
            emb[slot] = z16[i]
            s.gs_cls[slot] = int(pred[i])
        s.set("gs_used", used)
        s.set("gs_added", added)
        s.set("dist_seen", seen)
        nn: npt.NDArray[np.float64] = np.sqrt(np.maximum(nn2, 0.0))
        if f.has_reference:
            first = np.isfinite(nn)
            s.nn_hist += np.bincount(
                np.searchsorted(f.nn_edges, nn[first], side="left"), minlength=len(s.nn_hist)
            )[: len(s.nn_hist)]
        return nn

    def _prada_test(self, s: StreamState, kept: int, n_at: int) -> None:
        vals = s.dists[:kept].astype(np.float64)
        mu, sd = vals.mean(), vals.std()
        if sd > 0:
            vals = vals[np.abs(vals - mu) <= 3 * sd]
        w = shapiro_w(vals)
        s.set("prada_w", w)
        s.set("prada_w_min", min(w, s.get("prada_w_min")))
        if w < self.prada_delta and s.get("prada_alarm_n") == 0:
            s.set("prada_alarm_n", n_at)

    # -- features and reports --------------------------------------------------------------

    def features(self, state: ClientState) -> npt.NDArray[np.float64]:
        """The stream features of a client (order: :data:`~.classifier.FEATURES`), buffered
        samples included."""
        f = self._fitted()
        return stream_features(self.settled(state), f)

    def _report(self, s: StreamState, n_before: float) -> list[Observation]:
        f = self.fitted_
        n = s.get("n")
        out: list[Observation] = []
        noted = int(s.get("noted"))

        def note(rule_id: str, obs: Observation) -> None:
            nonlocal noted
            if not noted & _NOTE_BITS[rule_id]:
                noted |= _NOTE_BITS[rule_id]
                out.append(obs)

        alarm_n = s.get("prada_alarm_n")
        if alarm_n and alarm_n > n_before:
            sev = Severity.MEDIUM if self.prada_alerts else None
            note(
                "TW301",
                Observation(
                    "prada",
                    rules.PRADA.id,
                    float(1.0 - s.get("prada_w")),
                    sev,
                    rules.ATLAS_EXTRACT,
                    {
                        "w": round(s.get("prada_w"), 4),
                        "delta": self.prada_delta,
                        "distances": int(s.get("dist_seen")),
                    },
                ),
            )
        if self.prada_alerts:
            s.set("noted", noted)
            return out
        if f.has_reference and n >= self.min_queries:
            for rule, key, rate, det in (
                (rules.OOD, "ood_count", self.fpr, "ood"),
                (rules.CHAINS, "perturbation", 0.01, "near-duplicates"),
                (rules.CONFIDENCE, "lowmargin_count", 0.1, "confidence"),
            ):
                k = float(s.nn_hist[1]) if key == "perturbation" else s.get(key)
                if noted & _NOTE_BITS[rule.id] or not _binomial_excess(k, n, rate):
                    continue
                obs = _rate_test(det, rule, k, n, rate, TIMELINE_ALPHA, None)
                if obs is not None:
                    note(rule.id, obs)
        if n >= self.min_queries and not noted & _NOTE_BITS[rules.NOISE.id]:
            k = s.get("noise_count")
            if k >= NOISE_MIN_SHARE * n:
                obs = _rate_test(
                    "noise-queries",
                    rules.NOISE,
                    k,
                    n,
                    NOISE_FPR,
                    NOISE_ALPHA,
                    Severity.MEDIUM,
                    threshold=round(f.noise_threshold, 6),
                )
                if obs is not None:
                    note(rules.NOISE.id, obs)
        if n >= self.min_queries and not noted & _NOTE_BITS[rules.OFF_DISTRIBUTION.id]:
            obs = self.off_distribution(s)
            if obs is not None:
                note(rules.OFF_DISTRIBUTION.id, obs)
        clf = self.classifier_
        if clf is not None and n >= self.min_queries and f.has_reference:
            feats = stream_features(s, f)
            p = clf.score(feats)
            s.set("clf_score", p)
            s.set("clf_score_max", max(p, s.get("clf_score_max")))
            rank = clf.severity_rank(p)
            if rank > s.get("alert_level"):
                s.set("alert_level", rank)
                out.append(
                    Observation(
                        "stream-classifier",
                        rules.STREAM.id,
                        p,
                        _SEVERITY_BY_RANK[rank],
                        rules.ATLAS_EXTRACT,
                        {
                            "features": dict(
                                zip(FEATURES, np.round(feats, 4).tolist(), strict=True)
                            ),
                            "threshold": clf.thresholds[0],
                            "queries": int(n),
                            "timing": self.timing(s),
                        },
                    )
                )
        s.set("noted", noted)
        return out

    def rule_alerted(self, s: StreamState) -> bool:
        """Whether a rule on the raw inputs (TW310, TW311) has alerted on ``s`` already."""
        bits = _NOTE_BITS[rules.NOISE.id] | _NOTE_BITS[rules.OFF_DISTRIBUTION.id]
        return bool(int(s.get("noted")) & bits)

    def off_distribution(self, s: StreamState) -> Observation | None:
        """TW311 (see OFF_FPR) on a client's or a pooled state: ``None`` unless both
        grouped tests find the excess."""
        f = self.fitted_
        if f.stat_icov is None or s.off_cell.size == 0:
            return None
        by_cell = clustered_excess(s.off_cell[0], s.off_cell[1], OFF_FPR)
        if by_cell[0] < OFF_MIN_SHARE or by_cell[1] >= OFF_ALPHA_CELLS:
            return None
        by_class = clustered_excess(
            s.off_cls[0], s.off_cls[1], OFF_FPR, min(OFF_MIN_GROUPS, f.n_classes)
        )
        if by_class[0] < OFF_MIN_SHARE or by_class[1] >= OFF_ALPHA_CLASSES:
            return None
        new = float(s.off_cls[0].sum())
        return Observation(
            "image-statistics",
            rules.OFF_DISTRIBUTION.id,
            min(by_cell[0], by_class[0]),
            Severity.MEDIUM,
            rules.ATLAS_EXTRACT,
            {
                "rate": round(float(s.off_cls[1].sum()) / max(new, 1.0), 4),
                "expected": OFF_FPR,
                "new_queries": int(new),
                "queries": int(s.get("n")),
                "cells": {
                    "share": round(by_cell[0], 4),
                    "p_value": by_cell[1],
                    "groups": by_cell[2],
                },
                "classes": {
                    "share": round(by_class[0], 4),
                    "p_value": by_class[1],
                    "groups": by_class[2],
                },
            },
        )

    def timing(self, state: ClientState) -> dict[str, float]:
        """Request count, mean request size and mean gap (context, never an alert)."""
        s = _as_stream(state)
        req = max(s.get("n_req"), 1.0)
        gaps = max(req - 1.0, 1.0)
        return {
            "requests": int(s.get("n_req")),
            "mean_request_size": round(s.query_count / req, 2),
            "mean_gap_s": round(math.expm1(s.get("gap_log_sum") / gaps), 4),
        }

    # -- population ------------------------------------------------------------------------

    def correlate(self, states: dict[str, ClientState]) -> list[Observation]:
        """Pooled state of clients below the alert threshold, scored as one stream."""
        from tripwire.detectors.extraction.population import correlate

        return correlate(self, states)

    def drift(self, states: dict[str, ClientState]) -> dict[str, Any]:
        """Population drift of all traffic against the reference (JSON-able)."""
        from tripwire.detectors.extraction.population import drift

        return drift(self, states)

    def _fitted(self) -> _Fitted:
        f: _Fitted | None = getattr(self, "fitted_", None)
        if f is None:
            raise InputError("the extraction monitor is not fitted (call fit first)", "monitor")
        return f


# -- pure helpers ----------------------------------------------------------------------------


def stream_features(s: StreamState, f: _Fitted) -> npt.NDArray[np.float64]:
    """Features of one client's stream, normalised by the reference where it matters."""
    n = max(s.get("n"), 1.0)
    hist = s.class_hist.astype(np.float64)
    p = hist / max(hist.sum(), 1.0)
    nz = p[p > 0]
    entropy = float(-(nz * np.log(nz)).sum() / math.log(f.n_classes))
    occupied = float(np.unpackbits(s.cells).sum())
    expected = float(np.interp(min(n, f.occ_n[-1]), f.occ_n, f.occ_cells))
    w = s.get("prada_w") if s.get("dist_seen") > PRADA_MIN_DISTANCES else 1.0
    h = s.nn_hist.astype(np.float64)
    values = {
        "log_n": math.log1p(n),
        "ood_rate": s.get("ood_count") / n,
        "ood_log_mean": s.get("ood_log_sum") / n,
        "repeat_rate": h[0] / n,
        "nn_q01_rate": h[1] / n,
        "nn_q05_rate": h[:3].sum() / n - h[0] / n,
        "nn_q25_rate": h[:4].sum() / n - h[0] / n,
        "nn_q50_rate": h[:5].sum() / n - h[0] / n,
        "class_entropy": entropy,
        "lowmargin_excess": s.get("lowmargin_count") / n - 0.1,
        "top1_deficit": f.ref_top1 - s.get("top1_sum") / n,
        "coverage_ratio": math.log((occupied + 1.0) / (expected + 1.0)),
        "distinct_ratio": min(_kmv_estimate(s.kmv) / n, 1.0),
        "prada_w_deficit": 1.0 - w,
        "prada_add_rate": s.get("gs_added") / n,
    }
    # Chains or off-distribution queries spread over many classes (an extraction explores)
    # versus around a few inputs (an explanation tool perturbs one input at a time).
    values["chain_x_entropy"] = values["nn_q05_rate"] * entropy
    values["ood_x_entropy"] = values["ood_rate"] * entropy
    return np.array([values[k] for k in FEATURES], dtype=np.float64)


def shapiro_w(x: npt.ArrayLike) -> float:
    """Shapiro-Wilk W with Royston's (1992) coefficients, as scipy's ``swilk`` computes it.

    NumPy only and without scipy's per-call overhead (PRADA recomputes W every 10
    queries on the serving path); the coefficients depend on ``n`` alone and are cached.
    Returns 0 for fewer than 3 values or constant ones.
    """
    v = np.sort(np.asarray(x, dtype=np.float64).ravel())
    n = v.size
    ss = float(((v - v.mean()) ** 2).sum())
    if n < 3 or ss <= 0.0:
        return 0.0
    return min(float((_shapiro_coef(n) @ v) ** 2) / ss, 1.0)


@lru_cache(maxsize=128)
def _shapiro_coef(n: int) -> npt.NDArray[np.float64]:
    if n == 3:
        a = np.array([-math.sqrt(0.5), 0.0, math.sqrt(0.5)])
    else:
        m = special.ndtri((np.arange(1, n + 1) - 0.375) / (n + 0.25))
        mm = float(m @ m)
        c = m / math.sqrt(mm)
        u = 1.0 / math.sqrt(n)
        an = c[-1] + np.polyval([-2.706056, 4.434685, -2.071190, -0.147981, 0.221157, 0.0], u)
        if n > 5:
            an1 = c[-2] + np.polyval([-3.582633, 5.682633, -1.752461, -0.293762, 0.042981, 0.0], u)
            phi = (mm - 2 * m[-1] ** 2 - 2 * m[-2] ** 2) / (1 - 2 * an**2 - 2 * an1**2)
            a = m / math.sqrt(phi)
            a[-1], a[-2], a[0], a[1] = an, an1, -an, -an1
        else:
            phi = (mm - 2 * m[-1] ** 2) / (1 - 2 * an**2)
            a = m / math.sqrt(phi)
            a[-1], a[0] = an, -an
    a.flags.writeable = False
    return a


def _shares_pixels(s: StreamState, r: npt.NDArray[np.float32]) -> npt.NDArray[np.bool_]:
    """Whether each pooled sample shares OFF_SHARED of its pixels with one of the
    OFF_RECENT queries before it (the state's ring, then the batch); updates the ring."""
    w = len(s.recent_r)
    b = len(r)
    if w == 0 or b == 0:
        return np.zeros(b, dtype=np.bool_)
    n0 = int(s.get("ring_n"))
    filled = min(n0, w)
    hist = s.recent_r[(n0 - filled + np.arange(filled)) % w]  # oldest first
    r16 = r.astype(np.float16).astype(np.float32)  # stored precision (exact round trips)
    ext = np.concatenate([np.zeros((w - filled, r.shape[1]), np.float32), hist, r16])
    valid = np.concatenate([np.zeros(w - filled, bool), np.ones(filled + b, bool)])
    # Window i holds the w queries before batch sample i.
    win = np.lib.stride_tricks.sliding_window_view(ext[:-1], w, axis=0)  # (b, d, w)
    ok = np.lib.stride_tricks.sliding_window_view(valid[:-1], w)  # (b, w)
    share = (np.abs(win - r16[:, :, None]) <= OFF_MATCH_TOL).mean(axis=1)  # (b, w)
    last = np.arange(max(0, b - w), b)
    s.recent_r[(n0 + last) % w] = r16[last]
    return np.asarray(((share >= OFF_SHARED) & ok).any(axis=1), dtype=np.bool_)


def _binomial_excess(k: float, n: float, rate: float) -> bool:
    """Cheap pre-check: ``k`` lies more than 3.5 standard deviations above ``n * rate``
    (necessary for the one-sided binomial p-value to fall below 1e-4)."""
    return k - n * rate > 3.5 * math.sqrt(n * rate * (1.0 - rate))


def _avg_matrix(size: int, out: int) -> npt.NDArray[np.float32]:
    """``(min(out, size), size)`` matrix averaging contiguous bins of a length-``size`` axis."""
    k = min(out, size)
    m = np.zeros((k, size), dtype=np.float32)
    bins = np.minimum(np.arange(size) * k // size, k - 1)
    m[bins, np.arange(size)] = 1.0
    return np.asarray(m / m.sum(axis=1, keepdims=True), dtype=np.float32)


def _min_sqdist(
    a: npt.NDArray[np.float32], b: npt.NDArray[np.float32], b_sq: npt.NDArray[np.float32]
) -> npt.NDArray[np.float64]:
    """Squared distance of each row of ``a`` to its nearest row of ``b``."""
    out = np.empty(len(a), dtype=np.float64)
    a_sq = np.einsum("ij,ij->i", a, a)
    for s in range(0, len(a), 512):
        g = a[s : s + 512] @ b.T
        d = a_sq[s : s + 512, None] + b_sq[None, :] - 2.0 * g
        out[s : s + 512] = np.maximum(d.min(axis=1), 0.0)
    return out


_U64 = np.uint64


def _mix(v: int) -> int:
    """splitmix64 of an integer: a deterministic pseudo-random slot."""
    z = (v + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return z ^ (z >> 31)


def _kmv_update(s: StreamState, r: npt.NDArray[np.float32], w: npt.NDArray[np.uint64]) -> None:
    """Keep the ``k`` smallest 32-bit hashes of the inputs quantised to 16 levels."""
    q = np.clip(r * 16.0, 0, 15).astype(np.uint64)
    with np.errstate(over="ignore"):
        h = (q * w[None, :]).sum(axis=1, dtype=np.uint64)
        h ^= h >> _U64(29)
        h *= _U64(0xBF58476D1CE4E5B9)
        h ^= h >> _U64(32)
    h32 = (h & _U64(0xFFFFFFFE)).astype(np.uint32)  # the all-ones value marks empty slots
    h32 = h32[h32 < s.kmv[-1]]
    if h32.size:
        s.kmv[:] = kmv_merge(s.kmv, h32)


def _kmv_estimate(kmv: npt.NDArray[np.uint32]) -> float:
    full = kmv != np.iinfo(np.uint32).max
    k = int(full.sum())
    if k < len(kmv):
        return float(k)
    return (k - 1) / ((float(kmv[-1]) + 1.0) / 2.0**32)


def _as_stream(state: ClientState) -> StreamState:
    if not isinstance(state, StreamState):
        raise InputError(f"expected a state from this monitor, got {type(state).__name__}", "state")
    return state


def _resolve_classifier(
    c: StreamClassifier | str | None, input_shape: tuple[int, ...]
) -> StreamClassifier | None:
    if c is None or isinstance(c, StreamClassifier):
        return c
    if c == "default":
        return StreamClassifier.default(input_shape)
    return StreamClassifier.load(c)
