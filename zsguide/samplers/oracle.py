"""The oracle: guidance with the exact conditional law of x0 given (x_t, y) under the Gaussian surrogate.

With ``S_t = Cov[x0 | x_t]`` (diagonal in the surrogate's decorrelated Fourier basis, ``v_{t,k}`` of theory.md §3) and
the Kalman gain ``K_t = S_t H^T (H S_t H^T + sigma^2 I)^{-1}``,

    x0 | x_t, y ~ N( x0_hat + K_t (y - H x0_hat),  S_t - K_t H S_t ).

Each step draws ``x0_draw`` from that law by Matheron's rule (``xi ~ N(0, S_t)``, ``n'`` white):
``x0_draw = x0_hat + xi + K_t (y - H (x0_hat + xi) - sigma n')``, then takes the DDIM step from it
(``q_eta(x_{t-1} | x_t, x0_draw)`` preserves the forward marginals for every eta). With the analytic denoiser every
step samples the exact reverse conditional, so the output is an exact posterior sample for any number of steps and
any eta: the reference every other sampler is measured against. With the network it is the surrogate's Kalman
guidance around the network's ``x0_hat``.

``K_t r`` is exact per structure: per frequency for blur (``v h* / (|h|^2 v + sigma^2)``), per alias group for
super-resolution (``s_j R_j* / (sum_j |R_j|^2 s_j + sigma^2)``), and by conjugate gradients in float64 for masks and
any other operator (``(H S_t H^T + sigma^2 I) u = r``).

Closed form (theory.md §4, samplers/law.py): ``K = S_t H^H (H S_t H^H + sigma^2 I)^{-1}`` (the true ``s``),
``X = (I - K H) C``, ``Y = K``, ``E0 = (I - K H) S_t (I - K H)^H + sigma^2 K K^H``, then the DDIM composition.
"""

from __future__ import annotations

import torch
from einops import rearrange

from ..errors import ZSGuideError
from ..operators.base import LinearOperator, cast_like
from ..operators.blur import Blur
from ..operators.superres import SuperResolution
from ..surrogate import GaussianSurrogate
from .base import Knob, Sampler, ddim_from_estimate
from .law import AffineStep, StepInputs, eye, mm

_ALIAS = "... (s1 p) (s2 q) -> ... p q (s1 s2)"
_UNALIAS = "... p q (s1 s2) -> ... (s1 p) (s2 q)"


