"""The attack x detector benchmark: suites, matrix runner, metrics, outputs."""

from tripwire.bench.metrics import detection_metrics, summarise
from tripwire.bench.suites import SUITES, Suite, get_suite

__all__ = ["SUITES", "Suite", "detection_metrics", "get_suite", "summarise"]
