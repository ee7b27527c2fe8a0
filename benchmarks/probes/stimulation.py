"""Probe: ABS-style single-channel stimulation of an inner layer (Liu et al., CCS 2019).

Splits a reference-architecture model (``body``/``neck``/``head`` or
``stem``/``stages``/``pool``/``head``) after inner layer ``--split``, takes the clean
inputs' activations there, and sets one channel at a time (every spatial position) to
``level`` times the layer's clean 99.9th percentile. A channel that a backdoor made
carries the trigger's feature: raising it alone sends inputs of every class to the
target, at levels where raising any benign channel does not. Prints one JSON line per
level: each class's best single-channel flip rate (share of other classes' inputs sent
to it) and a MAD index over classes.

    PYTHONPATH=src python benchmarks/probes/stimulation.py MODEL.pt DATA --tag x
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from clean_inputs import clean_inputs  # type: ignore[import-not-found]

from tripwire.detectors.backdoor.reverse import mad_anomaly


def split_model(net, split: int):
    """``inner`` (the first ``split`` inner layers), ``rest`` (the layers after them and
    the head) and the number of inner layers, for ``body``/``neck``/``head`` models
    (cnn-small, cnn-compact) and ``stem``/``stages``/``pool``/``head`` ones (resnet-mini)."""
    if hasattr(net, "body"):
        layers = list(net.body.children())

        def tail(a):
            return net.head(net.neck(a))
    else:
        layers = [net.stem, *list(net.stages.children())]

        def tail(a):
            return net.head(torch.flatten(net.pool(a), 1))

    def inner(x):
        for m in layers[:split]:
            x = m(x)
        return x

    def rest(a):
        for m in layers[split:]:
            a = m(a)
        return tail(a)

    return inner, rest, len(layers)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("data")
    ap.add_argument("--split", type=int, default=-1, help="inner layers before the cut")
    ap.add_argument("--per-class", type=int, default=10)
    ap.add_argument("--levels", default="1,2,4,8,16")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tag", default="")
    a = ap.parse_args()
    torch.set_num_threads(2)
    net, x, y, n_cls = clean_inputs(a.model, a.data, a.per_class, a.seed)
    net.eval()
    _, _, n_layers = split_model(net, 0)
    split = a.split if a.split > 0 else n_layers
    inner, rest, _ = split_model(net, split)
    with torch.no_grad():
        act = inner(x)
        scale = float(torch.quantile(act.flatten()[:: max(1, act.numel() // 1_000_000)], 0.999))
        n_ch = act.shape[1]
        for level in [float(v) for v in a.levels.split(",")]:
            rate = np.zeros((n_ch, n_cls))
            for c in range(n_ch):
                stim = act.clone()
                stim[:, c] = level * scale
                pred = rest(stim).argmax(1).numpy()
                for t in range(n_cls):
                    other = y != t
                    rate[c, t] = float(np.mean(pred[other] == t))
            best = rate.max(0)
            idx, _, _ = mad_anomaly(-best, min_scale=0.05)
            print(
                json.dumps(
                    {
                        "tag": a.tag,
                        "split": split,
                        "shape": list(act.shape[1:]),
                        "level": level,
                        "best": [round(float(b), 2) for b in best],
                        "channel": [int(v) for v in rate.argmax(0)],
                        "n_full": [int(v) for v in (rate >= 0.9).sum(0)],
                        "index": [round(float(v), 2) for v in idx],
                        "top": int(np.argmax(idx)),
                        "class0": round(float(idx[0]), 2),
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
