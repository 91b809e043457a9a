"""The eps prediction of a foreign network, behind zsguide's ``eps_fn(x_t, t)`` interface."""

from __future__ import annotations

import torch
from torch import nn


class EpsOutput(nn.Module):
    """``eps = net(x_t, t)[:, :C]`` (or ``net(x_t, t).<field>[:, :C]`` for an output object, diffusers'
    ``.sample``): the first C channels, which is all of it for an eps network and the eps half of a learned-sigma
    network's 2C outputs (eps, then the variance interpolation, in both guided-diffusion and diffusers)."""

    def __init__(self, net: nn.Module, channels: int, field: str | None = None) -> None:
        super().__init__()
        self.net = net
        self.channels = channels
        self.field = field

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = self.net(x, t.reshape(-1).expand(x.shape[0]))
        return (getattr(out, self.field) if self.field else out)[:, : self.channels]
