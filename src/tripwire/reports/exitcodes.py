"""The exit code a command returns for its findings."""

from __future__ import annotations

from collections.abc import Iterable

from tripwire.errors import EXIT_FINDINGS, EXIT_OK
from tripwire.reports.findings import Finding, Severity

__all__ = ["exit_code_for"]


def exit_code_for(findings: Iterable[Finding], fail_on: Severity | str = Severity.HIGH) -> int:
    """Return the process exit code for a set of findings.

    Parameters
    ----------
    findings
        The findings of a run.
    fail_on
        The least severity that fails the run (``--fail-on``); a :class:`Severity`
        or its name.

    Returns
    -------
    int
        :data:`~tripwire.errors.EXIT_FINDINGS` if any finding is at or above
        ``fail_on``, else :data:`~tripwire.errors.EXIT_OK`.

    Raises
    ------
    ValueError
        If ``fail_on`` is not a severity name.
    """
    threshold = Severity.parse(fail_on)
    failed = any(f.severity.rank >= threshold.rank for f in findings)
    return EXIT_FINDINGS if failed else EXIT_OK
