"""DiffPIR (Zhu et al. 2023, "Denoising Diffusion Models for Plug-and-Play Image Restoration"; reference code
yuanzhi-zhu/DiffPIR).

Data step (the closed-form proximal step of ``||y - H x||^2 / (2 sigma^2)`` with weight ``rho_t`` around x0_hat):

    x0_y = argmin_x ||y - H x||^2 + rho_t ||x - x0_hat||^2 = V diag(1 / (s^2 + rho_t)) (s U^T y + rho_t V^T x0_hat),
    rho_t = lam sigma_pix^2 / sigma_t^2,  sigma_t^2 = (1 - abar_t) / abar_t (VE),

with ``sigma_pix = sigma / 2`` the noise std in [0, 1] pixel units floored at 1e-3: the reference's
``max(0.001, noise_level_img)`` and its units, so ``lam`` is the reference's lambda (deepinv's ``lambda_`` is half of
it: its data step is ``prox`` of ``||A x - y||^2 / 2`` with ``gamma = 1 / (2 rho)``; tests/test_deepinv_agreement.py)

then ``x_{t-1} = sqrt(abar_{t-1}) x0_y + sqrt(1 - abar_{t-1}) (sqrt(1 - zeta) eps' + sqrt(zeta) z)`` with
``eps' = (x_t - sqrt(abar_t) x0_y) / sqrt(1 - abar_t)``. Heuristic defaults, from the reference repo's run
loops (which multiply the base values: ``lambdas = [lambda_ * i for i in range(7, 8)]``, ``zeta * 3`` in its deblurring script): ``lam = 7``,
``zeta`` 0.3 for deblurring, 0.25 for super-resolution (its SR script), 1.0 for inpainting; quadratic step spacing.
``lam`` may be given per radial frequency band on blur (the designer's per-frequency variant; samplers/bands.py).
Closed form (theory.md §4, samplers/law.py): ``X = diag(keep) C``, ``Y = [diag(gain); 0]``
(:func:`diffpir_coefficients`), ``A = k1 X + k2 I``, ``b = k1 Y``, ``E = var I``; the last step ``(X, Y, 0)``.
The last step returns the final data-consistent estimate ``x0_y`` (the reference returns the state at t = 0, one
denoise-and-project earlier).
"""

from __future__ import annotations

import math

import torch

from ..operators.tasks import task_family
from .bands import expand_bands, radial_bands
from .base import Knob, Sampler
from .law import AffineStep, StepInputs, col, embed, eye
from .svd import effective_singulars

SIGMA_FLOOR = 1e-3  # pixel units
ZETA = {"deblurring": 0.3, "super-resolution": 0.25, "inpainting": 1.0}  # the reference's zeta per task family


def diffpir_coefficients(s: torch.Tensor, rho, a_t: float, a_prev: float, zeta):
    """DiffPIR's step per singular value (the module docstring) as ``(keep, gain, k1, k2, var)``:

        c0_y = keep c0 + gain cy,   keep = rho_t / (s^2 + rho_t),   gain = s / (s^2 + rho_t)
                                    (keep = 1, gain = 0 where s = 0: x0_hat is kept, for any rho_t),
        x_{t-1} = k1 x0_y + k2 x_t + sqrt(var) z,
        k2 = sqrt(1 - abar_{t-1}) sqrt(1 - zeta) / sqrt(1 - abar_t),   k1 = sqrt(abar_{t-1}) - k2 sqrt(abar_t),
        var = (1 - abar_{t-1}) zeta,

    the re-noising written in ``x_t`` through ``eps' = (x_t - sqrt(abar_t) x0_y) / sqrt(1 - abar_t)``, ``zeta``
    clipped to [0, 1]. ``(keep, gain)`` are shaped like ``s`` (the effective singular values, 0 where missing);
    ``rho`` is the step's :meth:`DiffPIR.rho` (a float, or a tensor per frequency). The last step
    (``abar_{t-1} = 1``) uses only ``(keep, gain)``. The sampler's step and the closed form (spectral/transfer.py)
    both use it; ``rho`` and ``zeta`` may be tensors (the designer's differentiable knobs)."""
    den = torch.where(s > 0, s * s + rho, torch.ones_like(s))
    keep = torch.where(s > 0, rho / den, torch.ones_like(s))
    gain = s / den
    zeta = torch.as_tensor(zeta, dtype=torch.float64).clamp(0.0, 1.0)
    k2 = math.sqrt(1 - a_prev) * (1 - zeta).sqrt() / math.sqrt(1 - a_t)
    k1 = math.sqrt(a_prev) - k2 * math.sqrt(a_t)
    return keep, gain, k1, k2, (1 - a_prev) * zeta


