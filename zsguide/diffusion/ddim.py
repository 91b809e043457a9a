"""The DDIM step's coefficients (Song et al. 2021), written once for every user: the unconditional sampler
(diffusion/sampling.py), the zero-shot samplers' common step (samplers/base.py) and its closed form
(spectral/transfer.py):

    x_{t-1} = sqrt(abar_{t-1}) x0 + c_eps eps + s_t z,
    s_t = eta sqrt((1 - abar_{t-1}) / (1 - abar_t)) sqrt(1 - abar_t / abar_{t-1}),   c_eps = sqrt(1 - abar_{t-1} - s_t^2).
"""

from __future__ import annotations

import math

import torch


def ddim_coefficients(abar_t: float, abar_prev: float, eta):
    """``(c_eps, s_t)`` of the DDIM step (module docstring). ``eta`` a float gives floats; a 0-dim tensor (the
    designer's differentiable knob) gives tensors, ``c_eps`` with a finite gradient everywhere (its radicand clamped
    at 1e-300 rather than 0)."""
    s = eta * math.sqrt(max((1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev), 0.0))
    if torch.is_tensor(s):
        return torch.as_tensor(1 - abar_prev - s * s, dtype=torch.float64).clamp(min=1e-300).sqrt(), s
    return math.sqrt(max(1 - abar_prev - s * s, 0.0)), s
