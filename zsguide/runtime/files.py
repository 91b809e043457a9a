"""Files written whole or not at all, and the names the commands give them: a temporary file in the same folder,
fsynced, then renamed over the target (atomic on POSIX), for bytes, text, JSON and ``torch.save`` objects (prior
files, calibrations); JSON without NaN or Infinity; an image's file stem from its dataset index.

Output paths are checked before any work (:func:`check_output_dir`, :func:`check_output_file`, called by every
command's option checks): an output under an existing file, an existing file where a folder is wanted (or the
reverse) and a folder where nothing can be created (permissions, a read-only or virtual file system such as
``/proc``) are one :class:`~zsguide.errors.ZSGuideError` line naming the option and the path. The checks create
nothing (a probe folder is made and removed at once in the deepest folder that exists).

Temporary files are named ``.<target>.<random>.tmp`` (``.tmp.png`` for images); those a killed process left behind
are removed by the next run into the same folder, under its output lock (:func:`remove_stale_temporaries`).
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
from pathlib import Path

from ..errors import ZSGuideError


def image_name(index: int) -> str:
    """The file stem of dataset index ``index`` (5 digits, more when needed)."""
    return f"{int(index):05d}"


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file in the same folder, then rename it over ``path`` (atomic on POSIX)."""
    atomic_write_bytes(path, text.encode())


def new_file_mode() -> int:
    """``0o666`` less the process's umask: the mode ``open()`` gives a new file (``mkstemp`` alone gives ``0o600``, so
    atomically written files would be readable by their owner only, unlike the images beside them)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file in the same folder, fsync it, then rename it over ``path``: the file exists
    whole or not at all, whenever the process is killed; its mode is a new file's (:func:`new_file_mode`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), new_file_mode())
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


def _deepest_existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists (``.`` for a relative path with none)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")  # pragma: no cover - "." always exists


def _check_creatable(folder: Path, what: str) -> None:
    """That ``folder`` is, or can be made, a folder in which files can be created; ``what`` names the option and
    path in the error."""
    existing = _deepest_existing(folder)
    if not existing.is_dir():
        raise ZSGuideError(f"{what} cannot be written: {str(existing)!r} is a file, not a folder")
    try:  # the one reliable test (permissions, read-only and virtual file systems, root's privileges): try it
        os.rmdir(tempfile.mkdtemp(prefix=".zsguide-probe-", dir=existing))
    except OSError as exc:
        raise ZSGuideError(
            f"{what} cannot be written: nothing can be created in {str(existing)!r} ({exc.strerror or exc})"
        ) from None


def check_output_dir(path: str | Path, option: str = "--output") -> Path:
    """Check that ``path`` can be the output folder of ``option`` (``--output``): a folder already, or creatable,
    and writable; one :class:`ZSGuideError` line naming the option and the path otherwise. Creates nothing."""
    path = Path(path)
    what = f"{option} {str(path)!r}"
    if path.exists() and not path.is_dir():
        raise ZSGuideError(f"{what} exists and is not a directory")
    _check_creatable(path, what)
    return path


def check_output_file(path: str | Path, option: str = "--output") -> Path:
    """Check that the file ``path`` of ``option`` can be written (atomically: a temporary file in its folder, then
    a rename): not a folder, its folder existing or creatable, and writable. Creates nothing."""
    path = Path(path)
    what = f"{option} {str(path)!r}"
    if path.is_dir():
        raise ZSGuideError(f"{what} is a directory; give a file's path")
    _check_creatable(path.parent, what)
    return path


def is_temporary(name: str) -> bool:
    """Whether a file name is one of the temporary names of this module's writes (and the commands' PNGs)."""
    return name.startswith(".") and (name.endswith(".tmp") or name.endswith(".tmp.png"))


def remove_stale_temporaries(folder: str | Path) -> list[str]:
    """Remove the temporary files an interrupted write left in ``folder`` (not recursive); the names removed.
    Call it only while holding the folder's output lock (a running write's temporary file is not stale)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for entry in os.scandir(folder):
        if entry.is_file(follow_symlinks=False) and is_temporary(entry.name):
            Path(entry.path).unlink(missing_ok=True)
            removed.append(entry.name)
    return sorted(removed)
