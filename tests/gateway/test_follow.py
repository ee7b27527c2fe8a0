"""guard follows a registry alias: promotion and rollback swap the served model."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from tests.response.test_registry import report_file
from tripwire.gateway.backend import LocalBackend
from tripwire.gateway.follow import AliasFollower
from tripwire.response.registry import Registry


def _biased_copy(src: Path, dst: Path) -> Path:
    """The same network with a large bias towards class 0: another version, other answers."""
    import torch

    m = torch.jit.load(str(src))
    with torch.no_grad():
        last_bias = [p for n, p in m.named_parameters() if n.endswith("bias")][-1]
        last_bias[0] += 100.0
    torch.jit.save(m, str(dst))
    return dst


def test_promotion_and_rollback_swap_the_backend(digits_model: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from tripwire.models.loading import load_model

    reg = Registry(tmp_path / "reg.db")
    reg.add(digits_model)
    reg.add(_biased_copy(digits_model, tmp_path / "biased.pt"))
    passing = report_file(tmp_path, "model-scan.json", "scan-model")
    for v in ("v1", "v2"):
        reg.attach(v, passing)
    reg.promote("v1", "prod")
    follower = AliasFollower(SimpleNamespace(), tmp_path / "reg.db", "prod")
    first = follower.first()
    target: Any = follower.target
    target.backend = LocalBackend(load_model(first), (1, 8, 8))
    x = np.random.default_rng(0).random((16, 1, 8, 8), dtype=np.float32)
    before = target.backend.predict(x).probs.argmax(1)
    assert not follower.poll_once()  # nothing moved
    reg.promote("v2", "prod")
    assert follower.poll_once()
    assert (target.backend.predict(x).probs.argmax(1) == 0).all()
    assert (before != 0).any()
    reg.rollback("prod")
    assert follower.poll_once()
    assert (target.backend.predict(x).probs.argmax(1) == before).all()


def test_guard_alias_builds_a_following_gateway(
    digits_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("torch")
    from tripwire.cli.commands.guard import build_gateway
    from tripwire.cli.main import build_parser, main

    reg = Registry(tmp_path / "reg.db")
    reg.add(digits_model)
    reg.attach("v1", report_file(tmp_path, "model-scan.json", "scan-model"))
    reg.promote("v1", "prod")
    argv = ["guard", "--alias", "prod", "--registry", str(tmp_path / "reg.db")]
    # No --input-shape, no --reference: the registry kept the model's .meta.json.
    opts = ["--store", f"sqlite:{tmp_path / 's.db'}"]
    args = build_parser().parse_args([*argv, *opts])
    gateway = build_gateway(args)
    try:
        assert gateway.name == "prod"
        assert tuple(gateway.backend.input_shape) == (1, 8, 8)
        assert gateway.follower is not None and gateway.follower.target is gateway
        assert not gateway.follower.poll_once()
    finally:
        gateway.close()
        gateway.store.close()
    capsys.readouterr()
    assert main([*argv, str(digits_model)]) == 2
    assert "--alias replaces MODEL" in capsys.readouterr().err
    assert main(["guard", "--alias", "nope", "--registry", str(tmp_path / "reg.db")]) == 2


def test_alias_input_shape_comes_from_the_registry_metadata(
    digits_model: Path, tmp_path: Path
) -> None:
    """The shape reaches the gateway from the registry's database too, for a version whose
    stored sidecar is gone (registered before the registry kept it); a new version that
    takes another input shape is refused and the old one keeps serving."""
    pytest.importorskip("torch")
    from tripwire.models.loading import load_model

    reg = Registry(tmp_path / "reg.db")
    v1, _ = reg.add(digits_model)
    reg.meta_file_of(v1).unlink()
    reg.attach("v1", report_file(tmp_path, "model-scan.json", "scan-model"))
    reg.promote("v1", "prod")
    follower = AliasFollower(SimpleNamespace(), tmp_path / "reg.db", "prod")
    follower.first()
    assert follower.input_shape() == (1, 8, 8)

    other = _biased_copy(digits_model, tmp_path / "wide.pt")
    meta = json.loads(Path(str(digits_model).replace(".pt", ".meta.json")).read_text())
    meta.update(model_sha256=None, input_shape=[3, 8, 8])
    (tmp_path / "wide.meta.json").write_text(json.dumps(meta))
    reg.add(other)
    reg.attach("v2", report_file(tmp_path, "model-scan.json", "scan-model"))
    target: Any = follower.target
    target.backend = LocalBackend(load_model(digits_model), (1, 8, 8))
    served = target.backend
    reg.promote("v2", "prod")
    assert not follower.poll_once()  # refused: another input shape
    assert target.backend is served
