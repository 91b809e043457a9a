"""The denoiser interface shared by the network and the analytic Gaussian denoiser (architecture.md).

A denoiser maps ``(x_t, t)`` on the VP scale to ``x0_hat = E[x0 | x_t]`` (estimated). Samplers call only this, so
the same sampler code runs on the trained network and on the surrogate's closed-form denoiser. Both sides use

    eps_hat = (x_t - sqrt(abar_t) x0_hat) / sqrt(1 - abar_t),   x0_hat = (x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..surrogate import GaussianSurrogate
from .schedule import VPSchedule


class Denoiser(nn.Module):
    """Base class: subclasses implement :meth:`x0` or :meth:`eps`; ``t`` is an int or a long tensor of shape (B,)."""

    alphas_cumprod: torch.Tensor

    def __init__(self, schedule: VPSchedule) -> None:
        super().__init__()
        self.schedule = schedule
        self.register_buffer("alphas_cumprod", schedule.alphas_cumprod, persistent=False)

    def abar(self, t: int | torch.Tensor, batch: int) -> torch.Tensor:
        """``abar_t`` as a float64 tensor of shape (B,)."""
        t = torch.as_tensor(t, device=self.alphas_cumprod.device).long().reshape(-1).expand(batch)
        return self.alphas_cumprod[t]

    @staticmethod
    def _bcast(a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return a.reshape(-1, *([1] * (x.dim() - 1))).to(x.dtype)

    def x0(self, x_t: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        a = self._bcast(self.abar(t, x_t.shape[0]), x_t)
        return (x_t - (1 - a).sqrt() * self.eps(x_t, t)) / a.sqrt()

    def eps(self, x_t: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        a = self._bcast(self.abar(t, x_t.shape[0]), x_t)
        return (x_t - a.sqrt() * self.x0(x_t, t)) / (1 - a).sqrt()

    def forward(self, x_t: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        return self.x0(x_t, t)


class AnalyticDenoiser(Denoiser):
    """The surrogate's Tweedie / Wiener denoiser ``x0_hat = mu + F^H c_t F (x_t - sqrt(abar_t) mu)`` (theory.md §3)."""

    def __init__(self, surrogate: GaussianSurrogate, schedule: VPSchedule) -> None:
        super().__init__(schedule)
        surrogate.require_fitted()
        self.surrogate = surrogate

    def x0(self, x_t: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        return self.surrogate.denoise(x_t, self.abar(t, x_t.shape[0]))


class EpsNetworkDenoiser(Denoiser):
    """Wraps an eps-prediction callable ``eps_fn(x_t, t)`` (the trained network, EMA weights)."""

    def __init__(self, eps_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], schedule: VPSchedule) -> None:
        super().__init__(schedule)
        self.eps_fn = eps_fn

    def eps(self, x_t: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, device=x_t.device).long().reshape(-1).expand(x_t.shape[0])
        return self.eps_fn(x_t, t).to(x_t.dtype)
