"""The gateway's settings: defaults, and the ``guard.toml`` file that overrides them.

Example ``guard.toml`` (every table and key is optional)::

    [keys]                    # client id = API key; with keys, a Bearer key is required
    alice = "k-2f9c..."
    bob = "k-81d0..."

    [limits]
    max_body_bytes = 16777216
    max_batch = 4096

    [enforce]                 # used with --mode enforce: the worst severity that
    degrade = "medium"        # triggers each action (an action applies at its
    throttle = "high"         # severity and above; the strongest wins)
    block = "critical"
    degrade_output = "top1"   # or "round"
    round_decimals = 1
    throttle_interval_s = 10.0

    [alerts]
    log = "tripwire-alerts.jsonl"  # relative paths: beside this file
    webhook = "https://hooks.example.org/tripwire"

    [query_log]
    payloads = true           # keep inputs and returned outputs, compressed
    max_entry_bytes = 1048576 # larger payloads keep their metadata only
    max_bytes = 268435456     # total cap of stored payloads; oldest go first
    retention_s = 604800

    [monitor]
    timeline_cap = 200        # timeline entries kept per client
    correlate_interval_s = 5.0
    state_flush_s = 1.0       # write-behind interval of client states (SQLite store)
    classifier = "stream_classifier.json"  # weights from `tripwire guard-train`
                              # (default: the copy shipped with the package)
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tripwire.errors import InputError
from tripwire.reports.findings import Severity

ACTIONS = ("degrade", "throttle", "block")


@dataclass(frozen=True)
class EnforceConfig:
    """Which worst severity triggers which action, and how actions act."""

    degrade: Severity = Severity.MEDIUM
    throttle: Severity = Severity.HIGH
    block: Severity = Severity.CRITICAL
    degrade_output: str = "top1"
    round_decimals: int = 1
    throttle_interval_s: float = 10.0

    def action_for(self, worst: Severity | None) -> str | None:
        """The strongest action ``worst`` reaches, or ``None``."""
        if worst is None:
            return None
        for action in reversed(ACTIONS):
            if worst.rank >= getattr(self, action).rank:
                return action
        return None


@dataclass(frozen=True)
class QueryLogConfig:
    """What the query log keeps (see the module docstring)."""

    payloads: bool = True
    max_entry_bytes: int = 1 << 20
    max_bytes: int = 256 << 20
    retention_s: float = 7 * 24 * 3600.0


@dataclass(frozen=True)
class GuardConfig:
    """Everything ``guard.toml`` can set; the defaults serve a gateway without a file."""

    keys: dict[str, str] = field(default_factory=dict)  # API key -> client id
    max_body_bytes: int = 16 << 20
    max_batch: int = 4096
    enforce: EnforceConfig = field(default_factory=EnforceConfig)
    alert_log: str | None = None
    webhook: str | None = None
    query_log: QueryLogConfig = field(default_factory=QueryLogConfig)
    timeline_cap: int = 200
    correlate_interval_s: float = 5.0
    state_flush_s: float = 1.0
    classifier: str | None = None  # a stream classifier JSON; None: the shipped one


def _table(raw: dict[str, Any], name: str, path: str) -> dict[str, Any]:
    value = raw.get(name, {})
    if not isinstance(value, dict):
        raise InputError(f"[{name}] must be a table", path)
    return value


def _typed(table: dict[str, Any], key: str, kind: type, default: Any, where: str) -> Any:
    if key not in table:
        return default
    value = table[key]
    ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        raise InputError(f"{key} must be a {kind.__name__}, got {value!r}", where)
    return value


def _beside(config: str | Path, value: str | None) -> str | None:
    """A relative path in the config names a file beside the config, not in the cwd."""
    if value is None or Path(value).is_absolute():
        return value
    return str(Path(config).resolve().parent / value)


def load_config(path: str | Path | None) -> GuardConfig:
    """Read ``guard.toml`` (``None``: the defaults).

    Raises
    ------
    InputError
        A file that cannot be read or parsed, unknown tables or keys, wrong types,
        an API key used twice, a severity that does not exist.
    """
    if path is None:
        return GuardConfig()
    where = str(path)
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except OSError as exc:
        raise InputError(f"cannot read the config ({exc.strerror or exc})", where) from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"is not valid TOML ({exc})", where) from None
    known = {"keys", "limits", "enforce", "alerts", "query_log", "monitor"}
    unknown = set(raw) - known
    if unknown:
        raise InputError(
            f"unknown table(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(known))})",
            where,
        )
    keys: dict[str, str] = {}
    for client, key in _table(raw, "keys", where).items():
        if not isinstance(key, str) or not key or any(c in key for c in "\r\n "):
            raise InputError(f"the key of client {client!r} must be a non-empty token", where)
        if key in keys:
            raise InputError(f"clients {keys[key]!r} and {client!r} share one key", where)
        keys[key] = client
    limits = _table(raw, "limits", where)
    enf = _table(raw, "enforce", where)
    alerts = _table(raw, "alerts", where)
    qlog = _table(raw, "query_log", where)
    mon = _table(raw, "monitor", where)
    for name, table, allowed in (
        ("limits", limits, {"max_body_bytes", "max_batch"}),
        (
            "enforce",
            enf,
            {
                "degrade",
                "throttle",
                "block",
                "degrade_output",
                "round_decimals",
                "throttle_interval_s",
            },
        ),
        ("alerts", alerts, {"log", "webhook"}),
        ("query_log", qlog, {"payloads", "max_entry_bytes", "max_bytes", "retention_s"}),
        (
            "monitor",
            mon,
            {"timeline_cap", "correlate_interval_s", "state_flush_s", "classifier"},
        ),
    ):
        extra = set(table) - allowed
        if extra:
            raise InputError(f"unknown key(s) in [{name}]: {', '.join(sorted(extra))}", where)

    def severity(key: str, default: Severity) -> Severity:
        value = _typed(enf, key, str, str(default), where)
        try:
            return Severity.parse(value)
        except ValueError as exc:
            raise InputError(f"[enforce] {key}: {exc}", where) from None

    degrade_output = _typed(enf, "degrade_output", str, "top1", where)
    if degrade_output not in ("top1", "round"):
        raise InputError("[enforce] degrade_output must be 'top1' or 'round'", where)
    enforce = EnforceConfig(
        degrade=severity("degrade", Severity.MEDIUM),
        throttle=severity("throttle", Severity.HIGH),
        block=severity("block", Severity.CRITICAL),
        degrade_output=degrade_output,
        round_decimals=_typed(enf, "round_decimals", int, 1, where),
        throttle_interval_s=_typed(enf, "throttle_interval_s", float, 10.0, where),
    )
    webhook = _typed(alerts, "webhook", str, None, where)
    if webhook is not None and not webhook.startswith(("http://", "https://")):
        raise InputError("[alerts] webhook must be an http(s) URL", where)
    cfg = GuardConfig(
        keys=keys,
        max_body_bytes=_typed(limits, "max_body_bytes", int, 16 << 20, where),
        max_batch=_typed(limits, "max_batch", int, 4096, where),
        enforce=enforce,
        alert_log=_beside(path, _typed(alerts, "log", str, None, where)),
        webhook=webhook,
        query_log=QueryLogConfig(
            payloads=_typed(qlog, "payloads", bool, True, where),
            max_entry_bytes=_typed(qlog, "max_entry_bytes", int, 1 << 20, where),
            max_bytes=_typed(qlog, "max_bytes", int, 256 << 20, where),
            retention_s=_typed(qlog, "retention_s", float, 7 * 24 * 3600.0, where),
        ),
        timeline_cap=_typed(mon, "timeline_cap", int, 200, where),
        correlate_interval_s=_typed(mon, "correlate_interval_s", float, 5.0, where),
        state_flush_s=_typed(mon, "state_flush_s", float, 1.0, where),
        classifier=_beside(path, _typed(mon, "classifier", str, None, where)),
    )
    if cfg.max_body_bytes < 1024 or cfg.max_batch < 1 or cfg.timeline_cap < 1:
        raise InputError("max_body_bytes >= 1024, max_batch >= 1, timeline_cap >= 1", where)
    return cfg


__all__ = ["ACTIONS", "EnforceConfig", "GuardConfig", "QueryLogConfig", "load_config"]
