"""Unconditional DDIM sampling (Song et al. 2021), used for the sample grids that fit writes at validation.

    x_{t-1} = sqrt(abar_{t-1}) x0_hat + sqrt(1 - abar_{t-1} - s_t^2) eps_hat + s_t z,
    s_t = eta sqrt((1 - abar_{t-1}) / (1 - abar_t)) sqrt(1 - abar_t / abar_{t-1})

with ``abar`` of the time after the last step taken as 1 (the last step returns ``x0_hat``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..seeding import randn_per_image
from .ddim import ddim_coefficients
from .denoisers import Denoiser


@torch.no_grad()
def ddim_sample(
    denoiser: Denoiser,
    shape: Sequence[int],
    indices: Sequence[int],
    seed: int,
    steps: int = 50,
    eta: float = 0.0,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Draw ``len(indices)`` samples of ``shape`` (C, H, W); image ``i`` uses the noise streams of (seed, i)."""
    taus = denoiser.schedule.timesteps(steps).tolist()
    abar = denoiser.schedule.alphas_cumprod
    x = randn_per_image(shape, seed, indices, "ddim/init", device=device)
    for i, t in enumerate(taus):
        a_t = float(abar[t])
        a_prev = float(abar[taus[i + 1]]) if i + 1 < len(taus) else 1.0
        x0 = denoiser.x0(x, t)
        eps = (x - a_t**0.5 * x0) / (1 - a_t) ** 0.5
        c_eps, s = ddim_coefficients(a_t, a_prev, eta)
        x = a_prev**0.5 * x0 + c_eps * eps
        if s > 0:
            x = x + s * randn_per_image(shape, seed, indices, f"ddim/step{i}", device=device)
    return x
