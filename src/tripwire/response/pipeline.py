"""``tripwire pipeline``: the layers in order on one delivery of data, gated like a scan.

Stages, in order (each can be skipped in the config):

``verify``
    the delivery against the manifest that came with it (``tripwire verify``); with no
    manifest delivered, one is recorded at ingestion instead so the model keeps lineage.
``scan-data``
    poisoned samples (``tripwire scan-data``), thresholds calibrated on the clean
    reference set when one is given.
``train``
    the reference trainer (``tripwire train``), or the model the config names.
``scan-model``
    backdoors in the model (``tripwire scan-model``) with the clean reference set,
    cross-checked against the scan-data report.
``register``
    ``Registry.add`` with the manifest as lineage, then ``attach`` of every report.
``promote``
    ``Registry.promote`` to the alias; the registry's own gate decides, at ``fail_on``.

A data stage that fails (a finding at or above ``fail_on``) stops the pipeline before
anything is trained on the data. A model scan that fails still registers the version
with its reports (the lineage forensics needs); the promotion is then not attempted,
and a later ``tripwire registry promote`` is refused by the registry's gate.

The scan stages call the commands' own handlers in-process (no subprocess), so each
stage's report is exactly what the standalone command writes and the registry reads.
Exit codes follow the scans: 0 every stage clean, 1 a stage failed its gate, 2 bad
config or input.
"""

from __future__ import annotations

import html
import json
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tripwire.errors import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE, InputError, TripwireError
from tripwire.reports import Severity

STAGES: tuple[str, ...] = ("verify", "scan-data", "train", "scan-model", "register", "promote")

#: Every key the config may hold, by section; anything else is named in the error.
SCHEMA: dict[str, dict[str, type | tuple[type, ...]]] = {
    "pipeline": {"out": str, "fail_on": str, "skip": list},
    "data": {"path": str, "split": str, "manifest": str, "source": str},
    "reference": {"path": str, "split": str},
    "scan_data": {"detectors": list, "epochs": int, "seed": int},
    "train": {"arch": str, "epochs": int, "seed": int, "threads": int, "batch_size": int},
    "model": {"path": str},
    "scan_model": {"max_samples": int, "methods": list, "seed": int},
    "registry": {"path": str, "alias": str, "by": str, "name": str},
}

#: Status of a stage; ``failed`` is a gate (exit 1), ``error`` bad input (exit 2).
PASSING = ("passed", "recorded", "given")


@dataclass(frozen=True)
class PipelineConfig:
    """A validated pipeline config (paths resolved against the config's folder)."""

    source: str
    out: Path
    fail_on: Severity
    skip: frozenset[str]
    data: str
    data_split: str
    manifest: Path | None
    data_source: str | None
    reference: str | None
    reference_split: str
    scan_data: dict[str, Any]
    train: dict[str, Any]
    model: Path | None
    scan_model: dict[str, Any]
    registry: Path | None  # None: ``registry.db`` in the output folder
    alias: str
    by: str | None
    name: str | None


@dataclass
class StageResult:
    """One stage's outcome, as ``pipeline.json`` lists it."""

    stage: str
    status: str
    exit_code: int
    duration_s: float
    report: str | None = None
    html: str | None = None
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PipelineResult:
    """Every stage, the registered version and where the alias points afterwards."""

    config: str
    out: str
    fail_on: str
    stages: list[StageResult] = field(default_factory=list)
    model: str | None = None
    version: str | None = None
    promoted: bool = False
    alias: str | None = None
    started_at: str = ""
    duration_s: float = 0.0

    @property
    def exit_code(self) -> int:
        codes = [s.exit_code for s in self.stages]
        if EXIT_USAGE in codes or any(c > EXIT_USAGE for c in codes):
            return EXIT_USAGE
        return EXIT_FINDINGS if EXIT_FINDINGS in codes else EXIT_OK

    def to_dict(self) -> dict[str, Any]:
        return {
            "command": "pipeline",
            "config": self.config,
            "out": self.out,
            "fail_on": self.fail_on,
            "exit_code": self.exit_code,
            "started_at": self.started_at,
            "duration_s": round(self.duration_s, 2),
            "model": self.model,
            "version": self.version,
            "alias": self.alias,
            "promoted": self.promoted,
            "stages": [s.to_dict() for s in self.stages],
        }


# --- config -----------------------------------------------------------------------------


