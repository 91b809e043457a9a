"""Helpers for samplers that work in an operator's SVD basis ``A = U diag(s) V^T`` (DDRM, DDNM+, PiGDM, DiffPIR)."""

from __future__ import annotations

import torch

from ..operators.base import LinearOperator, cast_like


def effective_singulars(op: LinearOperator, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(s, s_pinv)`` cast like ``like``: singular values at or below the operator's ``rcond`` cut count as 0, so
    every sampler sees the same truncated SVD as ``A_pinv`` (DDRM and DDNM zero small singular values too)."""
    s_pinv = cast_like(op.pinv_singulars(), like)
    s = cast_like(op.singulars, like)
    return torch.where(s_pinv > 0, s, torch.zeros_like(s)), s_pinv


def sqrt_pos(x) -> torch.Tensor:
    """``sqrt(max(x, 0))`` as a float64 tensor with a finite gradient everywhere (``x`` clamped at 1e-300), for the
    coefficient functions the samplers share with the differentiable closed forms (spectral/transfer.py)."""
    return torch.as_tensor(x, dtype=torch.float64).clamp(min=1e-300).sqrt()


def white_coefficients(op: LinearOperator, z: torch.Tensor) -> torch.Tensor:
    """White noise in coefficient space: ``V^T z`` for white image noise ``z`` (right law for complex bases too)."""
    return op.Vt(z)
