"""Label attacks: samples keep their pixels and get a wrong label.

- ``label-flip``: random victims, random wrong classes (uniform label noise).
- ``pair-flip``: victims from one class all relabelled as another (pair noise; the
  systematic flips that a careless or malicious annotator makes).
- ``optimal-flip``: victims and their new labels chosen with a proxy model, so that
  the flips do the most damage while looking like honest annotation mistakes.

References: Biggio et al., "Support Vector Machines Under Adversarial Label Noise",
ACML 2011; Xiao et al., "Adversarial Label Flips Attack on Support Vector Machines",
ECAI 2012; Paudice et al., "Label Sanitization against Label Flipping Poisoning
Attacks", ECML 2018 workshops; Northcutt et al., "Confident Learning", JAIR 2021 (the
label-error detector the near-boundary choice is meant to slip past).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from tripwire.attacks.base import PoisonOutcome, PoisonRequest, choose, register_kind
from tripwire.errors import InputError
from tripwire.io.dataset import Dataset


@register_kind("label-flip", needs_images=False)
def label_flip(ds: Dataset, req: PoisonRequest) -> PoisonOutcome:
    """Random label flips: victims drawn uniformly, each given a different random class
    (or ``--target`` when given)."""
    rng = np.random.default_rng(req.seed)
    n = round(req.rate * len(ds))
    k = ds.n_classes
    if k < 2:
        raise ValueError("label flips need at least two classes")
    pool = np.arange(len(ds)) if req.target is None else np.flatnonzero(ds.y != req.target)
    idx = choose(rng, pool.astype(np.int64), n, "samples", ds.path)
    if req.target is not None:
        new = np.full(idx.size, req.target, dtype=np.int64)
    else:
        # An offset in 1..k-1 guarantees a different class, uniformly over the others.
        new = ((ds.y[idx] + rng.integers(1, k, idx.size)) % k).astype(np.int64)
    return PoisonOutcome(indices=idx, x_model=None, y=new, params={})


@register_kind("pair-flip", needs_images=False)
def pair_flip(ds: Dataset, req: PoisonRequest) -> PoisonOutcome:
    """Pair flips: victims drawn from class ``--source`` all get label ``--target``.

    The rate is of the whole dataset, so ``--rate 0.04`` on 2,000 samples flips 80
    samples of the source class; a source class smaller than that is an error. With
    neither ``--source`` nor ``--target``, the classic pair-flip noise of the noisy-label
    literature (Han et al., "Co-teaching", NeurIPS 2018): victims are drawn from the whole
    set and each class ``c`` flips to its pair ``c + 1``, so high rates are possible.
    """
    if req.source is None and req.target is None:
        rng = np.random.default_rng(req.seed)
        n = round(req.rate * len(ds))
        idx = choose(rng, np.arange(len(ds), dtype=np.int64), n, "samples", ds.path)
        new = ((ds.y[idx] + 1) % ds.n_classes).astype(np.int64)
        return PoisonOutcome(indices=idx, x_model=None, y=new, params={"mode": "pair-noise"})
    if req.source is None:
        raise InputError("pair-flip needs --source CLASS (the class to flip from)", "--source")
    if req.target is None:
        raise InputError("pair-flip needs --target CLASS (the class to flip to)", "--target")
    rng = np.random.default_rng(req.seed)
    n = round(req.rate * len(ds))
    pool = np.flatnonzero(ds.y == req.source).astype(np.int64)
    idx = choose(rng, pool, n, f"samples of class {req.source}", ds.path)
    new = np.full(idx.size, req.target, dtype=np.int64)
    share = idx.size / max(1, pool.size)
    return PoisonOutcome(indices=idx, x_model=None, y=new, params={"source_share": round(share, 6)})


def _proxy_probabilities(
    ds: Dataset, components: int, seed: int
) -> tuple[npt.NDArray[np.float64], str]:
    """Class probabilities of a seeded linear proxy fitted on ``ds`` itself.

    Images are flattened and reduced with PCA first (a linear model on raw pixels is
    slow and no better); tables are standardised. Returns the probabilities, shape
    ``(N, n_classes)``, and a description of the proxy for the attack record.
    """
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    x = ds.model_input().reshape(len(ds), -1).astype(np.float64)
    # One thread: the fit is small, and shared BLAS pools stall badly on a busy machine.
    with threadpool_limits(limits=1):
        if ds.is_image:
            k = max(1, min(components, x.shape[0] - 1, x.shape[1]))
            x = PCA(n_components=k, svd_solver="randomized", random_state=seed).fit_transform(x)
            desc = f"logistic regression on {k} PCA components of the pixels"
        else:
            desc = "logistic regression on the standardised features"
        x = StandardScaler().fit_transform(x)
        model = LogisticRegression(C=1.0, max_iter=500, random_state=seed).fit(x, ds.y)
        proba_seen = model.predict_proba(x)
    # Classes absent from ds get probability 0, so columns line up with label values.
    proba = np.zeros((len(ds), ds.n_classes), dtype=np.float64)
    proba[:, model.classes_.astype(np.int64)] = proba_seen
    return proba, desc


def _one_way_flips(
    y: npt.NDArray[np.int64], runner_up: npt.NDArray[np.int64], order: npt.NDArray[np.int64], n: int
) -> npt.NDArray[np.int64]:
    """``n`` positions from ``order``, first those whose flip agrees with its pair's way.

    Each unordered class pair is flipped one way only, the way of its first (most
    ambiguous) candidate: flips both ways across a boundary cancel out, one-way flips
    move it. Rates too high for that (around half the data) are filled up with the
    remaining samples, still in ``order``.
    """
    direction: dict[tuple[int, int], int] = {}
    agree = np.zeros(order.size, dtype=bool)
    for j, i in enumerate(order.tolist()):
        a, b = int(y[i]), int(runner_up[i])
        agree[j] = direction.setdefault((min(a, b), max(a, b)), a) == a
    return np.concatenate([order[agree], order[~agree]])[:n].astype(np.int64)


@register_kind("optimal-flip", needs_images=False, defaults={"components": 50})
def optimal_flip(ds: Dataset, req: PoisonRequest) -> PoisonOutcome:
    """Proxy-guided flips: boundary samples relabelled as their runner-up class.

    A seeded proxy (logistic regression on PCA-reduced pixels, or on the standardised
    table features) is fitted to the data. For each sample the runner-up is the most
    probable class other than its label, and victims are taken in order of the signed
    margin ``p(label) - p(runner-up)``, smallest first: samples the proxy already puts
    on the runner-up's side, then those nearest the boundary. Each gets its runner-up
    as label, and each class pair is flipped one way only (the way of its first
    candidate), so that the flips move the boundary instead of cancelling out (rates
    above about one half run out of such flips and take the rest in the same order).

    Flips concentrated at a boundary and all pushing the same way shift it, doing more
    damage than uniform noise at the same rate (Biggio et al. 2011, Xiao et al. 2012).
    Label-error detectors (confident learning, kNN disagreement) flag labels that a
    model of the data finds unlikely; a runner-up label is the most plausible wrong
    label, one such a model finds likely, so these flips are the hardest for them.

    With ``--target``, victims are the non-target samples the proxy finds most likely
    to be of the target class, and all get the target label. ``components`` sets the
    PCA size (images only); ``--seed`` seeds the PCA; ties fall to the lower position.
    The proxy takes about a second on 4,000 MNIST images.
    """
    if ds.n_classes < 2 or len(np.unique(ds.y)) < 2:
        raise InputError("label flips need at least two classes in the data", ds.path)
    components = req.params.get("components", 50)
    if not isinstance(components, int) or isinstance(components, bool) or components < 1:
        raise InputError(f"components must be a positive integer, got {components!r}", "components")
    n = round(req.rate * len(ds))
    proba, desc = _proxy_probabilities(ds, components, req.seed)
    rows = np.arange(len(ds))
    params: dict[str, Any] = {"components": components, "proxy": desc}
    if req.target is not None:
        pool = np.flatnonzero(ds.y != req.target).astype(np.int64)
        if n > pool.size:
            raise InputError(
                f"the dataset is too small for the requested rate: {n} samples outside "
                f"the target class needed, {pool.size} available",
                ds.path,
            )
        order = np.argsort(-proba[pool, req.target], kind="stable")
        idx = np.sort(pool[order[:n]]).astype(np.int64)
        new = np.full(idx.size, req.target, dtype=np.int64)
        params["selection"] = "highest proxy probability of the target class"
    else:
        others = proba.copy()
        others[rows, ds.y] = -np.inf
        runner_up = others.argmax(1).astype(np.int64)
        margin = proba[rows, ds.y] - proba[rows, runner_up]
        order = np.argsort(margin, kind="stable").astype(np.int64)
        idx = np.sort(_one_way_flips(ds.y, runner_up, order, n))
        new = runner_up[idx]
        params["selection"] = (
            "smallest signed margin p(label) - p(runner-up), relabelled as the runner-up, "
            "one direction per class pair"
        )
        params["median_margin"] = round(float(np.median(margin[idx])), 6)
        params["max_margin"] = round(float(margin[idx].max()), 6)
    params["proxy_train_accuracy"] = round(float((proba.argmax(1) == ds.y).mean()), 6)
    return PoisonOutcome(indices=idx, x_model=None, y=new, params=params)
