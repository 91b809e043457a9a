"""A denoiser's effective linear response against the Gaussian surrogate, per time and frequency (theory.md §3).

In the surrogate's decorrelated Fourier basis (surrogate.py: ``u_hat = F Q (x - mu)``), at time t:

    Z = F Q (x_t - sqrt(abar_t) mu)      the denoiser's input, centred as the Wiener denoiser centres it
    Y = F Q (x0_hat(x_t, t) - mu)        its output

The calibrated denoiser model is ``Y_k = g_{t,k} Z_k + R_k``: ``g`` the least-squares gain of Y on Z over images and
noise draws, ``R`` the residual, with power ``r_{t,k} = E |Y_k - g_{t,k} Z_k|^2`` (what the linear response does not
explain). For the surrogate's own Wiener denoiser ``Y = c Z`` exactly, ``c_{t,k} = sqrt(abar) lambda_k /
(abar lambda_k + 1 - abar)``: ``g = c`` and ``r = 0``.

Estimates, from the sums over images i and draws of ``a = Re(Y conj Z)``, ``b = |Z|^2``, ``c = |Y|^2``:

    per frequency k:   g_k = sum a / sum b,          r_k = (sum c - g_k sum a) / N         (N = images x draws)
    per ring (channel, radial band b of |f|, where the data are thin):
                       g_b = sum_{k in b} a / sum_{k in b} b,
                       r_b = (sum_{k in b} c - 2 g_b sum a + g_b^2 sum b) / (N |b|)   (residual to the ring's gain)

so the ring residual also holds the spread of the per-frequency gain within the ring, ``sum_k (g_k - g_b)^2 P_k / |b|``
with ``P_k = E |Z_k|^2`` (``input_power``): what a model with one gain per ring leaves unexplained.

Standard errors by the delete-a-group jackknife over G groups of images (image i in group ``i mod G``), from the
ring sums of each group, so they are the same on any number of devices. Sums are float64 and are all-reduced across
ranks; rings are the surrogate figures' bins (``radial_average``'s: ``max(H, W) // 2`` equal bands of |f|).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...surrogate import GaussianSurrogate, radial_frequency

GROUPS = 8  # jackknife groups (image index mod GROUPS)


def ring_index(height: int, width: int, bins: int | None = None) -> tuple[torch.Tensor, int]:
    """The ring of every frequency (H, W) and the number of rings: ``max(H, W) // 2`` equal bands of |f| (as
    :func:`zsguide.surrogate.radial_average` bins)."""
    f = radial_frequency(height, width)
    bins = bins or max(height, width) // 2
    edges = torch.linspace(0, float(f.max()) + 1e-12, bins + 1, dtype=torch.float64)
    return (torch.bucketize(f, edges) - 1).clamp(0, bins - 1), bins


class ResponseAccumulator:
    """Streamed sums for :class:`Response`: per time, per frequency (a, b, c) and per (group, ring) (a, b, c, count)."""

    def __init__(self, surrogate: GaussianSurrogate, timesteps: list[int], alphas_cumprod: torch.Tensor) -> None:
        self.surrogate = surrogate
        self.timesteps = [int(t) for t in timesteps]
        self.abar = torch.as_tensor([float(alphas_cumprod[t]) for t in self.timesteps], dtype=torch.float64)
        C, H, W = surrogate.shape
        self.ring, self.num_rings = ring_index(H, W)
        T = len(self.timesteps)
        self.freq = torch.zeros(T, 3, C, H, W, dtype=torch.float64)  # a, b, c per frequency
        self.rings = torch.zeros(T, GROUPS, 3, C, self.num_rings, dtype=torch.float64)
        self.count = torch.zeros(GROUPS, dtype=torch.float64)  # image-draws per group

    def update(self, j: int, x_t: torch.Tensor, x0_hat: torch.Tensor, indices: list[int]) -> None:
        """Add one draw per image at time index ``j``: the denoiser's input ``x_t`` and output ``x0_hat`` (network
        units, (B, C, H, W)) for dataset indices ``indices``."""
        s = self.surrogate
        a_t = float(self.abar[j])
        mu = s.mean.to(torch.float64)[:, None, None].cpu()
        Z = s.to_spectral((x_t.detach().to(torch.float64).cpu() - a_t**0.5 * mu), centre=False)
        Y = s.to_spectral(x0_hat.detach().to(torch.float64).cpu(), centre=True)
        per = torch.stack([(Y * Z.conj()).real, Z.abs().square(), Y.abs().square()], dim=1)  # (B, 3, C, H, W)
        self.freq[j] += per.sum(dim=0)
        flat = per.flatten(3)  # (B, 3, C, H*W)
        ring = self.ring.flatten()
        for i, index in enumerate(indices):
            g = int(index) % GROUPS
            self.rings[j, g].index_add_(-1, ring, flat[i])
            if j == 0:
                self.count[g] += 1

    def state(self) -> torch.Tensor:
        return torch.cat([self.freq.flatten(), self.rings.flatten(), self.count])

    def load_state(self, packed: torch.Tensor) -> None:
        n1, n2 = self.freq.numel(), self.rings.numel()
        self.freq = packed[:n1].reshape(self.freq.shape).clone()
        self.rings = packed[n1 : n1 + n2].reshape(self.rings.shape).clone()
        self.count = packed[n1 + n2 :].clone()

    def finish(self, draws: int) -> Response:
        """The estimates and their jackknife standard errors (module docstring)."""
        n = float(self.count.sum())  # image draws at each time (each image counted once per draw at time 0)
        a, b, c = self.freq.unbind(dim=1)
        gain = a / b
        resid = ((c - gain * a) / n).clamp(min=0)
        ring_size = torch.bincount(self.ring.flatten(), minlength=self.num_rings).to(torch.float64)

        def ring_estimates(sums: torch.Tensor, count: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            ra, rb, rc = sums.unbind(dim=-3)  # (..., C, R)
            g = ra / rb
            r = (rc - 2 * g * ra + g * g * rb) / (count[..., None, None] * ring_size)
            return g, r

        total = self.rings.sum(dim=1)
        g_ring, r_ring = ring_estimates(total, torch.full((len(self.timesteps),), n))
        leave = total[:, None] - self.rings  # (T, G, 3, C, R): every group but one
        counts = (n - self.count)[None, :].expand(len(self.timesteps), -1)
        g_jk, r_jk = ring_estimates(leave, counts)
        used = self.count > 0
        k = int(used.sum())

        def jackknife(values: torch.Tensor) -> torch.Tensor:
            v = values[:, used]
            return ((k - 1) / k * (v - v.mean(dim=1, keepdim=True)).square().sum(dim=1)).sqrt()

        return Response(
            self.timesteps,
            self.abar,
            gain,
            resid,
            b / n,
            g_ring,
            r_ring,
            jackknife(g_jk),
            jackknife(r_jk),
            self.ring,
            int(n // max(draws, 1)),
            int(draws),
            k,
        )


@dataclass
class Response:
    """A calibration: per time (T) the gain and residual power per frequency (T, C, H, W) and per ring (T, C, R),
    with the rings' jackknife standard errors; ``ring`` maps each frequency to its ring."""

    timesteps: list[int]
    abar: torch.Tensor
    gain: torch.Tensor
    residual: torch.Tensor
    input_power: torch.Tensor  # E |Z_k|^2 per frequency (abar lambda_k + 1 - abar for data that follow the surrogate)
    gain_ring: torch.Tensor
    residual_ring: torch.Tensor
    gain_ring_se: torch.Tensor
    residual_ring_se: torch.Tensor
    ring: torch.Tensor
    num_images: int
    draws: int
    groups: int

    def wiener_gain(self, surrogate: GaussianSurrogate) -> torch.Tensor:
        """The surrogate's ``c_{t,k}`` at the calibrated times, (T, C, H, W)."""
        a = self.abar.reshape(-1, 1, 1, 1)
        lam = surrogate.spectrum.cpu().to(torch.float64)
        return a.sqrt() * lam / (a * lam + 1 - a)

    def to_dict(self) -> dict:
        return {k: (v if not isinstance(v, torch.Tensor) else v.clone()) for k, v in self.__dict__.items()}