def _type_name(t: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", list: "a list"}
    return names.get(t, str(t)) if isinstance(t, type) else " or ".join(x.__name__ for x in t)


def _resolve(base: Path, spec: str) -> str:
    """A data spec relative to the config's folder; ``bundled:`` specs stay as they are."""
    if spec.startswith("bundled:") or Path(spec).is_absolute():
        return spec
    return str(base / spec)


def load_config(path: str | Path) -> PipelineConfig:
    """Read and validate a pipeline TOML file.

    Raises
    ------
    InputError
        Unreadable TOML, an unknown section or key (named), a value of the wrong type,
        a stage combination that cannot run.
    """
    p = Path(path)
    try:
        doc = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("no such config file", p) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read ({exc})", p) from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"not valid TOML ({exc})", p) from None
    unknown = sorted(set(doc) - set(SCHEMA))
    if unknown:
        raise InputError(f"unknown section(s) {', '.join(unknown)} (known: {', '.join(SCHEMA)})", p)
    for section, body in doc.items():
        if not isinstance(body, dict):
            raise InputError(f"'{section}' must be a [{section}] table", p)
        bad = sorted(set(body) - set(SCHEMA[section]))
        if bad:
            raise InputError(
                f"unknown key(s) {', '.join(bad)} in [{section}] "
                f"(known: {', '.join(SCHEMA[section])})",
                p,
            )
        for key, value in body.items():
            want = SCHEMA[section][key]
            if not isinstance(value, want) or (want is int and isinstance(value, bool)):
                raise InputError(f"[{section}] {key} must be {_type_name(want)}", p)
    base = p.parent
    sec: dict[str, dict[str, Any]] = {name: dict(doc.get(name, {})) for name in SCHEMA}
    pipe, data, ref = sec["pipeline"], sec["data"], sec["reference"]
    skip = pipe.get("skip", [])
    bad_stages = [s for s in skip if s not in STAGES]
    if bad_stages:
        raise InputError(
            f"[pipeline] skip names unknown stage(s) {', '.join(map(str, bad_stages))} "
            f"(stages: {', '.join(STAGES)})",
            p,
        )
    try:
        fail_on = Severity.parse(pipe.get("fail_on", "high"))
    except ValueError:
        raise InputError(
            "[pipeline] fail_on must be one of info, low, medium, high, critical", p
        ) from None
    if "path" not in data:
        raise InputError("[data] path is required (the delivery to run on)", p)
    for s_name, s_sec in (("data", data), ("reference", ref)):
        if s_sec.get("split", "train") not in ("train", "test"):
            raise InputError(f"[{s_name}] split must be train or test", p)
    for s_name, key in (("scan_data", "detectors"), ("scan_model", "methods")):
        items = sec[s_name].get(key, [])
        if not all(isinstance(v, str) and v for v in items):
            raise InputError(f"[{s_name}] {key} must be a list of names", p)
    for s_name, key in (
        ("scan_data", "epochs"),
        ("train", "epochs"),
        ("train", "threads"),
        ("train", "batch_size"),
        ("scan_model", "max_samples"),
    ):
        if key in sec[s_name] and sec[s_name][key] < 1:
            raise InputError(f"[{s_name}] {key} must be at least 1", p)
    if "model" in doc and "train" in doc:
        raise InputError("give [model] path (take a model) or [train] (train one), not both", p)
    if "model" in doc and "path" not in sec["model"]:
        raise InputError("[model] path is required in a [model] section", p)
    skipped = frozenset(str(s) for s in skip)
    if "scan-model" not in skipped and "path" not in ref:
        raise InputError(
            "scan-model needs a clean reference set: add [reference] path (or skip scan-model)",
            p,
        )
    if "train" in skipped and "model" not in doc and not {"scan-model", "register"} <= skipped:
        raise InputError("train is skipped and no [model] path is given", p)
    if "promote" not in skipped and "register" in skipped:
        raise InputError("promote needs the register stage (skip both or neither)", p)
    reg = sec["registry"]
    alias = reg.get("alias", "prod")
    if not alias.strip():
        raise InputError("[registry] alias must not be empty", p)
    return PipelineConfig(
        source=str(p),
        out=base / pipe.get("out", "pipeline-out"),
        fail_on=fail_on,
        skip=skipped,
        data=_resolve(base, data["path"]),
        data_split=data.get("split", "train"),
        manifest=base / data["manifest"] if "manifest" in data else None,
        data_source=data.get("source"),
        reference=_resolve(base, ref["path"]) if "path" in ref else None,
        reference_split=ref.get("split", "train"),
        scan_data=dict(sec["scan_data"]),
        train=dict(sec["train"]),
        model=base / sec["model"]["path"] if "path" in sec["model"] else None,
        scan_model=dict(sec["scan_model"]),
        registry=base / reg["path"] if "path" in reg else None,
        alias=alias,
        by=reg.get("by"),
        name=reg.get("name"),
    )


# --- stages -----------------------------------------------------------------------------


def _command(argv: Sequence[str]) -> int:
    """Run a tripwire command's handler in this process and return its exit code.

    Going through the parser keeps every default and check of the standalone command.
    """
    from tripwire.cli.main import build_parser

    try:
        args = build_parser().parse_args(list(argv))
    except SystemExit:  # a usage error: the parser printed its one line
        raise InputError(f"tripwire {argv[0]} refused its arguments", argv[0]) from None
    return int(args.func(args))


def _data_args(spec: str, split: str) -> list[str]:
    return [spec, "--split", split]


class _Run:
    """The mutable state one pipeline run threads through its stages."""

    def __init__(self, cfg: PipelineConfig, progress: Callable[[str], None]) -> None:
        self.cfg = cfg
        self.progress = progress
        self.out = cfg.out
        self.manifest: Path | None = cfg.manifest
        self.reference: Path | None = None
        self.data_report: Path | None = None
        self.model: Path | None = cfg.model
        self.reports: list[Path] = []
        self.version: str | None = None
        self.promoted = False

    def path(self, name: str) -> Path:
        return self.out / name

    # Each stage returns (status, exit code, report, html, message).

    def verify(self) -> tuple[str, int, Path | None, Path | None, str]:
        cfg = self.cfg
        if cfg.manifest is None:
            # Nothing to verify against: record the delivery as it arrived (lineage).
            self.manifest = self.path("delivery.manifest.jsonl")
            argv = ["manifest", *_data_args(cfg.data, cfg.data_split), "--out", str(self.manifest)]
            if cfg.data_source:
                argv += ["--source", cfg.data_source]
            _command(argv)
            return "recorded", EXIT_OK, self.manifest, None, "no manifest delivered; recorded one"
        rep, page = self.path("verify.json"), self.path("verify.html")
        code = _command(
            [
                "verify",
                *_data_args(cfg.data, cfg.data_split),
                "--manifest",
                str(cfg.manifest),
                "--out",
                str(rep),
                "--html",
                str(page),
            ]
        )
        self.reports.append(rep)
        msg = "data matches the manifest" if code == EXIT_OK else "data differs from the manifest"
        return ("passed" if code == EXIT_OK else "failed"), code, rep, page, msg

    def _reference(self) -> Path:
        """The clean reference set as an .npz in the output folder (any split, one file)."""
        if self.reference is None:
            from tripwire.io import load_dataset, save_dataset

            if self.cfg.reference is None:  # pragma: no cover - load_config checks
                raise InputError("no [reference] path", self.cfg.source)
            ref = load_dataset(self.cfg.reference, split=self.cfg.reference_split)
            self.reference = self.path("reference.npz")
            save_dataset(ref, self.reference)
        return self.reference

    def scan_data(self) -> tuple[str, int, Path | None, Path | None, str]:
        cfg, opts = self.cfg, self.cfg.scan_data
        rep, page = self.path("scan-data.json"), self.path("scan-data.html")
        argv = [
            "scan-data",
            *_data_args(cfg.data, cfg.data_split),
            "--out",
            str(rep),
            "--html",
            str(page),
            "--fail-on",
            cfg.fail_on.value,
        ]
        if cfg.reference is not None:
            argv += ["--trusted", str(self._reference())]
        if opts.get("detectors"):
            argv += ["--detectors", ",".join(opts["detectors"])]
        if "epochs" in opts:
            argv += ["--epochs", str(opts["epochs"])]
        if self.model is not None:
            argv += ["--model", str(self.model)]
        argv += ["--seed", str(opts.get("seed", 0))]
        code = _command(argv)
        self.data_report = rep
        self.reports.append(rep)
        return _gate(code), code, rep, page, _summary(rep)

    def train(self) -> tuple[str, int, Path | None, Path | None, str]:
        from tripwire.models.train import metadata_path

        cfg, opts = self.cfg, self.cfg.train
        if cfg.model is not None:
            if not cfg.model.is_file():
                raise InputError("no such model file", cfg.model)
            meta = metadata_path(cfg.model)
            return "given", EXIT_OK, meta if meta.is_file() else None, None, f"model {cfg.model}"
        self.model = self.path("model.pt")
        argv = ["train", *_data_args(cfg.data, cfg.data_split), "--out", str(self.model)]
        for key in ("arch", "epochs", "seed", "threads", "batch_size"):
            if key in opts:
                argv += [f"--{key.replace('_', '-')}", str(opts[key])]
        code = _command(argv)
        meta = metadata_path(self.model)
        acc = json.loads(meta.read_text()).get("accuracy") if meta.is_file() else None
        return "passed", code, meta, None, f"trained {self.model.name} (accuracy {acc})"

    def scan_model(self) -> tuple[str, int, Path | None, Path | None, str]:
        cfg, opts = self.cfg, self.cfg.scan_model
        if self.model is None:
            raise InputError("no model to scan (train is skipped and no [model] path)", cfg.source)
        rep, page = self.path("scan-model.json"), self.path("scan-model.html")
        argv = [
            "scan-model",
            str(self.model),
            "--data",
            str(self._reference()),
            "--out",
            str(rep),
            "--html",
            str(page),
            "--fail-on",
            cfg.fail_on.value,
            "--seed",
            str(opts.get("seed", 0)),
        ]
        if "max_samples" in opts:
            argv += ["--max-samples", str(opts["max_samples"])]
        if opts.get("methods"):
            argv += ["--methods", ",".join(opts["methods"])]
        if self.data_report is not None:
            argv += ["--data-report", str(self.data_report)]
        code = _command(argv)
        self.reports.append(rep)
        return _gate(code), code, rep, page, _summary(rep)

    def register(self) -> tuple[str, int, Path | None, Path | None, str]:
        from tripwire.response.registry import Registry

        if self.model is None:
            raise InputError("no model to register", self.cfg.source)
        reg = Registry(self.cfg.registry or self.out / "registry.db")
        version, new = reg.add(
            self.model, manifest=self.manifest, name=self.cfg.name, by=self.cfg.by
        )
        attached = [reg.attach(version.label, r, by=self.cfg.by)[0].command for r in self.reports]
        self.version = version.label
        rep = self.path("register.json")
        rep.write_text(json.dumps(reg.describe(version.label), indent=2, default=str) + "\n")
        what = "registered" if new else "already registered as"
        return (
            "passed",
            EXIT_OK,
            rep,
            None,
            f"{what} {version.label} in {reg.path}; attached {', '.join(attached) or 'no report'}",
        )

    def promote(self) -> tuple[str, int, Path | None, Path | None, str]:
        from tripwire.response.registry import PromotionRefusedError, Registry

        if self.version is None:  # pragma: no cover - load_config forbids it
            raise InputError("no registered version to promote", self.cfg.source)
        reg = Registry(self.cfg.registry or self.out / "registry.db")
        rep = self.path("promote.json")
        doc: dict[str, Any] = {"alias": self.cfg.alias, "version": self.version}
        doc["gate"] = reg.gate(self.version, fail_on=self.cfg.fail_on).to_dict()
        try:
            _, previous = reg.promote(
                self.version,
                self.cfg.alias,
                fail_on=self.cfg.fail_on,
                by=self.cfg.by,
                reason="tripwire pipeline: every scan passed",
            )
        except PromotionRefusedError as exc:
            doc["promoted"] = False
            doc["reason"] = exc.message
            rep.write_text(json.dumps(doc, indent=2) + "\n")
            return "failed", EXIT_FINDINGS, rep, None, exc.message
        self.promoted = True
        doc["promoted"] = True
        doc["previous"] = previous.label if previous else None
        rep.write_text(json.dumps(doc, indent=2) + "\n")
        was = f" (was {previous.label})" if previous else ""
        return "passed", EXIT_OK, rep, None, f"'{self.cfg.alias}' -> {self.version}{was}"


def _gate(code: int) -> str:
    return "passed" if code == EXIT_OK else "failed"


def _summary(report: Path) -> str:
    """One line from a report: its findings by severity."""
    try:
        doc = json.loads(report.read_text())
    except (OSError, ValueError):
        return ""
    counts: dict[str, int] = {}
    for f in doc.get("findings", []):
        counts[f.get("severity", "?")] = counts.get(f.get("severity", "?"), 0) + 1
    if not counts:
        return "no findings"
    return "findings: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))


def run_pipeline(
    cfg: PipelineConfig, *, progress: Callable[[str], None] | None = None
) -> PipelineResult:
    """Run the stages in order, write ``pipeline.json`` and ``index.html`` in ``cfg.out``.

    A stage that fails its gate stops the data stages (nothing is trained on a delivery
    that failed); a failing model scan still registers the version with its reports and
    the promotion is not attempted. A stage that raises a :class:`TripwireError` is recorded as
    ``error`` (exit 2) and the run stops.
    """
    say = progress or (lambda _msg: None)
    cfg.out.mkdir(parents=True, exist_ok=True)
    run = _Run(cfg, say)
    result = PipelineResult(
        config=cfg.source,
        out=str(cfg.out),
        fail_on=cfg.fail_on.value,
        alias=cfg.alias,
        started_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    )
    t_run = time.perf_counter()
    steps: dict[str, Callable[[], tuple[str, int, Path | None, Path | None, str]]] = {
        "verify": run.verify,
        "scan-data": run.scan_data,
        "train": run.train,
        "scan-model": run.scan_model,
        "register": run.register,
        "promote": run.promote,
    }
    stop: str | None = None
    for i, name in enumerate(STAGES, 1):
        if name in cfg.skip or stop is not None:
            why = "skipped in the config" if name in cfg.skip else f"not run: {stop}"
            result.stages.append(
                StageResult(
                    name, "skipped" if name in cfg.skip else "not-run", EXIT_OK, 0.0, message=why
                )
            )
            say(f"[{i}/{len(STAGES)}] {name}: {why}")
            continue
        if name == "promote" and any(s.status not in (*PASSING, "skipped") for s in result.stages):
            result.stages.append(
                StageResult(name, "not-run", EXIT_OK, 0.0, message="a scan failed its gate")
            )
            say(f"[{i}/{len(STAGES)}] promote: not run, a scan failed its gate")
            continue
        say(f"[{i}/{len(STAGES)}] {name} ...")
        t0 = time.perf_counter()
        try:
            status, code, rep, page, msg = steps[name]()
        except TripwireError as exc:
            status, code, rep, page, msg = "error", EXIT_USAGE, None, None, str(exc)
        dt = time.perf_counter() - t0
        stage = StageResult(
            name,
            status,
            code,
            round(dt, 2),
            report=_rel(rep, cfg.out),
            html=_rel(page, cfg.out) if page is not None and page.is_file() else None,
            message=msg,
        )
        result.stages.append(stage)
        say(f"[{i}/{len(STAGES)}] {name}: {status} ({dt:.1f} s) {msg}")
        if status == "error":
            stop = f"{name} could not run"
        elif status == "failed" and name in ("verify", "scan-data"):
            stop = f"{name} failed the gate at {cfg.fail_on.value}"
    result.model = str(run.model) if run.model is not None else None
    result.version = run.version
    result.promoted = run.promoted
    result.duration_s = time.perf_counter() - t_run
    write_summary(result, cfg.out)
    return result


def _rel(path: Path | None, base: Path) -> str | None:
    if path is None:
        return None
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def write_summary(result: PipelineResult, out: Path) -> tuple[Path, Path]:
    """``pipeline.json`` and a self-contained ``index.html`` linking every stage's report."""
    js = out / "pipeline.json"
    js.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    colours = {
        "passed": "#1a7f37",
        "recorded": "#1a7f37",
        "given": "#1a7f37",
        "failed": "#cf222e",
        "error": "#cf222e",
    }
    rows = []
    for s in result.stages:
        link = []
        if s.report:
            link.append(f'<a href="{html.escape(s.report)}">{html.escape(s.report)}</a>')
        if s.html:
            link.append(f'<a href="{html.escape(s.html)}">HTML</a>')
        rows.append(
            "<tr>"
            f"<td>{html.escape(s.stage)}</td>"
            f'<td style="color:{colours.get(s.status, "#57606a")}"><b>{html.escape(s.status)}'
            "</b></td>"
            f"<td>{s.exit_code}</td><td>{s.duration_s:.1f} s</td>"
            f"<td>{' &middot; '.join(link)}</td><td>{html.escape(s.message)}</td>"
            "</tr>"
        )
    verdict = {
        0: "clean: promoted" if result.promoted else "clean",
        1: "stopped at a gate",
        2: "bad config or input",
    }[result.exit_code]
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tripwire pipeline</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:72em}}
table{{border-collapse:collapse}}td,th{{border:1px solid #d0d7de;padding:.3em .6em;
text-align:left;vertical-align:top}}</style></head><body>
<h1>tripwire pipeline: {html.escape(verdict)} (exit {result.exit_code})</h1>
<p>Config <code>{html.escape(result.config)}</code>, gate at <b>{html.escape(result.fail_on)}</b>,
started {html.escape(result.started_at)}, {result.duration_s:.1f} s.
Model <code>{html.escape(str(result.model))}</code>, registry version
<code>{html.escape(str(result.version))}</code>, alias <code>{html.escape(str(result.alias))}</code>
{"now serves it" if result.promoted else "not moved"}.</p>
<table><tr><th>stage</th><th>status</th><th>exit</th><th>time</th><th>report</th>
<th>detail</th></tr>
{chr(10).join(rows)}
</table><p><a href="pipeline.json">pipeline.json</a></p></body></html>
"""
    idx = out / "index.html"
    idx.write_text(page, encoding="utf-8")
    return js, idx
