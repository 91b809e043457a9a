"""Closed-form transfer of every sampler: its output law given y, ``N(B ybar, V)``, block by block (problem.py).

With the analytic denoiser ``x0_hat = C_t x_t``, ``C_t = sqrt(abar) Sigma (abar Sigma + (1 - abar) I)^{-1}``
(theory.md §3; a matrix per block), every sampler step is affine (theory.md §4):

    x' = A x + b ybar + e,   e ~ N(0, E)      =>   B' = A B + b,   V' = A V A^H + E,

starting from ``x_T ~ N(0, I)`` (``B = 0``, ``V = I``; DDRM starts from its own ``p(x_T | y)``, ``_ddrm_init``). After the last step the output given the measurement is
``N(B ybar, V)``: ``B`` is to be compared with the posterior's ``W`` and ``V`` with ``Sigma_post``. The per-step
``(A, b, E)`` below mirror zsguide/samplers/*.py line by line in the SVD coordinates ``xi = V^H x``, ``ybar = U^H y``,
where ``H_bar = [diag(s) 0]``: every diagonal operation of a sampler (its cases per singular value) is a diagonal
matrix, the denoiser and its Jacobian are ``C_t`` (Hermitian), and fresh white noise has covariance I.

DPS is linear once its residual norm ``||y - H x0_hat||`` is replaced by its closed-form expectation: at each step
``nu_t^2 = E||y - H x0_hat||^2 = tr((I - H C B) Cov[ybar] (I - H C B)^H) + tr(H C V C^H H^H)`` summed over every
block (times ``norm_scale`` when the problem is a reduced window), and the step uses ``nu_t`` in place of the norm.
The norm of a high-dimensional residual concentrates around ``nu_t``, so this is the large-image limit. Given one
measurement's coordinates ``ybar`` (``transfer(..., y_coords=...)``) the expectation is conditional on them instead,
``||(I - H C B) ybar||^2 + tr(H C V C^H H^H)``: the law given that y, which the Monte Carlo test checks.

``tests/test_spectral_transfer.py`` checks all of it against Monte Carlo runs of the real sampler code. Everything is
float64 and differentiable in the knobs (the designer's variables).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..diffusion.ddim import ddim_coefficients
from ..operators.base import safe_ratio
from ..samplers import sampler_names
from ..samplers.bands import radial_bands
from ..samplers.base import ParamSchedule
from ..samplers.ddnm import ddnm_coefficients
from ..samplers.ddrm import ddrm_coefficients
from ..samplers.diffpir import DiffPIR, diffpir_coefficients
from ..samplers.dps import dps_gain
from ..samplers.pigdm import pigdm_coefficients
from .problem import BlockProblem, block_sum, embed, pad

METHODS = sampler_names(closed_form=True)  # the samplers _step below describes (the registry, samplers/__init__.py)


@dataclass
class Transfer:
    """Output law given y, per block: ``N(B ybar, V)``, ``B`` (..., n, m), ``V`` (..., n, n)."""

    B: torch.Tensor
    V: torch.Tensor


def mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Batched matrix product, elementwise when the inner dimension is 1 (blur's 1 x 1 blocks: no matmul overhead)."""
    return a * b if a.shape[-1] == 1 else a @ b


def _col(v: torch.Tensor) -> torch.Tensor:
    """A vector as a diagonal scaling from the left: ``diag(v) M == _col(v) * M``."""
    return v[..., :, None]


def _eye(p: BlockProblem) -> torch.Tensor:
    return torch.eye(p.n, dtype=p.dtype)


def _ddim(X, Y, E0, p: BlockProblem, a_t: float, a_prev: float, eta):
    """Compose ``x0_y = X x + Y ybar + N(0, E0)`` with the DDIM step of knob ``eta`` (diffusion/ddim.py, as
    samplers/base.py takes it), ``x' = k1 x0_y + k2 x + N(0, s_t^2 I)``: ``(A, b, E, k1)``, ``k1`` the step's
    coefficient on ``x0_y``."""
    if a_prev >= 1.0:
        return X, Y, E0, 1.0
    c_eps, s_t = ddim_coefficients(a_t, a_prev, eta)
    k1 = math.sqrt(a_prev) - c_eps * math.sqrt(a_t / (1 - a_t))
    k2 = c_eps / math.sqrt(1 - a_t)
    E = k1 * k1 * E0 + s_t * s_t * _eye(p) if torch.is_tensor(E0) else s_t * s_t * _eye(p)
    return k1 * X + k2 * _eye(p), k1 * Y, E, k1


