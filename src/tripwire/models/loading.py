"""Load any model that follows the model contract, without ever unpickling untrusted code.

Accepted, decided from the file's bytes (not its name):

- a TorchScript archive (``torch.jit.save``): ``forward(x)`` returns logits; optional
  ``features(x)`` and ``forward_features(x)``;
- a state dict for a built-in architecture (``--arch``): a safetensors file, or a
  ``torch.save`` zip archive read with ``torch.load(weights_only=True)``, which refuses
  any object that is not a tensor or a plain container;
- an ONNX graph through onnxruntime, for black-box use (logits only).

A bare pickle (what ``torch.save`` wrote before PyTorch 1.6, or anything posing as a
model) is refused before any byte of it is interpreted.
"""

from __future__ import annotations

import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from tripwire.errors import InputError, MissingDependencyError
from tripwire.progress import progress_iter

ModelKind = Literal["torchscript", "state_dict", "onnx"]

_PICKLE_PROTOCOL_BYTE = 0x80


def sniff_model_file(path: str | Path) -> str:
    """Classify a model file by content: torchscript, torch-zip, safetensors, onnx, pickle.

    Raises
    ------
    InputError
        Missing, empty or unrecognised files.
    """
    p = Path(path)
    if not p.exists():
        raise InputError("no such file", p)
    if p.is_dir():
        raise InputError("is a directory, not a model file", p)
    with open(p, "rb") as fh:
        head = fh.read(16)
    if not head:
        raise InputError("is empty, not a model file", p)
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(p) as zf:
                names = zf.namelist()
        except zipfile.BadZipFile as exc:
            raise InputError(f"is a damaged zip archive ({exc})", p) from None
        if any("/code/" in n for n in names):
            return "torchscript"
        if any(n.endswith("data.pkl") for n in names):
            return "torch-zip"
        raise InputError("is a zip archive but not a TorchScript or PyTorch archive", p)
    if head[0] == _PICKLE_PROTOCOL_BYTE:
        return "pickle"
    if len(head) >= 9:
        (header_len,) = struct.unpack("<Q", head[:8])
        if head[8:9] == b"{" and 0 < header_len < 100_000_000:
            return "safetensors"
    if p.suffix.lower() == ".onnx":
        return "onnx"
    raise InputError(
        "is not a TorchScript archive (nor a safetensors/PyTorch state dict or ONNX model)", p
    )


