"""The Gaussian surrogate of the data: a constant mean per channel and a circulant covariance (theory.md §2).

Signals live in the network's [-1, 1] space. A fixed orthogonal colour transform ``Q`` (C x C) decorrelates the
channels; each decorrelated channel is stationary with power spectrum ``lambda_k``:

    u = Q (x - mu)   (per pixel),     u_hat = F u   (unitary 2-D DFT per channel),
    Cov[x] = Q^T F^H diag(lambda) F Q,   lambda_k = E |u_hat_k|^2.

``lambda`` is the periodogram averaged over the training images (streamed, in float64, summed across ranks), kept
above ``floor`` so every closed form stays finite. For white noise of variance v, ``lambda_k = v``: the spectrum is in
per-pixel variance units.

For RGB the transform is the orthonormal opponent basis (luminance, red-blue, green-magenta)::

    Q = [[1, 1, 1] / sqrt(3), [1, 0, -1] / sqrt(2), [1, -2, 1] / sqrt(6)]

which is fixed, not fitted, so the surrogate is a deterministic function of the data (and of nothing else).
"""

from __future__ import annotations

import hashlib
import math

import torch
from torch import nn

from .errors import ZSGuideError


def colour_transform(channels: int) -> torch.Tensor:
    """The fixed orthogonal decorrelating transform ``Q`` (float64): identity for 1 channel, opponent basis for 3."""
    if channels == 1:
        return torch.eye(1, dtype=torch.float64)
    if channels == 3:
        return torch.tensor(
            [
                [1 / math.sqrt(3)] * 3,
                [1 / math.sqrt(2), 0.0, -1 / math.sqrt(2)],
                [1 / math.sqrt(6), -2 / math.sqrt(6), 1 / math.sqrt(6)],
            ],
            dtype=torch.float64,
        )
    raise ZSGuideError(f"images must have 1 or 3 channels, got {channels}")


