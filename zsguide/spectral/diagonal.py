"""Closed-form transfer functions for circulant operators (blur with periodic boundary), per frequency.

With the analytic denoiser ``x0_hat_k = c_{t,k} x_k`` every sampler step is affine per decorrelated frequency k
(theory.md §4): ``x_k' = a x_k + b y_hat_k + e z``. Writing the state as ``x_k = B_k y_hat_k + w_k`` with
``Var[w_k] = v_k`` (``w`` collects ``x_T`` and every fresh noise), one step maps

    B' = a B + b,      v' = a^2 v + e^2,

and after the last step the sampler's output given y is ``N(B_k y_hat_k, v_k)``: its transfer function, to compare
with the posterior ``(W_k, sigma_post,k^2)``. Signals are centred (the surrogate mean only moves the DC term through
the same affine map). The formulas mirror zsguide/samplers/*.py line by line, with ``V = F`` (unitary DFT),
``U^T y = conj(h / |h|) y_hat``, ``s = |h|``; ``tests/test_spectral_diagonal.py`` checks them against Monte Carlo
runs of the real sampler code. All arithmetic is float64 and differentiable (the designer takes gradients through it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..samplers.base import ParamSchedule
from ..samplers.diffpir import DiffPIR
from ..samplers.svd import effective_singulars


@dataclass
class Transfer:
    """Output law given y, per frequency: ``N(B y_hat, v)``; tensors of the spectrum's shape (C, H, W)."""

    B: torch.Tensor  # complex
    v: torch.Tensor  # real


@dataclass
class DiagonalProblem:
    """The Gaussian problem per frequency: prior spectrum ``lam`` (C, H, W), symbol ``h`` (broadcastable), noise
    ``sigma`` (network units), the effective singular values ``s`` (``|h|`` with the operator's rcond cut applied)."""

    lam: torch.Tensor
    h: torch.Tensor
    sigma: float
    s: torch.Tensor

    @classmethod
    def from_operator(cls, lam: torch.Tensor, operator, sigma: float) -> DiagonalProblem:
        h = operator.symbol[0, 0].to(torch.complex128)
        s, _ = effective_singulars(operator, h.real)  # the samplers' own truncation (operator.rcond)
        return cls(lam.to(torch.float64), h, float(sigma), s[0, 0])

    def posterior(self) -> Transfer:
        """``W_k = lam conj(h) / (|h|^2 lam + sigma^2)``, ``sigma_post^2 = lam sigma^2 / (|h|^2 lam + sigma^2)``."""
        d = self.h.abs().square() * self.lam + self.sigma**2
        return Transfer(self.lam * self.h.conj() / d, self.lam * self.sigma**2 / d)

    def y_variance(self) -> torch.Tensor:
        """``E |y_hat_k|^2 = |h|^2 lam + sigma^2`` (centred)."""
        return self.h.abs().square() * self.lam + self.sigma**2


def _phase(p: DiagonalProblem) -> torch.Tensor:
    """``conj(h) / |h|``: the map from y_hat to U^T y (1 where h = 0)."""
    mag = p.h.abs()
    return torch.where(mag > 0, p.h.conj() / torch.where(mag > 0, mag, 1.0), torch.ones_like(p.h))


def _gain(lam: torch.Tensor, a_t: float) -> torch.Tensor:
    """The analytic denoiser's gain ``c_t = sqrt(abar) lam / (abar lam + 1 - abar)``."""
    return math.sqrt(a_t) * lam / (a_t * lam + 1 - a_t)


def _sqrt_pos(x) -> torch.Tensor:
    """``sqrt(max(x, 0))`` with a finite gradient everywhere (0 where clamped), for the designer's autograd."""
    return torch.as_tensor(x, dtype=torch.float64).clamp(min=1e-300).sqrt()


