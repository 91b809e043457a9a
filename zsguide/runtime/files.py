"""Files written whole or not at all, and the names the commands give them: a temporary file in the same folder,
fsynced, then renamed over the target (atomic on POSIX), for bytes, text, JSON and ``torch.save`` objects (prior
files, calibrations); JSON without NaN or Infinity; an image's file stem from its dataset index."""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
from pathlib import Path


def image_name(index: int) -> str:
    """The file stem of dataset index ``index`` (5 digits, more when needed)."""
    return f"{int(index):05d}"


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file in the same folder, then rename it over ``path`` (atomic on POSIX)."""
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file in the same folder, fsync it, then rename it over ``path``: the file exists
    whole or not at all, whenever the process is killed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def json_safe(value):
    """Non-finite floats become None (JSON has no NaN/Infinity); tuples become lists; nested containers recursed."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(json_safe(data), indent=2, allow_nan=False) + "\n")


def atomic_torch_save(obj, path: str | Path) -> None:
    """``torch.save(obj)`` written atomically (:func:`atomic_write_bytes`): no half-written prior file or calibration
    is ever left."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(Path(path), buffer.getvalue())
