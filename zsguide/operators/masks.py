"""Inpainting masks (1 = kept pixel, 0 = missing), one per image, seeded by (seed, image index).

Defaults and their sources (docs/peers.md):
    random pixels: keep = 0.5, DDRM's random 50% inpainting (DPS draws 30-70%).
    box: side = half the image side, DPS's 128-pixel box in 256x256 images; position "center" by default
        (deterministic), or "random" as DPS draws it, uniformly per image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from zsguide.errors import ZSGuideError
from zsguide.operators.loading import load_array
from zsguide.seeding import rand_per_image

BOX_POSITIONS = ("center", "random")


def random_pixel_mask(height: int, width: int, seed: int, indices: Sequence[int], keep: float = 0.5) -> torch.Tensor:
    """Masks (B, 1, H, W) keeping exactly ``round(keep * H * W)`` pixels per image, shared across channels.

    The kept pixels of image ``i`` are those with the smallest of ``H * W`` uniforms drawn from its generator
    (stream "mask_random_pixels").
    """
    keep = _fraction(keep)
    n_keep = round(keep * height * width)
    u = rand_per_image((height * width,), seed, indices, "mask_random_pixels", dtype=torch.float64)
    ranks = torch.argsort(torch.argsort(u, dim=1), dim=1)
    return (ranks < n_keep).to(torch.float64).view(len(u), 1, height, width)


def box_mask(
    height: int,
    width: int,
    seed: int,
    indices: Sequence[int],
    box_size: int | None = None,
    box_position: str = "center",
) -> torch.Tensor:
    """Masks with a missing square of side ``box_size`` (default ``min(H, W) // 2``).

    "center": one mask (1, 1, H, W) for every image, box at ``((H - b) // 2, (W - b) // 2)``.
    "random": masks (B, 1, H, W), top-left corner uniform over the valid positions of each image, from its generator
    (stream "mask_box_position").
    """
    size = min(height, width) // 2 if box_size is None else box_size
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 1 <= size <= min(height, width):
        raise ZSGuideError(
            f"box_size must be an integer in [1, {min(height, width)}] for {height}x{width} images, got {box_size!r}"
        )
    size = int(size)
    if box_position == "center":
        tops, lefts = [(height - size) // 2], [(width - size) // 2]
    elif box_position == "random":
        u = rand_per_image((2,), seed, indices, "mask_box_position", dtype=torch.float64)
        tops = [min(int(v * (height - size + 1)), height - size) for v in u[:, 0].tolist()]
        lefts = [min(int(v * (width - size + 1)), width - size) for v in u[:, 1].tolist()]
    else:
        raise ZSGuideError(f"box_position must be one of {', '.join(BOX_POSITIONS)}; got {box_position!r}")
    mask = torch.ones(len(tops), 1, height, width, dtype=torch.float64)
    for row, (top, left) in enumerate(zip(tops, lefts)):
        mask[row, :, top : top + size, left : left + size] = 0.0
    return mask


def load_mask(path: str | Path, image_shape: Sequence[int]) -> torch.Tensor:
    """A mask (1, 1 or C, H, W) from a PNG or .npy file: nonzero = kept.

    Accepted shapes: (H, W), (1, H, W) or (C, H, W) (PNG colour channels become C; an alpha channel is ignored).
    A colour mask whose channels agree is reduced to one channel.
    """
    channels, height, width = (int(v) for v in image_shape)
    array = load_array(path, "mask")
    found = tuple(array.shape)
    if array.dtype.kind in "fc" and not np.all(np.isfinite(array)):
        raise ZSGuideError(f"mask file {str(path)!r} contains NaN or infinite values")
    if array.ndim == 2:
        array = array[None]
    if array.ndim == 3 and array.shape[0] > 1 and np.all((array != 0) == (array[:1] != 0)):
        array = array[:1]  # a colour mask whose channels agree
    ok = array.ndim == 3 and array.shape[0] in (1, channels) and array.shape[1:] == (height, width)
    if not ok:
        expected = f"({height}, {width}), (1, {height}, {width}) or ({channels}, {height}, {width})"
        raise ZSGuideError(
            f"mask file {str(path)!r} has shape {found}, expected {expected} for images of shape {tuple(image_shape)}"
        )
    return torch.from_numpy(np.ascontiguousarray(array != 0)).to(torch.float64)[None]


def _fraction(keep: float) -> float:
    try:
        value = float(keep)
    except (TypeError, ValueError):
        raise ZSGuideError(f"keep must be a fraction in (0, 1], got {keep!r}") from None
    if not (0.0 < value <= 1.0) or math.isnan(value):
        raise ZSGuideError(f"keep must be a fraction in (0, 1], got {keep!r}")
    return value
