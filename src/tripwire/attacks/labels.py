"""Label attacks: samples keep their pixels and get a wrong label."""

from __future__ import annotations

import numpy as np

from tripwire.attacks.base import PoisonOutcome, PoisonRequest, choose, register_kind
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
