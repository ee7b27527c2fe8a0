"""Probe: which class do random global patterns pull inputs to? (issue #5, SIG)

No search: clean test inputs (``--per-class`` a class) are overlaid with random
full-image patterns at a few L-infinity strengths, and each class's **attraction** is
the share of the other classes' inputs that the patterns send to it (mean over
patterns, strongest strength). A model that learnt a global signal as a trigger
(SIG's sinusoid) might draw inputs to its target under patterns of the signal's kind
that no clean model's class draws alike. Two families of patterns:

- ``smooth``: random fields of the lowest spatial frequencies (a random 2-D cosine
  series up to ``--max-freq`` cycles, each channel its own), a generic prior for
  full-image signals;
- ``stripes``: single sinusoids of random frequency (1 to ``--max-freq`` cycles),
  orientation and phase, the same in every channel: SIG's own family, so a hit here
  alone would be a detector tuned to that attack.

Prints one JSON line per family: per class the attraction and its robust (MAD) index
above the median, the top class and class 0's index.

    PYTHONPATH=src python benchmarks/probes/pattern_attraction.py MODEL.pt DATA
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from tripwire.detectors.backdoor.reverse import mad_anomaly
from tripwire.io import load_dataset
from tripwire.models.loading import load_model
from tripwire.scan.model import stratified_subset


def _canvas(n: int, shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row and column coordinates in [0, 1) (broadcasting to ``shape[1:]``) and ``n``
    empty patterns of ``shape``."""
    c, h, w = shape
    return np.arange(h)[:, None] / h, np.arange(w)[None, :] / w, np.zeros((n, c, h, w))


def smooth_patterns(
    n: int, shape: tuple[int, int, int], max_freq: int, rng: np.random.Generator
) -> np.ndarray:
    u, v, out = _canvas(n, shape)
    for i in range(n):
        for ch in range(shape[0]):
            coef = rng.normal(size=(max_freq + 1, max_freq + 1))
            coef[0, 0] = 0.0
            for a in range(max_freq + 1):
                for b in range(max_freq + 1):
                    if coef[a, b] != 0.0:
                        out[i, ch] += coef[a, b] * np.cos(np.pi * a * u) * np.cos(np.pi * b * v)
    return out / np.abs(out).reshape(n, -1).max(axis=1)[:, None, None, None]


def stripe_patterns(
    n: int, shape: tuple[int, int, int], max_freq: int, rng: np.random.Generator
) -> np.ndarray:
    u, v, out = _canvas(n, shape)
    for i in range(n):
        f = rng.integers(1, max_freq + 1)
        theta = rng.uniform(0, np.pi)
        phase = rng.uniform(0, 2 * np.pi)
        wave = np.sin(2 * np.pi * f * (np.cos(theta) * v + np.sin(theta) * u) + phase)
        out[i] = wave[None]
    return out


def attraction(
    model: object, x: np.ndarray, y: np.ndarray, patterns: np.ndarray, delta: float, n_cls: int
) -> np.ndarray:
    share = np.zeros((len(patterns), n_cls))
    for i, p in enumerate(patterns):
        xin = np.clip(x + delta * p[None].astype(np.float32), 0.0, 1.0)
        pred = model.logits(xin).argmax(axis=1)  # type: ignore[attr-defined]
        for c in range(n_cls):
            other = y != c
            share[i, c] = float((pred[other] == c).mean())
    return share


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("data")
    ap.add_argument("--per-class", type=int, default=10)
    ap.add_argument("--patterns", type=int, default=24)
    ap.add_argument("--max-freq", type=int, default=8)
    ap.add_argument("--deltas", default="0.1,0.2,0.35")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--families", default="smooth,stripes")
    a = ap.parse_args()
    ds = load_dataset(a.data, split="test")
    n_cls = int(ds.y.max()) + 1
    sub = stratified_subset(ds.y, a.per_class * n_cls, a.seed)
    x = np.ascontiguousarray(ds.model_input(sub), dtype=np.float32)
    y = ds.y[sub]
    model = load_model(a.model, input_shape=ds.input_shape)
    shape = tuple(int(s) for s in x.shape[1:])
    makers = {"smooth": smooth_patterns, "stripes": stripe_patterns}
    for family in a.families.split(","):
        make = makers[family]
        # A family's patterns do not depend on which other families run: every
        # model meets the same ones.
        rng = np.random.default_rng([a.seed, list(makers).index(family)])
        pats = make(a.patterns, shape, a.max_freq, rng)  # type: ignore[arg-type]
        row: dict[str, object] = {"model": a.model.split("/")[-1][:8], "family": family}
        for delta in (float(d) for d in a.deltas.split(",")):
            share = attraction(model, x, y, pats, delta, n_cls)
            mean = share.mean(axis=0)
            idx, _, _ = mad_anomaly(-mean, min_scale=0.01)
            row[f"d{delta}"] = {
                "top": int(np.argmax(idx)),
                "top_index": round(float(idx.max()), 2),
                "class0": round(float(mean[0]), 3),
                "class0_index": round(float(idx[0]), 2),
                "median": round(float(np.median(mean)), 3),
                "max": round(float(mean.max()), 3),
            }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
