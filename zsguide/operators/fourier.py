"""Fourier helpers shared by the periodic operators (blur, super-resolution).

Convention (theory.md §1): the unitary 2-D DFT per channel, ``fft2(x, norm="ortho")``. A periodic convolution with a
kernel ``k`` of size (kh, kw) centred at ``(kh // 2, kw // 2)`` is

    (k * x)[i, j] = sum_{a, b} k[a, b] x[i - a + kh // 2, j - b + kw // 2]      (indices mod H, W)

and has the symbol ``h = fft2(k padded to (H, W) and rolled so its centre sits at the origin)``, with
``fft2(k * x) = h * fft2(x)`` (for norm="backward" and norm="ortho" alike).
"""

from __future__ import annotations

import torch


def fft2_ortho(x: torch.Tensor) -> torch.Tensor:
    """Unitary 2-D DFT over the last two dims."""
    return torch.fft.fft2(x, norm="ortho")


def ifft2_ortho_real(c: torch.Tensor) -> torch.Tensor:
    """Real part of the unitary inverse 2-D DFT (exact when ``c`` is Hermitian symmetric)."""
    return torch.fft.ifft2(c, norm="ortho").real


def negate_frequencies(z: torch.Tensor) -> torch.Tensor:
    """``z[..., -k1 mod H, -k2 mod W]`` over the last two dims."""
    return torch.roll(torch.flip(z, dims=(-2, -1)), shifts=(1, 1), dims=(-2, -1))


def hermitian_part(h: torch.Tensor) -> torch.Tensor:
    """``(h[k] + conj(h[-k])) / 2``: exactly Hermitian symmetric, equal to ``h`` up to rounding for a real signal."""
    return 0.5 * (h + negate_frequencies(h).conj())


def centred_kernel_image(kernel: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The kernel (..., kh, kw) zero-padded to (..., H, W) and rolled so its centre (kh // 2, kw // 2) is at (0, 0)."""
    kh, kw = kernel.shape[-2:]
    pad = kernel.new_zeros(*kernel.shape[:-2], height, width)
    pad[..., :kh, :kw] = kernel
    return torch.roll(pad, shifts=(-(kh // 2), -(kw // 2)), dims=(-2, -1))


def kernel_symbol(kernel: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Symbol ``h`` (complex, shape (..., H, W)) of the periodic convolution with ``kernel`` (real, (..., kh, kw)),
    made exactly Hermitian symmetric so that real multipliers of ``|h|`` keep real images real."""
    return hermitian_part(torch.fft.fft2(centred_kernel_image(kernel, height, width)))
