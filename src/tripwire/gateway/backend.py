"""What answers the queries: a local model file, or an upstream OIP v2 server.

Both backends give the gateway the same thing per request, a :class:`Prediction`:
class probabilities (what the client gets), and where available logits and
penultimate features (what the run-time trigger check reads). A local model gives all
three; an upstream server gives probabilities only (the logits are their log, the
features ``None``).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from tripwire.attacks.oip_client import OIPClient
from tripwire.errors import InputError
from tripwire.gateway.protocol import ProtocolError
from tripwire.models.loading import Model


@dataclass(frozen=True)
class Prediction:
    """A backend's answer for one batch."""

    probs: npt.NDArray[np.float32]
    logits: npt.NDArray[np.float32]
    features: npt.NDArray[np.float32] | None


class Backend(Protocol):
    """The model behind the gateway."""

    platform: str
    input_shape: tuple[int, ...] | None
    n_classes: int | None

    def ready(self) -> bool: ...

    def predict(self, x: npt.NDArray[np.float32], *, want_features: bool = False) -> Prediction: ...


def _softmax(z: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return np.asarray(e / e.sum(axis=1, keepdims=True), dtype=np.float32)


class LocalBackend:
    """Serve a model loaded with :func:`tripwire.models.loading.load_model`.

    Parameters
    ----------
    model
        The loaded model.
    input_shape
        The shape of one input; checked with one probe inference.

    Raises
    ------
    InputError
        The model does not accept ``input_shape``.
    """

    platform = "pytorch_torchscript"

    def __init__(self, model: Model, input_shape: tuple[int, ...]) -> None:
        self.model = model
        self.input_shape: tuple[int, ...] | None = tuple(input_shape)
        self.n_classes: int | None = model.check_input(tuple(input_shape))
        if model.kind == "onnx":
            self.platform = "onnxruntime_onnx"

    def ready(self) -> bool:
        return True

    def predict(self, x: npt.NDArray[np.float32], *, want_features: bool = False) -> Prediction:
        if want_features and self.model.has_features:
            logits, feats = self.model.logits_and_features(x, batch_size=len(x))
            return Prediction(_softmax(logits), logits, feats)
        logits = self.model.logits(x, batch_size=len(x))
        return Prediction(_softmax(logits), logits, None)


class UpstreamBackend:
    """Forward queries to another OIP v2 server and read its probabilities.

    The upstream's metadata gives the input shape and the class count; until it
    answers, the gateway is live but not ready (a background thread keeps asking).

    Parameters
    ----------
    url
        The upstream's base URL.
    model_name
        The model's name upstream.
    timeout
        Seconds per upstream call.
    """

    platform = "upstream"

    def __init__(self, url: str, model_name: str, *, timeout: float = 30.0) -> None:
        self.url = url
        self.model_name = model_name
        self.timeout = timeout
        OIPClient(url, model_name, timeout=timeout)  # validates the URL now
        self.input_shape: tuple[int, ...] | None = None
        self.n_classes: int | None = None
        self._ready = threading.Event()
        self._local = threading.local()

    def _client(self) -> OIPClient:
        client = getattr(self._local, "client", None)
        if client is None:
            client = OIPClient(self.url, self.model_name, timeout=self.timeout)
            self._local.client = client
        return client

    def fetch_metadata(self) -> bool:
        """Ask the upstream for the model's shapes once; ``True`` when it answered."""
        try:
            meta = self._client().metadata()
        except InputError:
            return False
        try:
            shape = meta["inputs"][0]["shape"]
            if len(shape) >= 2 and all(isinstance(s, int) and s > 0 for s in shape[1:]):
                self.input_shape = tuple(int(s) for s in shape[1:])
            out = meta["outputs"][0]["shape"]
            if isinstance(out[-1], int) and out[-1] > 0:
                self.n_classes = int(out[-1])
        except (KeyError, IndexError, TypeError):
            pass  # an upstream with sparse metadata: shapes are then checked per request
        self._ready.set()
        return True

    def wait_ready(self, deadline_s: float = 60.0, interval: float = 0.5) -> bool:
        """Poll the upstream's metadata until it answers or ``deadline_s`` passes."""
        end = time.monotonic() + deadline_s
        while not self.fetch_metadata():
            if time.monotonic() >= end:
                return False
            time.sleep(interval)
        return True

    def ready(self) -> bool:
        return self._ready.is_set()

    def predict(self, x: npt.NDArray[np.float32], *, want_features: bool = False) -> Prediction:
        try:
            probs = self._client().infer(x)
        except InputError as exc:
            raise ProtocolError(502, f"the upstream failed: {exc.message}", "upstream") from None
        if self.n_classes is not None and probs.shape[1] != self.n_classes:
            raise ProtocolError(502, "the upstream returned an unexpected class count", "upstream")
        logits = np.log(np.clip(probs, 1e-12, None)).astype(np.float32)
        return Prediction(probs, logits, None)


def model_input_shape(path: str | Path, fallback: tuple[int, ...] | None) -> tuple[int, ...]:
    """One input's shape from ``MODEL.meta.json`` (written by ``tripwire train``), else
    ``fallback`` (the reference data's shape).

    Raises
    ------
    InputError
        Neither source gives a shape.
    """
    from tripwire.models.train import metadata_path

    meta = metadata_path(Path(path))
    if meta.is_file():
        try:
            shape = json.loads(meta.read_text()).get("input_shape")
        except (OSError, json.JSONDecodeError):
            shape = None
        if isinstance(shape, list) and shape and all(isinstance(s, int) and s > 0 for s in shape):
            return tuple(shape)
    if fallback is not None:
        return fallback
    raise InputError(
        "cannot tell the model's input shape: give --input-shape or --reference, or keep "
        "the MODEL.meta.json that tripwire train writes beside it",
        path,
    )


__all__ = ["Backend", "LocalBackend", "Prediction", "UpstreamBackend", "model_input_shape"]
