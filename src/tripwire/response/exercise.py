"""The red-team/blue-team exercise that ``tripwire demo`` runs, end to end, on bundled data.

The story (docs/playbook.md, "Tabletop exercise"), every step a real tripwire command run
in-process on real artefacts, every result computed live:

1. **ingestion**: the team's data (in-house and vendor-a) goes through
   ``tripwire pipeline``: manifest, data scan, training, model scan, registration and
   promotion of ``v1`` to the ``prod`` alias;
2. **serving**: ``tripwire guard --registry ... --alias prod`` serves ``prod`` on a local
   port; an ordinary client queries it, a blue-team probe (allow-listed) measures how
   often triggered inputs reach the attacker's class;
3. **supply chain**: vendor-b's delivery carries a BadNets backdoor; the pipeline on the
   merged data must stop at the data scan and name vendor-b;
4. **bypass**: a contractor trains ``v2`` on the whole delivery anyway and has it
   promoted with ``--allow-unscanned``; the gateway picks it up without a restart and the
   probe sees the backdoor live;
5. **audit and rollback**: ``tripwire scan-model`` must find the backdoor and its target,
   ``tripwire forensics data`` must trace it to vendor-b and to ``v2``, and
   ``tripwire registry rollback`` must return ``prod`` to ``v1``; the gateway follows;
6. **extraction**: an attacker clones the model through the API (Jacobian-based
   augmentation, Papernot et al. 2017); the gateway must alert on it and not on the
   ordinary client;
7. **leak estimate**: ``tripwire forensics client`` trains a surrogate on exactly what
   the gateway logged and estimates how much of the model leaked;
8. **sharing**: ``tripwire export-stix`` bundles the findings and the alerts.

Each expectation is a :class:`Check`; the exercise passes when every check does.
``index.html`` in the output folder links every stage's report.

The red team's ground truth (which samples are poisoned, what the attacker obtained) is
used only to score the blue team's results, never by a detector.
"""

from __future__ import annotations

import html
import http.client
import json
import secrets
import shlex
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tripwire.errors import InputError, TripwireError
from tripwire.io import Dataset

#: The backdoor's target class and the share of vendor-b's delivery it poisons.
TARGET = 0
VENDOR_POISON_RATE = 0.3
#: Training epochs of the exercise's models: enough for 98% test accuracy on the bundled
#: digits and a working backdoor, and the whole run stays within minutes on 2 cores.
EPOCHS = 8
#: The extraction attacker's query budget and the ordinary client's number of queries.
ATTACK_BUDGET = 1000
BENIGN_QUERIES = 512
ATTACKER = "attacker-0"
ORDINARY = "app-frontend"
PROBE = "blue-team-probe"


@dataclass
class Check:
    """One expectation of the exercise and what was observed."""

    stage: str
    expect: str
    observed: str
    passed: bool


@dataclass
class Stage:
    """One stage: the commands it ran, the reports it wrote, its checks."""

    name: str
    title: str
    seconds: float = 0.0
    commands: list[str] = field(default_factory=list)
    links: dict[str, str] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)


@dataclass
class ExerciseResult:
    """The whole exercise (``exercise.json``)."""

    out: str
    data: str
    stages: list[Stage] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def checks(self) -> list[Check]:
        return [c for s in self.stages for c in s.checks]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "out": self.out,
            "data": self.data,
            "seconds": round(self.seconds, 1),
            "checks_passed": sum(c.passed for c in self.checks),
            "checks": len(self.checks),
            "stages": [{**asdict(s), "passed": s.passed} for s in self.stages],
        }


