"""DDRM (Kawar et al. 2022, "Denoising Diffusion Restoration Models"; reference code bahjat-kawar/ddrm).

Works on the VE scale ``x_mod = x_t / sqrt(abar_t)`` in the SVD basis. With ``c0 = V^T x0_hat``, ``ce = V^T eps_hat``,
``cy = U^T y``, ``sn`` the VE level of the next time and fresh white coefficients ``z``, per singular component:

    s = 0 (missing):            c_next = c0 + sqrt(1 - eta^2) sn ce + eta sn z
    s sn < sigma (less noisy):  c_next = c0 + sqrt(1 - eta^2) sn (cy - s c0) / sigma + eta sn z
    s sn > sigma (noisier):     c_next = eta_b cy / s + (1 - eta_b) c0 + sqrt(sn^2 - eta_b^2 sigma^2 / s^2) z

then ``x_{t-1} = sqrt(abar_{t-1}) V c_next``. The last step (sn = 0) returns ``x0_hat``. Initialisation
``p(x_T | y)``: ``cy / s + sqrt(sn_T^2 - sigma^2 / s^2) z`` where ``s sn_T > sigma``, ``sn_T z`` elsewhere.
Closed form (theory.md §4, samplers/law.py): per block, ``A = a (diag(alpha) C + diag(beta) eps_x)``,
``b = a [diag(gamma); 0]``, ``E = abar_{t-1} diag(var)`` with :func:`ddrm_coefficients`, ``a = sqrt(abar_{t-1})``;
the start ``B = sqrt(abar_T) [diag(1 / s); 0]`` where ``s sn_T > sigma``, ``V = abar_T diag(sn_T^2 - sigma^2 / s^2
or sn_T^2)``.
Heuristic defaults: ``eta = 0.85``, ``eta_b = 1.0``, 20 uniformly spaced steps (the DDRM README / configs).
"""

from __future__ import annotations

import math

import torch

from ..operators.base import safe_ratio
from ..seeding import randn_per_image
from .base import Knob, Sampler
from .law import AffineStep, BlockLike, StepInputs, col, embed, pad, safe_inv
from .svd import effective_singulars, sqrt_pos


def ddrm_coefficients(s: torch.Tensor, sn: float, sigma: float, eta, eta_b):
    """DDRM's step per singular value (the module docstring's three cases) as one linear form,

        c_next = alpha c0 + beta ce + gamma cy + sqrt(var) z,

    ``(alpha, beta, gamma, var)`` shaped like ``s`` (its effective singular values, 0 where missing); ``sn`` the VE
    level of the next time. The sampler's step and the closed form (spectral/transfer.py) both use it; ``eta`` and
    ``eta_b`` may be floats or 0-dim tensors (the designer's differentiable knobs)."""
    tilde, std = sqrt_pos(1 - eta**2) * sn, eta * sn
    inv = safe_ratio(torch.ones_like(s), s)
    noisier, less_noisy = s * sn > sigma, (s > 0) & (s * sn < sigma)
    sig = sigma if sigma > 0 else 1.0  # less_noisy is empty when sigma = 0
    zero, one = torch.zeros_like(s), torch.ones_like(s)
    alpha = torch.where(noisier, 1 - eta_b, torch.where(less_noisy, 1 - tilde * s / sig, one))
    beta = torch.where(noisier | less_noisy, zero, tilde * one)
    gamma = torch.where(noisier, eta_b * inv, torch.where(less_noisy, tilde / sig * one, zero))
    var = torch.where(noisier, (sn**2 - (eta_b * sigma * inv) ** 2).clamp(min=0), std**2 * one)
    return alpha, beta, gamma, var


