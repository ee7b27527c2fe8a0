"""Shared fixtures for the reports tests: a representative report and the SARIF validator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

from tripwire.reports import Figure, Finding, Report, Severity

DATA_DIR = Path(__file__).parent / "data"
SARIF_SCHEMA_PATH = DATA_DIR / "sarif-schema-2.1.0.json"

#: An attacker-controlled string, as a client id or file name might carry.
XSS = "<script>alert('x')</script>"


@pytest.fixture
def findings() -> list[Finding]:
    """Three findings of different severities, one quoting hostile text."""
    return [
        Finding(
            rule_id="TW003",
            title="Labels changed",
            message=f"3 samples carry new labels; client said {XSS}",
            severity="high",
            confidence=np.float32(0.75),
            artifact="data/train.npz",
            indices=np.array([9, 3, 5, 3]),
            target_class=np.int64(2),
            client=f"client-{XSS}",
            evidence={"flipped": np.array([3, 5, 9]), "ratio": np.float64(0.003), "bad": np.nan},
        ),
        Finding(
            rule_id="TW299",
            title="Backdoor target",
            message="Class 7 is reachable from any input with a small patch.",
            severity=Severity.CRITICAL,
            confidence=0.9,
            atlas=("AML.T0018.000", "AML.T0043.004"),
            artifact="models/model.onnx",
            target_class=7,
        ),
        Finding(
            rule_id="TW301",
            title="Extraction pattern",
            message="Client api-17 sent queries that cover the input space uniformly.",
            severity="medium",
            confidence=0.5,
            atlas=["AML.T0024.002", "AML.T0040"],
            client="api-17",
        ),
    ]


@pytest.fixture
def report(findings: list[Finding]) -> Report:
    """A report that uses every part of the model."""
    rng = np.random.default_rng(0)
    return Report(
        command="scan",
        generated_at="2025-03-01T12:00:00Z",
        findings=findings,
        summary={"samples": np.int64(1000), "flagged": 3, "verdict": "suspicious"},
        metrics={"auc": np.float64(0.93), "threshold": 1.5, "per_class": {"0": 0.1, "1": 0.2}},
        inputs={"data": {"path": Path("data/train.npz"), "sha256": "ab" * 32}},
        figures=[
            Figure.bar("Flagged per class", [0, 1, 2], np.array([1, 0, 2]), ylabel="count"),
            Figure.histogram("Outlier scores", rng.normal(size=200), bins=20, threshold=1.5),
            Figure(
                "line",
                "ROC",
                {"series": [{"name": "spectral", "x": [0, 0.5, 1], "y": [0, 0.9, 1]}]},
            ),
            Figure("scatter", "Embedding", {"x": [0, 1, 2], "y": [2, 1, 0], "color": [0, 1, 1]}),
            Figure.images_from_arrays("Suspected trigger", [rng.random((3, 8, 8))], ["trigger"]),
            Figure.table("Top samples", ["index", "score"], [[3, 0.99], [5, 0.97]]),
        ],
        sections={
            "scores": [{"index": 3, "score": np.float32(0.5)}, {"index": 5, "score": 0.25}],
            "detectors": {"spectral": {"version": "1", "params": {"k": 2}}},
        },
    )


@pytest.fixture(scope="session")
def sarif_schema() -> dict[str, Any]:
    """The official OASIS SARIF 2.1.0 schema, vendored so tests need no network."""
    schema: dict[str, Any] = json.loads(SARIF_SCHEMA_PATH.read_text(encoding="utf-8"))
    return schema


@pytest.fixture(scope="session")
def sarif_validator(sarif_schema: dict[str, Any]) -> Any:
    """A jsonschema validator for the draft the schema declares (draft-04)."""
    cls = jsonschema.validators.validator_for(sarif_schema)
    cls.check_schema(sarif_schema)
    return cls(sarif_schema)
