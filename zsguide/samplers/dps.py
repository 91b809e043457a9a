"""DPS (Chung et al. 2023, "Diffusion Posterior Sampling for General Noisy Inverse Problems"; reference code
DPS2022/diffusion-posterior-sampling).

    x0_hat = D(x_t, t);  x'_{t-1} = DDIM step from x0_hat with eta (1: the DDPM ancestral step of the reference)
    x_{t-1} = x'_{t-1} - zeta_t grad_{x_t} || y - H x0_hat ||_2

The residual norm (not squared, as in the reference code) is taken **per image**, so an image's result does not
depend on the batch it is in (the reference takes it over the whole batch). Heuristic defaults: ``zeta`` 0.5 for
inpainting and 0.3 for deblurring and super-resolution (the reference configs), 1000 steps in the paper; at fewer
steps the same constants are used, which is what the spectral design replaces.
"""

from __future__ import annotations

import torch

from .base import Knob, Sampler, ddim_from_estimate
from .svd import sqrt_pos


def dps_gain(zeta, sq_norm) -> torch.Tensor:
    """DPS's step per unit of residual: with ``r = y - H x0_hat`` and ``J = d x0_hat / d x_t``,

        zeta_t grad_{x_t} ||r|| = gain (H J)^T (H x0_hat - y),   gain = zeta_t / ||r||,

    from the squared norm ``sq_norm`` (``sqrt_pos``: a float64 tensor, finite for a zero residual, whose gradient
    stays finite). The sampler's step takes it per image at the real residual; the closed form (spectral/transfer.py)
    at the residual's expected squared norm. ``zeta`` may be a float or a 0-dim tensor (the designer's knob)."""
    return zeta / sqrt_pos(sq_norm)


class DPS(Sampler):
    name = "dps"
    knob_specs = (
        Knob("zeta", "positive", meaning="step size on the residual norm's gradient"),
        Knob("eta", "unit", meaning="stochasticity of the DDIM step"),
    )
    needs_grad = True
    reference = "Chung et al. 2023 (DPS2022/diffusion-posterior-sampling): zeta 0.5 inpainting, 0.3 otherwise, eta 1"

    def heuristic_values(self, task: str, steps: int) -> dict:
        return {"zeta": 0.5 if task.startswith("inpaint") else 0.3, "eta": 1.0}

    def step(self, denoiser, operator, y, sigma, params, i, t, a_t, a_prev, x, noise, surrogate):
        zeta, eta = params.value("zeta", i), params.value("eta", i)
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            x0 = denoiser.x0(xg, t)
            sq = (y - operator.A(x0)).flatten(1).square().sum(1)  # one squared residual norm per image
            (g,) = torch.autograd.grad(0.5 * sq.sum(), xg)  # per image: (H J)^T (H x0_hat - y)
        x0 = x0.detach()
        gain = dps_gain(zeta, sq.detach()).view(-1, *[1] * (g.dim() - 1))
        x_prev = ddim_from_estimate(x, x0, a_t, a_prev, eta, lambda: noise("z"))
        return x_prev - (gain * g).to(g.dtype), x0
