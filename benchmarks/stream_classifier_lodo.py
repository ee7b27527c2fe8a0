"""Leave-one-dataset-out stream classifiers for the extraction benchmark.

Trains the stream classifier as ``tripwire guard-train`` does (bundled digits and MNIST
streams, plus the colour victims named by ``--add``), but on the victims and attack
streams that ``benchmarks/extraction_detection.py`` cached, so that a colour victim left
out of training can be scored with a classifier that has never seen its data set:

    PYTHONPATH=src python benchmarks/stream_classifier_lodo.py --add gtsrb \
        --out /tmp/clf-without-cifar10.json
    PYTHONPATH=src python benchmarks/extraction_detection.py --data-dir ../shared/datasets \
        --settings cifar10 --classifier /tmp/clf-without-cifar10.json --out ...

The benchmark's cached streams of the added victims (budgets 300 to 1000) serve as
training streams; the held-out victim's data never enters.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

KINDS = ("random", "jbda", "knockoff", "knockoff-adaptive", "paced", "sybil")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--add", default="", help="cached benchmark victims to add (gtsrb,cifar10)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--data-dir", default="../shared/datasets")
    ap.add_argument("--bench-cache", default="/tmp/extraction-bench")
    ap.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "tripwire" / "guard-train"))
    ap.add_argument("--work", default="/tmp/tw-lodo-cache")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, str(Path(__file__).parent))
    from extraction_detection import load_setting

    from tripwire.bench import extraction_detection as ed

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    # The bundled settings' cached victims and streams, under the names training expects.
    for f in Path(args.cache_dir).glob("*"):
        link = work / f.name
        if not link.exists():
            link.symlink_to(f)
    settings: list[str | ed.TrainingSetting] = ["digits", "mnist"]
    bench = Path(args.bench_cache)
    for name in [a for a in args.add.split(",") if a]:
        train, test, natural = load_setting(name, Path(args.data_dir), 10000, 0)
        settings.append(ed.TrainingSetting(name, train, test, natural))
        pairs = [(bench / f"victim-{name}-10000-0.pt", work / f"victim-{name}.pt")]
        for kind in KINDS:
            (src,) = sorted(bench.glob(f"case-{name}-{kind}-[0-9]*-10000-0.npz"))
            for ext in (".npz", ".json"):
                pairs.append((src.with_suffix(ext), work / f"case-{name}-{kind}-1000-0{ext}"))
        for src, dst in pairs:
            if not src.exists():
                raise SystemExit(f"{src}: not cached; run extraction_detection.py first")
            if dst.is_symlink() or dst.exists():
                dst.unlink()
            dst.symlink_to(src)
    t0 = time.perf_counter()
    traces, cal = ed.training_traces(settings, cache_dir=work, log=print)
    x, y, _kinds, clients = ed.feature_table(traces)
    lofo = ed.leave_one_family_out(traces, calibration=cal)
    trained_on = [s if isinstance(s, str) else s.name for s in settings]
    clf = ed.train_classifier(
        x,
        y,
        clients,
        calibration=cal,
        info={"trained_on": {"settings": trained_on}, "command": " ".join(sys.argv)},
    )
    clf.save(Path(args.out))
    print(json.dumps({"thresholds": clf.thresholds, "leave_one_family_out": lofo}))
    print(f"written {args.out} ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