class _Exercise:
    """Shared state of one run (paths, the gateway, the red team's ground truth)."""

    def __init__(
        self, out: Path, data: str, epochs: int, seed: int, say: Callable[[str], None]
    ) -> None:
        self.out = out
        self.data = data
        self.epochs = epochs
        self.seed = seed
        self.say = say
        self.reg = out / "registry.db"
        self.token = secrets.token_urlsafe(16)
        self.stage: Stage | None = None
        self.server: Any = None
        self.gateway: Any = None
        self.attack: dict[str, Any] = {}
        self.poisoned: npt.NDArray[np.bool_] = np.zeros(0, bool)
        self.scan_v2 = out / "pipeline-v2" / "out" / "scan-data.json"
        self.stolen_accuracy = float("nan")
        self.stolen_fidelity = float("nan")

    # -- plumbing ----------------------------------------------------------------------
    def tw(self, *argv: str) -> int:
        """Run one tripwire command in-process, as a user would type it."""
        from tripwire.cli.main import main

        shown = " ".join(shlex.quote(self._short(a)) for a in argv)
        self.say(f"$ tripwire {shown}")
        if self.stage is not None:
            self.stage.commands.append(f"tripwire {shown}")
        return int(main(list(argv)))

    def _short(self, arg: str) -> str:
        prefix = "sqlite:" if arg.startswith("sqlite:") else ""
        try:
            return prefix + str(Path(arg[len(prefix) :]).relative_to(self.out))
        except ValueError:
            return arg

    def check(self, expect: str, observed: str, passed: bool) -> None:
        if self.stage is None:  # pragma: no cover - every check runs inside a stage
            raise RuntimeError("check outside a stage")
        self.stage.checks.append(Check(self.stage.name, expect, observed, bool(passed)))
        self.say(f"  [{'PASS' if passed else 'FAIL'}] {expect}: {observed}")

    def fact(self, **facts: Any) -> None:
        """Record figures of the current stage (``exercise.json``)."""
        if self.stage is not None:
            self.stage.facts.update(facts)

    def link(self, label: str, path: Path) -> None:
        if self.stage is not None and path.exists():
            self.stage.links[label] = str(path.relative_to(self.out))

    def admin(self, method: str, path: str) -> Any:
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
        try:
            conn.request(method, path, headers={"Authorization": f"Bearer {self.token}"})
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        if resp.status != 200:
            raise InputError(f"admin API answered {resp.status}: {body[:200]!r}", path)
        return json.loads(body)

    def probe_asr(self, test: Dataset) -> float:
        """Attack success rate of the trigger on the model the gateway serves now."""
        from tripwire.attacks import attack_success_rate
        from tripwire.attacks.oip_client import OIPClient

        client = OIPClient(self.server.url, "prod", client_id=PROBE)

        def predict(x: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]:
            probs = [client.infer(x[i : i + 50]) for i in range(0, len(x), 50)]
            return np.asarray(np.concatenate(probs).argmax(1), dtype=np.int64)

        probe = test.subset(np.flatnonzero(test.y != TARGET)[:200])
        return attack_success_rate(predict, probe, self.attack, seed=self.seed)

    def wait_serving(self, version_file: Path, timeout: float = 30.0) -> float | None:
        """Seconds until the gateway serves ``version_file`` (``None`` if it never did)."""
        t0 = time.perf_counter()
        follower = self.gateway.follower
        while time.perf_counter() - t0 < timeout:
            if follower.serving_ is not None and follower.serving_.name == version_file.name:
                return time.perf_counter() - t0
            time.sleep(0.2)
        return None

    def registry_file(self, version: str) -> Path:
        from tripwire.response.registry import Registry

        reg = Registry(self.reg)
        return reg.file_of(reg.get(version))