class DDRM(Sampler):
    name = "ddrm"
    knob_specs = (
        Knob("eta", "unit", meaning="stochasticity of the unmeasured and less-noisy components"),
        Knob("eta_b", "positive", meaning="weight of the measurement on the noisier components"),
    )
    reference = "Kawar et al. 2022 (bahjat-kawar/ddrm): eta = 0.85, eta_b = 1.0, 20 uniform steps"

    def heuristic_values(self, task: str, steps: int) -> dict:
        return {"eta": 0.85, "eta_b": 1.0}

    def initial(self, operator, y, sigma, params, seed, indices, abar, shape):
        z = operator.Vt(randn_per_image(shape, seed, indices, f"{self.name}/init", dtype=y.dtype, device=y.device))
        cy = operator.Ut(y)
        s, _ = effective_singulars(operator, cy.real)
        a_T = float(abar[params.timesteps[0]])
        sn = math.sqrt((1 - a_T) / a_T)
        large = s * sn > sigma
        remaining = torch.where(
            large, (sn**2 - safe_ratio(torch.full_like(s, sigma), s) ** 2).clamp(min=0).sqrt(), torch.full_like(s, sn)
        )
        c = torch.where(large, safe_ratio(cy, s.to(cy.dtype)), torch.zeros_like(cy)) + remaining * z
        return math.sqrt(a_T) * operator.V(c)

    def step(self, denoiser, operator, y, sigma, params, i, t, a_t, a_prev, x, noise, surrogate):
        eta, eta_b = params.value("eta", i), params.value("eta_b", i)
        with torch.no_grad():
            x0 = denoiser.x0(x, t)
        eps = (x - math.sqrt(a_t) * x0) / math.sqrt(1 - a_t)
        sn = math.sqrt((1 - a_prev) / a_prev)
        c0, ce, cy = operator.Vt(x0), operator.Vt(eps), operator.Ut(y)
        s, _ = effective_singulars(operator, c0.real)
        z = operator.Vt(noise("z")) if sn > 0 else torch.zeros_like(c0)
        alpha, beta, gamma, var = ddrm_coefficients(s, sn, sigma, eta, eta_b)
        c = alpha * c0 + beta * ce + gamma * cy + var.sqrt() * z
        return math.sqrt(a_prev) * operator.V(c), x0

    def closed_form_initial(self, p: BlockLike, a_T: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The law of :meth:`initial`, ``p(x_T | y)``: ``B = sqrt(abar_T) [diag(1 / s); 0]`` where ``s sn_T > sigma``
        (0 elsewhere), ``V = abar_T diag(sn_T^2 - sigma^2 / s^2 there, sn_T^2 elsewhere)``."""
        sn = math.sqrt((1 - a_T) / a_T)
        s = pad(p.s_eff, p.n)
        large = s * sn > p.sigma
        inv = safe_inv(s)
        B = embed(torch.where(large, inv, torch.zeros_like(s))[..., : p.m], p.n).to(p.dtype) * math.sqrt(a_T)
        var = torch.where(large, (sn**2 - (p.sigma * inv) ** 2).clamp(min=0), torch.full_like(s, sn**2)) * a_T
        return B, torch.diag_embed(var.to(p.dtype))

    def closed_form_step(self, step: StepInputs) -> AffineStep:
        """:meth:`step` as ``c_next = alpha c0 + beta ce + gamma cy + sqrt(var) z`` (:func:`ddrm_coefficients`), then
        ``x' = a V c_next``: ``A = a (diag(alpha) C + diag(beta) eps_x)``, ``b = a [diag(gamma); 0]``,
        ``E = abar_{t-1} diag(var)``, ``Q = a (alpha + beta x0_eps)``, ``a = sqrt(abar_{t-1})``."""
        p, eta, eta_b = step.p, step.value("eta"), step.value("eta_b")
        r = math.sqrt(step.a_prev)
        sn = math.sqrt((1 - step.a_prev) / step.a_prev)
        alpha, beta, gamma, var = ddrm_coefficients(step.s, sn, p.sigma, eta, eta_b)
        return AffineStep(
            r * (col(alpha.to(p.dtype)) * step.C + col(beta.to(p.dtype)) * step.eps_x),
            r * embed(gamma[..., : p.m].to(p.dtype), p.n),
            step.a_prev * torch.diag_embed(var.to(p.dtype)),
            r * (alpha + step.x0_eps * beta),
        )
