"""An incident's artefacts, made once per session by the real commands: a delivery with
a planted poison from one supplier, its manifest and its scan-data report."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tripwire.cli.main import main


@dataclass(frozen=True)
class Incident:
    data: Path
    manifest: Path
    report: Path
    features: Path
    bad: np.ndarray
    dataset_sha256: str


def planted(n_per: int = 100, k: int = 4, n_bad: int = 30, seed: int = 0):  # type: ignore[no-untyped-def]
    """Features with a tight relabelled cluster supplied by 'vendor-b' (the poison)."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(k), n_per)
    feats = rng.normal(size=(n_per * k, 24)) + y[:, None] * 4.0
    bad = np.arange(n_bad) + n_per
    y[bad] = 0
    shift = np.zeros(24)
    shift[:3] = 10.0
    feats[bad] = rng.normal(size=(n_bad, 24)) * 0.3 + shift
    source = np.array(["vendor-a"] * (n_per * k), dtype="<U16")
    source[bad] = "vendor-b"
    source[-20:] = "vendor-b"
    x = rng.integers(0, 256, (n_per * k, 4, 4), dtype=np.uint8)
    return x, y, source, feats, bad


@pytest.fixture(scope="session")
def incident(tmp_path_factory: pytest.TempPathFactory) -> Incident:
    root = tmp_path_factory.mktemp("incident")
    x, y, source, feats, bad = planted()
    data = root / "delivery.npz"
    np.savez(data, x=x, y=y, source=source)
    fpath = root / "features.npy"
    np.save(fpath, feats)
    manifest = root / "delivery.manifest.jsonl"
    assert main(["manifest", str(data), "--out", str(manifest)]) == 0
    report = root / "scan.json"
    code = main(["scan-data", str(data), "--features", str(fpath), "--out", str(report)])
    assert code == 1, "the planted poison must raise high findings"
    rep = json.loads(report.read_text())
    return Incident(data, manifest, report, fpath, bad, rep["inputs"]["data"]["sha256"])