def run_exercise(
    out_dir: str | Path,
    *,
    data: str = "bundled:mnist",
    epochs: int = EPOCHS,
    seed: int = 0,
    say: Callable[[str], None] = print,
) -> ExerciseResult:
    """Run the exercise in ``out_dir`` (see the module docstring) and write its reports.

    Parameters
    ----------
    out_dir
        Where every artefact goes (``index.html``, ``exercise.json``, stage folders).
    data
        A dataset with a ``test`` split (``bundled:mnist`` by default).
    epochs
        Training epochs of every model (the data scan's proxy keeps its own).
    seed
        Seed of the data split, the attacks and the training.
    say
        Where progress lines go.
    """
    import torch

    from tripwire.io import load_dataset

    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    # Two threads whatever the caller set: the same numbers on every run of this kind of
    # machine (a model trained on 1 thread differs in its last bits, and so its scans).
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    ex = _Exercise(out, data, epochs, seed, say)
    result = ExerciseResult(out=str(out), data=data)
    full = load_dataset(data, split="train")
    held_out = load_dataset(data, split="test")
    t_all = time.perf_counter()
    stages: list[tuple[str, str, Callable[[], None]]] = []
    try:
        test = _prepare(ex, full, held_out)
        stages = [
            ("ingestion", "The team's own data through the pipeline", lambda: _baseline(ex)),
            ("serving", "The gateway serves prod", lambda: _serve(ex, test)),
            ("supply-chain", "Vendor-b's delivery through the pipeline", lambda: _delivery(ex)),
            ("bypass", "A contractor's model goes live unscanned", lambda: _bypass(ex, test)),
            ("audit", "Model audit, data forensics, rollback", lambda: _audit(ex, test)),
            ("extraction", "An attacker clones the model through the API", lambda: _extract(ex)),
            ("leak", "What the attacker obtained", lambda: _leak(ex)),
            ("share", "Share the incident as STIX 2.1", lambda: _share(ex)),
        ]
        broken: str | None = None
        for i, (name, title, body) in enumerate(stages, 1):
            say(f"\n== {i}/{len(stages)} {name}: {title}")
            ex.stage = Stage(name, title)
            result.stages.append(ex.stage)
            if broken is not None:
                ex.check("the stage runs", f"not run: {broken}", False)
                continue
            t0 = time.perf_counter()
            try:
                body()
            except TripwireError as exc:
                # Later stages build on this one's artefacts: they are reported, not run.
                ex.check("the stage runs", f"error: {exc}", False)
                broken = f"stage '{name}' could not run"
            ex.stage.seconds = round(time.perf_counter() - t0, 1)
    finally:
        torch.set_num_threads(threads)
        if ex.server is not None:
            ex.gateway.follower.stop()
            ex.server.stop()
            ex.gateway.close()
    result.seconds = time.perf_counter() - t_all
    write_index(result, out)
    return result


# -- stages ----------------------------------------------------------------------------
def _prepare(ex: _Exercise, full: Dataset, held_out: Dataset) -> Dataset:
    """Split the data into suppliers and poison vendor-b's share (the red team's move)."""
    from tripwire.attacks import poison_dataset
    from tripwire.io import make_dataset, save_dataset

    # Half of the held-out split is the small clean set the scans calibrate on and the
    # gateway takes as its reference; the other half measures the models.
    half = len(held_out) // 2
    # Shuffled first: bundled splits are sorted by class, and both halves need every class.
    shuffled = np.random.default_rng(ex.seed).permutation(len(held_out))
    save_dataset(held_out.subset(np.sort(shuffled[:half])), ex.out / "trusted.npz")
    test = held_out.subset(np.sort(shuffled[half:]))
    save_dataset(test, ex.out / "test.npz")
    n = len(full)
    a, b = int(0.6 * n), int(0.8 * n)
    order = np.random.default_rng(ex.seed).permutation(n)  # bundled sets are sorted by class
    inhouse = full.subset(np.sort(order[:a]))
    vendor_a = full.subset(np.sort(order[a:b]))
    vendor_b = poison_dataset(
        full.subset(np.sort(order[b:])),
        "badnets",
        rate=VENDOR_POISON_RATE,
        target=TARGET,
        seed=ex.seed + 1,
    )
    ex.attack = dict(vendor_b.attack or {})
    parts = [(inhouse, "in-house"), (vendor_a, "vendor-a"), (vendor_b, "vendor-b")]

    def merge(k: int) -> Dataset:
        sel = parts[:k]
        return make_dataset(
            np.concatenate([p.x for p, _ in sel]),
            np.concatenate([p.y for p, _ in sel]),
            source=np.concatenate([np.full(len(p), s) for p, s in sel]),
        )

    save_dataset(merge(2), ex.out / "data-v1.npz")
    # The delivery carries no ``poisoned`` field or attack description: the blue team
    # gets the data as a vendor would ship it.
    save_dataset(merge(3), ex.out / "data-v2.npz")
    ex.poisoned = np.concatenate(
        [np.zeros(len(inhouse) + len(vendor_a), bool), np.asarray(vendor_b.poisoned, bool)]
    )
    (ex.out / "red-team.json").write_text(
        json.dumps(
            {
                "attack": ex.attack,
                "poisoned_indices_in_data_v2": np.flatnonzero(ex.poisoned).tolist(),
                "note": "ground truth for scoring the exercise; no detector reads it",
            }
        )
        + "\n"
    )
    ex.say(
        f"data: {len(inhouse)} in-house, {len(vendor_a)} vendor-a, {len(vendor_b)} vendor-b "
        f"samples ({int(ex.poisoned.sum())} of vendor-b's carry a BadNets trigger to class "
        f"{TARGET}); {half} clean held-out samples trusted, {len(test)} for testing"
    )
    return test


