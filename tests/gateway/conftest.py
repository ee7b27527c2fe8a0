"""Fixtures: a bundled-digits model behind a gateway on a free port, started in a thread."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.gateway.fakes import OODRateMonitor
from tripwire.io import Dataset, load_dataset

pytest.importorskip("torch")


@pytest.fixture(scope="session")
def digits() -> tuple[Dataset, Dataset]:
    return load_dataset("bundled:digits"), load_dataset("bundled:digits", split="test")


@pytest.fixture(scope="session")
def local_model(digits_model: Path) -> Any:
    import torch

    torch.set_num_threads(1)
    from tripwire.models.loading import load_model

    return load_model(digits_model, device="cpu")


@pytest.fixture(scope="session")
def reference(digits: tuple[Dataset, Dataset], local_model: Any) -> Any:
    from tripwire.detectors.extraction.base import Reference

    train, _ = digits
    x = train.model_input(np.arange(500))
    return Reference(
        x=x, probs=local_model.probabilities(x), n_classes=10, input_shape=train.input_shape
    )


@pytest.fixture(params=[False, True], ids=["in-process", "monitor-process"])
def offload(request: pytest.FixtureRequest) -> bool:
    """Run a test with the monitor in the serving process, then in a process of its own
    (``Gateway(monitor_process=True)``): both must behave alike."""
    return bool(request.param)


@pytest.fixture
def start_gateway(tmp_path: Path, local_model: Any, reference: Any) -> Iterator[Callable[..., Any]]:
    """``start_gateway(**options)`` -> a started GatewayServer; all stop at teardown."""
    from tripwire.gateway import Gateway, GatewayServer, GuardConfig, LocalBackend, SQLiteStore

    servers: list[Any] = []

    def start(
        *,
        plain: bool = False,
        store: Any = None,
        db: Path | None = None,
        backend: Any = None,
        monitor: Any = None,
        **options: Any,
    ) -> Any:
        be = backend or LocalBackend(local_model, (1, 8, 8))
        if plain:
            gw = Gateway(be, "digits")
        else:
            st = store or SQLiteStore(db or tmp_path / f"store{len(servers)}.db")
            mon = monitor or OODRateMonitor().fit(reference)
            options.setdefault("admin_token", "admin-secret")
            # Correlation runs when a test calls it, not on a timer the test cannot see.
            options.setdefault("config", GuardConfig(correlate_interval_s=0))
            gw = Gateway(be, "digits", monitor=mon, store=st, **options)
        srv = GatewayServer(gw, "127.0.0.1", 0).start()
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.stop()
        if srv.gateway.store is not None:
            srv.gateway.store.close()
