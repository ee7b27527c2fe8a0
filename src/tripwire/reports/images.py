"""Encode image arrays as base64 PNG for embedding in reports."""

from __future__ import annotations

import base64
import binascii
import io
import re

import numpy as np
import numpy.typing as npt
from PIL import Image

__all__ = ["PNG_SIGNATURE", "array_to_png_base64", "is_png_base64", "to_uint8_image"]

#: The eight bytes every PNG file starts with.
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

_CHANNELS = (1, 3, 4)
_BASE64_RE = re.compile(r"[A-Za-z0-9+/]+={0,2}")


def to_uint8_image(array: npt.ArrayLike) -> npt.NDArray[np.uint8]:
    """Bring an image array to ``uint8`` in (H, W) or (H, W, C) layout.

    Parameters
    ----------
    array
        An image of shape (H, W), (H, W, C) or (C, H, W) with C in 1, 3 or 4.
        A trailing axis of size 1, 3 or 4 is read as channels first, so an
        ambiguous (3, 4, 4) array is taken as a 3x4 RGBA image. ``uint8`` values
        are kept; booleans map to 0/255; floats in [0, 1] are scaled by 255;
        other numbers already in [0, 255] are kept, and anything else is
        min-max scaled. NaN and infinities become 0.

    Returns
    -------
    numpy.ndarray
        A ``uint8`` array of shape (H, W), (H, W, 3) or (H, W, 4).

    Raises
    ------
    ValueError
        If the shape is not an image shape or the array is empty.
    """
    arr = np.asarray(array)
    if arr.size == 0:
        raise ValueError("image array is empty")
    if arr.ndim == 3:
        if arr.shape[-1] in _CHANNELS:
            pass
        elif arr.shape[0] in _CHANNELS:
            arr = np.moveaxis(arr, 0, -1)
        else:
            raise ValueError(f"cannot tell the channel axis of image shape {arr.shape}")
        if arr.shape[-1] == 1:
            arr = arr[..., 0]
    elif arr.ndim != 2:
        raise ValueError(f"image must have shape (H, W), (H, W, C) or (C, H, W), got {arr.shape}")

    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if arr.dtype == np.bool_:
        return np.where(arr, 255, 0).astype(np.uint8)
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"image dtype {arr.dtype} is not numeric")

    values = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(values.min()), float(values.max())
    if arr.dtype.kind == "f" and lo >= 0.0 and hi <= 1.0:
        values = values * 255.0
    elif not (lo >= 0.0 and hi <= 255.0):
        span = hi - lo
        values = (values - lo) * (255.0 / span) if span > 0 else np.zeros_like(values)
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def array_to_png_base64(array: npt.ArrayLike) -> str:
    """Encode an image array as a base64 PNG string (no ``data:`` prefix).

    Parameters
    ----------
    array
        See :func:`to_uint8_image` for the accepted shapes and dtypes.

    Returns
    -------
    str
        ASCII base64 of the PNG bytes.
    """
    image = Image.fromarray(to_uint8_image(array))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def is_png_base64(text: object) -> bool:
    """Tell whether ``text`` is plain base64 whose bytes start with the PNG signature.

    The whole string is checked against the base64 alphabet (it ends up inside
    an HTML attribute); only its head is decoded.
    """
    if not isinstance(text, str) or _BASE64_RE.fullmatch(text) is None:
        return False
    try:
        head = base64.b64decode(text[:16], validate=True)
    except (binascii.Error, ValueError):
        return False
    return head.startswith(PNG_SIGNATURE)