def _pipeline_config(ex: _Exercise, name: str, data: str) -> Path:
    folder = ex.out / name
    folder.mkdir(parents=True, exist_ok=True)
    cfg = folder / "pipeline.toml"
    cfg.write_text(
        f"""# written by tripwire demo
[pipeline]
out = "out"
fail_on = "high"

[data]
path = "../{data}"
manifest = "../{data.replace(".npz", ".manifest.jsonl")}"

[reference]
path = "../trusted.npz"

[train]
seed = {ex.seed}
epochs = {ex.epochs}

[scan_model]
max_samples = 500
seed = {ex.seed}

[registry]
path = "../registry.db"
alias = "prod"
by = "pipeline"
""",
        encoding="utf-8",
    )
    return cfg


def _pipeline(ex: _Exercise, name: str, data: str) -> tuple[int, dict[str, Any]]:
    manifest = ex.out / data.replace(".npz", ".manifest.jsonl")
    ex.tw("manifest", str(ex.out / data), "--out", str(manifest))
    cfg = _pipeline_config(ex, name, data)
    code = ex.tw("pipeline", "--config", str(cfg))
    summary = json.loads((cfg.parent / "out" / "pipeline.json").read_text())
    ex.link("pipeline", cfg.parent / "out" / "index.html")
    return code, summary


def _stage_status(summary: dict[str, Any], name: str) -> str:
    return next((s["status"] for s in summary["stages"] if s["stage"] == name), "absent")


def _baseline(ex: _Exercise) -> None:
    code, summary = _pipeline(ex, "pipeline-v1", "data-v1.npz")
    ex.check("the pipeline passes the team's own data", f"exit {code}", code == 0)
    ex.check(
        "v1's model scan finds no backdoor",
        f"scan-model stage {_stage_status(summary, 'scan-model')}",
        _stage_status(summary, "scan-model") == "passed",
    )
    ex.check(
        "v1 is promoted to prod",
        f"version {summary.get('version')}, promoted {summary.get('promoted')}",
        bool(summary.get("promoted")) and summary.get("version") == "v1",
    )


