"""Blur kernels, shape (B or 1, 1, k, k), nonnegative, normalised to sum 1, centred at (k // 2, k // 2).

Defaults for 32x32 images and their sources (docs/peers.md):
    Gaussian: size 9, sigma 1.5 -- scaled down from DPS's 61x61 sigma 3 at 256x256. The window shrinks with the
        image (61 / 8 ~ 8, rounded to the odd 9); a literal 1/8 scaling of sigma (0.375) would barely blur a 32x32
        image, so sigma is our choice: 1.5, a clearly visible blur with the window still covering +-2.7 sigma.
    uniform: size 9 -- DDRM's 9-tap uniform deblurring kernel.
    motion: size 9, intensity 0.5 -- DPS's 61x61 motion kernels of intensity 0.5, window scaled down; trajectories are
        our own (a smoothed random walk, below), seeded per image as DiffPIR seeds its kernels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from zsguide.errors import ZSGuideError
from zsguide.operators.loading import load_npy
from zsguide.seeding import image_generator


def gaussian_kernel(size: int = 9, sigma: float = 1.5) -> torch.Tensor:
    """``k[a, b] ∝ exp(-((a - c)^2 + (b - c)^2) / (2 sigma^2))``, ``c = size // 2``; shape (1, 1, size, size)."""
    size = _odd_size(size)
    sigma = _positive(sigma, "sigma")
    r = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(r**2) / (2.0 * sigma**2))
    kernel = g[:, None] * g[None, :]
    return (kernel / kernel.sum()).view(1, 1, size, size)


def uniform_kernel(size: int = 9) -> torch.Tensor:
    """``k = 1 / size^2`` on a size x size square; shape (1, 1, size, size)."""
    size = _odd_size(size)
    return torch.full((1, 1, size, size), 1.0 / size**2, dtype=torch.float64)


def motion_kernel(
    seed: int, indices: Sequence[int], size: int = 9, intensity: float = 0.5, points: int | None = None
) -> torch.Tensor:
    """Random motion-blur kernels (B, 1, size, size), one per image, from its generator (stream "motion_kernel").

    The camera path is a smoothed random walk of ``points = 8 * size`` unit steps whose heading starts uniform in
    [0, 2 pi) and turns by ``intensity * 2 pi / sqrt(points)`` times a moving average (width 5, renormalised to unit
    variance) of standard normals at each step, so the total turn has std about ``2 pi * intensity``: intensity 0
    is a straight line, 1 a tangle. The path is centred on its mean, scaled so that it spans the window
    ((size - 1) / 2 from the centre along its longest axis), splatted bilinearly onto the grid, and normalised.
    """
    size = _odd_size(size)
    intensity = _unit_interval(intensity, "intensity")
    n = 8 * size if points is None else int(points)
    kernels = []
    for index in indices:
        gen = image_generator(seed, int(index), "motion_kernel")
        heading0 = 2.0 * math.pi * torch.rand((), generator=gen, dtype=torch.float64)
        noise = torch.randn(n + 4, generator=gen, dtype=torch.float64)
        smooth = noise.unfold(0, 5, 1).mean(dim=1) * math.sqrt(5.0)  # moving average, unit variance
        turns = intensity * 2.0 * math.pi / math.sqrt(n) * smooth
        heading = heading0 + torch.cumsum(turns, dim=0)
        path = torch.cumsum(torch.stack([torch.sin(heading), torch.cos(heading)], dim=1), dim=0)  # (n, 2) rows, cols
        path = path - path.mean(dim=0)
        extent = path.abs().max()
        path = path * ((size - 1) / 2.0 / extent) + (size - 1) / 2.0
        kernels.append(_splat(path, size))
    return torch.stack(kernels)[:, None]


def load_kernel(path: str | Path) -> torch.Tensor:
    """A kernel (1, 1, kh, kw) from a 2-D ``.npy`` array: finite, nonnegative, with a positive sum; normalised."""
    if Path(path).suffix.lower() != ".npy":
        raise ZSGuideError(f"kernel file {str(path)!r} must be a .npy array")
    array = load_npy(path, "kernel")
    if array.ndim != 2:
        raise ZSGuideError(f"kernel file {str(path)!r} must hold a 2-D array, got shape {tuple(array.shape)}")
    if array.dtype.kind == "c":
        raise ZSGuideError(f"kernel file {str(path)!r} must hold real numbers, got dtype {array.dtype}")
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise ZSGuideError(f"kernel file {str(path)!r} contains NaN or infinite values")
    if np.any(array < 0):
        raise ZSGuideError(f"kernel file {str(path)!r} has negative entries (min {array.min():g})")
    if not array.sum() > 0:
        raise ZSGuideError(f"kernel file {str(path)!r} sums to {array.sum():g}; it must sum to a positive number")
    kernel = torch.from_numpy(array / array.sum())
    return kernel[None, None]


def check_kernel(kernel: torch.Tensor, height: int, width: int, what: str = "kernel") -> torch.Tensor:
    """Validate a kernel tensor (B or 1, 1, kh, kw) for H x W images and return it normalised to sum 1 per image."""
    if not torch.is_tensor(kernel) or kernel.ndim != 4 or kernel.shape[1] != 1 or kernel.is_complex():
        shape = tuple(kernel.shape) if torch.is_tensor(kernel) else type(kernel).__name__
        raise ZSGuideError(f"{what} must be a real tensor of shape (B or 1, 1, kh, kw), got {shape}")
    kh, kw = kernel.shape[-2:]
    if kh > height or kw > width:
        raise ZSGuideError(f"{what} of size {kh}x{kw} does not fit in {height}x{width} images")
    kernel = kernel if kernel.is_floating_point() else kernel.to(torch.float64)
    if not bool(torch.isfinite(kernel).all()):
        raise ZSGuideError(f"{what} contains NaN or infinite values")
    total = kernel.sum(dim=(-2, -1), keepdim=True)
    if not bool((total > 0).all()):
        raise ZSGuideError(f"{what} must sum to a positive number (got sums {total.flatten().tolist()})")
    return kernel / total


def _splat(path: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear splatting of points (n, 2) in [0, size - 1]^2 onto a size x size grid, normalised to sum 1."""
    base = path.floor().clamp(0, size - 1)
    frac = path - base
    base = base.long()
    grid = torch.zeros(size * size, dtype=torch.float64)
    for dr in (0, 1):
        for dc in (0, 1):
            weight = (frac[:, 0] if dr else 1 - frac[:, 0]) * (frac[:, 1] if dc else 1 - frac[:, 1])
            rows = (base[:, 0] + dr).clamp(max=size - 1)
            cols = (base[:, 1] + dc).clamp(max=size - 1)
            grid.index_add_(0, rows * size + cols, weight)
    return (grid / grid.sum()).view(size, size)


def _odd_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1 or size % 2 == 0:
        raise ZSGuideError(f"kernel size must be a positive odd integer, got {size!r}")
    return int(size)


def _positive(value: float, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ZSGuideError(f"{name} must be a positive number, got {value!r}") from None
    if not (number > 0 and math.isfinite(number)):
        raise ZSGuideError(f"{name} must be a positive number, got {value!r}")
    return number


def _unit_interval(value: float, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ZSGuideError(f"{name} must be a number in [0, 1], got {value!r}") from None
    if not 0.0 <= number <= 1.0:
        raise ZSGuideError(f"{name} must be a number in [0, 1], got {value!r}")
    return number
