"""Probe: spectral signatures' robust z under two scales. The detector divides each
class's projections by 1.4826 x MAD; where poisons are a large share of their class
(37% on the GTSRB subset at 1%) they inflate the MAD and score low. The shortest half
(the shorth: centre and length of the narrowest window holding half the class) sits in
the clean majority instead. Per cell: flags, poisons flagged, and the classes where the
flags make at least 5% of the class, under each scale (the pooled robust-z cut of the
detector, 3.5) and the poisons' median score against that cut. Reads ``dump_features.py`` files.

    PYTHONPATH=src python benchmarks/probes/spectral_scale.py gtsrb_wanet_0.01_0 gtsrb_clean_0.0_0
"""

from __future__ import annotations

import json
import sys

import numpy as np

from tripwire.detectors.poisoning.spectral import class_indices, fit_spectral

#: The normal distribution's shortest half spans 2 x 0.6745 standard deviations.
SHORTH_TO_SD = 1.349


def shorth(p: np.ndarray) -> tuple[float, float]:
    s = np.sort(p)
    h = len(s) // 2 + 1
    width = s[h - 1 :] - s[: len(s) - h + 1]
    i = int(np.argmin(width))
    return float(np.median(s[i : i + h])), float(width[i] / SHORTH_TO_SD)


def main() -> None:
    for cell in sys.argv[1:]:
        with np.load(f"runs/probe/feat_{cell}.npz") as d:
            x, y, truth = d["features"].astype(np.float64), d["y"], d["truth"].astype(bool)
        model = fit_spectral(x, y)
        groups = class_indices(y)
        by_mad, by_shorth = np.zeros(len(y)), np.zeros(len(y))
        for c, idx in groups.items():
            m = model["classes"][c]
            p = (x[idx] - m["mean"]) @ m["direction"]
            by_mad[idx] = np.abs(p - m["center"]) / m["scale"]
            centre, scale = shorth(p)
            by_shorth[idx] = np.abs(p - centre) / scale
        out: dict[str, object] = {"cell": cell}
        for name, s in (("mad", by_mad), ("shorth", by_shorth)):
            med = float(np.median(s))
            cut = med + 3.5 * float(np.median(np.abs(s - med))) * 1.4826
            f = s > cut
            out[name] = {
                "cut": round(cut, 3),
                "poisons_median_z": round(float(np.median(s[truth])), 3) if truth.any() else None,
                "flags": int(f.sum()),
                "poisons": int((f & truth).sum()),
                "groups": {
                    c: int(f[idx].sum())
                    for c, idx in groups.items()
                    if f[idx].sum() >= 0.05 * len(idx)
                },
            }
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