def apply_colour(Q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``(Q x)`` per pixel for x of shape (..., C, H, W)."""
    return torch.einsum("dc,...chw->...dhw", Q.to(x), x)


def radial_frequency(height: int, width: int) -> torch.Tensor:
    """``|f|`` in cycles per pixel on the DFT grid, shape (H, W), in [0, sqrt(2)/2]."""
    fy = torch.fft.fftfreq(height, dtype=torch.float64)
    fx = torch.fft.fftfreq(width, dtype=torch.float64)
    return torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)


def power_law_spectrum(
    channels: int, height: int, width: int, amplitude: float, slope: float, f0: float
) -> torch.Tensor:
    """``lambda_k = amplitude / (f0 + |f_k|)^slope``, the same in every decorrelated channel, shape (C, H, W)."""
    lam = amplitude / (f0 + radial_frequency(height, width)) ** slope
    return lam.expand(channels, height, width).clone()


def radial_average(spectrum: torch.Tensor, bins: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Average a (..., H, W) spectrum over rings of ``|f|``; returns (bin centres, averages of shape (..., bins))."""
    H, W = spectrum.shape[-2:]
    f = radial_frequency(H, W)
    bins = bins or max(H, W) // 2
    edges = torch.linspace(0, float(f.max()) + 1e-12, bins + 1, dtype=torch.float64)
    idx = (torch.bucketize(f.flatten(), edges) - 1).clamp(0, bins - 1)
    flat = spectrum.reshape(*spectrum.shape[:-2], -1).to(torch.float64)
    known = ~torch.isnan(flat)  # NaN: a frequency not modelled (a sampled problem); left out of its ring
    sums = torch.zeros(*flat.shape[:-1], bins, dtype=torch.float64).index_add_(-1, idx, torch.where(known, flat, 0.0))
    counts = torch.zeros(*flat.shape[:-1], bins, dtype=torch.float64).index_add_(-1, idx, known.to(torch.float64))
    keep = counts.reshape(-1, bins).amin(0) > 0
    centres = 0.5 * (edges[1:] + edges[:-1])
    return centres[keep], (sums / counts.clamp(min=1))[..., keep]


class SpectrumAccumulator:
    """Streams the sums needed for the mean and the averaged periodogram, in float64.

    With ``u = Q x`` and ``U = F u`` (unitary), for mean ``m_u`` of ``u`` the periodogram of the centred signal is
    ``|U_k|^2`` for k != 0 and ``|U_0 - sqrt(HW) m_u|^2`` at k = 0, so one pass suffices:
    ``lambda_k = S2_k / n`` for k != 0, ``lambda_0 = S2_0 / n - HW m_u^2`` with ``m_u = S1 / (n sqrt(HW))``.
    """

    def __init__(self, channels: int, height: int, width: int) -> None:
        self.Q = colour_transform(channels)
        self.shape = (channels, height, width)
        self.count = torch.zeros((), dtype=torch.float64)
        self.dc_sum = torch.zeros(channels, dtype=torch.float64)
        self.power_sum = torch.zeros(channels, height, width, dtype=torch.float64)

    def update(self, x: torch.Tensor) -> None:
        """Add a batch of images ``x`` (B, C, H, W) in network space."""
        if tuple(x.shape[1:]) != self.shape:
            raise ZSGuideError(f"image shape {tuple(x.shape[1:])} does not match the surrogate shape {self.shape}")
        u_hat = torch.fft.fft2(apply_colour(self.Q, x.detach().to("cpu", torch.float64)), norm="ortho")
        self.count += x.shape[0]
        self.dc_sum += u_hat[..., 0, 0].real.sum(0)
        self.power_sum += u_hat.abs().square().sum(0)

    def state(self) -> torch.Tensor:
        """The sums packed into one vector, for an all-reduce across ranks."""
        return torch.cat([self.count.reshape(1), self.dc_sum, self.power_sum.flatten()])

    def load_state(self, packed: torch.Tensor) -> None:
        C = self.shape[0]
        self.count = packed[0].clone()
        self.dc_sum = packed[1 : 1 + C].clone()
        self.power_sum = packed[1 + C :].reshape(self.shape).clone()

    def finish(self, floor: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(mu, lambda)``: the per-channel mean in pixel space (C,) and the spectrum (C, H, W)."""
        n = float(self.count)
        if n < 2:
            raise ZSGuideError("the Gaussian surrogate needs at least 2 training images")
        C, H, W = self.shape
        m_u = self.dc_sum / (n * math.sqrt(H * W))
        lam = self.power_sum / n
        lam[:, 0, 0] -= H * W * m_u**2
        lam = lam.clamp(min=floor)
        mu = self.Q.T @ m_u
        return mu, lam


class GaussianSurrogate(nn.Module):
    """Mean ``mu`` (C,) and spectrum ``lambda`` (C, H, W) in float64 buffers, with the transforms that use them.

    The buffers are zeros until :meth:`set` is called (``fitted`` says which); they travel in the checkpoint.
    """

    mean: torch.Tensor
    spectrum: torch.Tensor
    fitted: torch.Tensor

    def __init__(self, channels: int, height: int, width: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(channels, dtype=torch.float64))
        self.register_buffer("spectrum", torch.zeros(channels, height, width, dtype=torch.float64))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    @property
    def shape(self) -> tuple[int, int, int]:
        C, H, W = self.spectrum.shape
        return C, H, W

    @property
    def Q(self) -> torch.Tensor:
        return colour_transform(self.shape[0]).to(self.spectrum.device)

    def set(self, mean: torch.Tensor, spectrum: torch.Tensor) -> None:
        if tuple(spectrum.shape) != self.shape:
            raise ZSGuideError(f"spectrum shape {tuple(spectrum.shape)} does not match {self.shape}")
        self.mean.copy_(mean)
        self.spectrum.copy_(spectrum)
        self.fitted.fill_(True)

    def require_fitted(self) -> None:
        if not bool(self.fitted):
            raise ZSGuideError("the Gaussian surrogate has not been fitted (this checkpoint carries none)")

    def digest(self) -> str:
        """A short hash of (mean, spectrum): the key under which designed schedules are cached."""
        h = hashlib.sha256()
        h.update(self.mean.detach().cpu().numpy().tobytes())
        h.update(self.spectrum.detach().cpu().numpy().tobytes())
        return h.hexdigest()[:16]

    def to_spectral(self, x: torch.Tensor, centre: bool = True) -> torch.Tensor:
        """``F Q (x - mu)`` (complex, (..., C, H, W)); ``centre=False`` omits the mean."""
        if centre:
            x = x - self.mean.to(x)[:, None, None]
        return torch.fft.fft2(apply_colour(self.Q, x), norm="ortho")

    def from_spectral(self, u_hat: torch.Tensor, centre: bool = True) -> torch.Tensor:
        """Inverse of :meth:`to_spectral` (real part)."""
        u = torch.fft.ifft2(u_hat, norm="ortho").real
        x = apply_colour(self.Q.T, u)
        if centre:
            x = x + self.mean.to(x)[:, None, None]
        return x

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` draws of ``N(mu, Cov)`` in float64: ``mu + Q^T F^H (sqrt(lambda) F w)``, w white."""
        self.require_fitted()
        w = torch.randn(n, *self.shape, generator=generator, dtype=torch.float64)
        return self.from_spectral(self.spectrum.sqrt() * torch.fft.fft2(w, norm="ortho"))

    def denoise(self, x_t: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
        """The Tweedie / Wiener denoiser ``E[x0 | x_t]`` (theory.md §3), per decorrelated frequency k:

            x0_hat = mu + F^H [ c_k F (x_t - sqrt(abar) mu) ],  c_k = sqrt(abar) lambda_k / (abar lambda_k + 1 - abar)

        ``abar`` is a tensor broadcastable to the batch (shape (B,) or scalar). Computed in float64, returned in
        the dtype of ``x_t``.
        """
        self.require_fitted()
        a = torch.as_tensor(abar).to(self.spectrum.device, torch.float64).reshape(-1, 1, 1, 1)
        xd = x_t.to(self.spectrum.device, torch.float64)
        mu = self.mean[:, None, None]
        centred = xd - a.sqrt() * mu
        lam = self.spectrum
        gain = a.sqrt() * lam / (a * lam + 1 - a)
        u_hat = torch.fft.fft2(apply_colour(self.Q, centred), norm="ortho")
        x0 = apply_colour(self.Q.T, torch.fft.ifft2(gain * u_hat, norm="ortho").real) + mu
        return x0.to(x_t.device, x_t.dtype)

    def posterior_variance(self, abar: torch.Tensor) -> torch.Tensor:
        """``v_{t,k} = Var[x0 | x_t]_k = (1 - abar) lambda_k / (abar lambda_k + 1 - abar)``, shape (..., C, H, W)."""
        a = torch.as_tensor(abar).to(self.spectrum.device, torch.float64).reshape(-1, 1, 1, 1)
        lam = self.spectrum
        return (1 - a) * lam / (a * lam + 1 - a)
