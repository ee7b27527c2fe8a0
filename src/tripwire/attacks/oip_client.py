"""A minimal Open Inference Protocol (KServe v2) REST client, standard library only.

Extraction attacks and benign workloads can run against a live endpoint (a model server
or the tripwire gateway in front of one) through :class:`OIPClient`. Only what the
attacks need is implemented: ``infer`` on one FP32 tensor, model metadata and
readiness. See the protocol at https://kserve.github.io/website/ (Open Inference
Protocol, REST).

Every failure (an HTTP error status, a refused connection, a timeout, a malformed or
oversized response) raises :class:`~tripwire.errors.InputError` naming the URL, so that
the CLI prints one line instead of a traceback.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import numpy as np
import numpy.typing as npt

from tripwire.errors import InputError

#: Largest response body read, in bytes; a bigger one is refused rather than buffered.
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
#: Output names taken as probabilities, then as logits, in this order of preference.
PROBABILITY_OUTPUTS = ("probabilities", "probs", "probability", "output_probabilities")
LOGIT_OUTPUTS = ("logits", "output_logits")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse redirects: an inference POST silently turned into a GET elsewhere is a bug."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        return None


class OIPClient:
    """Call one model on an Open Inference Protocol v2 REST endpoint.

    Parameters
    ----------
    url
        Base URL of the server, ``http://`` or ``https://`` (``/v2/...`` is appended).
    model_name
        The model's name on the server.
    api_key
        Sent as ``Authorization: Bearer KEY`` when given.
    client_id
        Sent as ``X-Client-Id`` when given (gateways attribute queries by it).
    timeout
        Seconds to wait for each response.
    input_name
        The name of the input tensor in requests.
    max_response_bytes
        Responses larger than this are refused.

    Raises
    ------
    InputError
        A URL that is not http(s) or has no host, an empty model name, a timeout that
        is not positive.
    """

    def __init__(
        self,
        url: str,
        model_name: str,
        *,
        api_key: str | None = None,
        client_id: str | None = None,
        timeout: float = 30,
        input_name: str = "input",
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise InputError("the endpoint must be an http:// or https:// URL with a host", url)
        if not model_name:
            raise InputError("the model name must not be empty", url)
        if timeout <= 0:
            raise InputError(f"the timeout must be positive, got {timeout}", url)
        for name, value in (("api key", api_key), ("client id", client_id)):
            # A newline in a header value would let a caller inject headers.
            if value is not None and (not value or any(ch in value for ch in "\r\n")):
                raise InputError(f"the {name} must be a non-empty single line", url)
        self.url = url.rstrip("/")
        self.model_name = model_name
        self.api_key = api_key
        self.client_id = client_id
        self.timeout = float(timeout)
        self.input_name = input_name
        self.max_response_bytes = int(max_response_bytes)
        self._model_path = f"/v2/models/{urllib.parse.quote(model_name, safe='')}"
        self._opener = urllib.request.build_opener(_NoRedirect())

    def __repr__(self) -> str:  # the API key stays out of logs
        return f"OIPClient({self.url!r}, {self.model_name!r}, client_id={self.client_id!r})"

    # -- protocol calls -----------------------------------------------------------------
    def infer(self, x: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Probabilities ``(N, C)`` for a batch ``x`` (float32 NCHW in [0, 1], or ``(N, D)``).

        An output named like probabilities is preferred; an output named ``logits`` is
        turned into probabilities with a softmax; otherwise the first output must hold
        probabilities (non-negative rows summing to 1).

        Raises
        ------
        InputError
            A batch that is not at least 2-D or not finite, or any failure of the call.
        """
        arr = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
        if arr.ndim < 2 or arr.shape[0] == 0:
            raise InputError(f"a batch must be (N, ...) with N >= 1, got {arr.shape}", self.url)
        if not np.all(np.isfinite(arr)):
            raise InputError("the batch contains NaN or infinite values", self.url)
        reply = self._call("POST", f"{self._model_path}/infer", infer_body(arr, self.input_name))
        return self._probabilities(reply, int(arr.shape[0]))

    def metadata(self) -> dict[str, Any]:
        """The model's metadata object (name, versions, inputs, outputs)."""
        reply = self._call("GET", self._model_path, None)
        if not isinstance(reply, dict):
            raise InputError("model metadata is not a JSON object", self._endpoint(""))
        return reply

    def ready(self) -> bool:
        """Whether the server says the model is ready (``False`` on an HTTP error status).

        Raises
        ------
        InputError
            The server cannot be reached at all.
        """
        try:
            self._call("GET", f"{self._model_path}/ready", None, want_json=False)
        except _HTTPStatusError:
            return False
        return True

    # -- plumbing -----------------------------------------------------------------------
    def _endpoint(self, suffix: str) -> str:
        return f"{self.url}{self._model_path}{suffix}"

    def _call(
        self, method: str, path: str, body: dict[str, Any] | None, *, want_json: bool = True
    ) -> Any:
        target = f"{self.url}{path}"
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        if self.api_key is not None:
            headers["Authorization"] = f"Bearer {self.api_key}"
        if self.client_id is not None:
            headers["X-Client-Id"] = self.client_id
        # The scheme was checked to be http(s) in __init__, which is what S310 guards.
        req = urllib.request.Request(target, data=data, headers=headers, method=method)  # noqa: S310
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                raw = resp.read(self.max_response_bytes + 1)
        except urllib.error.HTTPError as exc:
            detail = _error_detail(exc, self.max_response_bytes)
            raise _HTTPStatusError(
                f"the server answered HTTP {exc.code}{f': {detail}' if detail else ''}", target
            ) from None
        except urllib.error.URLError as exc:
            raise InputError(f"cannot reach the server ({exc.reason})", target) from None
        except TimeoutError:
            raise InputError(f"no answer within {self.timeout:g} s", target) from None
        except OSError as exc:
            raise InputError(f"connection failed ({exc})", target) from None
        if len(raw) > self.max_response_bytes:
            raise InputError(f"the response is larger than {self.max_response_bytes} bytes", target)
        if not want_json:
            return None
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise InputError("the response is not valid JSON", target) from None

    def _probabilities(self, reply: Any, n: int) -> npt.NDArray[np.float32]:
        where = self._endpoint("/infer")
        outputs = reply.get("outputs") if isinstance(reply, dict) else None
        if not isinstance(outputs, list) or not outputs:
            raise InputError("the response has no 'outputs' list", where)
        by_name = {o.get("name"): o for o in outputs if isinstance(o, dict)}
        chosen: Any = None
        is_logits = False
        for name in PROBABILITY_OUTPUTS:
            if name in by_name:
                chosen = by_name[name]
                break
        else:
            for name in LOGIT_OUTPUTS:
                if name in by_name:
                    chosen, is_logits = by_name[name], True
                    break
            else:
                chosen = outputs[0]
        if not isinstance(chosen, dict):
            raise InputError("an output is not a JSON object", where)
        shape, data = chosen.get("shape"), chosen.get("data")
        if (
            not isinstance(shape, list)
            or len(shape) != 2
            or not all(isinstance(s, int) for s in shape)
            or shape[0] != n
            or shape[1] < 1
        ):
            raise InputError(f"expected an output of shape [{n}, C], got {shape!r}", where)
        if not isinstance(data, list) or len(data) != shape[0] * shape[1]:
            raise InputError("the output's data does not match its shape", where)
        try:
            out = np.asarray(data, dtype=np.float64).reshape(shape)
        except (TypeError, ValueError):
            raise InputError("the output's data is not a list of numbers", where) from None
        if not np.all(np.isfinite(out)):
            raise InputError("the output contains NaN or infinite values", where)
        if is_logits:
            z = np.exp(out - out.max(axis=1, keepdims=True))
            out = z / z.sum(axis=1, keepdims=True)
        elif np.any(out < -1e-6) or not np.allclose(out.sum(axis=1), 1.0, atol=1e-3):
            raise InputError(
                "the output is not probabilities (rows must be non-negative and sum to 1); "
                "name it 'logits' if the server returns logits",
                where,
            )
        return np.asarray(out, dtype=np.float32)


class _HTTPStatusError(InputError):
    """The server answered with an error status (kept apart so ``ready`` can tell)."""


def infer_body(x: npt.NDArray[np.float32], input_name: str = "input") -> dict[str, Any]:
    """The OIP v2 infer request for a float32 batch ``x``: one FP32 input, data flat."""
    return {
        "inputs": [
            {
                "name": input_name,
                "shape": list(x.shape),
                "datatype": "FP32",
                "data": np.asarray(x, dtype=np.float32).reshape(-1).tolist(),
            }
        ]
    }


def _error_detail(exc: urllib.error.HTTPError, limit: int) -> str:
    """The ``error`` field of an OIP error body, else a short piece of the body."""
    try:
        raw = exc.read(min(limit, 65536))
    except OSError:
        return ""
    finally:
        exc.close()
    try:
        payload = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return raw[:200].decode("utf-8", "replace").strip()
    if isinstance(payload, dict) and "error" in payload:
        return str(payload["error"])[:200]
    return ""


__all__ = ["MAX_RESPONSE_BYTES", "OIPClient"]