def _zero_b(p: BlockProblem) -> torch.Tensor:
    return torch.zeros(*p.s.shape[:-1], p.n, p.m, dtype=p.dtype)


def _safe_inv(v: torch.Tensor) -> torch.Tensor:
    """``1 / v`` where ``v != 0``, else 0 (operators/base.safe_ratio)."""
    return safe_ratio(torch.ones_like(v), v)


def _ddrm_init(p: BlockProblem, a_T: float):
    sn = math.sqrt((1 - a_T) / a_T)
    s = pad(p.s_eff, p.n)
    large = s * sn > p.sigma
    inv = _safe_inv(s)
    B = embed(torch.where(large, inv, torch.zeros_like(s))[..., : p.m], p.n).to(p.dtype) * math.sqrt(a_T)
    var = torch.where(large, (sn**2 - (p.sigma * inv) ** 2).clamp(min=0), torch.full_like(s, sn**2)) * a_T
    return B, torch.diag_embed(var.to(p.dtype))


def _step(method, p: BlockProblem, C, a_t, a_prev, value, B, V, y_coords=None, resid=None):
    """``(A, b, E, Q)`` of one step of ``method`` (see the module docstring and samplers/<method>.py): ``Q`` is the
    step's coefficient on the denoiser's output ``x0_hat`` (a matrix, or a vector for a diagonal one), through which
    a calibrated denoiser's residual ``N(0, resid)`` enters (DPS's residual norm holds it too)."""
    sig, n, m = p.sigma, p.n, p.m
    s = pad(p.s_eff, n)
    eps_x = (_eye(p) - math.sqrt(a_t) * C) / math.sqrt(1 - a_t)  # eps_hat = eps_x x
    x0_eps = -math.sqrt(a_t) / math.sqrt(1 - a_t)  # eps_hat's coefficient on x0_hat
    if method == "ddrm":
        eta, eta_b = value("eta"), value("eta_b")
        r = math.sqrt(a_prev)
        sn = math.sqrt((1 - a_prev) / a_prev)
        alpha, beta, bcoef, e2 = ddrm_coefficients(s, sn, sig, eta, eta_b)  # the sampler's own coefficients
        A = r * (_col(alpha.to(p.dtype)) * C + _col(beta.to(p.dtype)) * eps_x)
        return (
            A,
            r * embed(bcoef[..., :m].to(p.dtype), n),
            a_prev * torch.diag_embed(e2.to(p.dtype)),
            r * (alpha + x0_eps * beta),
        )
    if method == "ddnm":
        eta, mult = value("eta"), value("lambda_scale")
        a, st = math.sqrt(a_prev), math.sqrt(1 - a_prev)
        inv = _safe_inv(s)
        g, d1, d2 = ddnm_coefficients(s, inv, a, st, sig, eta, mult)  # the sampler's own coefficients
        X, Y = _col((1 - g).to(p.dtype)) * C, embed((g * inv)[..., :m].to(p.dtype), n)
        if a_prev >= 1.0:
            return X, Y, 0.0, 1 - g
        return (
            a * X + _col(d2.to(p.dtype)) * eps_x,
            a * Y,
            torch.diag_embed((d1 * d1).to(p.dtype)),
            a * (1 - g) + x0_eps * d2,
        )
    if method == "pigdm":
        w, eta = value("weight"), value("eta")
        q, k = pigdm_coefficients(s, a_t, a_prev, sig, w)  # the sampler's own coefficients
        Ch = C.mH  # g = C^H diag(q) (ybar - diag(s) x0_hat), added as k g after the DDIM step (C^H: the Jacobian)
        A, _, E, k1 = _ddim(C, _zero_b(p), 0.0, p, a_t, a_prev, eta)
        qs = (q * s).to(p.dtype)
        return (
            A - k * mm(Ch, _col(qs) * C),
            k * Ch[..., :, :m] * q[..., None, :m].to(p.dtype),
            E,
            k1 * _eye(p) - k * Ch * qs[..., None, :],
        )
    if method == "diffpir":
        lam_k, zeta = value("lam"), value("zeta")
        if lam_k.ndim == 1:  # per radial frequency band (blur): expand to the blocks' frequency grid
            if p.structure != "fourier_diagonal":
                raise ValueError("per-frequency DiffPIR lam needs a circulant problem")
            lam_k = lam_k[radial_bands(*p.grid, lam_k.numel())][..., None]
        rho = DiffPIR.rho(lam_k, sig, a_t)
        keep, gain, k1, k2, var = diffpir_coefficients(s, rho, a_t, a_prev, zeta)  # the sampler's own coefficients
        X, Y = _col(keep.to(p.dtype)) * C, embed(gain[..., :m].to(p.dtype), n)
        if a_prev >= 1.0:
            return X, Y, 0.0, keep
        return k1 * X + k2 * _eye(p), k1 * Y, var * _eye(p), k1 * keep
    if method == "oracle":
        eta = value("eta")
        S = p.fn(lambda e: (1 - a_t) * e / (a_t * e + 1 - a_t))  # Cov[x0 | x_t]
        K = p.gain(S)
        IKH = _eye(p) - mm(K, p.H())
        E0 = mm(mm(IKH, S), IKH.mH) + sig**2 * mm(K, K.mH)
        A, b, E, k1 = _ddim(mm(IKH, C), K, 0.5 * (E0 + E0.mH), p, a_t, a_prev, eta)
        return A, b, E, k1 * IKH
    if method == "dps":
        zeta, eta = value("zeta"), value("eta")
        H = p.H()
        HC = mm(H, C)
        M = torch.eye(m, dtype=p.dtype) - mm(HC, B)  # residual = M ybar - H C w for a state x = B ybar + w
        if y_coords is None:
            mean_part = block_sum(mm(mm(M, p.y_cov()), M.mH).diagonal(dim1=-2, dim2=-1).real.sum(-1), p.weight)
        elif p.weight is None:
            mean_part = (M @ y_coords[..., None].to(p.dtype)).abs().square().sum()
        else:
            raise ValueError("a grouped problem (weighted blocks) has no per-measurement coordinates")
        spread = mm(mm(HC, V), HC.mH) if resid is None else mm(mm(HC, V), HC.mH) + mm(mm(H, resid), H.mH)
        r2 = (mean_part + block_sum(spread.diagonal(dim1=-2, dim2=-1).real.sum(-1), p.weight)) * p.norm_scale
        gain = dps_gain(zeta, r2)  # the sampler's own gain, at the expected squared norm nu_t^2
        G = HC.mH  # (H C)^H = C^H H^H: the vector-Jacobian product of the residual
        A, _, E, k1 = _ddim(C, _zero_b(p), 0.0, p, a_t, a_prev, eta)
        return A - gain * mm(G, HC), gain * G, E, k1 * _eye(p) - gain * mm(G, H)
    raise ValueError(f"no closed form for sampler {method!r}; known: {', '.join(METHODS)}")


