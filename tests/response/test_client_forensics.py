"""Gateway-client forensics: timelines and what a client obtained, from a store filled by
hand and from a real gateway that an extraction attacker queried over HTTP."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.gateway.conftest import digits, local_model  # noqa: F401
from tripwire.cli.main import main
from tripwire.errors import InputError
from tripwire.gateway.core import degrade
from tripwire.gateway.store import QueryRecord, SQLiteStore, encode_array, open_store
from tripwire.reports import Severity
from tripwire.response.client_forensics import client_forensics, kappa_severity, to_report


def _probs(rng: np.random.Generator, n: int, k: int = 10) -> np.ndarray:
    p = rng.random((n, k)).astype(np.float32) ** 4
    return np.asarray(p / p.sum(axis=1, keepdims=True), dtype=np.float32)


def _rec(
    client: str,
    t: float,
    x: np.ndarray,
    out: np.ndarray | None,
    status: int = 200,
    action: str | None = None,
) -> QueryRecord:
    return QueryRecord(
        client=client,
        t=t,
        meta={"n": len(x), "shape": list(x.shape), "status": status, "action": action},
        input=encode_array(x),
        output=None if out is None else encode_array(out),
    )


def _iso(t: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.fixture
def filled(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """Client 'c': 3 full answers, an alert, 1 blocked, 1 top-1 and 1 rounded answer."""
    rng = np.random.default_rng(0)
    db = tmp_path / "guard.db"
    st = SQLiteStore(db)
    t0 = time.time() - 100
    xs = [rng.random((n, 1, 8, 8)).astype(np.float32) for n in (4, 6, 5, 3, 7, 2)]
    full = [_probs(rng, len(x)) for x in xs[:3]]
    top1 = np.eye(10, dtype=np.float32)[rng.integers(0, 10, len(xs[4]))]
    recs = [_rec("c", t0 + i, xs[i], full[i]) for i in range(3)]
    recs.append(_rec("c", t0 + 3, xs[3], None, status=403, action="block"))
    recs.append(_rec("c", t0 + 4, xs[4], top1, action="degrade"))
    rounded = degrade(_probs(rng, 2), "round", 1)
    recs.append(_rec("c", t0 + 4.5, xs[5], rounded, action="throttle"))
    recs.append(_rec("other", t0 + 5, xs[0], full[0]))
    st.log_queries(recs, 1 << 30, 1e9)
    st.put("c", None, {"query_count": 22, "last_seen": t0 + 4})
    st.put("other", None, {"query_count": 4, "last_seen": t0 + 5})
    # The gateway alerted after the second request: 4 + 6 samples seen.
    st.add_alerts(
        [
            {
                "client": "c",
                "detector": "d",
                "severity": "high",
                "query_count": 10,
                "time": _iso(t0 + 1),
                "score": 0.9,
                "rule_id": "TW399",
            }
        ]
    )
    st.add_timeline(
        "c",
        [{"time": _iso(t0 + 1), "query_count": 10, "detector": "d", "score": 0.9, "alert": True}],
        100,
    )
    st.close()
    labels = np.concatenate([p.argmax(1) for p in [*full, top1, rounded]])
    return db, {"labels": labels, "xs": xs}


def test_queries_without_a_limit_return_the_whole_log(tmp_path: Path) -> None:
    st = SQLiteStore(tmp_path / "s.db")
    x = np.zeros((1, 2), dtype=np.float32)
    st.log_queries([_rec("a", float(i), x, x) for i in range(150)], 1 << 30, 1e12)
    assert len(st.queries("a")) == 100
    every = st.queries("a", limit=None)
    assert [r.t for r in every] == [float(i) for i in range(150)]
    st.close()


def test_timeline_and_what_was_obtained(filled: tuple[Path, dict[str, Any]]) -> None:
    db, made = filled
    st = open_store(f"sqlite:{db}", existing=True)
    res = client_forensics(st, "c", store_name=str(db))
    st.close()
    assert res.requests == 6 and res.samples_sent == 27
    assert res.samples_answered == res.labelled_samples == 24
    assert res.refused == {"403": 3}
    assert res.answers == {"full": 15, "top1": 7, "rounded": 2}
    assert [r["cumulative_answered"] for r in res.requests_log] == [4, 10, 15, 15, 22, 24]
    assert res.alerts[0]["logged_answered_at_alert"] == 10 and res.alerts[0]["consistent"]
    assert res.classes["histogram"] == np.bincount(made["labels"], minlength=10).tolist()
    assert res.surrogate is None and any("--model" in n for n in res.notes)
    assert [f.rule_id for f in res.findings] == ["TW154"]
    rep = to_report([res], store=str(db))
    doc = json.loads(json.dumps(rep.to_dict()))
    assert doc["clients"][0]["labelled_samples"] == 24
    kinds = {f["kind"] for f in doc["figures"]}
    assert {"line", "scatter", "bar", "images", "table"} <= kinds


def test_unknown_client_missing_payloads_and_foreign_files(
    filled: tuple[Path, dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, _ = filled
    assert main(["forensics", "client", "--store", f"sqlite:{db}", "--client", "nobody"]) == 2
    err = capsys.readouterr().err.strip()
    assert "nobody" in err and len(err.splitlines()) == 1
    nopay = tmp_path / "nopay.db"
    st = SQLiteStore(nopay)
    rec = _rec("p", time.time(), np.zeros((2, 1, 8, 8), np.float32), None)
    rec.output = encode_array(np.full((2, 10), 0.1, np.float32))
    rec.input = rec.output = None
    st.log_queries([rec], 1 << 30, 1e9)
    st.close()
    assert main(["forensics", "client", "--store", f"sqlite:{nopay}", "--client", "p"]) == 2
    assert "no payload" in capsys.readouterr().err
    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE t (a)")
    con.close()
    for bad in (other, tmp_path / "absent.db", tmp_path / "text.db"):
        if bad.name == "text.db":
            bad.write_text("not a database at all" * 100)
        assert main(["forensics", "client", "--store", f"sqlite:{bad}", "--client", "c"]) == 2
        err = capsys.readouterr().err.strip()
        assert bad.name in err and len(err.splitlines()) == 1
    # Refused without being touched: no store tables were created in the foreign file.
    con = sqlite3.connect(other)
    names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    con.close()
    assert names == {"t"}
    assert not (tmp_path / "absent.db").exists()
    with pytest.raises(InputError):
        open_store(f"sqlite:{other}", existing=True)


def test_kappa_severity_follows_the_bands() -> None:
    assert kappa_severity(0.9, 1e-9) is Severity.CRITICAL
    assert kappa_severity(0.7, 1e-9) is Severity.HIGH
    assert kappa_severity(0.5, 1e-9) is Severity.MEDIUM
    assert kappa_severity(0.1, 0.01) is Severity.LOW
    assert kappa_severity(0.02, 0.4) is Severity.INFO


def test_surrogate_fidelity_tracks_what_the_answers_carry(
    tmp_path: Path,
    digits: Any,  # noqa: F811
    local_model: Any,  # noqa: F811
) -> None:
    """True answers of the model make a faithful surrogate; shuffled answers do not."""
    train, test = digits
    rng = np.random.default_rng(1)
    x = train.model_input(np.arange(300))
    honest = local_model.probabilities(x)
    st = SQLiteStore(tmp_path / "g.db")
    t0 = time.time() - 50
    recs = []
    for i in range(0, 300, 50):
        recs.append(_rec("honest", t0 + i, x[i : i + 50], honest[i : i + 50]))
        recs.append(_rec("shuffled", t0 + i, x[i : i + 50], honest[rng.permutation(300)[:50]]))
    st.log_queries(recs, 1 << 30, 1e9)
    for c in ("honest", "shuffled"):
        st.put(c, None, {"last_seen": t0})
    # The gateway alerted on 'honest' after its second request (100 samples).
    st.add_alerts(
        [{"client": "honest", "detector": "d", "query_count": 100, "time": _iso(t0 + 50)}]
    )
    got = {
        c: client_forensics(
            st, c, model=local_model, eval_data=test, fractions=(1.0,), reference=train
        )
        for c in ("honest", "shuffled")
    }
    st.close()
    fid = {c: r.surrogate["curve"][-1] for c, r in got.items() if r.surrogate}
    assert fid["honest"]["fidelity"] > 0.8 and fid["honest"]["kappa"] > 0.75
    # Labels unrelated to the inputs teach nothing: near-chance agreement.
    assert fid["shuffled"]["kappa"] < 0.3
    # What had leaked by the first alert is measured too, and is less than the whole log's.
    honest_sur = got["honest"].surrogate
    assert honest_sur is not None
    at_alert = [c for c in honest_sur["curve"] if c["at_first_alert"]]
    assert [c["queries"] for c in at_alert] == [100]
    assert at_alert[0]["fidelity"] > 0.5
    sev = {c: next(f.severity for f in r.findings if f.rule_id == "TW153") for c, r in got.items()}
    assert sev["honest"].rank > sev["shuffled"].rank
    assert got["shuffled"].surrogate is not None
    assert got["shuffled"].surrogate["logged_answers_match_model"] < 0.5
    assert any("match the given model" in n for n in got["shuffled"].notes)
    cov = got["honest"].input_coverage
    assert cov is not None and cov["in_distribution_share"] > 0.9


@pytest.mark.slow
def test_forensics_of_a_real_extraction_through_the_gateway(
    tmp_path: Path,
    digits: Any,  # noqa: F811
    local_model: Any,  # noqa: F811
    digits_model: Path,
) -> None:
    """A jbda attacker and an ordinary client query a live gateway over HTTP; forensics
    on its store recovers exactly what each obtained and what the attack stole."""
    import torch

    from tripwire.attacks.extraction import Victim, extract
    from tripwire.attacks.oip_client import OIPClient
    from tripwire.detectors.extraction import default_monitor
    from tripwire.detectors.extraction.base import Reference
    from tripwire.gateway import Gateway, GatewayServer, GuardConfig, LocalBackend

    torch.set_num_threads(1)
    train, test = digits
    ref_x = train.model_input(np.arange(500))
    monitor = default_monitor().fit(
        Reference(
            x=ref_x,
            probs=local_model.probabilities(ref_x),
            n_classes=10,
            input_shape=train.input_shape,
        )
    )
    db = tmp_path / "guard.db"
    store = SQLiteStore(db)
    gw = Gateway(
        LocalBackend(local_model, train.input_shape),
        "digits",
        monitor=monitor,
        store=store,
        config=GuardConfig(correlate_interval_s=0),
    )
    srv = GatewayServer(gw, "127.0.0.1", 0).start()
    budget = 300
    try:
        app = OIPClient(srv.url, "digits", client_id="app-frontend")
        benign = 0
        for i in range(600, 800, 25):  # training images, not the evaluation split
            app.infer(train.model_input(np.arange(i, i + 25)))
            benign += 25
        # Uniform noise (Tramer et al.), which the shipped monitor flags within a request.
        noise = OIPClient(srv.url, "digits", client_id="noise-scraper")
        rng = np.random.default_rng(0)
        for _ in range(4):
            noise.infer(rng.random((32, *train.input_shape), dtype=np.float32))
        stolen = extract(
            Victim.from_oip(srv.url, "digits"),
            "jbda",
            budget=budget,
            input_shape=train.input_shape,
            n_classes=10,
            eval_data=test,
            seed_data=train.subset(np.arange(100)),
            seed=0,
            reference=local_model.probabilities,
            threads=1,
        )
        gw.flush()
    finally:
        srv.stop()
        store.close()
    out = tmp_path / "forensics.json"
    html = tmp_path / "forensics.html"
    code = main(
        [
            "forensics",
            "client",
            "--store",
            f"sqlite:{db}",
            "--client",
            "attacker-0",
            "--client",
            "app-frontend",
            "--model",
            str(digits_model),
            "--data",
            "bundled:digits",
            "--split",
            "test",
            "--reference",
            "bundled:digits",
            "--out",
            str(out),
            "--html",
            str(html),
            "--fail-on",
            "critical",
        ]
    )
    doc = json.loads(out.read_text())
    by = {c["client"]: c for c in doc["clients"]}
    assert code == (1 if any(f["severity"] == "critical" for f in doc["findings"]) else 0)
    assert by["attacker-0"]["labelled_samples"] == len(stolen.queries.x) == budget
    assert by["app-frontend"]["labelled_samples"] == benign
    sur = by["attacker-0"]["surrogate"]
    full = sur["curve"][-1]
    assert full["queries"] == budget
    chance = sur["chance_fidelity"]
    assert full["fidelity"] > chance + 0.4
    # Same inputs, answers and training recipe as extract's own substitute: the log's
    # answers went through JSON and back (measured: equal to 6 digits), so allow a few
    # of the 359 evaluation samples of drift.
    assert abs(full["fidelity"] - stolen.fidelity[-1]) <= 0.02
    assert sur["victim_accuracy"] == pytest.approx(stolen.victim_accuracy, abs=1e-6)
    # Fidelity grows with the share of the log (allowing seed noise between neighbours).
    curve = [c["fidelity"] for c in sur["curve"]]
    assert curve[-1] >= curve[0]
    assert "attacker-0" in html.read_text() and html.read_text().count("<img") >= 8
    # Without --client: every client with an alert; without --model: no surrogate.
    out2 = tmp_path / "alerted.json"
    assert main(["forensics", "client", "--store", f"sqlite:{db}", "--out", str(out2)]) in (0, 1)
    alerted = json.loads(out2.read_text())["clients"]
    assert "noise-scraper" in {c["client"] for c in alerted}
    assert "app-frontend" not in {c["client"] for c in alerted}
    noisy = next(c for c in alerted if c["client"] == "noise-scraper")
    assert noisy["labelled_samples"] == 128 and noisy["surrogate"] is None
    # Every alert's count is the log's count of answered samples up to that moment.
    alerts = [a for c in alerted for a in c["alerts"]]
    assert alerts
    for a in alerts:
        assert a["query_count"] == a["logged_answered_at_alert"]
