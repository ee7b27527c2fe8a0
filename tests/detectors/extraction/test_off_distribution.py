"""Off-distribution image statistics (TW311): natural images of another domain.

scikit-learn's two sample photographs stand in for two colour image domains (no colour
dataset ships with the packages): crops of the Chinese temple are the victim's data,
crops of the flower another domain's natural images, as Knockoff Nets sends. Pooled
pixels barely tell such domains apart; global image statistics do. Benign clients of the
victim's own domain, an explanation tool's variants of one input and a client that
sweeps the answers one class after another must not be alerted.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from tripwire.attacks.benign import lime_masks, occlusion_windows
from tripwire.detectors.extraction import QueryBatch, Reference, StreamMonitor
from tripwire.detectors.extraction.monitor import (
    OFF_FPR,
    OFF_MIN_GROUPS,
    clustered_excess,
    image_statistics,
)
from tripwire.detectors.extraction.state import MAGIC, decode, encode

SIDE = 32
N_CLASSES = 8


def _crops(img: npt.NDArray[np.uint8], n: int, rng: np.random.Generator) -> npt.NDArray[np.float32]:
    h, w = img.shape[0] // 4, img.shape[1] // 4
    small = img[: h * 4, : w * 4].reshape(h, 4, w, 4, 3).mean(axis=(1, 3))
    out = []
    for _ in range(n):
        i, j = rng.integers(0, h - SIDE), rng.integers(0, w - SIDE)
        out.append(small[i : i + SIDE, j : j + SIDE].transpose(2, 0, 1))
    return np.asarray(out, dtype=np.float32) / 255.0


@pytest.fixture(scope="module")
def domains() -> dict[str, npt.NDArray[np.float32]]:
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(0)
    china, flower = load_sample_images().images
    return {"own": _crops(china, 1600, rng), "other": _crops(flower, 600, rng)}


def _probs(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """A fixed answer over N_CLASSES classes: the layout of each image's pooled pixels
    (standardised per image, so that every domain spreads over the classes) through a
    random map."""
    feats = x.reshape(len(x), 3, 4, SIDE // 4, 4, SIDE // 4).mean(axis=(3, 5)).reshape(len(x), -1)
    feats = (feats - feats.mean(axis=1, keepdims=True)) / (feats.std(axis=1, keepdims=True) + 1e-3)
    w = np.random.default_rng(1).normal(size=(feats.shape[1], N_CLASSES))
    z = feats @ w * 0.5
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return np.asarray(e / e.sum(axis=1, keepdims=True), dtype=np.float32)


@pytest.fixture(scope="module")
def monitor(domains: dict[str, npt.NDArray[np.float32]]) -> StreamMonitor:
    ref = domains["own"][:1000]
    return StreamMonitor(classifier=None).fit(
        Reference(ref, _probs(ref), N_CLASSES, (3, SIDE, SIDE))
    )


def _tw311(mon: StreamMonitor, x: npt.NDArray[np.float32], per_request: int = 4) -> list[Any]:
    st = mon.new_state()
    out = []
    for s in range(0, len(x), per_request):
        xb = x[s : s + per_request]
        for o in mon.observe(st, QueryBatch(xb, _probs(xb), float(s))):
            if o.rule_id == "TW311":
                out.append((s + len(xb), o))
    return out


def test_image_statistics_of_a_flat_image() -> None:
    x = np.zeros((2, 3, 8, 8), np.float32)
    x[0] = 0.5
    x[1, 0] = 1.0  # pure red: colourful, still flat
    v = image_statistics(x, 0.01)
    # channel means (3), channel spreads (3), edge strength, texture density, colourfulness
    assert v.shape == (2, 9)
    np.testing.assert_allclose(v[0], [0.5, 0.5, 0.5, 0, 0, 0, 0, 0, 0], atol=1e-7)
    np.testing.assert_allclose(v[1, [0, 1, 2, 8]], [1.0, 0.0, 0.0, 1.0])
    # Grey images have no colourfulness column.
    assert image_statistics(np.zeros((1, 1, 8, 8), np.float32), 0.01).shape == (1, 4)


def test_clustered_excess_counts_groups_not_queries() -> None:
    n = np.full(20, 10)
    # Every group well above the 10% rate: significant.
    share, p, groups = clustered_excess(n, np.full(20, 6), OFF_FPR)
    assert groups == 20 and share > 0.5 and p < 1e-8
    # The same number of flagged queries packed into two groups is not.
    k = np.zeros(20, int)
    k[:2] = 10
    k[2:14] = 1
    share, p, _ = clustered_excess(n, k, OFF_FPR)
    assert p > 0.01
    # Too few groups: no test at all.
    assert clustered_excess(n[: OFF_MIN_GROUPS - 1], n[: OFF_MIN_GROUPS - 1], OFF_FPR)[1] == 1.0
    # Groups with fewer than three queries are not units.
    assert clustered_excess(np.full(20, 2), np.full(20, 2), OFF_FPR)[2] == 0


def test_another_domain_is_flagged_own_domain_is_not(
    monitor: StreamMonitor, domains: dict[str, npt.NDArray[np.float32]]
) -> None:
    assert np.isfinite(monitor.fitted_.stat_threshold)
    hits = _tw311(monitor, domains["other"][:500])
    assert hits, "flower crops sent to a temple-crop victim were not flagged"
    n, obs = hits[0]
    assert n <= 300
    assert obs.severity is not None and obs.severity.value == "medium"
    ev = obs.evidence
    assert ev["cells"]["p_value"] < 1e-4 and ev["classes"]["p_value"] < 1e-2
    assert ev["rate"] > 2 * OFF_FPR
    assert _tw311(monitor, domains["own"][1000:1600]) == []


def test_variants_of_one_input_and_class_sweeps_are_not_flagged(
    monitor: StreamMonitor, domains: dict[str, npt.NDArray[np.float32]]
) -> None:
    rng = np.random.default_rng(3)
    own = domains["own"][1000:1600]
    # An explanation tool: for each of a few inputs, occlusion windows then LIME masks.
    parts = []
    for base in own[:6]:
        occl = occlusion_windows(base)
        parts += [base[None], occl, lime_masks(base, 200 - 1 - len(occl), rng)]
    assert _tw311(monitor, np.concatenate(parts)) == []
    # Sorted by the answer: every class in turn, as an evaluation over class folders.
    order = np.argsort(_probs(own).argmax(axis=1), kind="stable")
    assert _tw311(monitor, own[order]) == []


def test_grey_images_leave_the_rule_off() -> None:
    rng = np.random.default_rng(4)
    x = rng.random((200, 1, 28, 28), dtype=np.float32)
    p = np.full((200, 2), 0.5, np.float32)
    mon = StreamMonitor(classifier=None).fit(Reference(x, p, 2, (1, 28, 28)))
    assert mon.fitted_.stat_icov is None and not np.isfinite(mon.fitted_.stat_threshold)


def test_state_written_before_the_rule_still_loads(monitor: StreamMonitor) -> None:
    import json
    import struct

    st = monitor.new_state()
    monitor.observe(
        st,
        QueryBatch(
            np.zeros((20, 3, SIDE, SIDE), np.float32),
            _probs(np.zeros((20, 3, SIDE, SIDE), np.float32)),
            0.0,
        ),
    )
    arrays = {
        k: v
        for k, v in decode(encode(st)).arrays().items()
        if k not in ("pend_o", "recent_r", "off_cls", "off_cell")
    }
    arrays["gs_emb"] = arrays["gs_emb"].astype(np.float16)
    arrays["ring_emb"] = arrays["ring_emb"].astype(np.float16)
    header = json.dumps(
        {"fields": [[k, v.dtype.str, list(v.shape)] for k, v in arrays.items()]}
    ).encode()
    old = (
        MAGIC
        + struct.pack("<I", len(header))
        + header
        + b"".join(v.tobytes() for v in arrays.values())
    )
    back = monitor.loads(old)
    assert back.query_count == 20
    assert back.off_cell.shape == monitor.new_state().off_cell.shape and back.off_cls.sum() == 0


def test_shared_pixel_screen_spans_requests(
    monitor: StreamMonitor, domains: dict[str, npt.NDArray[np.float32]]
) -> None:
    from tripwire.detectors.extraction.monitor import OFF_RECENT, _shares_pixels

    own = domains["own"][1000:1100]
    st = monitor.new_state()
    pooled = monitor._pool(own)
    # Distinct photographs rarely share a quarter of their pooled pixels (crops of the
    # temple's flat sky can).
    assert _shares_pixels(st, pooled[:40]).sum() <= 2
    st.set("ring_n", 40)  # as the detectors advance it
    # A masked variant of the last query, in the next request, is recognised ...
    variant = own[39].copy()
    variant[:, :16, :] = 0.0
    assert _shares_pixels(st, monitor._pool(variant[None]))[0]
    st.set("ring_n", 41)
    # ... and so is one of the query OFF_RECENT - 1 queries back, but not an older one.
    back = own[41 - OFF_RECENT].copy()
    back[:, 16:, :] = 1.0
    older = own[40 - OFF_RECENT - 1].copy()
    older[:, :, :16] = 0.5  # a fill no other query in reach has
    flags = _shares_pixels(st, monitor._pool(np.stack([back, older])))
    assert flags.tolist() == [True, False]


def test_a_split_budget_of_another_domain_is_correlated(
    monitor: StreamMonitor, domains: dict[str, npt.NDArray[np.float32]]
) -> None:
    other, own = domains["other"], domains["own"][1000:1600]
    states: dict[str, Any] = {}

    def send(cid: str, x: npt.NDArray[np.float32]) -> None:
        st = states.setdefault(cid, monitor.new_state())
        for s in range(0, len(x), 4):
            monitor.observe(st, QueryBatch(x[s : s + 4], _probs(x[s : s + 4]), float(s)))

    # Ten identities of 40 flower crops each, beside six ordinary clients of the domain.
    for i in range(10):
        send(f"sybil-{i}", other[i * 40 : (i + 1) * 40])
    for i in range(5):
        send(f"client-{i}", own[i * 100 : (i + 1) * 100])
    # A heavy client with a mild excess (one in sixteen of its inputs from the other
    # domain): a small p-value, it must neither dilute nor join the group.
    mixed = np.concatenate([domains["own"][:300], other[400:420]])
    send("client-heavy", mixed[np.random.default_rng(4).permutation(len(mixed))])
    assert all(st.get("alert_level") == 0 for st in states.values())
    (obs,) = monitor.correlate(states)
    assert obs.rule_id == "TW307" and obs.evidence["by"] == "image-statistics"
    assert obs.evidence["members"] >= 8
    assert obs.clients and all(c.startswith("sybil-") for c in obs.clients)
    assert obs.evidence["members_p_value"] < 1e-3
    # A client that TW311 alerted on its own is no member: it would vouch for the weak
    # excesses of the others.
    send("attacker", other[:300])
    assert _tw311(monitor, other[:300])
    (obs,) = monitor.correlate(states)
    assert "attacker" not in obs.clients
    del states["attacker"]
    # The benign clients alone, and two identities beside the ordinary clients (too few
    # to be more than chance), are not.
    benign = {c: st for c, st in states.items() if c.startswith("client-")}
    assert monitor.correlate(benign) == []
    ordinary = {c: st for c, st in benign.items() if c != "client-heavy"}
    two = {**ordinary, "sybil-0": states["sybil-0"], "sybil-1": states["sybil-1"]}
    assert monitor.correlate(two) == []
