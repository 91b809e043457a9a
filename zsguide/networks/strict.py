"""Strict loading of a foreign state dict: every key present, none extra, every shape equal, or one error line.

The DPS repository's loader silently keeps random weights when a file does not match; zsguide refuses instead, and
the message lists the offending keys (the first few of each kind, with counts), so a wrong preset or a truncated file
is recognised at a glance.
"""

from __future__ import annotations

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
    shapes = [
        f"{k} file {tuple(state[k].shape)} vs network {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
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
