"""The batched linear measurement operator and its SVD view.

Every operator ``A`` maps images ``x`` of shape ``(B, C, H, W)`` to measurements ``y`` of shape
``(B, *measurement_shape)`` and carries the factorisation

    A = U diag(s) V^T,        V, U orthogonal (real bases) or unitary (complex bases),

exposed coefficient-wise, as DDRM (Kawar et al., 2022) uses it:

    Vt(x)  = V^T x        image -> spectral coefficients (operator-specific layout, leading dim B)
    V(c)   = V c          coefficients -> image; V(Vt(x)) == x and ||Vt(x)|| == ||x||
    Ut(y)  = U^T y        measurement -> coefficients, in the same layout; positions with no measurement are 0
    U(c)   = U c          coefficients -> measurement
    singulars             s >= 0, broadcastable to the shape of Vt(x)

so that ``A(x) == U(singulars * Vt(x))`` and ``A_adjoint(y) == V(singulars * Ut(y))``. Subclasses implement ``A`` and
``A_adjoint`` directly (pixel or FFT formulas), independently of the SVD, so each view checks the other.

Complex bases are built so that the coefficients of a real image are conjugate symmetric (``c[-k] = conj(c[k])``) and
the singular values even (``s[-k] = s[k]``): real multipliers computed from the singular values (and, for
super-resolution, the component index) keep that symmetry, so ``V`` and ``U`` return the real part of an inverse FFT
whose imaginary part is zero up to rounding.

Operator parameters (masks, kernel symbols, bases) live in tensors with leading dim B (one per image) or 1 (shared by
every image, broadcast). Methods cast the parameters to the input's device and dtype, so float32 and float64 both work;
``to(device, dtype)`` moves them once.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Literal

import torch

from zsguide.errors import ZSGuideError
from zsguide.seeding import randn_per_image

Structure = Literal["pixel_mask", "fourier_diagonal", "fourier_block"]
STRUCTURES: tuple[str, ...] = ("pixel_mask", "fourier_diagonal", "fourier_block")

_COMPLEX_OF = {torch.float32: torch.complex64, torch.float64: torch.complex128}


def complex_dtype(dtype: torch.dtype) -> torch.dtype:
    """The complex dtype matching a real float dtype (float32 -> complex64, float64 -> complex128)."""
    if dtype not in _COMPLEX_OF:
        raise ZSGuideError(f"operators work in float32 or float64, not dtype {dtype}")
    return _COMPLEX_OF[dtype]


def cast_like(param: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``param`` on ``x``'s device and in ``x``'s precision (complex stays complex, integer dtypes are kept)."""
    real = x.real.dtype if x.is_complex() else x.dtype
    if param.is_complex():
        dtype = complex_dtype(real)
    elif param.is_floating_point():
        dtype = real
    else:
        dtype = param.dtype
    if param.device == x.device and param.dtype == dtype:
        return param
    return param.to(device=x.device, dtype=dtype)