def _serve(ex: _Exercise, test: Dataset) -> None:
    from tripwire.attacks.benign import benign_stream
    from tripwire.attacks.oip_client import OIPClient
    from tripwire.cli.commands.guard import build_gateway, guard_args
    from tripwire.gateway import GatewayServer

    folder = ex.out / "gateway"
    folder.mkdir(exist_ok=True)
    for stale in ("guard.db", "guard.db-wal", "guard.db-shm", "alerts.jsonl"):
        (folder / stale).unlink(missing_ok=True)
    config = folder / "guard.toml"
    config.write_text('[alerts]\nlog = "alerts.jsonl"\n\n[query_log]\npayloads = true\n')
    argv = [
        "guard", "--registry", str(ex.reg), "--alias", "prod",
        "--reference", str(ex.out / "trusted.npz"), "--store", f"sqlite:{folder / 'guard.db'}",
        "--config", str(config), f"--admin-token={ex.token}", "--port", "0",
        "--follow-interval", "0.5",
    ]  # fmt: skip
    shown = " ".join(shlex.quote(ex._short(a)) for a in argv).replace(ex.token, "$TOKEN")
    ex.say(f"$ tripwire {shown}  (in a thread)")
    if ex.stage is not None:
        ex.stage.commands.append(f"tripwire {shown}")
    args = guard_args(*argv[1:])
    ex.gateway = build_gateway(args)
    ex.server = GatewayServer(ex.gateway, "127.0.0.1", 0).start()
    ex.gateway.follower.start()
    ex.admin("POST", f"/tripwire/v1/clients/{PROBE}/allow")
    ex.say(f"gateway on {ex.server.url}; '{PROBE}' allow-listed through the admin API")
    client = OIPClient(ex.server.url, "prod", client_id=ORDINARY)
    stream = benign_stream(
        test, "ordinary", n_queries=BENIGN_QUERIES, seed=ex.seed, client_id=ORDINARY
    )
    for _, _, x in stream.requests():
        client.infer(x)
    asr = ex.probe_asr(test)
    ex.fact(probe_asr_v1=round(asr, 4))
    serving = ex.gateway.follower.serving_
    ex.check(
        "the gateway serves v1",
        f"serving {'v1' if serving == ex.registry_file('v1') else 'another version'} "
        f"({serving.name[:12]}...)",
        serving == ex.registry_file("v1"),
    )
    ex.check(
        "triggered inputs mostly fail on v1 (no backdoor yet)",
        f"attack success rate {asr:.3f} on 200 triggered test inputs",
        asr < 0.2,
    )


def _delivery(ex: _Exercise) -> None:
    code, summary = _pipeline(ex, "pipeline-v2", "data-v2.npz")
    ex.check("the pipeline stops vendor-b's delivery", f"exit {code}", code == 1)
    status = _stage_status(summary, "scan-data")
    ex.check(
        "it stops at the data scan, before training",
        f"scan-data {status}, train {_stage_status(summary, 'train')}",
        status == "failed" and _stage_status(summary, "train") == "not-run",
    )
    scan_path = ex.scan_v2
    ex.link("scan-data report", scan_path.with_suffix(".html"))
    scan = json.loads(scan_path.read_text()) if scan_path.is_file() else {}
    named = [
        f["evidence"].get("source") for f in scan.get("findings", []) if f["rule_id"] == "TW103"
    ]
    ex.check(
        "the data scan names vendor-b (TW103)", f"sources named: {named}", named == ["vendor-b"]
    )
    flagged = np.zeros(len(ex.poisoned), bool)
    flagged[np.asarray(scan.get("flagged", []), dtype=np.int64)] = True
    tp = int((flagged & ex.poisoned).sum())
    recall = tp / max(1, int(ex.poisoned.sum()))
    precision = tp / max(1, int(flagged.sum()))
    ex.fact(flagged=int(flagged.sum()), recall=round(recall, 4), precision=round(precision, 4))
    ex.check(
        "most poisons are flagged (scored with the red team's ground truth)",
        f"recall {recall:.3f}, precision {precision:.3f} ({int(flagged.sum())} flagged)",
        recall >= 0.8 and precision >= 0.5,
    )


def _bypass(ex: _Exercise, test: Dataset) -> None:
    model = ex.out / "contractor" / "v2.pt"
    model.parent.mkdir(exist_ok=True)
    code = ex.tw(
        "train", str(ex.out / "data-v2.npz"), "--out", str(model), "--seed", str(ex.seed),
        "--test", str(ex.out / "test.npz"), "--epochs", str(ex.epochs),
    )  # fmt: skip
    ex.check("the contractor trains v2 on the whole delivery", f"exit {code}", code == 0)
    ex.tw(
        "registry", "add", str(model), "--registry", str(ex.reg), "--by", "contractor",
        "--manifest", str(ex.out / "data-v2.manifest.jsonl"),
    )  # fmt: skip
    code = ex.tw(
        "registry", "promote", "v2", "--alias", "prod", "--registry", str(ex.reg),
        "--allow-unscanned", "--by", "contractor", "--reason", "urgent launch",
    )  # fmt: skip
    ex.check("v2 is promoted unscanned (the bypass)", f"exit {code}", code == 0)
    waited = ex.wait_serving(ex.registry_file("v2"))
    ex.check(
        "the gateway picks up the promotion without a restart",
        "never" if waited is None else f"serving v2 after {waited:.1f} s",
        waited is not None,
    )
    asr = ex.probe_asr(test)
    ex.fact(probe_asr_v2=round(asr, 4))
    ex.check(
        "the backdoor is live through the API (red team's view)",
        f"attack success rate {asr:.3f}",
        asr >= 0.8,
    )