class DiffPIR(Sampler):
    name = "diffpir"
    knob_specs = (
        Knob("lam", "positive", per_band=True, meaning="the data term's weight (rho_t multiplier)"),
        Knob("zeta", "unit", meaning="share of fresh noise in the re-noising"),
    )
    default_spacing = "quadratic"
    reference = (
        "Zhu et al. 2023 (yuanzhi-zhu/DiffPIR run loops): lambda 7, zeta 0.3 deblur / 0.25 SR / 1.0 "
        "inpainting, quadratic skip"
    )

    def heuristic_values(self, task: str, steps: int) -> dict:
        return {"lam": 7.0, "zeta": ZETA[task_family(task)]}

    @staticmethod
    def rho(lam: float | torch.Tensor, sigma: float, a_t: float) -> float | torch.Tensor:
        """``rho_t = lam max(sigma / 2, 1e-3)^2 / sigma_t^2`` for ``sigma`` in network units."""
        return lam * max(sigma / 2, SIGMA_FLOOR) ** 2 * a_t / (1 - a_t)

    def step(self, denoiser, operator, y, sigma, params, i, t, a_t, a_prev, x, noise, surrogate):
        zeta = params.value("zeta", i)
        with torch.no_grad():
            x0 = denoiser.x0(x, t)
        c0, cy = operator.Vt(x0), operator.Ut(y)
        lam = expand_bands(params.values["lam"][i], operator, c0, self.name, "lam")  # a float, or per frequency
        s, _ = effective_singulars(operator, c0.real)
        keep, gain, k1, k2, var = diffpir_coefficients(s, self.rho(lam, sigma, a_t), a_t, a_prev, zeta)
        x0_y = operator.V(keep * c0 + gain * cy)
        if a_prev >= 1.0:
            return x0_y, x0_y
        return k1 * x0_y + k2 * x + var.sqrt() * noise("z"), x0_y

    def closed_form_step(self, step: StepInputs) -> AffineStep:
        """:meth:`step` per block (:func:`diffpir_coefficients`): ``x0_y = X x + Y ybar`` with ``X = diag(keep) C``,
        ``Y = [diag(gain); 0]``, then ``x' = k1 x0_y + k2 x + N(0, var I)``: ``A = k1 X + k2 I``, ``b = k1 Y``,
        ``E = var I``, ``Q = k1 keep``; the last step ``(X, Y, 0)``. A ``lam`` per radial band (a vector) is expanded
        to the blocks' frequency grid (a circulant problem only)."""
        p, lam, zeta = step.p, step.value("lam"), step.value("zeta")
        if lam.ndim == 1:  # per radial frequency band (blur): expand to the blocks' frequency grid
            if p.structure != "fourier_diagonal":
                raise ValueError("per-frequency DiffPIR lam needs a circulant problem")
            lam = lam[radial_bands(*p.grid, lam.numel())][..., None]
        rho = self.rho(lam, p.sigma, step.a_t)
        keep, gain, k1, k2, var = diffpir_coefficients(step.s, rho, step.a_t, step.a_prev, zeta)
        X, Y = col(keep.to(p.dtype)) * step.C, embed(gain[..., : p.m].to(p.dtype), p.n)
        if step.last:
            return AffineStep(X, Y, 0.0, keep)
        return AffineStep(k1 * X + k2 * eye(p), k1 * Y, var * eye(p), k1 * keep)
