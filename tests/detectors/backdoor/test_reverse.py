"""Trigger search, the MAD rule and ReversedTrigger, on hand-built models with a known backdoor.

The models are nearest-prototype classifiers on 12x12 blocky images (a handful of weights, so a
full scan runs in about a second): a clean one, one where a bright 2x2 corner adds a large
bonus to class 3 (a patch backdoor), and one where correlation with a fixed noise image
adds a bonus to class 6 (a full-image, blended backdoor).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tripwire.detectors.backdoor.reverse import SearchConfig, mad_anomaly, search_triggers
from tripwire.detectors.backdoor.trigger import ReversedTrigger, load_triggers, save_triggers
from tripwire.errors import InputError
from tripwire.io import Dataset, make_dataset

torch = pytest.importorskip("torch")
nn = torch.nn

H = 12
K = 10


class Prototypes(nn.Module):
    """logits_k = -scale * |x - p_k|^2, plus optional patch and blend backdoor bonuses."""

    def __init__(self, protos: torch.Tensor, patch: float, blend: float, noise: torch.Tensor):
        super().__init__()
        self.protos = nn.Parameter(protos, requires_grad=False)
        self.noise = nn.Parameter(noise, requires_grad=False)
        self.patch = patch
        self.blend = blend

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = ((x[:, None] - self.protos[None]) ** 2).flatten(2).sum(-1)
        z = -0.5 * d
        corner = x[:, 0, :2, :2].flatten(1).mean(1)
        corr = ((x - 0.5) * (self.noise - 0.5)).flatten(1).mean(1)
        bonus = torch.zeros_like(z)
        bonus[:, 3] = self.patch * (corner - 0.1)
        bonus[:, 6] = self.blend * corr
        return z + bonus


def _protos() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    # Blocky prototypes (3x3 blocks of 4x4 pixels) and a checkerboard "noise": every block
    # holds as many + as - checker pixels, so clean images do not correlate with it.
    blocks = (torch.rand(K, 1, 3, 3, generator=g) > 0.5).float() * 0.8 + 0.1
    protos = blocks.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3)
    protos[:, :, :2, :2] = 0.1  # clean inputs never light the corner
    yy, xx = torch.meshgrid(torch.arange(H), torch.arange(H), indexing="ij")
    noise = ((yy + xx) % 2).float()[None]
    return protos, noise


@pytest.fixture(scope="module")
def clean_data() -> Dataset:
    protos, _ = _protos()
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(K), 20)
    x = protos.numpy()[y] + rng.normal(0, 0.03, (len(y), 1, H, H))
    x[:, :, :2, :2] = 0.1
    return make_dataset(np.clip(x, 0, 1).astype(np.float32)[:, 0], y, path="protos")


def _model(tmp_path: Path, name: str, patch: float = 0.0, blend: float = 0.0) -> object:
    from tripwire.models.loading import load_model

    protos, noise = _protos()
    mod = torch.jit.script(Prototypes(protos, patch, blend, noise).eval())
    path = tmp_path / f"{name}.pt"
    mod.save(str(path))
    return load_model(path, device="cpu")


def test_mad_anomaly_matches_the_definition() -> None:
    norms = np.array([10.0, 11.0, 9.0, 10.5, 1.0])
    idx, med, scale = mad_anomaly(norms)
    assert med == 10.0
    assert scale == pytest.approx(1.4826 * 1.0)
    assert idx[4] == pytest.approx(9.0 / (1.4826 * 1.0))
    assert idx[0] == 0.0 and idx[1] < 0
    # A floor on the scale keeps tiny spreads from turning small gaps into outliers.
    tight = np.log([1.0, 1.01, 0.99, 1.0, 0.9])
    assert mad_anomaly(tight)[0][4] > 2
    assert mad_anomaly(tight, min_scale=0.1)[0][4] < 2
    with pytest.raises(InputError):
        mad_anomaly([1.0, 2.0])


def test_reversed_trigger_apply_and_roundtrip(tmp_path: Path) -> None:
    mask = np.zeros((4, 4), np.float32)
    mask[:2, :2] = 1.0
    t = ReversedTrigger(2, mask, np.full((3, 4, 4), 0.75, np.float32), "patch-batched", 0.9)
    x = np.zeros((2, 3, 4, 4), np.float32)
    out = t.apply(x)
    assert out[:, :, :2, :2].min() == 0.75 and out[:, :, 2:, 2:].max() == 0.0
    assert t.norm == 4.0
    save_triggers(str(tmp_path / "t.npz"), [t, t])
    back = load_triggers(str(tmp_path / "t.npz"))
    assert [b.target for b in back] == [2, 2]
    np.testing.assert_array_equal(back[0].mask, mask)
    with pytest.raises(InputError):
        ReversedTrigger(0, mask * 2, np.zeros((3, 4, 4)), "x", 0.0)
    with pytest.raises(InputError):
        t.apply(np.zeros((1, 1, 4, 4)))
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    with pytest.raises(InputError, match=r"bad\.npz"):
        load_triggers(str(tmp_path / "bad.npz"))


def test_patch_search_finds_the_planted_corner(tmp_path: Path, clean_data: Dataset) -> None:
    torch.set_num_threads(1)
    model = _model(tmp_path, "patch", patch=100.0)
    res = search_triggers(model, clean_data.model_input(), clean_data.y, random_state=0)  # type: ignore[arg-type]
    idx, _, _ = mad_anomaly(np.log(res.norms), min_scale=0.25)
    assert int(np.argmax(idx)) == 3 and idx[3] > 2
    t3 = res.triggers[3]
    assert t3.attack_success >= 0.8
    # The mask sits on the corner that drives the backdoor.
    assert t3.mask[:2, :2].sum() > 0.5 * t3.mask.sum()
    assert res.converged.all()


def test_clean_model_has_no_outlier(tmp_path: Path, clean_data: Dataset) -> None:
    from tripwire.scan.model import scan_model

    torch.set_num_threads(1)
    res = scan_model(_model(tmp_path, "clean"), clean_data, random_state=0)  # type: ignore[arg-type]
    assert res.verdict == "clean", [c.to_dict() for c in res.classes]


def test_blend_search_finds_the_full_image_backdoor(tmp_path: Path, clean_data: Dataset) -> None:
    from tripwire.scan.model import scan_model

    torch.set_num_threads(1)
    res = scan_model(_model(tmp_path, "blend", blend=600.0), clean_data, random_state=0)  # type: ignore[arg-type]
    assert res.target_classes == [6], [c.to_dict() for c in res.classes]
    assert "blend" in res.classes[6].fired
    assert {f.rule_id for f in res.findings} >= {"TW202"}


@pytest.mark.slow
def test_batched_and_class_by_class_agree_on_the_target(
    tmp_path: Path, clean_data: Dataset
) -> None:
    from tripwire.detectors.backdoor.neural_cleanse import neural_cleanse

    torch.set_num_threads(1)
    model = _model(tmp_path, "patch", patch=100.0)
    # NC's loop and rule with a short budget (its defaults run up to 1000 epochs per class).
    fast = SearchConfig(max_epochs=25, batch_size=32, steps_per_epoch=2, patience=3)
    nc = neural_cleanse(model, clean_data.model_input(), clean_data.y, config=fast)  # type: ignore[arg-type]
    assert nc.flagged == [3]
    assert int(np.argmax(nc.anomaly_index)) == 3


def test_scan_data_report_is_cross_referenced(tmp_path: Path, clean_data: Dataset) -> None:
    from tripwire.scan.model import scan_model

    torch.set_num_threads(1)
    report = {
        "command": "scan-data",
        "per_class": [{"class": c, "samples": 20, "flagged": 5 if c == 3 else 0} for c in range(K)],
        "findings": [{"rule_id": "TW104", "severity": "high", "target_class": 3}],
    }
    res = scan_model(
        _model(tmp_path, "patch", patch=100.0),
        clean_data,
        random_state=0,
        methods=("patch",),
        data_report=report,
    )
    assert res.target_classes == [3]
    agree = [f for f in res.findings if f.rule_id == "TW203"]
    assert [f.target_class for f in agree] == [3]
    assert res.classes[3].data_scan == {"flagged_samples": 5, "flagged": True, "rules": ["TW104"]}
    assert res.classes[0].data_scan == {"flagged_samples": 0, "flagged": False}