@dataclass
class Model:
    """A loaded model behind one NumPy interface; framework objects stay inside.

    Use :func:`load_model` to make one. Inputs are float32 NCHW in [0, 1] (or ``(N, D)``).
    """

    path: str
    kind: ModelKind
    has_features: bool
    device: str
    _module: Any = field(repr=False)
    _session: Any = field(default=None, repr=False)
    _has_forward_features: bool = False
    num_classes: int | None = None

    # -- inference ---------------------------------------------------------------------
    def logits(
        self, x: npt.ArrayLike, *, batch_size: int = 256, show_progress: bool = False
    ) -> npt.NDArray[np.float32]:
        """Logits ``(N, C)`` for inputs ``x``, in batches."""
        out, _ = self._run(x, batch_size, want="logits", show_progress=show_progress)
        return out

    def probabilities(
        self, x: npt.ArrayLike, *, batch_size: int = 256, show_progress: bool = False
    ) -> npt.NDArray[np.float32]:
        """Softmax probabilities ``(N, C)``."""
        z = self.logits(x, batch_size=batch_size, show_progress=show_progress)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return np.asarray(e / e.sum(axis=1, keepdims=True), dtype=np.float32)

    def features(
        self, x: npt.ArrayLike, *, batch_size: int = 256, show_progress: bool = False
    ) -> npt.NDArray[np.float32]:
        """Penultimate activations ``(N, F)``; needs a model that exports ``features``."""
        if not self.has_features:
            raise InputError("the model exports no features(x) method", self.path)
        _, feats = self._run(x, batch_size, want="features", show_progress=show_progress)
        if feats is None:  # pragma: no cover - _run always returns features here
            raise RuntimeError("feature extraction returned nothing")
        return feats

    def logits_and_features(
        self, x: npt.ArrayLike, *, batch_size: int = 256, show_progress: bool = False
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Logits and features from one pass where the model exports ``forward_features``."""
        if not self.has_features:
            raise InputError("the model exports no features(x) method", self.path)
        logits, feats = self._run(x, batch_size, want="both", show_progress=show_progress)
        if feats is None:  # pragma: no cover - _run always returns features here
            raise RuntimeError("feature extraction returned nothing")
        return logits, feats

    def _run(
        self, x: npt.ArrayLike, batch_size: int, *, want: str, show_progress: bool
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32] | None]:
        arr = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
        starts = range(0, arr.shape[0], batch_size)
        logits: list[np.ndarray] = []
        feats: list[np.ndarray] = []
        if self.kind == "onnx":
            name = self._session.get_inputs()[0].name
            for s in progress_iter(starts, "inference", enabled=show_progress):
                logits.append(self._session.run(None, {name: arr[s : s + batch_size]})[0])
            return np.concatenate(logits).astype(np.float32), None
        import torch

        mod = self._module
        with torch.inference_mode():
            for s in progress_iter(starts, "inference", enabled=show_progress):
                xb = torch.from_numpy(arr[s : s + batch_size]).to(self.device)
                if want == "logits":
                    logits.append(mod(xb).float().cpu().numpy())
                elif want == "features" and not self._has_forward_features:
                    feats.append(mod.features(xb).float().cpu().numpy())
                elif self._has_forward_features:
                    z, f = mod.forward_features(xb)
                    logits.append(z.float().cpu().numpy())
                    feats.append(f.float().cpu().numpy())
                else:
                    logits.append(mod(xb).float().cpu().numpy())
                    feats.append(mod.features(xb).float().cpu().numpy())
        lz = np.concatenate(logits) if logits else np.empty((0, 0), np.float32)
        fz = np.concatenate(feats).reshape(arr.shape[0], -1) if feats else None
        return lz.astype(np.float32), fz

    # -- validation --------------------------------------------------------------------
    def check_input(self, input_shape: tuple[int, ...], n_labels: int | None = None) -> int:
        """Run one zero input of ``input_shape``; return the number of outputs.

        Raises
        ------
        InputError
            The model rejects the shape, returns something other than ``(1, C)`` logits,
            or has fewer outputs than the data has classes.
        """
        probe = np.zeros((1, *input_shape), dtype=np.float32)
        try:
            out = self.logits(probe)
        except InputError:
            raise
        except Exception as exc:
            first = str(exc).strip().splitlines()
            reason = first[-1] if first else exc.__class__.__name__
            raise InputError(
                f"the model does not accept inputs of shape {tuple(probe.shape)}: {reason[:200]}",
                self.path,
            ) from None
        if out.ndim != 2 or out.shape[0] != 1:
            raise InputError(
                f"the model returned shape {tuple(out.shape)}, expected logits (1, C)", self.path
            )
        c = int(out.shape[1])
        if n_labels is not None and n_labels > c:
            raise InputError(
                f"the model has {c} outputs but the data has {n_labels} classes", self.path
            )
        self.num_classes = c
        return c


def default_device() -> str:
    """``cuda`` when a GPU is present, else ``cpu``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(
    path: str | Path,
    *,
    arch: str | None = None,
    input_shape: tuple[int, ...] | None = None,
    num_classes: int | None = None,
    device: str | None = None,
) -> Model:
    """Load a model file safely (see the module docstring for what is accepted).

    Parameters
    ----------
    path
        The model file.
    arch
        A built-in architecture name, needed for state dicts (and only for them).
    input_shape
        ``(C, H, W)`` or ``(D,)`` of one input, needed to rebuild a state-dict model.
    num_classes
        Number of outputs for a state-dict model; read from the weights when omitted.
    device
        ``cpu``/``cuda``; by default CUDA when present.

    Raises
    ------
    InputError
        A pickle posing as a model, a file that is no model, weights that do not fit.
    """
    p = str(path)
    kind = sniff_model_file(p)
    if kind == "pickle":
        raise InputError(
            "is a Python pickle, not a TorchScript archive; tripwire never unpickles model "
            "files (export with torch.jit.script, or save a state dict as safetensors and "
            "pass --arch)",
            p,
        )
    if kind == "onnx":
        return _load_onnx(p)
    try:
        import torch
    except ImportError:
        raise MissingDependencyError("torch", "torch") from None
    dev = device or default_device()
    if kind == "torchscript":
        if arch is not None and arch != "auto":
            raise InputError("is a TorchScript archive: --arch applies to state dicts only", p)
        try:
            module = torch.jit.load(p, map_location=dev)  # type: ignore[no-untyped-call]
        except Exception as exc:
            raise InputError(f"cannot load TorchScript archive ({_first_line(exc)})", p) from None
        module.eval()
        methods = {m for m in ("features", "forward_features") if hasattr(module, m)}
        return Model(
            path=p,
            kind="torchscript",
            has_features="features" in methods or "forward_features" in methods,
            device=dev,
            _module=module,
            _has_forward_features="forward_features" in methods,
        )
    # State dicts: safetensors or torch.save zip, both without arbitrary unpickling.
    if arch is None:
        raise InputError(
            "holds weights only (a state dict): pass --arch with the architecture name", p
        )
    state = _read_state_dict(p, kind)
    return _build_from_state(p, state, arch, input_shape, num_classes, dev)


def model_from_module(module: Any, name: str = "in-memory model", device: str = "cpu") -> Model:
    """A :class:`Model` around a torch module already in memory (a proxy trained here, a
    benchmark's cached model): the module's ``features``/``forward_features`` are used
    where it has them."""
    module.eval()
    methods = {m for m in ("features", "forward_features") if hasattr(module, m)}
    return Model(
        path=name,
        kind="torchscript",
        has_features=bool(methods),
        device=device,
        _module=module,
        _has_forward_features="forward_features" in methods,
    )


def _first_line(exc: BaseException) -> str:
    lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
    return (lines[0] if lines else exc.__class__.__name__)[:200]


def _read_state_dict(p: str, kind: str) -> dict[str, Any]:
    import torch

    try:
        if kind == "safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(p)
        else:
            state = torch.load(p, map_location="cpu", weights_only=True)
    except ImportError:
        raise MissingDependencyError("safetensors", "torch") from None
    except Exception as exc:
        raise InputError(f"cannot read state dict safely ({_first_line(exc)})", p) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError("is not a state dict of tensors", p)
    return state


def _build_from_state(
    p: str,
    state: dict[str, Any],
    arch: str,
    input_shape: tuple[int, ...] | None,
    num_classes: int | None,
    dev: str,
) -> Model:
    from tripwire.models.arch import auto_arch, build_model

    head_keys = sorted(k for k in state if k.startswith("head.") and k.endswith("weight"))
    n_out = num_classes or (int(state[head_keys[-1]].shape[0]) if head_keys else None)
    if n_out is None:
        raise InputError("cannot tell the number of classes from the weights", p)
    if input_shape is None:
        if arch == "mlp" and "body.0.weight" in state:
            input_shape = (int(state["body.0.weight"].shape[1]),)
        else:
            raise InputError("rebuilding a state dict needs the input shape (give --data)", p)
    name = auto_arch(input_shape) if arch == "auto" else arch
    try:
        module = build_model(name, input_shape, n_out)
        module.load_state_dict(state, strict=True)
    except (ValueError, RuntimeError) as exc:
        raise InputError(
            f"weights do not fit architecture '{name}' ({_first_line(exc)})", p
        ) from None
    module.to(dev).eval()
    return Model(
        path=p,
        kind="state_dict",
        has_features=True,
        device=dev,
        _module=module,
        _has_forward_features=True,
        num_classes=n_out,
    )


def _load_onnx(p: str) -> Model:
    try:
        import onnxruntime as ort
    except ImportError:
        raise MissingDependencyError("onnxruntime", "onnx") from None
    try:
        session = ort.InferenceSession(p, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise InputError(f"cannot load ONNX model ({_first_line(exc)})", p) from None
    return Model(
        path=p, kind="onnx", has_features=False, device="cpu", _module=None, _session=session
    )
