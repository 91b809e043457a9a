"""DDNM+ (Wang et al. 2023, "Zero-Shot Image Restoration Using Denoising Diffusion Null-Space Model"; reference code
wyhuai/DDNM, ``ddnm_plus_diffusion`` with the SVD operators' ``Lambda`` / ``Lambda_noise``), without time travel.

With ``a = sqrt(abar_{t-1})``, ``st = sqrt(1 - abar_{t-1})`` (VP), ``c0 = V^T x0_hat``, ``cy = U^T y``:

    range-null-space correction (Eq. 17):  x0_y = x0_hat - V [ mult_t Lambda_k s_k^+ (s_k c0 - cy) ]
    Lambda_k = 1, or s_k st sqrt(1 - eta^2) / (a sigma) where st < a sigma / s_k
    x_{t-1} = a x0_y + V [ d1_k z + d2_k V^T eps_hat ]  (Eq. 51) with
      s_k = 0:                d1 = st eta,                   d2 = st sqrt(1 - eta^2)
      st < a sigma / s_k:     d1 = st eta,                   d2 = 0
      st > a sigma / s_k:     d1 = sqrt(st^2 - a^2 sigma^2 / s_k^2), d2 = 0
For sigma = 0 the reference code keeps Lambda = 1 and the DDIM noise split everywhere; so does this one.
``Lambda_k`` is the reference code's ``Lambda`` (not the surrogate's spectrum ``lambda_k``). ``mult_t`` (knob
``lambda_scale``, 1 in the reference) scales the correction: the knob the spectral design sets.
Closed form (theory.md §4, samplers/law.py): ``g`` of :func:`ddnm_coefficients`, ``X = diag(1 - g) C``,
``Y = [diag(g / s); 0]``; ``A = a X + diag(d2) eps_x``, ``b = a Y``, ``E = diag(d1^2)``; the last step ``(X, Y, 0)``.
Heuristic defaults: ``eta = 0.85``, 100 uniformly spaced steps (DDNM's configs).
"""

from __future__ import annotations

import math

import torch

from .base import Knob, Sampler
from .law import AffineStep, StepInputs, col, embed, safe_inv
from .svd import effective_singulars, sqrt_pos


def ddnm_coefficients(s: torch.Tensor, s_pinv: torch.Tensor, a: float, st: float, sigma: float, eta, mult):
    """DDNM+'s step per singular value (the module docstring's cases) as ``(g, d1, d2)``:

        c0_y = c0 - g s^+ (s c0 - cy),   c_next / a = c0_y + (d1 z + d2 ce) / a,

    ``g = mult Lambda_k`` on the kept range (0 where ``s = 0``), shaped like ``s``; ``s_pinv`` its pseudo-inverse.
    The sampler's step and the closed form (spectral/transfer.py) both use it; ``eta`` and ``mult`` may be floats or
    0-dim tensors (the designer's differentiable knobs)."""
    one = torch.ones_like(s)
    root = sqrt_pos(1 - eta**2)
    d1, d2, Lambda = st * eta * one, st * root * one, one
    if sigma > 0:
        thresh = a * sigma * s_pinv  # a sigma / s (0 where s = 0)
        low, high = (s > 0) & (st < thresh), (s > 0) & (st > thresh)
        Lambda = torch.where(low, s * st * root / (a * sigma), one)
        d2 = torch.where(low | high, torch.zeros_like(s), d2)
        d1 = torch.where(high, (st**2 - thresh**2).clamp(min=0).sqrt(), d1)
    return mult * Lambda * (s > 0).to(s.dtype), d1, d2


class DDNMPlus(Sampler):
    name = "ddnm"
    knob_specs = (
        Knob("eta", "unit", meaning="stochasticity of the DDIM step"),
        Knob("lambda_scale", "positive", meaning="multiplier of the range-space correction lambda_t"),
    )
    reference = "Wang et al. 2023 (wyhuai/DDNM, DDNM+): eta = 0.85, lambda_t as in the reference, 100 steps"

    def heuristic_values(self, task: str, steps: int) -> dict:
        return {"eta": 0.85, "lambda_scale": 1.0}

    def step(self, denoiser, operator, y, sigma, params, i, t, a_t, a_prev, x, noise, surrogate):
        eta, mult = params.value("eta", i), params.value("lambda_scale", i)
        with torch.no_grad():
            x0 = denoiser.x0(x, t)
        eps = (x - math.sqrt(a_t) * x0) / math.sqrt(1 - a_t)
        a, st = math.sqrt(a_prev), math.sqrt(1 - a_prev)
        c0, cy = operator.Vt(x0), operator.Ut(y)
        s, s_pinv = effective_singulars(operator, c0.real)
        g, d1, d2 = ddnm_coefficients(s, s_pinv, a, st, sigma, eta, mult)
        x0_y = x0 - operator.V(g * s_pinv * (s * c0 - cy))
        if a_prev >= 1.0:
            return x0_y, x0_y
        c_noise = d1 * operator.Vt(noise("z")) + d2 * operator.Vt(eps)
        return a * x0_y + operator.V(c_noise), x0_y

    def closed_form_step(self, step: StepInputs) -> AffineStep:
        """:meth:`step` per block: ``x0_y = X x + Y ybar`` with ``X = diag(1 - g) C``, ``Y = [diag(g s^+); 0]``, then
        ``x' = a x0_y + diag(d1) z + diag(d2) eps_hat``: ``A = a X + diag(d2) eps_x``, ``b = a Y``,
        ``E = diag(d1^2)``, ``Q = a (1 - g) + d2 x0_eps`` (:func:`ddnm_coefficients`); the last step ``(X, Y, 0)``."""
        p, eta, mult = step.p, step.value("eta"), step.value("lambda_scale")
        a, st = math.sqrt(step.a_prev), math.sqrt(1 - step.a_prev)
        s = step.s
        inv = safe_inv(s)
        g, d1, d2 = ddnm_coefficients(s, inv, a, st, p.sigma, eta, mult)
        X, Y = col((1 - g).to(p.dtype)) * step.C, embed((g * inv)[..., : p.m].to(p.dtype), p.n)
        if step.last:
            return AffineStep(X, Y, 0.0, 1 - g)
        return AffineStep(
            a * X + col(d2.to(p.dtype)) * step.eps_x,
            a * Y,
            torch.diag_embed((d1 * d1).to(p.dtype)),
            a * (1 - g) + step.x0_eps * d2,
        )
