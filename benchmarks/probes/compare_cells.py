"""Two ``tripwire bench`` cell caches side by side: each detector's flags, precision,
recall and AUROC in every cell that both hold (code versions run on the same cells):

    PYTHONPATH=src python benchmarks/probes/compare_cells.py runs/s31/cache-old runs/s31/cache-new
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

KEYS = ("n_flagged", "precision", "recall", "auroc")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path, help="a --cache-dir of tripwire bench")
    ap.add_argument("after", type=Path, help="another, over the same cells")
    args = ap.parse_args()
    for path in sorted(args.before.glob("cells/*.json")):
        other = args.after / "cells" / path.name
        if not other.exists():
            continue
        before = {r["detector"]: r for r in json.loads(path.read_text())["rows"]}
        after = {r["detector"]: r for r in json.loads(other.read_text())["rows"]}
        first = next(iter(before.values()))
        print(f"== {first['dataset']} {first['attack']} {first['rate']}")
        for name, x in before.items():
            y = after.get(name, {})
            if all(x.get(k) == y.get(k) for k in KEYS):
                print(f"  {name}: same ({', '.join(f'{k} {x.get(k)}' for k in KEYS)})")
            else:
                print(f"  {name}: " + ", ".join(f"{k} {x.get(k)} -> {y.get(k)}" for k in KEYS))


if __name__ == "__main__":
    main()