def transfer(
    method: str,
    p: BlockProblem,
    params: ParamSchedule,
    abar: torch.Tensor,
    knobs: dict[str, torch.Tensor] | None = None,
    y_coords: torch.Tensor | None = None,
) -> Transfer:
    """The closed-form ``(B, V)`` of ``method`` run with ``params`` (its timesteps and per-step knobs).

    ``y_coords`` (optional, one measurement's coordinates ``ybar`` (..., m), :meth:`BlockProblem.y_coords`)
    conditions DPS's residual-norm expectation on it; the other samplers' laws given y do not depend on y beyond
    ``B ybar``.

    ``knobs`` (optional) overrides ``params.values`` with tensors of per-step values, through which the result is
    differentiable (the designer's variables).
    """
    taus = params.timesteps
    vals = knobs if knobs is not None else {k: torch.tensor(v, dtype=torch.float64) for k, v in params.values.items()}
    B = _zero_b(p)
    V = torch.eye(p.n, dtype=p.dtype).expand(*p.s.shape[:-1], p.n, p.n)
    if method == "ddrm":
        B, V = _ddrm_init(p, float(abar[taus[0]]))
    for i, t in enumerate(taus):
        a_t = float(abar[t])
        a_prev = float(abar[taus[i + 1]]) if i + 1 < len(taus) else 1.0
        C, resid = p.denoiser_at(a_t)  # (C_t, R_t): the denoiser's gain and residual covariance
        A, b, E, Q = _step(method, p, C, a_t, a_prev, lambda k, i=i: vals[k][i], B, V, y_coords, resid)
        B = mm(A, B) + b
        V = mm(mm(A, V), A.mH) + E
        if resid is not None:  # the calibrated denoiser's residual, through the step's coefficient on x0_hat
            V = V + (
                _col(Q.to(p.dtype)) * resid * Q.to(p.dtype).conj()[..., None, :]
                if Q.ndim == resid.ndim - 1
                else mm(mm(Q, resid), Q.mH)
            )
    return Transfer(B, 0.5 * (V + V.mH))
