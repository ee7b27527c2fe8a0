"""The serving gateway (``tripwire guard``): an Open Inference Protocol v2 front for a
model that watches every client's query stream for extraction, raises alerts, acts on
them in ``enforce`` mode, and keeps the evidence.

- :mod:`~tripwire.gateway.protocol` OIP v2 parsing and responses (pure functions);
- :mod:`~tripwire.gateway.core` :class:`Gateway`, routing, identity, monitoring, actions,
  admin API, metrics;
- :mod:`~tripwire.gateway.server` the HTTP/1.1 server (standard library);
- :mod:`~tripwire.gateway.store` per-client state, alerts, timelines and the query log in
  SQLite or Redis;
- :mod:`~tripwire.gateway.backend` a local model file or an upstream OIP v2 server;
- :mod:`~tripwire.gateway.hooks` the run-time trigger check protocol;
- :mod:`~tripwire.gateway.config` ``guard.toml``.

The extraction detectors live in :mod:`tripwire.detectors.extraction`; the contract
between both sides is :mod:`tripwire.detectors.extraction.base`.
"""

from __future__ import annotations

from tripwire.gateway.backend import LocalBackend, Prediction, UpstreamBackend
from tripwire.gateway.config import GuardConfig, load_config
from tripwire.gateway.core import MODES, Gateway, Response
from tripwire.gateway.hooks import TriggerCheck
from tripwire.gateway.protocol import ProtocolError, parse_infer
from tripwire.gateway.server import GatewayServer
from tripwire.gateway.store import RedisStore, SQLiteStore, Store, open_store

__all__ = [
    "MODES",
    "Gateway",
    "GatewayServer",
    "GuardConfig",
    "LocalBackend",
    "Prediction",
    "ProtocolError",
    "RedisStore",
    "Response",
    "SQLiteStore",
    "Store",
    "TriggerCheck",
    "UpstreamBackend",
    "load_config",
    "open_store",
    "parse_infer",
]
