"""Follow a registry alias: serve the version it points to, swap on promotion or rollback.

``tripwire guard --registry PATH --alias NAME`` serves the model the alias names and polls
the registry; when the alias moves (``registry promote`` or ``registry rollback``), the
new file is hash-checked by :class:`~tripwire.response.registry.AliasWatcher`, loaded and
probed *before* it replaces the serving backend, in one attribute assignment, so
requests in flight finish on the old model and none sees a half-loaded one. A version
that cannot be served (another input shape or class count, a damaged file) is refused
and logged, and the old one keeps serving.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from tripwire.errors import InputError, TripwireError

log = logging.getLogger("tripwire.gateway.follow")


class AliasFollower:
    """Keep ``target.backend`` on the model a registry alias points to.

    Parameters
    ----------
    target
        The object serving (a :class:`~tripwire.gateway.Gateway`): its ``backend`` is
        replaced.
    registry, alias
        The registry file and the alias to follow.
    interval
        Seconds between polls.
    """

    def __init__(
        self, target: Any, registry: str | Path, alias: str, *, interval: float = 2.0
    ) -> None:
        from tripwire.response.registry import AliasWatcher

        self.target = target
        self.watcher = AliasWatcher(registry, alias)
        self.interval = interval
        self.serving_: Path | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def first(self) -> Path:
        """The alias's model file now (called once, before serving)."""
        path = self.watcher.poll()
        if path is None:  # pragma: no cover - the first poll always returns the file
            raise InputError("the alias points to nothing", self.watcher.alias)
        self.serving_ = path
        return path

    def input_shape(self) -> tuple[int, ...] | None:
        """The input shape the registry recorded (from the ``.meta.json``) for the version
        the alias pointed to at the last poll, if any: the served one after :meth:`first`,
        the candidate inside :meth:`poll_once`."""
        v = self.watcher.version_
        shape = None if v is None else v.meta.get("input_shape")
        if isinstance(shape, list) and shape and all(isinstance(s, int) and s > 0 for s in shape):
            return tuple(shape)
        return None

    def poll_once(self) -> bool:
        """Swap to the alias's new version if it moved; True when a swap happened."""
        from tripwire.gateway.backend import LocalBackend
        from tripwire.models.loading import load_model

        try:
            path = self.watcher.poll()
        except TripwireError as exc:
            log.error("registry poll failed, still serving %s: %s", self.serving_, exc)
            return False
        if path is None:
            return False
        old = self.target.backend
        try:
            shape = self.input_shape()
            if shape is not None and shape != tuple(old.input_shape):
                raise InputError(
                    f"takes inputs of shape {shape}, the served model {tuple(old.input_shape)}",
                    path,
                )
            backend = LocalBackend(load_model(path), tuple(old.input_shape))
            if backend.n_classes != old.n_classes:
                raise InputError(
                    f"predicts {backend.n_classes} classes, the served model {old.n_classes}",
                    path,
                )
        except TripwireError as exc:
            log.error("not serving the new version of '%s': %s", self.watcher.alias, exc)
            return False
        self.target.backend = backend
        log.info("alias '%s' moved: now serving %s", self.watcher.alias, path.name)
        self.serving_ = path
        return True

    def start(self) -> AliasFollower:
        """Poll in a daemon thread until :meth:`stop`."""

        def loop() -> None:
            while not self._stop.wait(self.interval):
                self.poll_once()

        self._thread = threading.Thread(target=loop, name="alias-follower", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