def _ddim(x_coef, y_coef, var, a_t, a_prev, eta):
    """Compose ``x0_y = x_coef x + y_coef y + noise(var)`` with the DDIM step of samplers/base.py."""
    if a_prev >= 1.0:
        return x_coef, y_coef, var
    s = eta * math.sqrt(max((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev), 0.0))
    c_eps = _sqrt_pos(1 - a_prev - s * s)
    k1 = math.sqrt(a_prev) - c_eps * math.sqrt(a_t / (1 - a_t))
    k2 = c_eps / math.sqrt(1 - a_t)
    return k1 * x_coef + k2, k1 * y_coef, k1 * k1 * var + s * s


def transfer(method: str, p: DiagonalProblem, params: ParamSchedule, abar: torch.Tensor,
             knobs: dict[str, torch.Tensor] | None = None) -> Transfer:
    """The closed-form ``(B, v)`` of ``method`` run with ``params`` (its timesteps and per-step knobs).

    ``knobs`` (optional) overrides ``params.values`` with tensors of per-step values, through which the result is
    differentiable (the designer's variables).
    """
    taus = params.timesteps
    vals = knobs if knobs is not None else {k: torch.tensor(v, dtype=torch.float64) for k, v in params.values.items()}

    def value(name: str, i: int) -> torch.Tensor:
        return vals[name][i]

    zero = torch.zeros_like(p.lam)
    phase, s, sig = _phase(p), p.s, p.sigma
    B, v = torch.zeros_like(p.lam, dtype=torch.complex128), torch.ones_like(p.lam)  # x_T ~ N(0, 1)
    if method == "ddrm":
        a_T = float(abar[taus[0]])
        sn = math.sqrt((1 - a_T) / a_T)
        large = s * sn > sig
        inv_s = torch.where(s > 0, 1 / torch.where(s > 0, s, 1.0), zero)
        B = torch.where(large, phase * inv_s, zero.to(B)) * math.sqrt(a_T)
        v = torch.where(large, (sn**2 - (sig * inv_s) ** 2).clamp(min=0), sn**2 * torch.ones_like(s)) * a_T
    for i, t in enumerate(taus):
        a_t = float(abar[t])
        a_prev = float(abar[taus[i + 1]]) if i + 1 < len(taus) else 1.0
        c = _gain(p.lam, a_t)
        eps_x = (1 - math.sqrt(a_t) * c) / math.sqrt(1 - a_t)  # eps_hat = eps_x x
        if method == "ddrm":
            eta, eta_b = value("eta", i), value("eta_b", i)
            sn = math.sqrt((1 - a_prev) / a_prev)
            tilde, std = _sqrt_pos(1 - eta**2) * sn, eta * sn
            inv_s = torch.where(s > 0, 1 / torch.where(s > 0, s, 1.0), zero)
            miss = (c + tilde * eps_x, zero.to(B), std**2 + zero)
            after = ((c * (1 - tilde * s / sig)) if sig > 0 else miss[0], (tilde / sig * phase) if sig > 0 else miss[1],
                     std**2 + zero)
            before = ((1 - eta_b) * c, eta_b * phase * inv_s, (sn**2 - (eta_b * sig * inv_s) ** 2).clamp(min=0))
            cb, ca = s * sn > sig, (s > 0) & (s * sn < sig)
            pick = lambda k: torch.where(cb, before[k], torch.where(ca, after[k], miss[k]))  # noqa: E731
            a_, b_, e2 = pick(0), pick(1), pick(2)
            r = math.sqrt(a_prev)
            a_, b_, e2 = r * a_, r * b_, a_prev * e2
        elif method == "ddnm":
            eta, mult = value("eta", i), value("lambda_scale", i)
            a, st = math.sqrt(a_prev), math.sqrt(1 - a_prev)
            ones = torch.ones_like(s)
            d1, d2 = st * eta * ones, st * _sqrt_pos(1 - eta**2) * ones
            lam_t = ones
            s_pinv = torch.where(s > 0, 1 / torch.where(s > 0, s, 1.0), zero)
            if sig > 0:
                thresh = a * sig * s_pinv
                low, high = (s > 0) & (st < thresh), (s > 0) & (st > thresh)
                lam_t = torch.where(low, s * st * _sqrt_pos(1 - eta**2) / (a * sig), ones)
                d2 = torch.where(low | high, zero, d2)
                d1 = torch.where(high, (st**2 - thresh**2).clamp(min=0).sqrt(), d1)
            g = mult * lam_t * (s > 0).to(s.dtype)  # x0_y = c x - g (c x - y_hat / h) on the kept range
            x0_x, x0_y = c * (1 - g), g * phase * s_pinv
            if a_prev >= 1.0:
                a_, b_, e2 = x0_x, x0_y, zero
            else:
                a_, b_, e2 = a * x0_x + d2 * eps_x, a * x0_y, d1 * d1
        elif method == "pigdm":
            w, eta = value("weight", i), value("eta", i)
            r2 = 1 - a_t
            q = torch.where(s > 0, p.h.conj() / (r2 * s * s + sig**2).clamp(min=1e-300), zero.to(B))
            k = w * (1 - a_t) / math.sqrt(a_t) * c * q  # x0_y = c x + k (y_hat - h c x)
            a_, b_, e2 = _ddim(c - (k * p.h * c).real, k, zero, a_t, a_prev, eta)
        elif method == "diffpir":
            lam_k, zeta = value("lam", i), value("zeta", i)
            rho = DiffPIR.rho(lam_k, sig, a_t)
            den = s * s + rho
            x0_x, x0_y = rho * c / den, s * phase / den
            if a_prev >= 1.0:
                a_, b_, e2 = x0_x, x0_y, zero
            else:
                zeta = zeta.clamp(0.0, 1.0)
                k2 = math.sqrt(1 - a_prev) * (1 - zeta).sqrt() / math.sqrt(1 - a_t)
                k1 = math.sqrt(a_prev) - k2 * math.sqrt(a_t)
                a_, b_, e2 = k1 * x0_x + k2, k1 * x0_y, (1 - a_prev) * zeta + zero
        elif method == "oracle":
            eta = value("eta", i)
            s_t = (1 - a_t) * p.lam / (a_t * p.lam + 1 - a_t)
            K = s_t * p.h.conj() / (p.h.abs().square() * s_t + sig**2)
            one_minus = (1 - K * p.h).real
            a_, b_, e2 = _ddim(c * one_minus, K, one_minus**2 * s_t + K.abs().square() * sig**2, a_t, a_prev, eta)
        else:
            raise ValueError(f"no closed form for sampler {method!r} on a circulant operator")
        B = a_ * B + b_
        v = a_ * a_ * v + e2
    return Transfer(B, v)


def criteria(p: DiagonalProblem, out: Transfer, dims: int) -> dict[str, torch.Tensor]:
    """theory.md §5, per pixel (divided by ``dims``, the number of pixels times channels), network units:

    avg W2^2 to the posterior = sum |B - W|^2 E|y|^2 + (sqrt(v) - sigma_post)^2,
    MSE to the truth          = sum |1 - B h|^2 lam + |B|^2 sigma^2 + v,
    perception W2^2 to prior  = sum (sqrt(|B|^2 E|y|^2 + v) - sqrt(lam))^2.
    """
    post = p.posterior()
    ey = p.y_variance()
    w2 = ((out.B - post.B).abs().square() * ey + (_sqrt_pos(out.v) - post.v.sqrt()) ** 2).sum() / dims
    mse = ((1 - out.B * p.h).abs().square() * p.lam + out.B.abs().square() * p.sigma**2 + out.v).sum() / dims
    marg = out.B.abs().square() * ey + out.v
    perc = ((_sqrt_pos(marg) - p.lam.sqrt()) ** 2).sum() / dims
    return {"avg_w2": w2, "mse": mse, "perception_w2": perc}
