"""The Gaussian problem in block form: what every closed form of the spectral engine is computed on.

Under the surrogate (theory.md §2) and a linear operator, there is an orthonormal basis in which the prior covariance
and the operator are block diagonal. Inside each block the engine works in the coordinates of the operator's own SVD
(the basis the samplers work in), ``xi = V^H x_block`` and ``ybar = U^H y_block`` (the measurement coordinates,
:meth:`BlockProblem.y_coords`), where the operator is

    H_bar = U^H H V = [diag(s) 0]   (m x n, m <= n),

so a problem is fully described per block by the prior covariance ``Sigma = V^H Sigma_0 V`` (n x n, Hermitian), the
true singular values ``s`` (m), the samplers' truncated ones ``s_eff`` (the operator's ``rcond`` cut, exactly as
``samplers/svd.effective_singulars``), and ``measured`` (m; 0 where a coordinate carries no measurement, e.g. a missing
pixel). Three structures (theory.md §4, "Operators that are not circulant"):

    blur (circulant)        1 x 1 blocks: one per decorrelated channel and frequency, ``s = |h_k|``;
    super-resolution (x f)  f^2 x f^2 blocks: the f^2 high-resolution frequencies that alias onto one low-resolution
                            frequency, one measured coordinate per block (``s = |R|``, R the block's row);
    inpainting (mask)       one dense block per decorrelated channel in the pixel basis (``s = mask``; the mask is
                            shared by the channels, so the colour transform commutes with it). Exact up to
                            ``max_dense`` pixels per channel (default 16 x 16 = 256); above that the problem is the
                            exact marginal law on a ``crop`` x ``crop`` window that keeps the mask's measured fraction
                            (the one nearest the centre among ties; the stationary prior restricted to the window,
                            the mask cropped with it): the stated dimension reduction, recorded in ``note``.

Any SVD is valid: the samplers treat equal singular values alike and white noise is white in every orthonormal
basis, so the output law does not depend on which singular vectors are chosen. Signals are centred (the surrogate
mean moves only through the same affine maps). All tensors are float64 (complex128 in Fourier blocks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from einops import rearrange

from ..errors import ZSGuideError
from ..operators.base import truncate_singulars
from ..samplers.law import embed
from ..surrogate import apply_colour

if TYPE_CHECKING:
    from .denoiser_model import CalibratedDenoiser

_ALIAS = "... (s1 p) (s2 q) -> ... p q (s1 s2)"
_UNALIAS = "... p q (s1 s2) -> ... (s1 p) (s2 q)"
MAX_DENSE = 256  # pixels per channel solved exactly for masks (16 x 16)
CROP = 16  # the window used above that
TAKE_ALL = 32  # the most powerful alias blocks per channel kept whole in a sampled super-resolution problem
MAX_FOURIER_BLOCKS = (
    1024  # super-resolution: alias blocks x f^2 modelled whole per channel (a 32 x 32 image's); above: a sample
)


def sample_blocks(
    energy: torch.Tensor, k: int, take: int, seed: int = 0, uniform_share: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A weighted sample of the blocks of an h x w grid, per channel: ``(rows, cols, weight)``, each (C, K) with
    K = ``take`` + (h / k)(w / k), for ``energy`` (C, h, w) > 0 (the blocks' prior power).

    The ``take`` most powerful blocks of each channel are kept with weight 1 (the few low-frequency blocks that
    hold most of a natural image's power, so a sample that may miss or overcount them is far off, DPS's residual
    norm most of all; docs/benchmarks.md). From every k x k cell one more block is drawn among
    the rest, with probability ``p_i = u / n + (1 - u) e_i / sum e`` (n blocks left in the cell, ``u`` =
    ``uniform_share``: a defensive mixture of uniform and power-proportional draws) and weighted ``1 / p_i`` (0 for
    a cell with nothing left). A weighted sum over the sample is then an unbiased estimate of the sum over the
    grid, for any per-block quantity. A fixed seed: the same sample every time."""
    nc, h, w = energy.shape
    e = energy.to(torch.float64)
    taken = torch.zeros(nc, h * w, dtype=torch.bool)
    top = e.reshape(nc, -1).topk(min(take, h * w), dim=-1).indices
    taken.scatter_(1, top, True)
    cells = rearrange(e, "c (a i) (b j) -> c a b (i j)", i=k, j=k)
    free = ~rearrange(taken.reshape(nc, h, w), "c (a i) (b j) -> c a b (i j)", i=k, j=k)
    left = free.sum(-1, keepdim=True)
    ce = torch.where(free, cells, torch.zeros_like(cells))
    p = torch.where(
        free,
        uniform_share / left.clamp(min=1) + (1 - uniform_share) * ce / ce.sum(-1, keepdim=True).clamp(min=1e-300),
        torch.zeros_like(cells),
    )
    p = torch.where(left > 0, p, torch.full_like(p, 1.0 / (k * k)))  # an empty cell: any block, weight 0
    g = torch.Generator().manual_seed(seed)
    pick = torch.multinomial(p.reshape(-1, k * k), 1, generator=g).reshape(nc, h // k, w // k)
    prob = p.gather(-1, pick[..., None])[..., 0]
    w_draw = torch.where(left[..., 0] > 0, 1 / prob, torch.zeros_like(prob))
    rows = (torch.arange(h // k)[:, None] * k + pick // k).reshape(nc, -1)
    cols = (torch.arange(w // k)[None, :] * k + pick % k).reshape(nc, -1)
    rows, cols = torch.cat([top // w, rows], dim=1), torch.cat([top % w, cols], dim=1)
    weight = torch.cat([torch.ones(nc, top.shape[1], dtype=torch.float64), w_draw.reshape(nc, -1)], dim=1)
    return rows, cols, weight


def subgrid_stride(h: int, w: int, max_blocks: int) -> int:
    """The smallest stride ``k`` dividing ``h`` and ``w`` with ``(h / k) (w / k) <= max_blocks`` (1: no reduction)."""
    for k in range(1, max(h, w) + 1):
        if h % k == 0 and w % k == 0 and (h // k) * (w // k) <= max_blocks:
            return k
    return max(h, w)


def _subgrid_note(h: int, w: int, k: int, f: int) -> str:
    return (
        f"dimension reduction: {h // k}x{w // k} + {TAKE_ALL} of the {h}x{w} alias blocks ({f * f}x{f * f}) per channel, one "
        f"drawn in every {k}x{k} cell of low-resolution frequencies (half uniformly, half in proportion to the "
        f"block's prior power; fixed seed) and weighted by its inverse probability, plus the {TAKE_ALL} most "
        f"powerful blocks with weight 1: criteria and DPS's residual norm are unbiased estimates from that sample "
        f"(each block exact); per-frequency figures average the sampled frequencies"
    )


def truncate(s: torch.Tensor, rcond: float) -> torch.Tensor:
    """The samplers' effective singular values of one image's operator (operators/base.truncate_singulars)."""
    return truncate_singulars(s, rcond, batched=False)


def eig_fn(evals: torch.Tensor, evecs: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``Q diag(values) Q^H`` from an eigendecomposition (``values`` shaped like ``evals``)."""
    if evecs.shape[-1] == 1:
        return values[..., None].to(evecs.dtype)
    return (evecs * values[..., None, :].to(evecs.dtype)) @ evecs.mH


@dataclass
class BlockProblem:
    """One Gaussian inverse problem, block by block (shapes: leading batch dims ``...`` index the blocks)."""

    Sigma: torch.Tensor  # (..., n, n) prior covariance in SVD coordinates
    s: torch.Tensor  # (..., m) true singular values
    s_eff: torch.Tensor  # (..., m) the samplers' truncated singular values
    measured: torch.Tensor  # (..., m) 1 where the coordinate carries a measurement
    sigma: float  # measurement noise std (network units)
    dims: int  # real dimensions the per-pixel criteria average over (channels x pixels modelled)
    structure: str  # "fourier_diagonal", "fourier_block" or "pixel_mask"
    norm_scale: float = 1.0  # (full image size) / (modelled size): DPS's residual norm is over the whole image
    Vh: torch.Tensor | None = None  # (..., n, n): xi = Vh x_block (None: identity)
    U: torch.Tensor | None = None  # (..., m, m): ybar = U^H y_block (None: identity)
    factor: int = 1  # super-resolution factor (alias layout)
    grid: tuple[int, int] = (0, 0)  # (H, W) modelled
    origin: tuple[int, int] = (0, 0)  # top-left pixel of the modelled window (masks)
    note: str = ""
    weight: torch.Tensor | None = None  # (...): block b stands for weight[b] equal blocks (None: each counts once)
    positions: tuple[torch.Tensor, torch.Tensor] | None = None  # sampled alias blocks: (rows, cols) on the low-res grid
    denoiser: CalibratedDenoiser | None = None  # denoiser_model.py; None: the surrogate's Wiener denoiser
    evals: torch.Tensor = field(init=False, repr=False)
    evecs: torch.Tensor = field(init=False, repr=False)
    _denoiser_cache: dict = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        if self.n == 1:
            self.evals, self.evecs = self.Sigma[..., 0].real, torch.ones_like(self.Sigma)
        else:
            self.evals, self.evecs = torch.linalg.eigh(self.Sigma)
            self.evals = self.evals.clamp(min=0)

    @property
    def n(self) -> int:
        return self.Sigma.shape[-1]

    @property
    def m(self) -> int:
        return self.s.shape[-1]

    @property
    def dtype(self) -> torch.dtype:
        return self.Sigma.dtype

    @property
    def num_blocks(self) -> int:
        return self.Sigma[..., 0, 0].numel()

    def grouped(self, rel_step: float = 0.1, s_rel_step: float = 0.1) -> "BlockProblem":
        """The 1 x 1-block problem with blocks of nearly equal ``(lambda, s)`` merged: one weighted block per cell of
        relative width ``rel_step`` in ``lambda`` and ``s_rel_step`` in the kept ``s`` (log-spaced: the samplers'
        ``1 / s`` terms vary as much across small singular values as across large ones); truncated singular values
        (zero for the samplers, only in the true ``H``) in steps of ``s_rel_step / 100`` of the largest,
        holding the cell's mean ``lambda`` and ``s``. Every criterion is a weighted sum of smooth per-block terms,
        so the grouped problem's criteria differ from the exact ones by second order in the cell widths
        (``tests/test_spectral_design.py`` bounds it); it serves the designer, whose L-BFGS evaluates the closed
        form a hundred times or more (its size and accuracy at 256 x 256: docs/benchmarks.md).
        Only marginal criteria (over y) are defined on it, and only for the Wiener denoiser (a calibrated gain is not
        a function of ``lambda``)."""
        if self.structure != "fourier_diagonal":
            raise ValueError("only blur (1 x 1 blocks) problems can be grouped")
        if self.denoiser is not None:
            raise ValueError("a problem with a calibrated denoiser cannot be grouped by (lambda, s)")
        lam = self.Sigma[..., 0, 0].real.flatten()
        s, kept = self.s[..., 0].flatten().to(torch.float64), (self.s_eff[..., 0] > 0).flatten()
        s_bin = torch.where(
            kept,
            torch.round(s.clamp(min=1e-300).log() / math.log1p(s_rel_step)),
            torch.round(s / (s_rel_step * float(s.max()) * 1e-2)),
        )  # truncated: s only enters H
        key = torch.stack(
            [torch.round(lam.clamp(min=1e-300).log() / math.log1p(rel_step)).long(), s_bin.long(), kept.long()], dim=1
        )
        cells, inverse = torch.unique(key, dim=0, return_inverse=True)
        count = torch.zeros(len(cells), dtype=torch.float64).index_add_(0, inverse, torch.ones_like(lam))
        mean_lam = torch.zeros_like(count).index_add_(0, inverse, lam) / count
        mean_s = torch.zeros_like(count).index_add_(0, inverse, s) / count
        kept_g = cells[:, 2].bool()
        return BlockProblem(
            mean_lam.to(torch.complex128)[:, None, None],
            mean_s[:, None],
            torch.where(kept_g, mean_s, torch.zeros_like(mean_s))[:, None],
            torch.ones_like(mean_s)[:, None],
            self.sigma,
            self.dims,
            self.structure,
            norm_scale=self.norm_scale,
            note=self.note,
            weight=count,
            U=torch.ones(len(cells), 1, 1, dtype=torch.complex128),
        )

    def fn(self, f) -> torch.Tensor:
        """``f(Sigma)`` for a scalar function ``f`` applied to the eigenvalues."""
        return eig_fn(self.evals, self.evecs, f(self.evals))

    def frequency_operator(self, v: torch.Tensor) -> torch.Tensor:
        """The operator ``Q^T F^H diag(v) F Q`` (``v`` per decorrelated channel and frequency, (C, H, W), of the
        whole image) in the blocks' SVD coordinates (..., n, n), built as ``Sigma`` is from ``lambda``: per
        frequency for blur, ``Vh diag(v_alias) Vh^H`` per alias block, and the circulant restricted to the modelled
        window (``circulant_covariance``) for masks."""
        v = v.detach().cpu().to(torch.float64)
        if self.structure == "fourier_diagonal":
            return v.to(self.dtype)[..., None, None]
        if self.structure == "fourier_block":
            v_al = rearrange(v, _ALIAS, s1=self.factor, s2=self.factor).to(torch.complex128)
            if self.positions is not None:
                rows, cols = self.positions
                v_al = v_al[torch.arange(rows.shape[0])[:, None], rows, cols]
            assert self.Vh is not None, "a fourier_block problem carries its block bases"
            M = self.Vh @ (v_al[..., :, None] * self.Vh.mH)
            return 0.5 * (M + M.mH)
        r0, c0 = self.origin
        rows = torch.arange(r0, r0 + self.grid[0]).repeat_interleave(self.grid[1])
        cols = torch.arange(c0, c0 + self.grid[1]).repeat(self.grid[0])
        return circulant_covariance(v, rows, cols).to(self.dtype)

    def denoiser_at(self, a: float) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The denoiser model at ``abar_t = a`` in block coordinates (denoiser_model.py): ``(C_t, R_t)`` with
        ``x0_hat = C_t x_t + N(0, R_t)`` (centred); the Wiener ``C_t = sqrt(a) Sigma (a Sigma + (1 - a) I)^{-1}`` and
        ``R_t`` None without a calibrated denoiser. A calibrated one is cached per time (the designer re-evaluates the
        same steps); the Wiener gain is cheaper to recompute than to hold at every step of a large image."""
        if self.denoiser is None:
            return self.fn(lambda e: math.sqrt(a) * e / (a * e + 1 - a)), None
        if a not in self._denoiser_cache:
            g, r = self.denoiser.fields(a)
            self._denoiser_cache[a] = (self.frequency_operator(g), self.frequency_operator(r))
        return self._denoiser_cache[a]

    def H(self) -> torch.Tensor:
        """``H_bar = [diag(s) 0]`` (..., m, n)."""
        return embed(self.s.to(self.dtype), self.n).mT

    def noise_cov(self) -> torch.Tensor:
        """Measurement noise covariance in ybar coordinates, ``sigma^2 diag(measured)`` (..., m, m)."""
        return torch.diag_embed((self.sigma**2 * self.measured).to(self.dtype))

    def y_cov(self) -> torch.Tensor:
        """``Cov[ybar] = H Sigma H^H + sigma^2 diag(measured)`` (centred)."""
        H = self.H()
        return H @ self.Sigma @ H.mH + self.noise_cov()

    def gram(self, S: torch.Tensor) -> torch.Tensor:
        """``H S H^H + sigma^2 I`` (..., m, m); where ``s = 0`` and ``sigma = 0``, 1 on the diagonal instead of 0, so
        it stays invertible (those coordinates get zero gain: their ``H`` rows are zero)."""
        H = self.H()
        d = torch.full_like(self.s, self.sigma**2)
        if self.sigma == 0:
            d = d + (self.s == 0).to(d.dtype)
        return H @ S @ H.mH + torch.diag_embed(d.to(self.dtype))

    def gain(self, S: torch.Tensor) -> torch.Tensor:
        """The Kalman gain ``S H^H (H S H^H + sigma^2 I)^{-1}`` (..., n, m) for a Hermitian ``S``."""
        return torch.linalg.solve(self.gram(S), self.H() @ S).mH

    def posterior(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(W, Sigma_post)``: ``W = Sigma H^H (H Sigma H^H + sigma^2 I)^{-1}``, ``Sigma_post = Sigma - W H Sigma``
        (theory.md §3; unmeasured coordinates have ``H`` rows of zeros, hence zero columns of ``W``)."""
        W = self.gain(self.Sigma)
        post = self.Sigma - W @ self.H() @ self.Sigma
        return W, 0.5 * (post + post.mH)

    # --- back to images ----------------------------------------------------------------------------------------

    def to_original(self, M: torch.Tensor) -> torch.Tensor:
        """An n x n block matrix field in the original basis (Fourier frequencies, or pixels): ``Vh^H M Vh``."""
        return M if self.Vh is None else self.Vh.mH @ M @ self.Vh

    def y_coords(self, y: torch.Tensor, surrogate) -> torch.Tensor:
        """Measurement coordinates ``ybar = U^H y_block`` (B, ..., m) of a batch of measurements (network units)."""
        if self.positions is not None or self.weight is not None:
            raise ValueError("a sampled or grouped problem has no per-measurement coordinates")
        if self.structure == "pixel_mask":
            u = apply_colour(surrogate.Q.to(y), y.to(torch.float64))
            r0, c0 = self.origin
            u = u[..., r0 : r0 + self.grid[0], c0 : c0 + self.grid[1]].flatten(-2)
            return u * self.measured
        y_hat = surrogate.to_spectral(y.to(torch.float64), centre=False)[..., None]  # (B, C, h, w, 1)
        assert self.U is not None, "a fourier_block problem carries its block bases"
        return (self.U.conj().mT @ y_hat[..., None])[..., 0]

    def _grid(self, v: torch.Tensor) -> torch.Tensor:
        """Per-block vectors (..., n) in the original basis -> the image grid (..., C, H, W); a sampled problem's
        blocks go to their frequencies, NaN elsewhere."""
        if self.structure == "fourier_diagonal":
            return v[..., 0]
        if self.structure == "fourier_block" and self.positions is not None:
            f, (Hh, Ww) = self.factor, self.grid
            rows, cols = self.positions  # (C, K)
            out = torch.full((*v.shape[:-2], Hh, Ww), float("nan"), dtype=v.dtype)
            ch = torch.arange(rows.shape[0])[:, None]
            for j in range(f * f):
                s1, s2 = divmod(j, f)
                out[..., ch, s1 * (Hh // f) + rows, s2 * (Ww // f) + cols] = v[..., j]
            return out
        if self.structure == "fourier_block":
            return rearrange(v, _UNALIAS, s1=self.factor, s2=self.factor)
        return v.reshape(*v.shape[:-1], *self.grid)

    def to_layout(self, xi: torch.Tensor) -> torch.Tensor:
        """SVD coordinates (B, ..., n) back to the original layout: spectra (B, C, H, W) for Fourier structures,
        decorrelated pixels (B, C, H, W) of the modelled window for masks."""
        return self._grid(xi if self.Vh is None else (self.Vh.mH @ xi[..., None])[..., 0])

    def diagonal_map(self, M: torch.Tensor) -> torch.Tensor:
        """The per-frequency (blur, super-resolution) or per-pixel (masks) diagonal of ``M``, shaped (C, H, W)."""
        return self._grid(torch.diagonal(self.to_original(M), dim1=-2, dim2=-1).real)

    def frequency_diagonal(self, M: torch.Tensor) -> torch.Tensor:
        """The per-frequency diagonal (C, H, W) of ``M`` (for masks: on the modelled window's DFT grid)."""
        if self.structure != "pixel_mask":
            return self.diagonal_map(M)
        h, w = self.grid
        F = torch.kron(dft_matrix(h), dft_matrix(w))
        return torch.diagonal(F @ M.to(F.dtype) @ F.mH, dim1=-2, dim2=-1).real.reshape(*M.shape[:-2], h, w)


def dft_matrix(n: int) -> torch.Tensor:
    """The unitary DFT matrix of size n (complex128)."""
    k = torch.arange(n, dtype=torch.float64)
    return torch.exp(-2j * torch.pi * torch.outer(k, k) / n) / n**0.5


# --- builders -----------------------------------------------------------------------------------------------------


def circulant_covariance(lam: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """The covariance ``F^H diag(lam) F`` between pixels ``(rows[i], cols[i])`` and ``(rows[j], cols[j])``:
    ``r[(rows_i - rows_j) mod H, (cols_i - cols_j) mod W]`` with ``r = ifft2(lam)`` (lam: (C, H, W))."""
    H, W = lam.shape[-2:]
    r = torch.fft.ifft2(lam.to(torch.complex128)).real
    dr = (rows[:, None] - rows[None, :]) % H
    dc = (cols[:, None] - cols[None, :]) % W
    return r[..., dr, dc]


def _matching_window(mask: torch.Tensor, hh: int, ww: int) -> tuple[int, int]:
    """The top-left corner of the hh x ww window whose kept fraction is closest to the whole mask's (ties: the
    window nearest the centre), so a reduced problem keeps the mask's statistics (a centred window would lie wholly
    inside a centred box hole)."""
    H, W = mask.shape
    frac = float(mask.mean())
    sums = torch.nn.functional.avg_pool2d(mask[None, None], (hh, ww), stride=1)[0, 0]  # (H-hh+1, W-ww+1)
    r = torch.arange(sums.shape[0], dtype=torch.float64)[:, None] - (H - hh) / 2
    c = torch.arange(sums.shape[1], dtype=torch.float64)[None, :] - (W - ww) / 2
    score = (sums - frac).abs() * 1e6 + (r.square() + c.square())  # fraction first, then distance to the centre
    k = int(score.argmin())
    return k // sums.shape[1], k % sums.shape[1]


def problem_for(
    surrogate,
    operator,
    sigma: float,
    *,
    max_dense: int = MAX_DENSE,
    crop: int = CROP,
    max_fourier: int = MAX_FOURIER_BLOCKS,
    denoiser=None,
) -> BlockProblem:
    """The block problem of ``operator`` (its first image's operator when it has one per image) under ``surrogate``
    with noise ``sigma`` (network units); ``denoiser`` a calibrated denoiser model (denoiser_model.py; None: the
    Wiener denoiser).

    Super-resolution of large images (more than ``max_fourier / f^2`` alias blocks of f^2 x f^2 per channel, the
    count of a 32 x 32 image) is modelled on a weighted sample of its blocks, the most powerful ones and one in every
    k x k cell (:func:`sample_blocks`): each block is exact, the criteria are unbiased estimates, and ``note`` says
    so. Blur stays exact at every size; above 32 x 32 x 3 the designer works on its :meth:`BlockProblem.grouped`
    form. Their cost and accuracy at 256 x 256: docs/benchmarks.md."""
    lam = surrogate.spectrum.detach().cpu().to(torch.float64)
    nc, Hh, Ww = lam.shape
    rcond = float(operator.rcond)
    structure = operator.structure
    if structure == "fourier_diagonal":
        h = operator.symbol[0, 0].detach().cpu().to(torch.complex128).expand(nc, Hh, Ww)
        s = h.abs()
        phase = torch.where(s > 0, h / torch.where(s > 0, s, 1.0), torch.ones_like(h))
        return BlockProblem(
            lam.to(torch.complex128)[..., None, None],
            s[..., None],
            truncate(s, rcond)[..., None],
            torch.ones_like(s)[..., None],
            float(sigma),
            nc * Hh * Ww,
            structure,
            U=phase[..., None, None],
            grid=(Hh, Ww),
            denoiser=denoiser,
        )
    if structure == "fourier_block":
        f = operator.factor
        R = operator.fourier_blocks()[0, 0].detach().cpu().to(torch.complex128)  # (h, w, f^2)
        U, sv, Vh = torch.linalg.svd(R[..., None, :], full_matrices=True)  # (h,w,1,1), (h,w,1), (h,w,n,n)
        cut = truncate(sv, rcond)
        k = subgrid_stride(Hh // f, Ww // f, max(1, max_fourier // (f * f)))  # as many blocks as a 32 x 32 image
        lam_al = rearrange(lam, _ALIAS, s1=f, s2=f).to(torch.complex128)  # (C, h, w, n)
        U, sv, Vh, cut = (v.expand(nc, *v.shape) for v in (U, sv, Vh, cut))
        weight = positions = None
        if k > 1:
            rows, cols, weight = sample_blocks(lam_al.real.sum(-1), k, TAKE_ALL)
            ch = torch.arange(nc)[:, None]
            U, sv, Vh, cut, lam_al = (v[ch, rows, cols] for v in (U, sv, Vh, cut, lam_al))
            positions = (rows, cols)
        Sigma = Vh @ (lam_al[..., :, None] * Vh.mH)
        Sigma = 0.5 * (Sigma + Sigma.mH)
        return BlockProblem(
            Sigma,
            sv,
            cut,
            torch.ones_like(sv),
            float(sigma),
            nc * Hh * Ww,
            structure,
            Vh=Vh,
            U=U,
            factor=f,
            grid=(Hh, Ww),
            weight=weight,
            positions=positions,
            denoiser=denoiser,
            note=_subgrid_note(Hh // f, Ww // f, k, f) if k > 1 else "",
        )
    if structure == "pixel_mask":
        mask = operator.mask[0].detach().cpu().to(torch.float64)  # (1 or C, H, W)
        if mask.shape[0] > 1 and not bool((mask == mask[:1]).all()):
            raise ZSGuideError("the spectral engine needs an inpainting mask shared by all channels")
        mask = mask[0]
        note, (r0, c0, hh, ww) = "", (0, 0, Hh, Ww)
        if Hh * Ww > max_dense:
            hh, ww = min(crop, Hh), min(crop, Ww)
            r0, c0 = _matching_window(mask, hh, ww)
            note = (
                f"dimension reduction: exact law on the {hh}x{ww} window at ({r0}, {c0}) of the {Hh}x{Ww} image "
                f"(stationary prior restricted to the window, mask cropped with it; window chosen to keep the "
                f"mask's measured fraction {float(mask.mean()):.3f}: "
                f"{float(mask[r0 : r0 + hh, c0 : c0 + ww].mean()):.3f})"
            )
        rows = torch.arange(r0, r0 + hh).repeat_interleave(ww)
        cols = torch.arange(c0, c0 + ww).repeat(hh)
        Sigma = circulant_covariance(lam, rows, cols)  # (C, n, n)
        m = mask[rows, cols].expand(nc, hh * ww)
        if not bool(m.any()):
            raise ZSGuideError(
                f"the inpainting mask keeps no pixel of the {hh}x{ww} window the spectral engine "
                f"models; nothing to design for"
            )
        return BlockProblem(
            Sigma,
            m,
            truncate(m, rcond),
            m,
            float(sigma),
            nc * hh * ww,
            structure,
            norm_scale=float(mask.sum() / m[0].sum()),
            grid=(hh, ww),
            origin=(r0, c0),
            note=note,
            denoiser=denoiser,
        )
    raise ZSGuideError(f"the spectral engine has no closed form for operators of structure {structure!r}")