def _audit(ex: _Exercise, test: Dataset) -> None:
    model = ex.registry_file("v2")
    folder = ex.out / "audit"
    folder.mkdir(exist_ok=True)
    scan = folder / "scan-model-v2.json"
    ex.tw(
        "scan-model", str(model), "--data", str(ex.out / "trusted.npz"), "--max-samples", "500",
        "--seed", str(ex.seed), "--out", str(scan), "--html", str(scan.with_suffix(".html")),
    )  # fmt: skip
    ex.link("scan-model report", scan.with_suffix(".html"))
    rep = json.loads(scan.read_text())
    ex.check(
        f"scan-model finds the backdoor and its target class {TARGET}",
        f"verdict {rep['verdict']}, target classes {rep['target_classes']}",
        rep["verdict"] == "backdoored" and TARGET in rep["target_classes"],
    )
    ex.tw("registry", "attach", "v2", str(scan), "--registry", str(ex.reg))
    incident = folder / "incident.json"
    ex.tw(
        "forensics", "data", "--report", str(ex.scan_v2), "--registry", str(ex.reg),
        "--manifest", str(ex.out / "data-v2.manifest.jsonl"),
        "--out", str(incident), "--html", str(incident.with_suffix(".html")),
    )  # fmt: skip
    ex.link("data forensics", incident.with_suffix(".html"))
    fx = json.loads(incident.read_text()).get("forensics", {})
    affected = [v["version"] for v in fx.get("versions", []) if v.get("attributed_samples")]
    ex.check(
        "forensics traces the poison to vendor-b and to v2",
        f"sources {fx.get('implicated_sources')}, versions {affected}",
        fx.get("implicated_sources") == ["vendor-b"] and affected == ["v2"],
    )
    ex.tw("registry", "attach", "v2", str(incident), "--registry", str(ex.reg))
    code = ex.tw(
        "registry", "rollback", "--alias", "prod", "--registry", str(ex.reg),
        "--by", "incident-lead", "--reason", "backdoor in v2",
    )  # fmt: skip
    ex.check("prod rolls back", f"exit {code}", code == 0)
    waited = ex.wait_serving(ex.registry_file("v1"))
    ex.check(
        "the gateway serves v1 again without a restart",
        "never" if waited is None else f"after {waited:.1f} s",
        waited is not None,
    )
    asr = ex.probe_asr(test)
    ex.fact(probe_asr_after_rollback=round(asr, 4))
    ex.check("triggered inputs fail again", f"attack success rate {asr:.3f}", asr < 0.2)
    ex.tw("registry", "history", "--alias", "prod", "--registry", str(ex.reg))


