"""Reading files without running code: every checkpoint, prior file and network file zsguide opens goes through here.

``torch.load(weights_only=True)`` unpickles tensors and plain containers only; any other pickled object (a class, a
function, a ``__reduce__`` payload) is refused with one :class:`ZSGuideError` line, and nothing in the file runs. A
file that is not a readable PyTorch file says which case it is (empty, not a PyTorch file, truncated or corrupt), and
no message ever passes on PyTorch's advice to retry with weights_only switched off.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

import torch

from .errors import ZSGuideError

ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since PyTorch 1.6: a zip archive holding <name>/data.pkl
# the legacy format (before 1.6) starts with a protocol-2 pickle of the magic number 0x1950a86a20f9469cfc6c
LEGACY_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"


def read_tensor_file(path: str | os.PathLike, what: str = "network file", mmap: bool = False) -> object:
    """``torch.load(path, weights_only=True)``: tensors and plain containers only, never code.

    A file that is not a readable PyTorch file is one :class:`ZSGuideError` line saying which case it is (empty, not a
    PyTorch file, truncated or corrupt, or holding Python objects, which are refused); PyTorch's own text is never
    passed on whole (it suggests switching weights_only off, which would run the file's code: :func:`describe_failure`).

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
        raise describe_failure(path, what, exc) from None


def _head(path: Path, n: int = 64) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


def _safe_reason(exc: BaseException) -> str:
    """The first line of PyTorch's message that is neither its ``weights_only`` advice nor its request to file an
    issue (at most 200 characters), else the exception's type."""
    import re

    advice = ("weights_only", "file an issue", "check the doc", "trust", "can still be loaded", "add_safe_globals")
    for line in re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).splitlines():
        line = line.strip()
        if line and not any(a in line.lower() for a in advice):
            return f"{type(exc).__name__}: {line[:200]}"
    return type(exc).__name__


def describe_failure(path: Path, what: str, exc: BaseException) -> ZSGuideError:
    """The one line for a file ``torch.load(weights_only=True)`` could not read, by what the file is."""
    import re
    import zipfile

    where = f"{what} {str(path)!r}"
    size = path.stat().st_size
    if size == 0:
        return ZSGuideError(f"cannot read {where}: the file is empty (0 bytes), not a PyTorch file")
    head = _head(path)
    blocked = re.search(r"GLOBAL ([\w.]+)", str(exc))  # "unsupported GLOBAL x.y", "Unsupported global: GLOBAL x.y"
    if isinstance(exc, pickle.UnpicklingError) and blocked:
        return ZSGuideError(
            f"refused to load {where}: it holds Python objects other than tensors and plain containers "
            f"({blocked.group(1)}), which zsguide never unpickles; nothing in it was run"
        )
    if head.startswith(ZIP_MAGIC):
        if not zipfile.is_zipfile(path):
            return ZSGuideError(
                f"cannot read {where}: a truncated or corrupt PyTorch file ({size:,} bytes; its zip archive has no "
                f"readable central directory, as when a copy or a download stopped early)"
            )
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
        if not any(n.endswith("/data.pkl") for n in names):
            return ZSGuideError(f"cannot read {where}: a zip archive, but not a PyTorch file (no data.pkl inside)")
        return ZSGuideError(f"cannot read {where}: a corrupt PyTorch file ({_safe_reason(exc)})")
    if head.startswith(LEGACY_MAGIC):
        return ZSGuideError(
            f"cannot read {where}: a truncated or corrupt PyTorch file in the legacy format ({_safe_reason(exc)})"
        )
    kind = "a Python pickle" if head[:1] == b"\x80" else "unknown content"
    return ZSGuideError(
        f"cannot read {where}: not a PyTorch file ({kind}: neither torch.save's zip archive nor its legacy "
        f"format; zsguide never unpickles other files)"
    )


def file_sha256(path: str | Path, chunk: int = 1 << 23) -> str:
    """The sha256 of a file's bytes, streamed in 8 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