def apply_cov(surrogate: GaussianSurrogate, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``S x`` for a covariance diagonal in the surrogate basis with entries ``v`` (C, H, W)."""
    return surrogate.from_spectral(v * surrogate.to_spectral(x, centre=False), centre=False)


def conjugate_gradient(matvec, b: torch.Tensor, tol: float = 1e-10, max_iter: int = 5000) -> torch.Tensor:
    """Solve ``M u = b`` for SPD ``M`` per image (batched over dim 0) to relative residual ``tol``.

    An image stops updating once it has converged, so its solution does not depend on the batch it is in.
    """
    view = (-1, *[1] * (b.dim() - 1))
    u, r = torch.zeros_like(b), b.clone()
    p = r.clone()
    rs = r.flatten(1).square().sum(1)
    target = tol**2 * b.flatten(1).square().sum(1)
    for _ in range(max_iter):
        active = rs > target
        if not bool(active.any()):
            return u
        Mp = matvec(p)
        alpha = torch.where(active, rs / (p * Mp).flatten(1).sum(1).clamp(min=1e-300), torch.zeros_like(rs))
        u = u + alpha.view(view) * p
        r = r - alpha.view(view) * Mp
        rs_new = r.flatten(1).square().sum(1)
        beta = torch.where(active, rs_new / rs.clamp(min=1e-300), torch.zeros_like(rs))
        p = torch.where(active.view(view), r + beta.view(view) * p, p)
        rs = torch.where(active, rs_new, rs)
    raise ZSGuideError(f"conjugate gradients did not converge in {max_iter} iterations (oracle gain)")


def kalman_gain_apply(
    surrogate: GaussianSurrogate, operator: LinearOperator, v: torch.Tensor, sigma: float, r: torch.Tensor
) -> torch.Tensor:
    """``K r = S H^T (H S H^T + sigma^2 I)^{-1} r`` for a measurement-shaped ``r`` (float64 recommended)."""
    v = v.to(r)
    if isinstance(operator, Blur):  # structure "fourier_diagonal"
        h = cast_like(operator.symbol, r.to(torch.complex128) if r.dtype == torch.float64 else r.to(torch.complex64))
        r_hat = surrogate.to_spectral(r, centre=False)
        gain = v * h.conj() / (h.abs().square() * v + sigma**2)
        return surrogate.from_spectral(gain * r_hat, centre=False)
    if isinstance(operator, SuperResolution):  # structure "fourier_block"
        R = operator.fourier_blocks()
        R = cast_like(R, r.to(torch.complex128) if r.dtype == torch.float64 else r.to(torch.complex64))
        r_hat = surrogate.to_spectral(r, centre=False)  # (B, C, h, w) on the low-resolution grid
        v_al = rearrange(v, _ALIAS, s1=operator.factor, s2=operator.factor)  # (C, h, w, s^2)
        d = (R.abs().square() * v_al).sum(-1) + sigma**2
        out = v_al * R.conj() * (r_hat / d)[..., None]
        return surrogate.from_spectral(rearrange(out, _UNALIAS, s1=operator.factor, s2=operator.factor), centre=False)

    def matvec(u: torch.Tensor) -> torch.Tensor:
        return operator.A(apply_cov(surrogate, v, operator.A_adjoint(u))) + sigma**2 * u

    return apply_cov(surrogate, v, operator.A_adjoint(conjugate_gradient(matvec, r)))


class Oracle(Sampler):
    name = "oracle"
    knob_specs = (Knob("eta", "unit", meaning="stochasticity of the DDIM step (any value is exact)"),)
    exact = True  # exact as it is: nothing to design, its "design" is its heuristic
    needs_surrogate = True
    reference = "exact conditional law under the Gaussian surrogate (theory.md §3); any eta is exact, 1 by default"

    def heuristic_values(self, task: str, steps: int) -> dict:
        return {"eta": 1.0}

    def step(self, denoiser, operator, y, sigma, params, i, t, a_t, a_prev, x, noise, surrogate):
        eta = params.value("eta", i)
        with torch.no_grad():
            x0 = denoiser.x0(x, t)
        v = surrogate.posterior_variance(torch.tensor(a_t, dtype=torch.float64))[0].to(x.device)
        xd, yd = x0.to(torch.float64), y.to(torch.float64)
        xi = apply_cov(surrogate, v.sqrt(), noise("xi").to(torch.float64))
        n = operator.restrict_noise(noise("meas", operator.measurement_shape, dtype=torch.float64))
        xs = xd + xi
        x0_draw = xs + kalman_gain_apply(surrogate, operator, v, sigma, yd - operator.A(xs) - sigma * n)
        x0_draw = x0_draw.to(x.dtype)
        return ddim_from_estimate(x, x0_draw, a_t, a_prev, eta, lambda: noise("z")), x0_draw

    def closed_form_step(self, step: StepInputs) -> AffineStep:
        """:meth:`step` per block: ``x0_draw = X x + Y ybar + N(0, E0)`` with ``S = S_t = Cov[x0 | x_t]``,
        ``K = S H^H (H S H^H + sigma^2 I)^{-1}``, ``X = (I - K H) C``, ``Y = K``,
        ``E0 = (I - K H) S (I - K H)^H + sigma^2 K K^H``, composed with the DDIM step; ``Q = k1 (I - K H)``."""
        p, a_t = step.p, step.a_t
        S = p.fn(lambda e: (1 - a_t) * e / (a_t * e + 1 - a_t))  # Cov[x0 | x_t]
        K = p.gain(S)
        IKH = eye(p) - mm(K, p.H())
        E0 = mm(mm(IKH, S), IKH.mH) + p.sigma**2 * mm(K, K.mH)
        A, b, E, k1 = step.ddim(mm(IKH, step.C), K, 0.5 * (E0 + E0.mH), step.value("eta"))
        return AffineStep(A, b, E, k1 * IKH)
