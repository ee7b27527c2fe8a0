"""Within a backdoor's target class: the training margins of its poisons against its
clean items, epoch by epoch, from margins stored by ``dynamics.py --save``.

    PYTHONPATH=src python benchmarks/probes/dynamics.py standard mnist wanet 0.1 0 \\
        --save runs/s26/dyn_mnist_wanet_0.1_0.npz
    PYTHONPATH=src python benchmarks/probes/margins_in_class.py runs/s26/dyn_mnist_wanet_0.1_0.npz
"""

from __future__ import annotations

import sys

import numpy as np
from sklearn.metrics import roc_auc_score


def main() -> None:
    z = np.load(sys.argv[1], allow_pickle=False)
    margins = z["margins"].astype(np.float64)
    truth, y = z["truth"].astype(bool), z["y"]
    target = int(np.bincount(y[truth]).argmax())
    cls = y == target
    print(f"target {target}: {int(cls.sum())} items, {int(truth[cls].sum())} poisons")
    for e, m in enumerate(margins):
        p, c = m[cls & truth], m[cls & ~truth]
        auroc = roc_auc_score(truth[cls], -m[cls])
        print(
            f"epoch {e}: poisons median {np.median(p):.2f}, clean median {np.median(c):.2f}; "
            f"AUROC of -margin for the poisons within the class {auroc:.3f}"
        )
    aum = roc_auc_score(truth[cls], -margins.mean(axis=0)[cls])
    print(f"area under the margin: AUROC {aum:.3f}")


if __name__ == "__main__":
    main()
