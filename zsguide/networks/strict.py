"""Strict loading of a foreign state dict: every key present, none extra, every shape equal, or one error line.

The DPS repository's loader silently keeps random weights when a file does not match; zsguide refuses instead, and
the message lists the offending keys (the first few of each kind, with counts), so a wrong preset or a truncated file
is recognised at a glance.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import torch
from torch import nn

from ..errors import ZSGuideError

SHOWN = 6  # keys listed per kind of mismatch


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:SHOWN])
    return shown + (f", ... ({len(keys) - SHOWN} more)" if len(keys) > SHOWN else "")


def load_strictly(module: nn.Module, state: dict, source: str, hint: str = "") -> None:
    """``module.load_state_dict(state)`` with every mismatch reported in one :class:`ZSGuideError` line.

    ``source`` names the file and the architecture it was read as; ``hint`` is appended to the message (for example
    which option usually fixes the mismatch).
    """
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} file {tuple(state[k].shape)} vs network {tuple(v.shape)}"
              for k, v in expected.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys ({_listing(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({_listing(unexpected)})")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches ({_listing(shapes)})")
        raise ZSGuideError(f"{source} does not match: " + "; ".join(parts) + (f"; {hint}" if hint else ""))
    module.load_state_dict(state, strict=True)


def read_tensor_file(path: str | Path, what: str = "network file", mmap: bool = False) -> object:
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
            raise ZSGuideError(f"refused to load {what} {str(path)!r}: it holds Python objects other than tensors and "
                               f"plain containers, which zsguide never unpickles (torch.load weights_only=True: "
                               f"{first[:300]})") from None
        raise ZSGuideError(f"cannot read {what} {str(path)!r}: {type(exc).__name__}: {first[:300]}") from None


def file_sha256(path: str | Path, chunk: int = 1 << 23) -> str:
    """The sha256 of a file's bytes, streamed in 8 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
