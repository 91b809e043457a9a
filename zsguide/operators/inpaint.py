"""Inpainting: keep the pixels where a 0/1 mask is 1.

    A = A^T = A^+ = diag(m),   y = m * x   (measurements in image shape, exactly 0 at missing pixels)

The SVD is trivial (V = identity, s = m, U = diag(m) on the measurement space). The mask is diagonal in pixels, the
prior in frequencies: there is no joint basis, so the spectral engine treats this operator densely (theory.md §4).
"""

from __future__ import annotations

import torch

from zsguide.errors import ZSGuideError
from zsguide.operators.base import LinearOperator, cast_like, check_rcond


class Inpainting(LinearOperator):
    """``A x = mask * x`` with ``mask`` of shape (B or 1, 1 or C, H, W), values 0 (missing) or 1 (kept).

    Coefficient layout: ``Vt(x) = x`` (B, C, H, W), real; ``singulars = mask`` (broadcast over channels);
    ``Ut(y) = mask * y``; ``U(c) = mask * c``.

    Args:
        mask: the 0/1 mask; a 1-channel mask is shared by all channels.
        channels: C of the images (default: the mask's channel count).
        rcond: pseudo-inverse cut (default 0: the singular values are exactly 0 or 1).
    """

    structure = "pixel_mask"

    def __init__(self, mask: torch.Tensor, channels: int | None = None, rcond: float = 0.0) -> None:
        if not torch.is_tensor(mask) or mask.ndim != 4:
            raise ZSGuideError(f"inpainting mask must be a tensor of shape (B, 1 or C, H, W), got {_shape(mask)}")
        channels = int(mask.shape[1]) if channels is None else int(channels)
        if mask.shape[1] not in (1, channels):
            raise ZSGuideError(
                f"inpainting mask has {mask.shape[1]} channels, expected 1 or {channels} (image channels)"
            )
        if not torch.all((mask == 0) | (mask == 1)):
            raise ZSGuideError("inpainting mask must contain only 0 (missing) and 1 (kept)")
        self.mask = mask.to(torch.float64 if not mask.is_floating_point() else mask.dtype)
        self.image_shape = (channels, int(mask.shape[2]), int(mask.shape[3]))
        self.measurement_shape = self.image_shape
        self.rcond = check_rcond(rcond)

    def A(self, x: torch.Tensor) -> torch.Tensor:
        """``y = m * x``."""
        return cast_like(self.mask, x) * x

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """``A^T y = m * y`` (A is diagonal)."""
        return cast_like(self.mask, y) * y

    def A_pinv(self, y: torch.Tensor) -> torch.Tensor:
        """``A^+ y = m * y`` (a diagonal 0/1 matrix is its own pseudo-inverse)."""
        return cast_like(self.mask, y) * y

    def Vt(self, x: torch.Tensor) -> torch.Tensor:
        """``V^T x = x`` (V = identity)."""
        return x

    def V(self, c: torch.Tensor) -> torch.Tensor:
        """``V c = c``."""
        return c

    def Ut(self, y: torch.Tensor) -> torch.Tensor:
        """``U^T y = m * y``: missing pixels carry no measurement, so their coefficients are 0."""
        return cast_like(self.mask, y) * y

    def U(self, c: torch.Tensor) -> torch.Tensor:
        """``U c = m * c`` (embeds the kept coefficients in the measurement space)."""
        return cast_like(self.mask, c) * c

    @property
    def singulars(self) -> torch.Tensor:
        """``s = m`` (1 at kept pixels, 0 at missing ones)."""
        return self.mask

    def restrict_noise(self, noise: torch.Tensor) -> torch.Tensor:
        """``m * n``: unobserved pixels of ``y`` stay exactly 0."""
        return cast_like(self.mask, noise) * noise


def _shape(value: object) -> str:
    return str(tuple(value.shape)) if torch.is_tensor(value) else type(value).__name__
