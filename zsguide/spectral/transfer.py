"""Closed-form transfer of every sampler: its output law given y, ``N(B ybar, V)``, block by block (problem.py).

With the analytic denoiser ``x0_hat = C_t x_t``, ``C_t = sqrt(abar) Sigma (abar Sigma + (1 - abar) I)^{-1}``
(theory.md §3; a matrix per block), every sampler step is affine (theory.md §4):

    x' = A x + b ybar + e,   e ~ N(0, E)      =>   B' = A B + b,   V' = A V A^H + E,

starting from the law of the sampler's ``x_T`` given y (``x_T ~ N(0, I)``: ``B = 0``, ``V = I``, unless the sampler
starts otherwise, as DDRM does from its ``p(x_T | y)``). After the last step the output given the measurement is
``N(B ybar, V)``: ``B`` is to be compared with the posterior's ``W`` and ``V`` with ``Sigma_post``.

This module knows no sampler by name: each sampler states its own law beside its ``step``, in its own module
(``Sampler.closed_form_step`` and ``closed_form_initial``, samplers/law.py's vocabulary: the per-step ``(A, b, E, Q)``
in the SVD coordinates ``xi = V^H x``, ``ybar = U^H y``, where ``H_bar = [diag(s) 0]``), and :func:`transfer`
composes the steps of the sampler the registry names. A sampler without a law (``closed_form`` False) is refused.
``Q`` is each step's coefficient on ``x0_hat``, through which a calibrated denoiser's residual ``N(0, R_t)`` enters
(``V' += Q R_t Q^H``). A step whose law depends on the state's current law or on the measurement (DPS, whose residual
norm is replaced by its expectation, conditional on one measurement's coordinates ``y_coords`` when given) receives
them through the same interface (``StepInputs``).

``tests/test_transfer_sync.py`` checks every sampler's per-step law against impulses through its real step, and
``tests/test_spectral_transfer.py`` the whole chain against Monte Carlo runs of the real sampler code, for every
sampler in the registry with a law. Everything is float64 and differentiable in the knobs (the designer's variables).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import ZSGuideError
from ..samplers import get_sampler, sampler_names
from ..samplers.base import ParamSchedule, Sampler
from ..samplers.law import StepInputs, col, mm
from .problem import BlockProblem


@dataclass
class Transfer:
    """Output law given y, per block: ``N(B ybar, V)``, ``B`` (..., n, m), ``V`` (..., n, n)."""

    B: torch.Tensor
    V: torch.Tensor


def sampler_with_law(method: str) -> Sampler:
    """The registry's sampler ``method`` (samplers/__init__.py), refused with a :class:`ZSGuideError` naming it when
    it states no closed-form law."""
    sampler = get_sampler(method)
    if not sampler.closed_form:
        why = sampler.no_law_reason or "its class does not define closed_form_step"
        raise ZSGuideError(
            f"sampler {method} has no closed form ({why}), so the spectral engine cannot analyse or design it; "
            f"samplers with one: {', '.join(sampler_names(closed_form=True))}"
        )
    return sampler


def transfer(
    method: str,
    p: BlockProblem,
    params: ParamSchedule,
    abar: torch.Tensor,
    knobs: dict[str, torch.Tensor] | None = None,
    y_coords: torch.Tensor | None = None,
) -> Transfer:
    """The closed-form ``(B, V)`` of sampler ``method`` run with ``params`` (its timesteps and per-step knobs): the
    sampler's ``closed_form_initial`` then its ``closed_form_step`` at every time; a sampler without a law is
    refused (:func:`sampler_with_law`).

    ``y_coords`` (optional, one measurement's coordinates ``ybar`` (..., m), :meth:`BlockProblem.y_coords`) is
    passed to every step; only a law that depends on the measurement beyond ``B ybar`` reads it (DPS's residual-norm
    expectation, conditioned on it).

    ``knobs`` (optional) overrides ``params.values`` with tensors of per-step values, through which the result is
    differentiable (the designer's variables).
    """
    sampler = sampler_with_law(method)
    taus = params.timesteps
    vals = knobs if knobs is not None else {k: torch.tensor(v, dtype=torch.float64) for k, v in params.values.items()}
    B, V = sampler.closed_form_initial(p, float(abar[taus[0]]))
    for i, t in enumerate(taus):
        a_t = float(abar[t])
        a_prev = float(abar[taus[i + 1]]) if i + 1 < len(taus) else 1.0
        C, resid = p.denoiser_at(a_t)  # (C_t, R_t): the denoiser's gain and residual covariance
        step = StepInputs(p, C, a_t, a_prev, vals, i, B, V, y_coords, resid, abar)
        A, b, E, Q = sampler.closed_form_step(step)
        B = mm(A, B) + b
        V = mm(mm(A, V), A.mH) + E
        if resid is not None:  # the calibrated denoiser's residual, through the step's coefficient on x0_hat
            V = V + (
                col(Q.to(p.dtype)) * resid * Q.to(p.dtype).conj()[..., None, :]
                if Q.ndim == resid.ndim - 1
                else mm(mm(Q, resid), Q.mH)
            )
    return Transfer(B, 0.5 * (V + V.mH))
