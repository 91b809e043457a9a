"""PiGDM (Song et al. 2023, "Pseudoinverse-Guided Diffusion Models for Inverse Problems"), exact for SVD operators.

PiGDM approximates ``p(y | x_t) ~ N(H x0_hat, r_t^2 H H^T + sigma^2 I)`` with ``r_t^2 = 1 - abar_t`` and guides with
its score ``g = (d x0_hat / d x_t)^T H^T (r_t^2 H H^T + sigma^2 I)^{-1} (y - H x0_hat)`` (a vector-Jacobian product
through the denoiser). By Tweedie, ``E[x0 | x_t, y] = x0_hat + (1 - abar_t) / sqrt(abar_t) * grad log p(y | x_t)``,
so the guided estimate is

    x0_y = x0_hat + w_t (1 - abar_t) / sqrt(abar_t) g,     then the DDIM step from x0_y (base.py),

with ``H^T (r^2 H H^T + sigma^2)^{-1} = V diag(s / (r^2 s^2 + sigma^2)) U^T`` computed exactly in the SVD basis.
Under a Gaussian prior this is the gain ``G_t = s_t H^T (H r_t^2 H^T + sigma^2)^{-1}``: ``r_t^2`` in place of the
true ``s_t`` inside the inverse (theory.md §4). Heuristic defaults: guidance weight ``w = 1``, ``eta = 1`` (the
paper's DDPM-like setting), 100 steps. The paper adds ``sqrt(abar_t) g`` to ``x_{t-1}`` directly; the Tweedie form used
here is the same guidance expressed on ``x0``, which keeps every method in one template.
"""

from __future__ import annotations

import math

import torch

from .base import Sampler, ddim_from_estimate
from .svd import effective_singulars, safe_ratio


class PiGDM(Sampler):
    name = "pigdm"
    knobs = ("weight", "eta")
    needs_grad = True
    reference = "Song et al. 2023 (PiGDM): weight 1, r_t^2 = 1 - abar_t, eta = 1, 100 steps"

    def heuristic_values(self, task: str, steps: int) -> dict:
        return {"weight": 1.0, "eta": 1.0}

    def step(self, denoiser, operator, y, sigma, params, i, t, a_t, a_prev, x, noise, surrogate):
        w, eta = params.value("weight", i), params.value("eta", i)
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            x0 = denoiser.x0(xg, t)
            c0, cy = operator.Vt(x0.detach()), operator.Ut(y)
            s, _ = effective_singulars(operator, c0.real)
            r2 = 1 - a_t
            v = operator.V(safe_ratio(s, r2 * s * s + sigma**2) * (cy - s * c0))
            (g,) = torch.autograd.grad(x0, xg, grad_outputs=v.to(x0.dtype))
        x0_y = x0.detach() + w * (1 - a_t) / math.sqrt(a_t) * g
        return ddim_from_estimate(x, x0_y, a_t, a_prev, eta, lambda: noise("z")), x0_y
