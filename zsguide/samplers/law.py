"""The vocabulary of a sampler's closed-form law: one step as an affine map in a block problem's SVD coordinates.

With the analytic denoiser ``x0_hat = C_t x_t`` (a matrix per block, theory.md §3) every step of a sampler in this
package is affine in the state, the measurement coordinates ``ybar = U^H y`` and fresh Gaussian noise (theory.md §4,
"The closed form: affine steps"):

    x' = A x + b ybar + e,   e ~ N(0, E),

and ``Q`` is the step's coefficient on ``x0_hat``, through which a calibrated denoiser's residual enters. A sampler
states its law with ``closed_form_step(step: StepInputs) -> AffineStep`` beside its ``step`` (samplers/base.py), from
the same coefficient functions its ``step`` calls; the spectral engine (spectral/transfer.py) composes the steps.

This module sits below both ``samplers/`` and ``spectral/``: it knows a block problem only through the
:class:`BlockLike` protocol (spectral/problem.py's ``BlockProblem`` is one), and holds the linear algebra every law
shares: block-batched products (``mm``), diagonal scalings (``col``), the ``[diag(v); 0]`` embedding, the weighted
sum over blocks and the DDIM step composed with a guided estimate (:meth:`StepInputs.ddim`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import torch

from ..diffusion.ddim import ddim_coefficients
from ..operators.base import safe_ratio


class BlockLike(Protocol):
    """What a law reads from a block problem (spectral/problem.py ``BlockProblem``); leading batch dims ``...`` index
    the blocks, ``n`` the state's and ``m`` the measurement's coordinates per block (m <= n)."""

    sigma: float  # measurement noise std (network units)
    s: torch.Tensor  # (..., m) true singular values (the oracle's and DPS's H)
    s_eff: torch.Tensor  # (..., m) the samplers' truncated singular values (the operator's rcond cut)
    structure: str  # "fourier_diagonal", "fourier_block" or "pixel_mask"
    grid: tuple[int, int]  # (H, W) modelled (per-band knobs on a circulant problem)
    weight: torch.Tensor | None  # (...): block b stands for weight[b] equal blocks (None: each counts once)
    norm_scale: float  # (full image size) / (modelled size): a residual norm is over the whole image

    @property
    def n(self) -> int: ...

    @property
    def m(self) -> int: ...

    @property
    def dtype(self) -> torch.dtype: ...

    def H(self) -> torch.Tensor:
        """``H_bar = [diag(s) 0]`` (..., m, n)."""
        ...

    def y_cov(self) -> torch.Tensor:
        """``Cov[ybar] = H Sigma H^H + sigma^2 diag(measured)`` (..., m, m)."""
        ...

    def fn(self, f: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``f(Sigma)`` (..., n, n) for a scalar function ``f`` of the prior's eigenvalues."""
        ...

    def gain(self, S: torch.Tensor) -> torch.Tensor:
        """The Kalman gain ``S H^H (H S H^H + sigma^2 I)^{-1}`` (..., n, m) for a Hermitian ``S``."""
        ...

    def denoiser_at(self, a: float) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The denoiser model at ``abar = a``: ``(C, R)``, ``x0_hat = C x + N(0, R)`` (``R`` None: the Wiener
        denoiser), for a law that calls the denoiser at other times than its step's (DAPS's ODE)."""
        ...


class AffineStep(NamedTuple):
    """One step's law, ``x' = A x + b ybar + N(0, E)``, per block: ``A`` (..., n, n), ``b`` (..., n, m), ``E``
    (..., n, n) or 0, and ``Q`` the coefficient on ``x0_hat`` (..., n, n), or (..., n) for a diagonal one."""

    A: torch.Tensor
    b: torch.Tensor
    E: torch.Tensor | float
    Q: torch.Tensor


def mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Batched matrix product, elementwise when the inner dimension is 1 (blur's 1 x 1 blocks: no matmul overhead)."""
    return a * b if a.shape[-1] == 1 else a @ b


def col(v: torch.Tensor) -> torch.Tensor:
    """A vector as a diagonal scaling from the left: ``diag(v) M == col(v) * M``."""
    return v[..., :, None]


def eye(p: BlockLike) -> torch.Tensor:
    """``I`` (n x n) of the problem's dtype."""
    return torch.eye(p.n, dtype=p.dtype)


def zero_b(p: BlockLike) -> torch.Tensor:
    """A zero measurement map ``b`` (..., n, m)."""
    return torch.zeros(*p.s.shape[:-1], p.n, p.m, dtype=p.dtype)


def safe_inv(v: torch.Tensor) -> torch.Tensor:
    """``1 / v`` where ``v != 0``, else 0 (operators/base.safe_ratio)."""
    return safe_ratio(torch.ones_like(v), v)


