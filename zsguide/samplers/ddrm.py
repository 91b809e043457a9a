"""DDRM (Kawar et al. 2022, "Denoising Diffusion Restoration Models"; reference code bahjat-kawar/ddrm).

Works on the VE scale ``x_mod = x_t / sqrt(abar_t)`` in the SVD basis. With ``c0 = V^T x0_hat``, ``ce = V^T eps_hat``,
``cy = U^T y``, ``sn`` the VE level of the next time and fresh white coefficients ``z``, per singular component:

    s = 0 (missing):            c_next = c0 + sqrt(1 - eta^2) sn ce + eta sn z
    s sn < sigma (less noisy):  c_next = c0 + sqrt(1 - eta^2) sn (cy - s c0) / sigma + eta sn z
    s sn > sigma (noisier):     c_next = eta_b cy / s + (1 - eta_b) c0 + sqrt(sn^2 - eta_b^2 sigma^2 / s^2) z

then ``x_{t-1} = sqrt(abar_{t-1}) V c_next``. The last step (sn = 0) returns ``x0_hat``. Initialisation
``p(x_T | y)``: ``cy / s + sqrt(sn_T^2 - sigma^2 / s^2) z`` where ``s sn_T > sigma``, ``sn_T z`` elsewhere.
Heuristic defaults: ``eta = 0.85``, ``eta_b = 1.0``, 20 uniformly spaced steps (the DDRM README / configs).
"""

from __future__ import annotations

import math

import torch

from ..seeding import randn_per_image
from .base import Knob, Sampler
from .svd import effective_singulars, safe_ratio


class DDRM(Sampler):
    name = "ddrm"
    knob_specs = (Knob("eta", "unit", meaning="stochasticity of the unmeasured and less-noisy components"),
                  Knob("eta_b", "positive", meaning="weight of the measurement on the noisier components"))
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
        remaining = torch.where(large, (sn**2 - safe_ratio(torch.full_like(s, sigma), s) ** 2).clamp(min=0).sqrt(),
                                torch.full_like(s, sn))
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
        tilde, std = math.sqrt(max(1 - eta**2, 0.0)) * sn, eta * sn
        missing = c0 + tilde * ce + std * z
        if sigma > 0:
            after = c0 + tilde * (cy - s * c0) / sigma + std * z
        else:
            after = missing
        inv_s = safe_ratio(torch.ones_like(s), s)
        before = (eta_b * cy * inv_s + (1 - eta_b) * c0
                  + (sn**2 - (eta_b * sigma * inv_s) ** 2).clamp(min=0).sqrt() * z)
        c = torch.where(s * sn > sigma, before, torch.where((s > 0) & (s * sn < sigma), after, missing))
        return math.sqrt(a_prev) * operator.V(c), x0