def _extract(ex: _Exercise) -> None:
    from tripwire.attacks.extraction import Victim, extract
    from tripwire.io import load_dataset

    test = load_dataset(str(ex.out / "test.npz"))
    trusted = load_dataset(str(ex.out / "trusted.npz"))
    # The attacker holds a handful of natural digits (ten per class) to seed the search.
    rng = np.random.default_rng(ex.seed + 7)
    seeds = np.concatenate(
        [rng.choice(np.flatnonzero(test.y == c), 10, replace=False) for c in range(test.n_classes)]
    )
    ex.say(f"attacker: jbda, budget {ATTACK_BUDGET}, 100 seed digits, through {ex.server.url}")
    res = extract(
        Victim.from_oip(ex.server.url, "prod"),
        "jbda",
        budget=ATTACK_BUDGET,
        input_shape=test.input_shape,
        n_classes=test.n_classes,
        seed_data=test.subset(np.sort(seeds)),
        eval_data=trusted,
        seed=ex.seed,
        client_id=ATTACKER,
    )
    ex.fact(
        attacker={
            "budgets": list(res.budgets),
            "accuracy": [round(a, 4) for a in res.accuracy],
            "fidelity": [round(f, 4) for f in res.fidelity],
        }
    )
    ex.gateway.correlate_now()
    alerts = ex.admin("GET", "/tripwire/v1/alerts")["alerts"]
    (ex.out / "gateway" / "alerts.json").write_text(json.dumps({"alerts": alerts}, indent=2))
    mine = [a for a in alerts if a["client"] == ATTACKER]
    first = min((a["query_count"] for a in mine), default=None)
    ex.fact(first_alert_at=first)
    if mine:
        by = min(mine, key=lambda a: a["query_count"])["detector"]
        seen = f"{len(mine)} alert(s), first by {by} after {first} of {ATTACK_BUDGET} queries"
    else:
        seen = "no alert"
    ex.check(
        "the gateway alerts on the attacker before the budget is spent",
        seen,
        first is not None and first < ATTACK_BUDGET,
    )
    benign = [a for a in alerts if a["client"] == ORDINARY]
    ex.check(
        "no alert on the ordinary client",
        f"{len(benign)} alert(s) over {BENIGN_QUERIES} queries",
        not benign,
    )
    ex.stolen_accuracy = float(res.accuracy[-1])
    ex.stolen_fidelity = float(res.fidelity[-1])
    ex.say(f"stolen model: accuracy {res.accuracy[-1]:.3f} (victim {res.victim_accuracy:.3f})")


def _leak(ex: _Exercise) -> None:
    folder = ex.out / "gateway"
    report = folder / "leak.json"
    code = ex.tw(
        "forensics", "client", "--store", f"sqlite:{folder / 'guard.db'}", "--client", ATTACKER,
        "--model", str(ex.registry_file("v1")), "--data", str(ex.out / "trusted.npz"),
        "--reference", str(ex.out / "trusted.npz"), "--seed", str(ex.seed),
        "--out", str(report), "--html", str(report.with_suffix(".html")),
    )  # fmt: skip
    ex.link("client forensics", report.with_suffix(".html"))
    ex.check("client forensics runs on the gateway's log", f"exit {code}", code in (0, 1))
    if not report.is_file():
        return
    rep = json.loads(report.read_text())
    facts = _leak_facts(rep)
    ex.fact(**facts)
    n = facts.get("labelled_samples")
    ex.check(
        "it counts every sample the attacker had answered",
        f"{n} labelled samples in the log",
        n == ATTACK_BUDGET,
    )
    est = facts.get("surrogate_fidelity")
    ex.check(
        "its surrogate reproduces the attacker's clone: fidelity within 0.05",
        f"surrogate {est}, the attacker's own model {ex.stolen_fidelity:.3f}",
        est is not None and abs(float(est) - ex.stolen_fidelity) <= 0.05,
    )


def _leak_facts(rep: dict[str, Any]) -> dict[str, Any]:
    """The figures of a ``forensics client`` report the exercise scores (its one client)."""
    clients = rep.get("clients") or [{}]
    c = clients[0] if isinstance(clients[0], dict) else {}
    surrogate = c.get("surrogate") or {}
    curve = surrogate.get("curve") or [{}]
    at_alert: dict[str, Any] = next((p for p in curve if p.get("at_first_alert")), {})
    return {
        "labelled_samples": c.get("labelled_samples"),
        "surrogate_accuracy": curve[-1].get("accuracy"),
        "surrogate_fidelity": curve[-1].get("fidelity"),
        "surrogate_fidelity_at_first_alert": at_alert.get("fidelity"),
    }


