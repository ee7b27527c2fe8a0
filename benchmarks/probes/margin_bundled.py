"""Probe: the max-margin statistic (``max_margin.py``) on the bundled-MNIST models that
``benchmarks/ensemble_ranking.py`` cached (two architectures, every cell of seed 0).

Each cached model is matched to its cell by the sha256 of the attacked training set
that its metadata records. Clean and label-flip models carry no backdoor: their largest
index is the false-alarm side. One JSON line per model.

    PYTHONPATH=src python benchmarks/probes/margin_bundled.py runs/ens-cache
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1]))
from ensemble_ranking import CELLS, _cell_data
from max_margin import clean_margins, max_margin, ratio_index

from tripwire.detectors.backdoor.reverse import torch_module
from tripwire.io import load_dataset
from tripwire.models.loading import load_model
from tripwire.scan.model import model_threshold


def main() -> None:
    cache = Path(sys.argv[1])
    torch.set_num_threads(2)
    metas = {}
    for f in sorted((cache / "models" / "models").glob("*.meta.json")):
        m = json.loads(f.read_text())
        key = (m["dataset"]["sha256"], m["arch"])
        metas[key] = (f.with_name(f.name.replace(".meta.json", ".pt")), m)
    test = load_dataset("bundled:mnist", split="test")
    rng = np.random.default_rng(0)
    init = torch.from_numpy(
        np.ascontiguousarray(test.model_input(rng.choice(len(test), 8, replace=False)))
    )
    sel = rng.choice(len(test), min(len(test), 500), replace=False)
    xs = torch.from_numpy(np.ascontiguousarray(test.model_input(sel), dtype=np.float32))
    ys = test.y[sel]
    thr = model_threshold(10)
    for kind, rate, params in CELLS:
        sha = _cell_data(kind, rate, params, 0).content_sha256()
        for path, meta in (metas[k] for k in metas if k[0] == sha):
            model = load_model(path, input_shape=test.input_shape)
            net = torch_module(model)
            for q in net.parameters():
                q.requires_grad_(False)
            t0 = time.perf_counter()
            stat = max_margin(net, test.input_shape, 10, 8, 200, 0.1, 0, init)
            idx = ratio_index(stat, clean_margins(net, xs, ys, 10))
            print(
                json.dumps(
                    {
                        "arch": meta["arch"],
                        "attack": kind,
                        "rate": rate,
                        "top": int(np.argmax(idx)),
                        "top_index": round(float(idx.max()), 2),
                        "target_index": round(float(idx[0]), 2),
                        "flagged": bool(idx.max() > thr),
                        "threshold": round(thr, 2),
                        "time_s": round(time.perf_counter() - t0, 1),
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
