"""Per-image randomness: every random draw for image ``index`` comes from its own generator.

The generator's seed is a stable hash of ``(seed, index, stream)``, so an image's mask, kernel, measurement noise and
sampler noise never depend on the batch it sits in or on the number of devices (the NVlabs/edm practice). Distinct
``stream`` names give independent streams for the same image.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch


def image_seed(seed: int, index: int, stream: str) -> int:
    """A stable 63-bit seed for ``(seed, index, stream)`` (blake2b, independent of Python's hash randomisation)."""
    digest = hashlib.blake2b(f"{int(seed)}:{int(index)}:{stream}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def image_generator(seed: int, index: int, stream: str, device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded by :func:`image_seed`."""
    gen = torch.Generator(device=device)
    gen.manual_seed(image_seed(seed, index, stream))
    return gen


def _per_image(draw, shape, seed, indices, stream, dtype, device) -> torch.Tensor:
    """Stack ``draw(shape, generator)`` over images, each from its own generator, made in float64 on the CPU and then
    cast, so the draws are identical on every device and dtype."""
    rows = [
        draw(tuple(shape), generator=image_generator(seed, int(i), stream), dtype=torch.float64)
        for i in (indices.tolist() if torch.is_tensor(indices) else indices)
    ]
    return torch.stack(rows).to(device=device, dtype=dtype)


def randn_per_image(
    shape: Sequence[int],
    seed: int,
    indices: Sequence[int] | torch.Tensor,
    stream: str,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Standard normal draws of shape ``(len(indices), *shape)``, row ``i`` from the generator of ``indices[i]``."""
    return _per_image(torch.randn, shape, seed, indices, stream, dtype, device)


def rand_per_image(
    shape: Sequence[int],
    seed: int,
    indices: Sequence[int] | torch.Tensor,
    stream: str,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Uniform [0, 1) draws of shape ``(len(indices), *shape)``, row ``i`` from the generator of ``indices[i]``."""
    return _per_image(torch.rand, shape, seed, indices, stream, dtype, device)