def _share(ex: _Exercise) -> None:
    bundle = ex.out / "incident.stix.json"
    inputs = [
        str(ex.scan_v2),
        str(ex.out / "audit" / "scan-model-v2.json"),
        str(ex.out / "audit" / "incident.json"),
        str(ex.out / "gateway" / "alerts.jsonl"),
    ]
    code = ex.tw("export-stix", *[p for p in inputs if Path(p).is_file()], "--out", str(bundle))
    ex.link("STIX bundle", bundle)
    objs = json.loads(bundle.read_text()).get("objects", []) if bundle.is_file() else []
    kinds = sorted({o.get("type") for o in objs})
    ex.check(
        "a STIX 2.1 bundle with indicators and sightings",
        f"exit {code}, {len(objs)} objects ({', '.join(kinds)})",
        code == 0 and "indicator" in kinds and "sighting" in kinds,
    )


# -- report ----------------------------------------------------------------------------
def write_index(result: ExerciseResult, out: Path) -> Path:
    """``exercise.json`` and a self-contained ``index.html`` linking every report."""
    (out / "exercise.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    ok, bad = "#1a7f37", "#cf222e"
    parts = []
    for s in result.stages:
        links = " &middot; ".join(
            f'<a href="{html.escape(p)}">{html.escape(k)}</a>' for k, p in s.links.items()
        )
        checks = "".join(
            f'<tr><td style="color:{ok if c.passed else bad}"><b>'
            f"{'pass' if c.passed else 'FAIL'}</b></td><td>{html.escape(c.expect)}</td>"
            f"<td>{html.escape(c.observed)}</td></tr>"
            for c in s.checks
        )
        cmds = html.escape("\n".join(f"$ {c}" for c in s.commands))
        parts.append(
            f'<h2 style="color:{ok if s.passed else bad}">{html.escape(s.name)}: '
            f"{html.escape(s.title)} ({s.seconds:.0f} s)</h2>"
            f"<p>{links or 'no report'}</p>"
            f"<table><tr><th></th><th>expected</th><th>observed</th></tr>{checks}</table>"
            f"<details><summary>commands</summary><pre>{cmds}</pre></details>"
        )
    facts = {k: v for s in result.stages for k, v in s.facts.items()}
    figures = [
        ("poisons flagged in vendor-b's delivery (recall / precision)", "recall", "precision"),
        ("backdoor success through the API: v1 / v2 live / after rollback", "probe_asr_v1",
         "probe_asr_v2", "probe_asr_after_rollback"),
        ("extraction attacker's first alert (queries of the budget)", "first_alert_at"),
        ("leak estimate: surrogate accuracy / fidelity from the gateway's log",
         "surrogate_accuracy", "surrogate_fidelity"),
    ]  # fmt: skip
    key_rows = "".join(
        f"<tr><td>{html.escape(label)}</td><td>"
        + " / ".join(html.escape(str(facts.get(k, "-"))) for k in keys)
        + "</td></tr>"
        for label, *keys in figures
    )
    n_ok = sum(c.passed for c in result.checks)
    verdict = "every check passed" if result.passed else "SOME CHECKS FAILED"
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tripwire exercise</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:76em}}
table{{border-collapse:collapse}}td,th{{border:1px solid #d0d7de;padding:.3em .6em;
text-align:left;vertical-align:top}}pre{{background:#f6f8fa;padding:.6em;overflow-x:auto}}</style>
</head><body>
<h1>tripwire red-team/blue-team exercise: {verdict}</h1>
<p>{n_ok} of {len(result.checks)} checks passed in {result.seconds:.0f} s on
<code>{html.escape(result.data)}</code>. A vendor's delivery carries a BadNets backdoor to
class {TARGET}; a contractor's model trained on it goes live; an attacker clones the
model through the API. Every figure below was computed in this run
(<a href="exercise.json">exercise.json</a>; the red team's ground truth, used only to
score: <a href="red-team.json">red-team.json</a>).</p>
<table><tr><th>key figure</th><th>measured</th></tr>{key_rows}</table>
{chr(10).join(parts)}
</body></html>
"""
    idx = out / "index.html"
    idx.write_text(page, encoding="utf-8")
    return idx


__all__ = ["Check", "ExerciseResult", "Stage", "run_exercise", "write_index"]