def embed(vec: torch.Tensor, n: int) -> torch.Tensor:
    """The n x m matrix ``[diag(vec); 0]`` (``vec`` has m entries)."""
    m = vec.shape[-1]
    d = torch.diag_embed(vec)
    if n == m:
        return d
    return torch.cat([d, torch.zeros(*vec.shape[:-1], n - m, m, dtype=vec.dtype, device=vec.device)], dim=-2)


def pad(vec: torch.Tensor, n: int) -> torch.Tensor:
    """``vec`` (m entries) padded with zeros to n entries."""
    m = vec.shape[-1]
    if n == m:
        return vec
    return torch.cat([vec, torch.zeros(*vec.shape[:-1], n - m, dtype=vec.dtype, device=vec.device)], dim=-1)


def block_sum(x: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """``sum_b w_b x_b`` over the blocks (``x`` has the blocks' batch shape); ``weight`` None: a plain sum."""
    return x.sum() if weight is None else (x * weight).sum()


def standard_initial(p: BlockLike) -> tuple[torch.Tensor, torch.Tensor]:
    """The law of ``x_T ~ N(0, I)`` given y: ``B = 0``, ``V = I`` per block (the default start)."""
    return zero_b(p), torch.eye(p.n, dtype=p.dtype).expand(*p.s.shape[:-1], p.n, p.n)


@dataclass
class StepInputs:
    """What one step's law may depend on: the problem ``p``, the denoiser's gain ``C`` = ``C_t`` (..., n, n), the
    times ``a_t = abar_t`` and ``a_prev = abar_{t-1}`` (1 at the last step), the knobs' per-step values ``knobs``
    (float64 tensors, (steps,) or (steps, bands): the designer's differentiable variables) at step ``index``
    (:meth:`value`), and for a law that needs them (DPS's residual norm) the
    state's current law ``N(B ybar, V)``, one measurement's coordinates ``y_coords`` (None: averaged over y), the
    calibrated denoiser's residual covariance ``resid`` (None: the Wiener denoiser, no residual) and the schedule's
    ``abar`` table (DAPS's inner ODE calls the denoiser at other times: ``p.denoiser_at``)."""

    p: BlockLike
    C: torch.Tensor
    a_t: float
    a_prev: float
    knobs: Mapping[str, torch.Tensor]
    index: int
    B: torch.Tensor | None = None
    V: torch.Tensor | None = None
    y_coords: torch.Tensor | None = None
    resid: torch.Tensor | None = None
    abar: torch.Tensor | None = None  # the schedule's abar_t table, t = 0 .. T-1 (a law with inner denoiser calls)

    def value(self, knob: str) -> torch.Tensor:
        """The knob's value at this step: a 0-dim tensor, or one per frequency band."""
        return self.knobs[knob][self.index]

    @property
    def last(self) -> bool:
        """The last step (``abar_{t-1} = 1``): the sampler returns its clean estimate."""
        return self.a_prev >= 1.0

    @property
    def s(self) -> torch.Tensor:
        """The samplers' singular values ``s_eff`` padded with zeros to the block size n."""
        return pad(self.p.s_eff, self.p.n)

    @property
    def eps_x(self) -> torch.Tensor:
        """``eps_hat = eps_x x``: ``eps_x = (I - sqrt(abar_t) C) / sqrt(1 - abar_t)``."""
        return (eye(self.p) - math.sqrt(self.a_t) * self.C) / math.sqrt(1 - self.a_t)

    @property
    def x0_eps(self) -> float:
        """``eps_hat``'s coefficient on ``x0_hat``: ``-sqrt(abar_t) / sqrt(1 - abar_t)``."""
        return -math.sqrt(self.a_t) / math.sqrt(1 - self.a_t)

    def ddim(self, X, Y, E0, eta):
        """Compose a guided estimate ``x0_y = X x + Y ybar + N(0, E0)`` with the DDIM step of knob ``eta``
        (diffusion/ddim.py, as samplers/base.py's ``ddim_from_estimate`` takes it),

            x' = k1 x0_y + k2 x + N(0, s_t^2 I),   k1 = sqrt(a_prev) - c_eps sqrt(a_t / (1 - a_t)),
            k2 = c_eps / sqrt(1 - a_t):   A = k1 X + k2 I,   b = k1 Y,   E = k1^2 E0 + s_t^2 I,

        returned as ``(A, b, E, k1)``, ``k1`` the step's coefficient on ``x0_y`` (at the last step ``(X, Y, E0, 1)``).
        ``E0`` a float stands for no noise."""
        p, a_t, a_prev = self.p, self.a_t, self.a_prev
        if self.last:
            return X, Y, E0, 1.0
        c_eps, s_t = ddim_coefficients(a_t, a_prev, eta)
        k1 = math.sqrt(a_prev) - c_eps * math.sqrt(a_t / (1 - a_t))
        k2 = c_eps / math.sqrt(1 - a_t)
        E = k1 * k1 * E0 + s_t * s_t * eye(p) if torch.is_tensor(E0) else s_t * s_t * eye(p)
        return k1 * X + k2 * eye(p), k1 * Y, E, k1
