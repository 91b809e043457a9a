"""PiGDM (Song et al. 2023, "Pseudoinverse-Guided Diffusion Models for Inverse Problems"), exact for SVD operators.

PiGDM approximates ``p(y | x_t) ~ N(H x0_hat, r_t^2 H H^T + sigma^2 I)`` with ``r_t^2 = 1 - abar_t`` (the VP form of
the paper's ``sigma_t^2 / (1 + sigma_t^2)``, unit-variance data) and guides with the vector-Jacobian product through
the denoiser

    g = (d x0_hat / d x_t)^T r_t^2 H^T (r_t^2 H H^T + sigma^2 I)^{-1} (y - H x0_hat),

added to the unguided DDIM step (Algorithm 1 and the reference implementations, NVlabs/RED-diff ``algos/pgdm.py``
with its default ``awd``, probabilists/azula ``guidance/pgdm.py``):

    x_{t-1} = DDIM(x0_hat; eta) + w_t sqrt(abar_{t-1} abar_t) g          (abar_{t-1} := 1 at the last step),

with ``H^T (r^2 H H^T + sigma^2)^{-1} = V diag(s / (r^2 s^2 + sigma^2)) U^T`` computed exactly in the SVD basis.
``g`` is ``r_t^2`` times the approximate likelihood score. Moving ``x0`` by the full Tweedie amount
``(1 - abar_t) / sqrt(abar_t)`` times the score instead (an earlier version of this file) is ``1 / abar_t`` times
larger at high t and diverges on natural-image priors, where the prior variance per frequency exceeds 1: the closed
form showed it (docs/benchmarks.md). Under a Gaussian prior the exact guidance would use the posterior
covariance ``Cov[x0 | x_t] = S_t`` (theory.md §3) where PiGDM uses ``r_t^2 I`` and the network's Jacobian: it is
exact only where ``S_t = r_t^2 I``, so the method is not an exact posterior sampler (theory.md §4).
Closed form (theory.md §4, samplers/law.py): with ``(q, k)`` of :func:`pigdm_coefficients` and the Jacobian
``C^H``, ``A = A_ddim - k C^H diag(q s) C``, ``b = k C^H [diag(q); 0]``, ``E = s_t^2 I``.
Heuristic defaults: guidance weight ``w = 1``, ``eta = 1`` (the paper's DDPM-like setting), 100 steps.
"""

from __future__ import annotations

import math

import torch

from ..operators.base import safe_ratio
from .base import Knob, Sampler, ddim_from_estimate
from .law import AffineStep, StepInputs, col, eye, mm, zero_b
from .svd import effective_singulars


def pigdm_coefficients(s: torch.Tensor, a_t: float, a_prev: float, sigma: float, w):
    """PiGDM's guidance per singular value as ``(q, k)``: ``g = J^T V diag(q) (cy - s c0)`` with
    ``q = r_t^2 s / (r_t^2 s^2 + sigma^2)`` (0 where ``s = 0``), added to the DDIM step as ``k g`` with
    ``k = w sqrt(abar_{t-1} abar_t)`` (module docstring). The sampler's step and the closed form
    (spectral/transfer.py) both use it; ``w`` may be a float or a 0-dim tensor (the designer's knob)."""
    r2 = 1 - a_t
    return safe_ratio(r2 * s, r2 * s * s + sigma**2), w * math.sqrt(min(a_prev, 1.0) * a_t)


class PiGDM(Sampler):
    name = "pigdm"
    knob_specs = (
        Knob("weight", "positive", meaning="guidance weight on the pseudo-inverse correction"),
        Knob("eta", "unit", meaning="stochasticity of the DDIM step"),
    )
    needs_grad = True
    reference = "Song et al. 2023 (PiGDM; NVlabs/RED-diff pgdm): weight 1, r_t^2 = 1 - abar_t, eta = 1, 100 steps"

    def heuristic_values(self, task: str, steps: int) -> dict:
        return {"weight": 1.0, "eta": 1.0}

    def step(self, denoiser, operator, y, sigma, params, i, t, a_t, a_prev, x, noise, surrogate):
        w, eta = params.value("weight", i), params.value("eta", i)
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            x0 = denoiser.x0(xg, t)
            c0, cy = operator.Vt(x0.detach()), operator.Ut(y)
            s, _ = effective_singulars(operator, c0.real)
            q, k = pigdm_coefficients(s, a_t, a_prev, sigma, w)
            v = operator.V(q * (cy - s * c0))
            (g,) = torch.autograd.grad(x0, xg, grad_outputs=v.to(x0.dtype))
        x0 = x0.detach()
        x_prev = ddim_from_estimate(x, x0, a_t, a_prev, eta, lambda: noise("z")) + k * g
        return x_prev, x0 + w * math.sqrt(
            a_t
        ) * g  # for callbacks: x0_hat moved by the guidance (exact at the last step)

    def closed_form_step(self, step: StepInputs) -> AffineStep:
        """:meth:`step` per block: the DDIM step from ``x0_hat = C x`` plus ``k g``, ``g = C^H diag(q) (ybar -
        diag(s) x0_hat)`` (``C^H``: the Jacobian): ``A = A_ddim - k C^H diag(q s) C``, ``b = k C^H [diag(q); 0]``,
        ``E = s_t^2 I``, ``Q = k1 I - k C^H diag(q s)`` (:func:`pigdm_coefficients`)."""
        p, C, w, eta = step.p, step.C, step.value("weight"), step.value("eta")
        s = step.s
        q, k = pigdm_coefficients(s, step.a_t, step.a_prev, p.sigma, w)
        Ch = C.mH
        A, _, E, k1 = step.ddim(C, zero_b(p), 0.0, eta)
        qs = (q * s).to(p.dtype)
        return AffineStep(
            A - k * mm(Ch, col(qs) * C),
            k * Ch[..., :, : p.m] * q[..., None, : p.m].to(p.dtype),
            E,
            k1 * eye(p) - k * Ch * qs[..., None, :],
        )