class LinearOperator(ABC):
    """A batched linear measurement operator ``y = A x`` with its SVD ``A = U diag(s) V^T``.

    Attributes set by subclasses:
        structure: "pixel_mask", "fourier_diagonal" or "fourier_block" (how the spectral engine handles it).
        image_shape: ``(C, H, W)``.
        measurement_shape: ``(C, h, w)``.
        rcond: singular values ``s <= rcond * max(s)`` (max over each image's coefficients) count as zero in
            :meth:`A_pinv` (``numpy.linalg.pinv`` semantics).
    """

    structure: Structure
    image_shape: tuple[int, int, int]
    measurement_shape: tuple[int, int, int]
    rcond: float

    # --- the operator -------------------------------------------------------------------------------------------

    @abstractmethod
    def A(self, x: torch.Tensor) -> torch.Tensor:
        """``y = A x``: image (B, C, H, W) -> measurement (B, *measurement_shape)."""

    @abstractmethod
    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """``A^T y``: measurement -> image, with ``<A x, y> == <x, A^T y>``."""

    def A_pinv(self, y: torch.Tensor) -> torch.Tensor:
        """Moore-Penrose pseudo-inverse ``A^+ y = V diag(s^+) U^T y``.

        ``s^+ = 1 / s`` where ``s > rcond * max(s)`` and 0 elsewhere (the truncated SVD of DDRM/DDNM, which zero small
        singular values; DDRM's own cut is 3e-2, see docs/peers.md).
        """
        c = self.Ut(y)
        return self.V(cast_like(self.pinv_singulars(), c) * c)

    def pinv_singulars(self) -> torch.Tensor:
        """``s^+``: ``1 / s`` where ``s > rcond * max(s)`` (max per image), else 0; same shape as :attr:`singulars`."""
        kept = truncate_singulars(self.singulars, self.rcond)
        return safe_ratio(torch.ones_like(kept), kept)

    # --- the SVD view -------------------------------------------------------------------------------------------

    @abstractmethod
    def Vt(self, x: torch.Tensor) -> torch.Tensor:
        """``V^T x``: image -> spectral coefficients (isometric)."""

    @abstractmethod
    def V(self, c: torch.Tensor) -> torch.Tensor:
        """``V c``: coefficients -> image (real), the inverse of :meth:`Vt`."""

    @abstractmethod
    def Ut(self, y: torch.Tensor) -> torch.Tensor:
        """``U^T y``: measurement -> coefficients (0 at positions that carry no measurement)."""

    @abstractmethod
    def U(self, c: torch.Tensor) -> torch.Tensor:
        """``U c``: coefficients -> measurement (real)."""

    @property
    @abstractmethod
    def singulars(self) -> torch.Tensor:
        """Singular values ``s >= 0`` (real), broadcastable to the shape of ``Vt(x)``."""

    # --- measurements -------------------------------------------------------------------------------------------

    def restrict_noise(self, noise: torch.Tensor) -> torch.Tensor:
        """``P n``: noise restricted to where measurements exist (identity unless a subclass masks it)."""
        return noise

    def measure(self, x: torch.Tensor, sigma: float | torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``y = A x + sigma * P(noise)``, ``noise`` standard normal of shape ``(B, *measurement_shape)``.

        ``sigma`` is the noise std in the space ``x`` lives in (a float, or a tensor of shape (B,) for one per image).
        """
        y = self.A(x)
        if tuple(noise.shape[1:]) != tuple(self.measurement_shape):
            raise ValueError(f"noise has shape {tuple(noise.shape)}, expected (B, *{self.measurement_shape})")
        if torch.is_tensor(sigma) and sigma.ndim == 1:
            sigma = sigma.view(-1, 1, 1, 1)
        return y + sigma * self.restrict_noise(noise.to(y))

    def noise_for(
        self,
        seed: int,
        indices: Sequence[int] | torch.Tensor,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
    ) -> torch.Tensor:
        """Standard normal noise of shape ``(len(indices), *measurement_shape)``, row ``i`` from image
        ``indices[i]``'s own generator (stream "measurement_noise"), so it never depends on the batch."""
        return randn_per_image(self.measurement_shape, seed, indices, "measurement_noise", dtype=dtype, device=device)

    # --- bookkeeping --------------------------------------------------------------------------------------------

    @property
    def batch_size(self) -> int:
        """Leading dim of the per-image parameters: B, or 1 when one operator is shared by every image."""
        return int(self.singulars.shape[0])

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> LinearOperator:
        """A copy with every parameter tensor on ``device`` and in ``dtype`` (float32/float64; complex parameters go to
        the matching complex dtype); returns ``self`` when nothing changes."""
        if dtype is not None:
            complex_dtype(dtype)  # validates
        new = copy.copy(self)
        changed = False
        for name, value in vars(self).items():
            if not torch.is_tensor(value):
                continue
            target = value.dtype
            if dtype is not None and value.is_complex():
                target = complex_dtype(dtype)
            elif dtype is not None and value.is_floating_point():
                target = dtype
            moved = value.to(device=device if device is not None else value.device, dtype=target)
            changed = changed or moved is not value
            setattr(new, name, moved)
        return new if changed else self

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(structure={self.structure!r}, image_shape={self.image_shape}, "
            f"measurement_shape={self.measurement_shape}, batch={self.batch_size}, rcond={self.rcond})"
        )


def safe_ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num / den`` where ``den != 0``, else 0: the one safe division of the samplers, operators and closed forms."""
    nonzero = den != 0
    return torch.where(nonzero, num / torch.where(nonzero, den, torch.ones_like(den)), torch.zeros_like(num))


def truncate_singulars(s: torch.Tensor, rcond: float, batched: bool = True) -> torch.Tensor:
    """The samplers' effective singular values: ``s`` where ``s > rcond * max(s)``, else 0, the max taken per image
    (over all but the first dimension) when ``batched``, else over all of ``s`` (one image's, in the closed forms):
    the one truncation rule of ``A_pinv``, the samplers (samplers/svd.py) and spectral/problem.py."""
    smax = s.flatten(1).amax(dim=1).view(-1, *([1] * (s.ndim - 1))) if batched else s.max()
    return torch.where(s > rcond * smax, s, torch.zeros_like(s))


def check_rcond(rcond: float) -> float:
    """Validate ``rcond`` (a float in [0, 1))."""
    try:
        value = float(rcond)
    except (TypeError, ValueError):
        raise ZSGuideError(f"rcond must be a number in [0, 1), got {rcond!r}") from None
    if not 0.0 <= value < 1.0:
        raise ZSGuideError(f"rcond must be in [0, 1), got {rcond!r}")
    return value


def check_image_shape(image_shape: Sequence[int]) -> tuple[int, int, int]:
    """Validate an image shape ``(C, H, W)`` of positive ints."""
    try:
        shape = tuple(int(v) for v in image_shape)
    except (TypeError, ValueError):
        raise ZSGuideError(f"image_shape must be (C, H, W) positive integers, got {image_shape!r}") from None
    if len(shape) != 3 or min(shape) < 1 or any(float(v) != s for v, s in zip(image_shape, shape)):
        raise ZSGuideError(f"image_shape must be (C, H, W) positive integers, got {image_shape!r}")
    C, H, W = shape
    return C, H, W
