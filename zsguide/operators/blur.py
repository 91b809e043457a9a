"""Deblurring: periodic convolution with a per-image kernel, diagonal in the unitary DFT basis.

    A = F^H diag(h) F,   fft2(A x) = h * fft2(x)     (theory.md §3; periodic "wrap" boundary as DiffPIR applies it)

SVD: ``V^T = F`` (unitary DFT), ``s = |h|``, ``U^T = diag(conj(h / |h|)) F`` (phase 1 where h == 0), so
``A = U diag(s) V^T`` exactly. ``h`` is made exactly Hermitian symmetric, hence ``|h|`` is even and the phase odd
under ``k -> -k``: real multipliers of the coefficients that depend on ``|h|`` keep real images real.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from zsguide.operators.base import LinearOperator, cast_like, check_image_shape, check_rcond
from zsguide.operators.fourier import fft2_ortho, ifft2_ortho_real, kernel_symbol
from zsguide.operators.kernels import check_kernel

BLUR_RCOND = 1e-3


class Blur(LinearOperator):
    """``A x = k * x`` (periodic), kernel (B or 1, 1, kh, kw) normalised to sum 1, centred at (kh // 2, kw // 2).

    Coefficient layout: ``Vt(x) = fft2(x, norm="ortho")``, complex (B, C, H, W); ``singulars = |h|`` (B or 1, 1, H, W);
    ``Ut(y) = conj(phase) * fft2(y, norm="ortho")`` with ``phase = h / |h|`` (1 where h == 0).

    Args:
        kernel: the blur kernel(s).
        image_shape: (C, H, W).
        rcond: pseudo-inverse cut, default 1e-3: frequencies with ``|h| <= 1e-3 max|h|`` (max|h| = 1 for a
            nonnegative kernel) are treated as lost. DDRM zeroes singular values below 3e-2 for its blurs; our milder
            cut keeps the pseudo-inverse close to the exact inverse of mild kernels while never amplifying the
            numerical zeros of box kernels by more than 1e3.
    """

    structure = "fourier_diagonal"

    def __init__(self, kernel: torch.Tensor, image_shape: Sequence[int], rcond: float = BLUR_RCOND) -> None:
        self.image_shape = check_image_shape(image_shape)
        self.measurement_shape = self.image_shape
        _, height, width = self.image_shape
        self.kernel = check_kernel(kernel, height, width)
        self.rcond = check_rcond(rcond)
        self.symbol = kernel_symbol(self.kernel, height, width)
        magnitude = self.symbol.abs()
        self._magnitude = magnitude
        self._phase = torch.where(
            magnitude > 0, self.symbol / torch.where(magnitude > 0, magnitude, 1.0), torch.ones_like(self.symbol)
        )

    def A(self, x: torch.Tensor) -> torch.Tensor:
        """``A x = ifft2(h * fft2(x))``."""
        return torch.fft.ifft2(cast_like(self.symbol, x) * torch.fft.fft2(x)).real

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """``A^T y = ifft2(conj(h) * fft2(y))`` (correlation with the kernel)."""
        return torch.fft.ifft2(cast_like(self.symbol, y).conj() * torch.fft.fft2(y)).real

    def Vt(self, x: torch.Tensor) -> torch.Tensor:
        """``V^T x = fft2(x, norm="ortho")``."""
        return fft2_ortho(x)

    def V(self, c: torch.Tensor) -> torch.Tensor:
        """``V c = Re ifft2(c, norm="ortho")``."""
        return ifft2_ortho_real(c)

    def Ut(self, y: torch.Tensor) -> torch.Tensor:
        """``U^T y = conj(h / |h|) * fft2(y, norm="ortho")``."""
        return cast_like(self._phase, y).conj() * fft2_ortho(y)

    def U(self, c: torch.Tensor) -> torch.Tensor:
        """``U c = Re ifft2((h / |h|) * c, norm="ortho")``."""
        return ifft2_ortho_real(cast_like(self._phase, c) * c)

    @property
    def singulars(self) -> torch.Tensor:
        """``s = |h|``, shape (B or 1, 1, H, W)."""
        return self._magnitude
