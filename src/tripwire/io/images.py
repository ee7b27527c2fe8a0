"""Image folders in ImageFolder layout and ``.tar``/``.tar.gz`` archives of them.

Layout: ``root/<class>/<file>`` or ``root/{train,test}/<class>/<file>``, optionally under
one wrapping folder (``cifar10/train/cat/0001.jpg``). Archives are streamed member by
member with :mod:`tarfile` and decoded in memory: nothing is extracted to disk, so a
hostile archive cannot write outside (or anywhere).
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, UnidentifiedImageError

from tripwire.errors import InputError, MissingSplitError
from tripwire.io.dataset import Dataset, make_dataset
from tripwire.progress import progress_iter

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".ppm", ".pgm", ".bmp")
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz")

#: Bound on one decoded image, so that a decompression bomb is refused, not decoded.
MAX_PIXELS = 4096 * 4096


def is_archive(path: str | Path) -> bool:
    return str(path).lower().endswith(ARCHIVE_SUFFIXES)


def _locate(rel: PurePosixPath, split: str | None) -> tuple[str | None, str] | None:
    """(split, class) of an image path relative to the data root, or None if outside."""
    parts = rel.parts
    if len(parts) >= 3 and parts[-3] in ("train", "test"):
        return parts[-3], parts[-2]
    if len(parts) >= 2:
        return None, parts[-2]
    return None


def _decode(data: bytes, name: str, where: str) -> Image.Image:
    try:
        img = Image.open(io.BytesIO(data))
        if img.width * img.height > MAX_PIXELS:
            raise InputError(
                f"{name}: image of {img.width}x{img.height} pixels is too large", where
            )
        img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{name}: cannot decode image ({exc.__class__.__name__})", where) from None
    except Image.DecompressionBombError:
        raise InputError(f"{name}: image is a decompression bomb", where) from None
    return img


def _iter_dir(root: Path) -> Iterator[tuple[PurePosixPath, Callable[[], bytes]]]:
    for f in sorted(root.rglob("*")):
        if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
            yield PurePosixPath(f.relative_to(root).as_posix()), f.read_bytes


def _constant(data: bytes) -> Callable[[], bytes]:
    def get() -> bytes:
        return data

    return get


def _iter_tar(path: Path) -> Iterator[tuple[PurePosixPath, Callable[[], bytes]]]:
    try:
        # Streaming mode ("r|*") reads sequentially: fast on .tar.gz and no seeking.
        with tarfile.open(path, mode="r|*") as tf:
            for member in tf:
                if not member.isfile() or not member.name.lower().endswith(IMAGE_SUFFIXES):
                    continue
                fh = tf.extractfile(member)
                if fh is None:
                    continue
                yield PurePosixPath(member.name), _constant(fh.read())
    except (tarfile.TarError, EOFError, OSError, Exception) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"not a readable tar archive ({exc})", path) from None


def _strip_wrapper(paths: list[PurePosixPath]) -> int:
    """How many leading folders all image paths share before the class/split level."""
    depth = 0
    while True:
        heads = {p.parts[depth] for p in paths if len(p.parts) > depth + 2}
        if len(heads) != 1 or any(len(p.parts) <= depth + 2 for p in paths):
            return depth
        head = next(iter(heads))
        if head in ("train", "test"):
            return depth
        depth += 1


def load_image_folder(
    path: str | Path,
    split: str = "train",
    *,
    image_size: tuple[int, int] | None = None,
    show_progress: bool = True,
) -> Dataset:
    """Load an ImageFolder tree (a directory or a tar archive of one).

    Parameters
    ----------
    path
        Directory or ``.tar``/``.tar.gz``/``.tgz`` archive.
    split
        ``train`` or ``test`` when the tree has split folders; ignored (train only) when it
        has none.
    image_size
        ``(height, width)`` to resize every image to; without it, all images must share
        one size.

    Returns
    -------
    Dataset
        uint8 ``(N, H, W)`` for greyscale trees, ``(N, H, W, 3)`` otherwise; class names are
        the sorted folder names, sample ids the paths inside the tree.
    """
    root = Path(path)
    where = str(path)
    if not root.exists():
        raise InputError("no such file or directory", where)
    entries = list(_iter_tar(root) if root.is_file() else _iter_dir(root))
    if not entries:
        raise InputError("contains no images (.png, .jpg, .ppm) in class folders", where)
    depth = _strip_wrapper([p for p, _ in entries])
    located: list[tuple[str | None, str, PurePosixPath, Callable[[], bytes]]] = []
    for rel, get in entries:
        inner = PurePosixPath(*rel.parts[depth:])
        loc = _locate(inner, split)
        if loc is None:
            raise InputError(f"{rel}: image is not inside a class folder", where)
        located.append((loc[0], loc[1], inner, get))
    has_splits = any(s is not None for s, *_ in located)
    if has_splits:
        if split not in {s for s, *_ in located}:
            raise MissingSplitError(f"has no {split}/ folder", where)
        chosen = [e for e in located if e[0] == split]
        # Class names come from every split so that labels agree between train and test.
        class_names = sorted({c for s, c, *_ in located if s is not None})
    else:
        if split == "test":
            raise MissingSplitError("has no test/ folder", where)
        chosen = located
        class_names = sorted({c for _, c, *_ in located})
    chosen.sort(key=lambda e: str(e[2]))
    index = {c: i for i, c in enumerate(class_names)}

    images: list[Image.Image] = []
    grey = True
    for _, _, inner, get in progress_iter(chosen, "decoding images", enabled=show_progress):
        img = _decode(get(), str(inner), where)
        grey = grey and img.mode in ("L", "1", "I;16", "I")
        images.append(img)
    mode = "L" if grey else "RGB"
    size = None if image_size is None else (image_size[1], image_size[0])
    arrays = []
    first_size = images[0].size
    for (_, _, inner, _), img in zip(chosen, images, strict=True):
        img = img.convert(mode)
        if size is not None and img.size != size:
            img = img.resize(size, Image.Resampling.BILINEAR)
        elif size is None and img.size != first_size:
            raise InputError(
                f"{inner}: image is {img.size[0]}x{img.size[1]} but earlier ones are "
                f"{first_size[0]}x{first_size[1]}; pass --image-size HxW to resize",
                where,
            )
        arrays.append(np.asarray(img, dtype=np.uint8))
    x = np.stack(arrays)
    y = np.array([index[c] for _, c, _, _ in chosen], dtype=np.int64)
    ids = np.array([str(inner) for _, _, inner, _ in chosen])
    return make_dataset(
        x,
        y,
        path=where,
        classes=class_names,
        sample_id=ids,
        split=split if has_splits else None,
    )
