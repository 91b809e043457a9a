"""Reading files without running code: every checkpoint, prior file and network file zsguide opens goes through here.

``torch.load(weights_only=True)`` unpickles tensors and plain containers only; any other pickled object (a class, a
function, a ``__reduce__`` payload) is refused with one :class:`ZSGuideError` line, and nothing in the file runs.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

import torch

from .errors import ZSGuideError


def read_tensor_file(path: str | os.PathLike, what: str = "network file", mmap: bool = False) -> object:
    """``torch.load(path, weights_only=True)``: tensors and plain containers only, never code.

    ``mmap=True`` maps the file instead of reading it (a network file of gigabytes is then not held twice while its weights
    are copied into the module); the tensors returned must not outlive that copy, since overwriting a mapped file
    under them ends the process.
    """
    path = Path(path)
    if not path.is_file():
        raise ZSGuideError(f"{what} {str(path)!r} does not exist")
    try:
        if not mmap:
            return torch.load(path, map_location="cpu", weights_only=True)
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:  # a legacy (pre-zip) file cannot be memory-mapped: read it whole
            if "mmap" not in str(exc):
                raise
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - an unsafe pickle, a truncated or foreign file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, pickle.UnpicklingError):
            raise ZSGuideError(
                f"refused to load {what} {str(path)!r}: it holds Python objects other than tensors and "
                f"plain containers, which zsguide never unpickles (torch.load weights_only=True: "
                f"{first[:300]})"
            ) from None
        raise ZSGuideError(f"cannot read {what} {str(path)!r}: {type(exc).__name__}: {first[:300]}") from None


def file_sha256(path: str | Path, chunk: int = 1 << 23) -> str:
    """The sha256 of a file's bytes, streamed in 8 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
