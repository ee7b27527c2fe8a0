"""Run the label detectors again on stored cells, into a copy.

For every cell stored by ``std_cell.py`` that matches ``PATTERN`` (its ``probs``,
``features`` and labels are in it), recompute the named detectors that need only
probabilities, features and labels (``confident-learning``, ``knn-label``), or the
inputs too (``input-pattern``: the cell's attacked data is rebuilt as ``combine.py``
does), with the installed code and write the cell, with their outputs and thresholds replaced, to
``OUT``; ``combine.py --probe-dir OUT`` then gives the ensemble's verdict with them.
No pickles.

    PYTHONPATH=src python benchmarks/probes/refresh_labels.py confident-learning \\
        'runs/probe/gtsrb_*_0.npz' runs/probe-cl
"""

from __future__ import annotations

import glob
import json
import sys
from pathlib import Path

import numpy as np

from tripwire.detectors import DetectorInput, Need, get

sys.path.insert(0, str(Path(__file__).parent))
from combine import stored_cell


def main() -> None:
    names, pattern, out = sys.argv[1].split(","), sys.argv[2], Path(sys.argv[3])
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(glob.glob(pattern)):
        z = np.load(path, allow_pickle=False)
        arrays = {k: z[k] for k in z.files}
        meta = json.loads(str(z["meta"]))
        data: dict[str, object] = {}
        if any(Need.DATA in get(n).needs for n in names):
            ds, _, space = stored_cell(Path(path), int(Path(path).stem.split("_")[-1]))
            data = {"data": ds, "input_space": space}
        inputs = DetectorInput(
            features=np.asarray(z["features"], dtype=np.float64),
            labels=z["y"],
            probs=z["probs"],
            **data,  # type: ignore[arg-type]
        )
        for name in names:
            res = get(name)().detect(inputs)
            before = int(arrays[f"f__{name}"].sum())
            arrays[f"s__{name}"], arrays[f"f__{name}"] = res.scores, res.flags
            meta[name] = float(res.threshold)
            print(f"{Path(path).stem} {name}: {before} -> {int(res.flags.sum())} flagged")
        arrays["meta"] = np.array(json.dumps(meta))
        np.savez(out / Path(path).name, **arrays)


if __name__ == "__main__":
    main()
