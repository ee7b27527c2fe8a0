"""The Open Inference Protocol v2 (REST) as the gateway speaks it: parse, validate, answer.

Pure functions on bytes and arrays; no HTTP here. A request body holds one input
tensor of any name, ``shape`` ``[N, ...]``, ``datatype`` ``FP32`` and ``data`` either
flat in row-major order or nested to the shape. Every way a body can be wrong raises
:class:`ProtocolError` carrying the 4xx status and a reason that goes back to the client
as ``{"error": "..."}`` and into the bad-request counter (``reason`` is a short fixed
label, safe as a metric label).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

#: Name of the output that carries class probabilities (the first output of a response).
PROBABILITY_OUTPUT = "probabilities"


class ProtocolError(Exception):
    """A request the gateway refuses, with its HTTP status and a metric label.

    Parameters
    ----------
    status
        The HTTP status (4xx for the client's faults, 502/503 for the upstream's).
    message
        The reason, for the client's ``{"error": ...}`` body and the log.
    reason
        A short fixed label for metrics (never holds user input).
    headers
        Extra response headers (``Retry-After`` for throttling).
    """

    def __init__(
        self,
        status: int,
        message: str,
        reason: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason
        self.headers = dict(headers or {})


@dataclass(frozen=True)
class InferRequest:
    """A validated inference request: the input as float32 ``(N, ...)`` and its names."""

    x: npt.NDArray[np.float32]
    input_name: str
    request_id: str | None


def parse_infer(
    body: bytes,
    input_shape: tuple[int, ...] | None,
    *,
    max_batch: int = 4096,
) -> InferRequest:
    """Parse and validate an OIP v2 ``infer`` body.

    Parameters
    ----------
    body
        The raw request body.
    input_shape
        The model's shape of one input (without the batch axis), or ``None`` to accept
        any shape (an upstream whose metadata gives none).
    max_batch
        The largest ``N`` accepted.

    Raises
    ------
    ProtocolError
        400 for malformed JSON, a missing or extra input, a wrong datatype, a shape that
        does not fit the model or the data, non-numeric or non-finite values.
    """
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ProtocolError(400, "the body is not valid JSON", "malformed_json") from None
    if not isinstance(payload, dict):
        raise ProtocolError(400, "the body must be a JSON object", "malformed_json")
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise ProtocolError(400, "'inputs' must be a list of exactly one tensor", "bad_inputs")
    tensor = inputs[0]
    name = tensor.get("name", "input")
    if not isinstance(name, str):
        raise ProtocolError(400, "the input's 'name' must be a string", "bad_inputs")
    datatype = tensor.get("datatype")
    if datatype != "FP32":
        raise ProtocolError(
            400, f"the input's datatype must be FP32, got {str(datatype)[:20]!r}", "bad_datatype"
        )
    shape = tensor.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) < 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape)
    ):
        raise ProtocolError(
            400, "the input's 'shape' must be [N, ...] of positive integers", "bad_shape"
        )
    if shape[0] > max_batch:
        raise ProtocolError(
            400, f"a request holds at most {max_batch} inputs, got {shape[0]}", "bad_shape"
        )
    if input_shape is not None and tuple(shape[1:]) != tuple(input_shape):
        raise ProtocolError(
            400,
            f"the model takes inputs of shape [N, {', '.join(map(str, input_shape))}], got {shape}",
            "bad_shape",
        )
    data = tensor.get("data")
    if not isinstance(data, list):
        raise ProtocolError(400, "the input's 'data' must be a list of numbers", "bad_data")
    try:
        arr = np.asarray(data)
    except (ValueError, TypeError, RecursionError):
        raise ProtocolError(
            400, "the input's 'data' is ragged or not numeric", "bad_data"
        ) from None
    # Strings, booleans and objects would be coerced silently by a float32 cast.
    if arr.dtype.kind not in "fi":
        raise ProtocolError(400, "the input's 'data' must hold numbers only", "bad_data")
    expected = math.prod(shape)
    if arr.size != expected or (arr.ndim > 1 and list(arr.shape) != shape):
        raise ProtocolError(
            400,
            f"the input's data holds {arr.size} values in shape {list(arr.shape)}, "
            f"the declared shape {shape} needs {expected}",
            "bad_shape",
        )
    x = np.ascontiguousarray(arr, dtype=np.float32).reshape(shape)
    if not np.all(np.isfinite(x)):
        raise ProtocolError(400, "the input contains NaN or infinite values", "bad_data")
    rid = payload.get("id")
    return InferRequest(x=x, input_name=name, request_id=rid if isinstance(rid, str) else None)


def infer_response(
    model_name: str,
    probs: npt.NDArray[np.float32],
    request_id: str | None = None,
    *,
    parameters: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The OIP v2 response: the first (only) output holds probabilities ``[N, C]`` FP32."""
    p = np.asarray(probs, dtype=np.float32)
    out: dict[str, Any] = {
        "model_name": model_name,
        "outputs": [
            {
                "name": PROBABILITY_OUTPUT,
                "shape": [int(p.shape[0]), int(p.shape[1])],
                "datatype": "FP32",
                "data": p.reshape(-1).tolist(),
            }
        ],
    }
    if request_id is not None:
        out["id"] = request_id
    if parameters:
        out["parameters"] = parameters
    return out


def model_metadata(
    model_name: str, platform: str, input_shape: tuple[int, ...] | None, n_classes: int | None
) -> dict[str, Any]:
    """The OIP v2 model metadata object (``-1`` marks a variable dimension)."""
    in_shape = [-1, *(input_shape or ())] if input_shape is not None else [-1]
    return {
        "name": model_name,
        "versions": ["1"],
        "platform": platform,
        "inputs": [{"name": "input", "datatype": "FP32", "shape": in_shape}],
        "outputs": [
            {
                "name": PROBABILITY_OUTPUT,
                "datatype": "FP32",
                "shape": [-1, n_classes if n_classes is not None else -1],
            }
        ],
    }


def error_body(message: str) -> bytes:
    """``{"error": message}`` as bytes."""
    return json.dumps({"error": message}).encode()


__all__ = [
    "PROBABILITY_OUTPUT",
    "InferRequest",
    "ProtocolError",
    "error_body",
    "infer_response",
    "model_metadata",
    "parse_infer",
]
