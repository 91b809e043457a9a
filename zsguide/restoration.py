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

Value checks (:func:`check_images`, :func:`check_measurement`; the API's ``measure`` and ``Measurement.from_pixels``
and ``restore --input`` use them): clean images must be finite and lie in [0, 1] exactly. A measurement ``y = A x +
sigma_y n`` leaves [0, 1] legitimately through its noise, so it may lie in ``[-m, 1 + m]``, ``m = 8 sigma_pix +
0.01`` (``sigma_pix`` its noise std in pixel units; a standard normal exceeds 8 in absolute value with probability
1.2e-15 per pixel, and 0.01 absorbs rounding and a user's FFT or kernel arithmetic); for inpainting only the observed
pixels count (the others are zeroed whatever they hold).
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable

import torch

from .errors import ZSGuideError
from .operators.base import LinearOperator
from .samplers.base import ParamSchedule, Sampler
from .samplers.cost import Cost, counting

NOISE_CONVENTIONS = ("pixel", "network")
MEASUREMENT_SIGMAS = 8.0  # a measurement may leave [0, 1] by this many noise stds (pixel units) ...
MEASUREMENT_TOLERANCE = 0.01  # ... plus this (rounding, a user's FFT or kernel arithmetic)


def _value_range(values: torch.Tensor, what: str) -> tuple[float, float]:
    v = values.detach()
    if v.numel() == 0:
        raise ZSGuideError(f"{what} is empty")
    if not bool(torch.isfinite(v).all()):
        raise ZSGuideError(f"{what} holds NaN or infinite values")
    return float(v.min()), float(v.max())


def check_images(images: torch.Tensor, what: str = "images") -> None:
    """Clean images must be finite and in [0, 1] pixel units: one :class:`ZSGuideError` line with the range found."""
    lo, hi = _value_range(images, what)
    if lo < 0 or hi > 1:
        raise ZSGuideError(f"{what} hold values in [{lo:.4g}, {hi:.4g}], outside [0, 1] (images are in pixel units)")


def check_measurement(
    y_pix: torch.Tensor, operator: LinearOperator, sigma_net: float, what: str = "measurement"
) -> None:
    """A measurement in pixel units (C, h, w) or (B, C, h, w) must be finite and, where the operator observes it
    (``U U^T``; all of it except inpainting's missing pixels), lie in ``[-m, 1 + m]``, ``m = 8 sigma_pix + 0.01``,
    ``sigma_pix = sigma_net / 2`` (module docstring); otherwise one :class:`ZSGuideError` line with the range found."""
    _value_range(y_pix, what)
    y = y_pix.detach().to(torch.float64).reshape(-1, *y_pix.shape[-3:])
    op = operator.to(dtype=torch.float64)
    seen = to_pixel_units(op.U(op.Ut(2 * y - op.A(torch.ones((1, *op.image_shape), dtype=torch.float64)))), op)
    lo, hi = float(seen.min()), float(seen.max())
    margin = MEASUREMENT_SIGMAS * abs(float(sigma_net)) / 2 + MEASUREMENT_TOLERANCE
    if lo < -margin or hi > 1 + margin:
        raise ZSGuideError(
            f"{what} holds values in [{lo:.4g}, {hi:.4g}], outside [{-margin:.4g}, {1 + margin:.4g}] (a measurement "
            f"in [0, 1] pixel units, widened by 8 noise stds + 0.01)"
        )


def network_sigma(sigma_y: float, noise_convention: str = "pixel") -> float:
    """The measurement noise std the network sees: ``2 sigma_y`` for ``pixel`` (sigma_y in [0, 1] units), ``sigma_y``
    for ``network`` (in [-1, 1] units); any other convention is one error line naming ``--noise_convention``."""
    if noise_convention not in NOISE_CONVENTIONS:
        raise ZSGuideError(f"unknown --noise_convention {noise_convention!r}; choose pixel or network")
    if not (isinstance(sigma_y, (int, float)) and math.isfinite(sigma_y) and sigma_y >= 0):
        raise ZSGuideError(f"sigma_y must be a finite number >= 0 (a noise std), got {sigma_y!r}")
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
    cost: Cost | None = None,
) -> torch.Tensor:
    """``x0_hat = sampler.run(D, A, y, sigma, params, seed, idx)`` (network units, detached), with autograd on for the
    samplers that differentiate through the denoiser and off for the others; ``cost`` (samplers/cost.py), when given,
    receives the run's network calls, vector-Jacobian products and operator applications per image. Those run outside inference mode even
    when called inside ``torch.inference_mode()`` (a notebook's habit), on copies of inference tensors, which autograd
    cannot save."""
    grad = contextlib.ExitStack()
    if not sampler.needs_grad:
        grad.enter_context(torch.no_grad())
    else:
        if torch.is_inference_mode_enabled() or y.is_inference():
            grad.enter_context(torch.inference_mode(False))
            op, y = copy.deepcopy(op), y.clone()
        grad.enter_context(torch.enable_grad())
    if cost is not None:
        denoiser, op = counting(denoiser, op, cost)
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
