"""Super-resolution by an integer factor s, with periodic boundary.

Two variants, both block diagonal in the Fourier domain (theory.md §4): each low-resolution (LR) frequency (p, q) of
the h x w = H/s x W/s measurement couples the s^2 high-resolution (HR) frequencies that alias onto it,

    fft2_ortho(A x)[p, q] = sum_j R[p, q, j] * fft2_ortho(x)[p + a_j h, q + b_j w],   j = a_j * s + b_j,
    R[p, q, j] = h_sym[p + a_j h, q + b_j w] / s,

where ``h_sym`` is the symbol of the periodic filter applied before taking every s-th pixel.

Block averaging (default, DDRM's SR operator; :class:`BlockAverage`): ``y = mean of each s x s block``. Its SVD is DDRM's, per block:
``V^T`` applies a fixed s^2 x s^2 orthogonal matrix Q whose first row is ones/s to each block, the singular value is 1/s
on that first component and 0 on the others, ``U^T y`` puts y in the first component (A = U diag(s) V^T because
``mean = (1/s) * (ones/s) . block``).

Blur + decimation (``kernel`` given; :class:`BlurDecimation`): ``y = (k * x)[::s, ::s]``. Its SVD is per LR frequency: the row ``r = R[p, q]``
has the singular value ``||r||`` and the leading right singular vector ``conj(r) / ||r||``, completed to a unitary
s^2 x s^2 basis ``W[p, q]``; ``V^T x`` takes the HR spectrum's alias groups into that basis. The completion is
covariant under ``k -> -k`` (see ``_completion``), so real multipliers that depend on the singular values keep the
coefficients of a real image Hermitian symmetric and ``V`` returns a real image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from einops import rearrange, reduce, repeat

from zsguide.errors import ZSGuideError
from zsguide.operators.base import LinearOperator, cast_like, check_image_shape, check_rcond
from zsguide.operators.blur import BLUR_RCOND
from zsguide.operators.fourier import fft2_ortho, hermitian_part, ifft2_ortho_real, kernel_symbol
from zsguide.operators.kernels import check_kernel

_ALIAS = "b c (s1 p) (s2 q) -> b c p q (s1 s2)"
_UNALIAS = "b c p q (s1 s2) -> b c (s1 p) (s2 q)"


class SuperResolution(LinearOperator):
    """``y = A x`` of shape (B, C, H/s, W/s): :class:`BlockAverage` (``kernel=None``) or :class:`BlurDecimation`
    (periodic blur + decimation); ``SuperResolution(factor, image_shape, kernel=None, rcond=None)`` builds the one
    the arguments name. What both share lives here: the factor, the shapes, the symbol's alias blocks for the
    spectral engine and the singular values.

    Coefficient layout (both variants): ``Vt(x)`` of shape (B, C, s^2, H/s, W/s), component 0 along dim 2 carries the
    measurement; real for block averaging (per pixel block), complex for blur + decimation (per LR frequency).
    ``singulars`` (B or 1, 1, s^2, 1 or H/s, 1 or W/s): the singular value on component 0, 0 on the others.
    ``Ut(y)`` puts y (block averaging) or ``fft2_ortho(y)`` (blur + decimation) in component 0, 0 elsewhere.

    Args:
        factor: s, an integer >= 2 dividing H and W.
        image_shape: (C, H, W).
        kernel: None for block averaging, else a kernel (B or 1, 1, kh, kw), normalised to sum 1.
        rcond: pseudo-inverse cut; default 0 for block averaging (all singular values are 1/s), 1e-3 with a kernel
            (the same cut as :class:`~zsguide.operators.blur.Blur`).
    """

    structure = "fourier_block"
    kernel: torch.Tensor | None
    symbol: torch.Tensor
    _singulars: torch.Tensor

    def __new__(cls, *args, **kwargs):
        if cls is SuperResolution:  # the variant the arguments name (copies and subclasses are built as they are)
            kernel = kwargs.get("kernel", args[2] if len(args) > 2 else None)
            cls = BlockAverage if kernel is None else BlurDecimation
        return super().__new__(cls)

    def _shapes(self, factor: int, image_shape: Sequence[int], rcond: float | None, default_rcond: float) -> int:
        self.image_shape = check_image_shape(image_shape)
        channels, height, width = self.image_shape
        s = _check_factor(factor, height, width)
        self.factor = s
        self.measurement_shape = (channels, height // s, width // s)
        self.rcond = check_rcond(default_rcond if rcond is None else rcond)
        return s

    @property
    def singulars(self) -> torch.Tensor:
        """1/s (block averaging) or ``||R[p, q]||`` (kernel) on component 0, 0 on the others."""
        return self._singulars

    # --- Fourier blocks for the spectral engine ----------------------------------------------------------------

    def fourier_blocks(self) -> torch.Tensor:
        """``R`` (complex, (B or 1, 1, H/s, W/s, s^2)) with
        ``fft2_ortho(A x)[p, q] = sum_j R[p, q, j] * fft2_ortho(x)[alias_indices()[:, p, q, j]]``."""
        s = self.factor
        return rearrange(self.symbol, _ALIAS, s1=s, s2=s) / s

    def alias_indices(self, device: str | torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(rows, cols)``, long tensors (H/s, W/s, s^2): HR frequency ``(p + a_j h, q + b_j w)`` for LR frequency
        (p, q) and ``j = a_j * s + b_j``, so ``fft2_ortho(x)[..., rows, cols]`` has shape (B, C, H/s, W/s, s^2).
        On ``device`` (default: the operator's)."""
        s = self.factor
        _, h, w = self.measurement_shape
        device = self.symbol.device if device is None else device
        j = torch.arange(s * s, device=device)
        rows = torch.arange(h, device=device)[:, None, None] + (j // s)[None, None, :] * h
        cols = torch.arange(w, device=device)[None, :, None] + (j % s)[None, None, :] * w
        return rows.expand(h, w, s * s).clone(), cols.expand(h, w, s * s).clone()


class BlockAverage(SuperResolution):
    """Block averaging (DDRM's SR operator): ``y = mean of each s x s block``; its SVD per block (module docstring)."""

    def __init__(
        self, factor: int, image_shape: Sequence[int], kernel: None = None, rcond: float | None = None
    ) -> None:
        if kernel is not None:
            raise ZSGuideError("block averaging takes no kernel (SuperResolution with a kernel is BlurDecimation)")
        s = self._shapes(factor, image_shape, rcond, 0.0)
        self.kernel = None
        self.symbol = _block_symbol(s, *self.image_shape[1:])
        self._Q = _householder_basis(s)
        singulars = torch.zeros(1, 1, s * s, 1, 1, dtype=torch.float64)
        singulars[:, :, 0] = 1.0 / s
        self._singulars = singulars

    def A(self, x: torch.Tensor) -> torch.Tensor:
        """Block mean ``y[i, j] = mean(x[s i : s i + s, s j : s j + s])``."""
        s = self.factor
        return reduce(x, "b c (h s1) (w s2) -> b c h w", "mean", s1=s, s2=s)

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """``A^T y``: each LR pixel spread as ``y / s^2`` over its block."""
        s = self.factor
        return repeat(y, "b c h w -> b c (h s1) (w s2)", s1=s, s2=s) / (s * s)

    def Vt(self, x: torch.Tensor) -> torch.Tensor:
        """``c[m] = sum_j Q[m, j] x_block[j]`` per block."""
        s = self.factor
        blocks = rearrange(x, "b c (h s1) (w s2) -> b c (s1 s2) h w", s1=s, s2=s)
        return torch.einsum("mj,bcjhw->bcmhw", cast_like(self._Q, x), blocks)

    def V(self, c: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`Vt`: ``x_block = Q^T c`` per block."""
        s = self.factor
        blocks = torch.einsum("mj,bcmhw->bcjhw", cast_like(self._Q, c), c)
        return rearrange(blocks, "b c (s1 s2) h w -> b c (h s1) (w s2)", s1=s, s2=s)

    def Ut(self, y: torch.Tensor) -> torch.Tensor:
        """``y`` in component 0, zeros in the other s^2 - 1."""
        return _first_component(y, self.factor)

    def U(self, c: torch.Tensor) -> torch.Tensor:
        """Component 0."""
        return c[:, :, 0]


class BlurDecimation(SuperResolution):
    """Periodic blur + decimation: ``y = (k * x)[::s, ::s]``; its SVD per LR frequency (module docstring)."""

    def __init__(
        self, factor: int, image_shape: Sequence[int], kernel: torch.Tensor | None = None, rcond: float | None = None
    ) -> None:
        if kernel is None:
            raise ZSGuideError("blur + decimation needs a kernel (SuperResolution without one is BlockAverage)")
        s = self._shapes(factor, image_shape, rcond, BLUR_RCOND)
        self.kernel = check_kernel(kernel, *self.image_shape[1:])
        self.symbol = kernel_symbol(self.kernel, *self.image_shape[1:])
        rows = self.fourier_blocks()
        sigma = rows.abs().square().sum(dim=-1).sqrt()
        self._W = _completion(rows, sigma, s)
        singulars = sigma.new_zeros(sigma.shape[0], 1, s * s, *sigma.shape[-2:])
        singulars[:, :, 0] = sigma[:, 0]
        self._singulars = singulars

    def A(self, x: torch.Tensor) -> torch.Tensor:
        """``y = (k * x)[::s, ::s]``."""
        blurred = torch.fft.ifft2(cast_like(self.symbol, x) * torch.fft.fft2(x)).real
        return blurred[..., :: self.factor, :: self.factor]

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """``A^T y``: zero-upsampled, then correlated with k."""
        s = self.factor
        up = y.new_zeros(*y.shape[:2], y.shape[2] * s, y.shape[3] * s)
        up[..., ::s, ::s] = y
        return torch.fft.ifft2(cast_like(self.symbol, up).conj() * torch.fft.fft2(up)).real

    def Vt(self, x: torch.Tensor) -> torch.Tensor:
        """``c = W^H X_alias`` per LR frequency."""
        s = self.factor
        groups = rearrange(fft2_ortho(x), _ALIAS, s1=s, s2=s)
        coeffs = (cast_like(self._W, groups).mH @ groups[..., None])[..., 0]
        return rearrange(coeffs, "b c p q m -> b c m p q")

    def V(self, c: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`Vt`: ``X_alias = W c``, then a real inverse FFT."""
        s = self.factor
        coeffs = rearrange(c, "b c m p q -> b c p q m")
        groups = (cast_like(self._W, coeffs) @ coeffs[..., None])[..., 0]
        return ifft2_ortho_real(rearrange(groups, _UNALIAS, s1=s, s2=s))

    def Ut(self, y: torch.Tensor) -> torch.Tensor:
        """``fft2_ortho(y)`` in component 0, zeros in the other s^2 - 1."""
        return _first_component(fft2_ortho(y), self.factor)

    def U(self, c: torch.Tensor) -> torch.Tensor:
        """The real inverse FFT of component 0."""
        return ifft2_ortho_real(c[:, :, 0])


def _first_component(head: torch.Tensor, s: int) -> torch.Tensor:
    """``head`` (B, C, h, w) as component 0 of (B, C, s^2, h, w), zeros in the others."""
    rest = head.new_zeros(head.shape[0], head.shape[1], s * s - 1, *head.shape[2:])
    return torch.cat([head[:, :, None], rest], dim=2)


def _check_factor(factor: int, height: int, width: int) -> int:
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 2:
        raise ZSGuideError(f"super-resolution factor must be an integer >= 2, got {factor!r}")
    if height % factor or width % factor:
        raise ZSGuideError(f"super-resolution factor {factor} does not divide the image size {height}x{width}")
    return factor


def _block_symbol(s: int, height: int, width: int) -> torch.Tensor:
    """Symbol (1, 1, H, W) of the s x s box filter whose output at (s i, s j) is the mean of the block starting there:
    weights 1/s^2 at offsets (-a, -b), a, b in 0..s-1."""
    image = torch.zeros(height, width, dtype=torch.float64)
    offsets = torch.arange(s)
    image[((-offsets) % height)[:, None], ((-offsets) % width)[None, :]] = 1.0 / (s * s)
    return hermitian_part(torch.fft.fft2(image))[None, None]


def _householder_basis(s: int) -> torch.Tensor:
    """The symmetric orthogonal s^2 x s^2 matrix ``Q = I - 2 u u^T / |u|^2``, ``u = e_0 - ones/s``: first row ones/s."""
    n = s * s
    u = -torch.full((n,), 1.0 / s, dtype=torch.float64)
    u[0] += 1.0
    return torch.eye(n, dtype=torch.float64) - 2.0 * torch.outer(u, u) / u.dot(u)


def _alias_negation(s: int, zero: bool) -> list[int]:
    """Along one axis: alias a of LR frequency p maps under k -> -k to alias -a mod s (p = 0) or s - 1 - a (p > 0)."""
    return [(-a) % s if zero else s - 1 - a for a in range(s)]


def _orbit_basis(s: int, p_zero: bool, q_zero: bool) -> torch.Tensor:
    """A unitary s^2 x s^2 basis whose columns v satisfy ``v[pi j] = conj(v[j])`` (pi: alias index under k -> -k):
    e_j for fixed points, (e_j + e_pi(j)) / sqrt 2 and i (e_j - e_pi(j)) / sqrt 2 for pairs. Column 0 involves e_0."""
    rows, cols = _alias_negation(s, p_zero), _alias_negation(s, q_zero)
    pi = [rows[j // s] * s + cols[j % s] for j in range(s * s)]
    eye = torch.eye(s * s, dtype=torch.complex128)
    columns = []
    for j, k in enumerate(pi):
        if k == j:
            columns.append(eye[j])
        elif k > j:
            columns.append((eye[j] + eye[k]) / math.sqrt(2.0))
            columns.append(1j * (eye[j] - eye[k]) / math.sqrt(2.0))
    return torch.stack(columns, dim=1)


def _completion(rows: torch.Tensor, sigma: torch.Tensor, s: int) -> torch.Tensor:
    """Unitary ``W[p, q]`` (…, h, w, s^2, s^2) with column 0 = ``conj(R[p, q]) / ||R[p, q]||`` (ones/s where R = 0).

    Covariant construction: ``W = G B D``, B the orbit basis of (p, q), b0 its column 0, ``G`` the Householder
    reflection with ``u = b0 + e^{i theta} v0`` (``theta = -arg(b0^H v0)``, no cancellation) mapping b0 to
    ``-e^{i theta} v0``, and ``D = diag(-e^{-i theta}, 1, ...)``. Each factor satisfies ``M[-p][pi j, pi k] =
    conj(M[p][j, k])``, hence ``W[-p][pi j, m] = conj(W[p][j, m])``.
    """
    h, w = rows.shape[-3:-1]
    n = s * s
    bases = torch.stack([_orbit_basis(s, pz, qz) for pz in (False, True) for qz in (False, True)])
    kind = 2 * (torch.arange(h) == 0).long()[:, None] + (torch.arange(w) == 0).long()[None, :]
    basis = bases[kind].to(device=rows.device, dtype=rows.dtype)  # (h, w, n, n)
    b0 = basis[..., 0]
    safe = torch.where(sigma > 0, sigma, torch.ones_like(sigma))[..., None]
    v0 = torch.where(sigma[..., None] > 0, rows.conj() / safe, torch.full_like(rows, 1.0 / s))
    inner = (b0.conj() * v0).sum(dim=-1)
    size = inner.abs()
    phase = torch.where(size > 0, inner.conj() / torch.where(size > 0, size, 1.0), torch.ones_like(inner))
    u = b0 + phase[..., None] * v0
    reflect = (
        torch.eye(n, dtype=rows.dtype, device=rows.device)
        - 2.0 * (u[..., :, None] * u.conj()[..., None, :]) / (u.abs().square().sum(dim=-1)[..., None, None])
    )
    W = reflect @ basis
    scale = torch.ones(*phase.shape, n, dtype=rows.dtype, device=rows.device)
    scale[..., 0] = -phase.conj()
    return W * scale[..., None, :]
