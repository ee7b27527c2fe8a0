"""The exception hierarchy and the exit codes every command shares.

Every error a user can cause derives from :class:`TripwireError` and carries the
path of the file at fault, so that the CLI can print one line naming the file and
the problem (exit 2) instead of a traceback.
"""

from __future__ import annotations

from pathlib import Path

#: Nothing at or above ``--fail-on`` was found.
EXIT_OK = 0
#: Findings at or above ``--fail-on`` (or, for ``verify``, differences).
EXIT_FINDINGS = 1
#: Bad input or usage: a file that cannot be read, a flag that does not fit.
EXIT_USAGE = 2
#: A bug in tripwire itself.
EXIT_INTERNAL = 3


class TripwireError(Exception):
    """Base class of every error a user can cause; the CLI maps it to exit 2.

    Parameters
    ----------
    message
        What is wrong, phrased for a person, without the path.
    path
        The file or argument at fault, if any; it is prefixed to the message.
    """

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.message = message
        self.path = None if path is None else str(path)
        super().__init__(self.__str__())

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class InputError(TripwireError, ValueError):
    """A data, model or report file that cannot be used as it is."""


class MissingSplitError(InputError):
    """The data source has no such split (for example no ``x_test`` in an npz)."""


class UsageError(TripwireError):
    """Flags or arguments that do not fit together."""


class MissingDependencyError(TripwireError, ImportError):
    """An optional dependency is needed for this feature but not installed."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"this feature needs the optional package '{package}': "
            f"pip install -c constraints.txt 'tripwire-ml[{extra}]'"
        )


class NotFittedError(TripwireError, AttributeError):
    """A detector was asked for a verdict before it was fitted or calibrated."""
