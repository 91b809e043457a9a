"""The variance-preserving (VP) noise schedule and sampling-time subsequences (theory.md §1).

    x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps,   abar_t = prod_{s <= t} (1 - beta_s),   t = 0 .. T-1

VE view: ``x_t / sqrt(abar_t) = x_0 + sigma_t eps`` with ``sigma_t^2 = (1 - abar_t) / abar_t``.

Defaults follow DDPM (Ho et al. 2020): T = 1000, linear betas from 1e-4 to 0.02; the cosine option is Nichol &
Dhariwal (2021) with offset s = 0.008 and betas clipped at 0.999.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from ..errors import ZSGuideError

SCHEDULE_KINDS = ("linear", "cosine")
SPACINGS = ("uniform", "quadratic", "edm")
EDM_SIGMA_MAX, EDM_SIGMA_MIN, EDM_RHO = 100.0, 0.1, 7  # DAPS's annealing grid (configs/sampler/edm_daps.yaml)


def edm_grid_times(abar: torch.Tensor, sigma_hi: float, sigma_lo: float, n: int, rho: float = EDM_RHO) -> list[int]:
    """The training times (of the ``abar`` table) nearest in log scale to EDM's grid ``sigma_k = (hi^(1/rho) +
    k / (n - 1) (lo^(1/rho) - hi^(1/rho)))^rho``, k = 0 .. n-1 (Karras et al. 2022): decreasing, repeats kept (an
    inner ODE may repeat a time: a zero step). VE levels ``sigma_t = sqrt((1 - abar_t) / abar_t)``."""
    log_sigmas = 0.5 * ((1 - abar) / abar).log()
    k = torch.linspace(0, 1, n, dtype=torch.float64) if n > 1 else torch.zeros(1, dtype=torch.float64)
    grid = (sigma_hi ** (1 / rho) + k * (sigma_lo ** (1 / rho) - sigma_hi ** (1 / rho))) ** rho
    return [int((log_sigmas - math.log(float(s))).abs().argmin()) for s in grid]


@dataclass(frozen=True)
class VPSchedule:
    """A discrete VP schedule; all arrays are float64 on the CPU (move them where needed)."""

    num_timesteps: int = 1000
    kind: str = "linear"
    beta_start: float = 1e-4
    beta_end: float = 0.02

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULE_KINDS:
            raise ZSGuideError(f"unknown schedule kind {self.kind!r}; choose one of {', '.join(SCHEDULE_KINDS)}")
        if self.num_timesteps < 2:
            raise ZSGuideError(f"num_timesteps must be >= 2, got {self.num_timesteps}")

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def betas(self) -> torch.Tensor:
        T = self.num_timesteps
        if self.kind == "linear":
            return torch.linspace(self.beta_start, self.beta_end, T, dtype=torch.float64)
        s = 0.008
        steps = torch.arange(T + 1, dtype=torch.float64) / T
        f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
        abar = f / f[0]
        return (1 - abar[1:] / abar[:-1]).clamp(max=0.999)

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        """``abar_t`` for t = 0 .. T-1."""
        return torch.cumprod(1 - self.betas, dim=0)

    @property
    def sigmas(self) -> torch.Tensor:
        """VE noise levels ``sigma_t = sqrt((1 - abar_t) / abar_t)``."""
        abar = self.alphas_cumprod
        return ((1 - abar) / abar).sqrt()

    def nearest_timestep(self, sigma: float) -> int:
        """The training time whose VE noise level is closest to ``sigma`` (in log scale)."""
        if sigma <= 0:
            raise ZSGuideError(f"noise level sigma must be > 0, got {sigma}")
        return int((self.sigmas.log() - math.log(sigma)).abs().argmin())

    def edm_timesteps(self, steps: int) -> torch.Tensor:
        """``edm`` spacing: DAPS's annealing levels, EDM's rho = 7 grid from sigma 100 to 0.1
        (:func:`edm_grid_times`), made strictly decreasing (a repeated time moved up by one)."""
        taus = edm_grid_times(self.alphas_cumprod, EDM_SIGMA_MAX, EDM_SIGMA_MIN, steps)
        for i in range(len(taus) - 2, -1, -1):
            if taus[i] <= taus[i + 1]:
                taus[i] = taus[i + 1] + 1
        if taus[0] > self.num_timesteps - 1:
            raise ZSGuideError(f"cannot place {steps} distinct edm steps in {self.num_timesteps} training times")
        return torch.tensor(taus)

    def timesteps(self, steps: int, spacing: str = "uniform") -> torch.Tensor:
        """A decreasing subsequence ``tau_N > ... > tau_1`` of the training times (long tensor of length ``steps``).

        ``uniform``: ``tau_i = round((i - 1) (T - 1) / (N - 1))`` ... evenly spaced from T - 1 down to 0;
        ``quadratic``: ``tau_i`` spaced as ``((i - 1) / (N - 1))^2 (T - 1)`` (DDIM's quadratic skip, used by DiffPIR);
        these two start at T - 1 and end at 0. ``edm``: :meth:`edm_timesteps` (DAPS). The entries are distinct.
        """
        T = self.num_timesteps
        if spacing not in SPACINGS:
            raise ZSGuideError(f"unknown timestep spacing {spacing!r}; choose one of {', '.join(SPACINGS)}")
        if not 1 <= steps <= T:
            raise ZSGuideError(f"steps must be between 1 and {T}, got {steps}")
        if steps == 1:
            return torch.tensor([T - 1])
        if spacing == "edm":
            return self.edm_timesteps(steps)
        u = torch.linspace(0, 1, steps, dtype=torch.float64)
        if spacing == "quadratic":
            u = u**2
        taus = (u * (T - 1)).round().long()
        # Quadratic spacing can repeat small times; push duplicates up so the sequence stays strictly increasing.
        for i in range(1, steps):
            if taus[i] <= taus[i - 1]:
                taus[i] = taus[i - 1] + 1
        if int(taus[-1]) > T - 1:
            raise ZSGuideError(f"cannot place {steps} distinct {spacing} steps in {T} training times")
        return taus.flip(0)
