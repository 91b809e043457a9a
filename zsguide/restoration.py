"""The pieces of one restoration below the Python API (zsguide/api.py ``measure`` and ``restore``, which every command
runs): the noise level in network units, the sampler run, and the maps between pixel and network units.

Per batch of test images ``img`` (pixel units [0, 1]) with dataset indices ``idx``:

    x      = 2 img - 1                                        network units [-1, 1]
    A      = make_operator(task, shape, seed, idx, **task_params)   masks/kernels from (seed, index)
    y      = A x + sigma P n,  n from (seed, index)           sigma = network_sigma(sigma_y, noise_convention)
    x0_hat = sampler.run(D, A, y, sigma, params, seed, idx)   sampler noise from (seed, index)
    restored = (x0_hat + 1) / 2,   measurement = (y + A 1) / 2   back to pixel units

so image i's result never depends on the batch it sat in or on the device count.

Noise: ``sigma_y`` is the measurement noise std in pixel units [0, 1] (the canonical convention, README); the network
sees std ``sigma = 2 sigma_y``. The ``network`` convention takes ``sigma_y`` as the [-1, 1] std instead (``sigma =
sigma_y``; DPS's 0.05 is such a number).

Network units of a measurement (README "Conventions"): ``A(2 x - 1) = 2 A x - A 1``, so ``y = 2 y_pix - A 1``,
projected onto the range of the measurement basis, ``y = U U^T (2 y_pix - A 1)``. For inpainting that zeroes the
missing pixels (the operator's measurements are exactly 0 there); for blur and super-resolution ``U U^T`` is the
identity.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .errors import ZSGuideError
from .operators.base import LinearOperator
from .samplers.base import ParamSchedule, Sampler

NOISE_CONVENTIONS = ("pixel", "network")


def network_sigma(sigma_y: float, noise_convention: str = "pixel") -> float:
    """The measurement noise std the network sees: ``2 sigma_y`` for ``pixel`` (sigma_y in [0, 1] units), ``sigma_y``
    for ``network`` (in [-1, 1] units); any other convention is one error line naming ``--noise_convention``."""
    if noise_convention not in NOISE_CONVENTIONS:
        raise ZSGuideError(f"unknown --noise_convention {noise_convention!r}; choose pixel or network")
    return 2 * sigma_y if noise_convention == "pixel" else sigma_y


def to_network_units(y_pix: torch.Tensor, operator: LinearOperator) -> torch.Tensor:
    """``y = U U^T (2 y_pix - A 1)`` (1, *measurement_shape), float64, from a pixel-unit measurement (C, h, w)."""
    op = operator.to(dtype=torch.float64)
    ones = torch.ones((1, *op.image_shape), dtype=torch.float64)
    y = 2 * y_pix.to(torch.float64)[None] - op.A(ones)
    return op.U(op.Ut(y))


def to_pixel_units(y: torch.Tensor, operator: LinearOperator) -> torch.Tensor:
    """The inverse map for display and files: ``y_pix = (y + A 1) / 2`` (same leading dims as ``y``)."""
    ones = torch.ones((y.shape[0], *operator.image_shape), dtype=y.dtype, device=y.device)
    return (y + operator.A(ones)) / 2


def run_sampler(
    sampler: Sampler,
    denoiser,
    op: LinearOperator,
    y: torch.Tensor,
    *,
    sigma_net: float,
    params: ParamSchedule,
    seed: int,
    indices: list[int],
    surrogate,
    callback: Callable | None = None,
) -> torch.Tensor:
    """``x0_hat = sampler.run(D, A, y, sigma, params, seed, idx)`` (network units, detached), with autograd on for the
    samplers that differentiate through the denoiser and off for the others."""
    grad = torch.enable_grad() if sampler.needs_grad else torch.no_grad()
    with grad:
        x0 = sampler.run(
            denoiser,
            op,
            y,
            sigma=sigma_net,
            params=params,
            seed=seed,
            indices=indices,
            surrogate=surrogate,
            callback=callback,
        )
    return x0.detach()
