"""Prometheus text exposition of the gateway's counters, without client ids in labels.

Labels only ever hold fixed vocabularies (endpoint, status code, a bad-request reason,
a detector name, an action, a severity), so the number of series stays bounded however
many clients connect.
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict

#: Upper bounds (seconds) of the request latency histogram.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


#: A series' labels as sorted (name, value) pairs.
LabelKey = tuple[tuple[str, str], ...]


def _labels(pairs: tuple[tuple[str, str], ...]) -> str:
    if not pairs:
        return ""
    inner = ",".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in pairs
    )
    return "{" + inner + "}"


class Metrics:
    """Thread-safe counters, gauges and one latency histogram."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, dict[LabelKey, float]] = defaultdict(dict)
        self._help: dict[str, tuple[str, str]] = {}
        self._buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self._lat_sum = 0.0
        self._lat_count = 0

    def inc(self, name: str, help_text: str, value: float = 1.0, **labels: str) -> None:
        """Add ``value`` to counter ``name`` with ``labels``."""
        key = tuple(sorted(labels.items()))
        with self._lock:
            self._help.setdefault(name, ("counter", help_text))
            series = self._counters[name]
            series[key] = series.get(key, 0.0) + value

    def observe_latency(self, seconds: float) -> None:
        """Count one inference request's latency in the histogram."""
        i = bisect.bisect_left(LATENCY_BUCKETS, seconds)
        with self._lock:
            self._buckets[i] += 1
            self._lat_sum += seconds
            self._lat_count += 1

    def value(self, name: str, **labels: str) -> float:
        """The current value of a counter series (0 when never incremented)."""
        with self._lock:
            return self._counters.get(name, {}).get(tuple(sorted(labels.items())), 0.0)

    def counters(self) -> dict[str, tuple[str, dict[LabelKey, float]]]:
        """A copy of every counter: name -> (help, {labels: value})."""
        with self._lock:
            return {n: (self._help[n][1], dict(s)) for n, s in self._counters.items()}

    def render(
        self,
        gauges: dict[str, tuple[str, dict[LabelKey, float]]],
        extra: dict[str, tuple[str, dict[LabelKey, float]]] | None = None,
    ) -> str:
        """The exposition text; ``gauges`` maps name -> (help, {labels: value}); ``extra``
        counters of another process (the monitor process's) are added to these."""
        lines: list[str] = []
        with self._lock:
            merged = {n: (self._help[n][1], dict(s)) for n, s in self._counters.items()}
            for name, (help_text, series) in (extra or {}).items():
                mine = merged.setdefault(name, (help_text, {}))[1]
                for key, v in series.items():
                    mine[key] = mine.get(key, 0.0) + v
            for name in sorted(merged):
                help_text, series = merged[name]
                lines.append(f"# HELP {name} {help_text}")
                lines.append(f"# TYPE {name} counter")
                for key, v in sorted(series.items()):
                    lines.append(f"{name}{_labels(key)} {v:g}")
            name = "tripwire_request_duration_seconds"
            lines.append(f"# HELP {name} Inference request latency inside the gateway.")
            lines.append(f"# TYPE {name} histogram")
            cum = 0
            for bound, n in zip(LATENCY_BUCKETS, self._buckets, strict=False):
                cum += n
                lines.append(f'{name}_bucket{{le="{bound:g}"}} {cum}')
            lines.append(f'{name}_bucket{{le="+Inf"}} {self._lat_count}')
            lines.append(f"{name}_sum {self._lat_sum:.6f}")
            lines.append(f"{name}_count {self._lat_count}")
        for name in sorted(gauges):
            help_text, series = gauges[name]
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} gauge")
            for key, v in sorted(series.items()):
                lines.append(f"{name}{_labels(key)} {v:g}")
        return "\n".join(lines) + "\n"


__all__ = ["LATENCY_BUCKETS", "Metrics"]
