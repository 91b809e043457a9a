"""A small DDPM-style UNet that predicts the noise ``eps`` from ``(x_t, t)`` (Ho et al. 2020, simplified).

Residual blocks with GroupNorm + SiLU and an additive sinusoidal time embedding, self-attention at the coarsest
resolutions, channel multipliers per level. At the defaults (base 64 channels, multipliers (1, 2, 2), one residual
block per level) it has about 2.8M parameters, small enough to train on two CPU cores (the shipped checkpoint's
training time: checkpoints/README.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from einops import rearrange
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Transformer-style sinusoidal embedding of (possibly fractional) times ``t``: ``[cos(t w_i), sin(t w_i)]``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(32, channels), channels)


def _zeroed(conv: nn.Conv2d) -> nn.Conv2d:
    """``conv`` with its weight and bias set to zero (a residual branch that starts as the identity)."""
    nn.init.zeros_(conv.weight)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


def _run_block(block: nn.Module, h: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
    """One entry of ``down`` / ``up``: a ResBlock (given ``temb``) and its attention, or a resampling layer pair."""
    layers = list(block.children())
    if isinstance(layers[0], ResBlock):
        h = layers[0](h, temb)
        for extra in layers[1:]:
            h = extra(h)
        return h
    for layer in layers:
        h = layer(h)
    return h


class ResBlock(nn.Module):
    """``h = conv(SiLU(GN(x))) + proj(temb);  out = skip(x) + conv(dropout(SiLU(GN(h))))``."""

    def __init__(self, cin: int, cout: int, temb_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.conv1 = _norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.temb = nn.Linear(temb_dim, cout)
        self.norm2, self.conv2 = _norm(cout), _zeroed(nn.Conv2d(cout, cout, 3, padding=1))
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(nn.functional.silu(self.norm1(x)))
        h = h + self.temb(temb)[:, :, None, None]
        h = self.conv2(self.dropout(nn.functional.silu(self.norm2(h))))
        return self.skip(x) + h


class Attention(nn.Module):
    """Single-head self-attention over pixels with a residual connection."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = _norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = _zeroed(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        q, k, v = rearrange(self.qkv(self.norm(x)), "b (three c) h w -> three b (h w) c", three=3)
        a = nn.functional.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
        return x + self.out(rearrange(a, "b (h w) c -> b c h w", h=h, w=w))


class UNet(nn.Module):
    """``eps_hat = UNet(x_t, t)`` for images of shape (C, H, W); H and W divisible by ``2 ** (len(mults) - 1)``."""

    def __init__(
        self,
        in_channels: int = 3,
        base_channels: int = 64,
        channel_mults: Sequence[int] = (1, 2, 2),
        num_res_blocks: int = 1,
        attention_levels: Sequence[int] = (2,),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        temb_dim = 4 * base_channels
        self.base_channels = base_channels
        self.temb = nn.Sequential(nn.Linear(base_channels, temb_dim), nn.SiLU(), nn.Linear(temb_dim, temb_dim))
        self.stem = nn.Conv2d(in_channels, base_channels, 3, padding=1)
        chans = [base_channels * m for m in channel_mults]
        self.down = nn.ModuleList()
        skips = [base_channels]
        c = base_channels
        for level, cout in enumerate(chans):
            for _ in range(num_res_blocks):
                block = nn.ModuleList([ResBlock(c, cout, temb_dim, dropout)])
                if level in attention_levels:
                    block.append(Attention(cout))
                self.down.append(block)
                c = cout
                skips.append(c)
            if level < len(chans) - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(c, c, 3, stride=2, padding=1)]))
                skips.append(c)
        self.mid = nn.ModuleList([ResBlock(c, c, temb_dim, dropout), Attention(c), ResBlock(c, c, temb_dim, dropout)])
        self.up = nn.ModuleList()
        for level in reversed(range(len(chans))):
            cout = chans[level]
            for _ in range(num_res_blocks + 1):
                block = nn.ModuleList([ResBlock(c + skips.pop(), cout, temb_dim, dropout)])
                if level in attention_levels:
                    block.append(Attention(cout))
                self.up.append(block)
                c = cout
            if level > 0:
                self.up.append(
                    nn.ModuleList([nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, c, 3, padding=1)])
                )
        self.head = nn.Sequential(_norm(c), nn.SiLU(), _zeroed(nn.Conv2d(c, in_channels, 3, padding=1)))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        temb = self.temb(timestep_embedding(t.reshape(-1).expand(x.shape[0]), self.base_channels).to(x.dtype))
        h = self.stem(x)
        hs = [h]
        for block in self.down:
            h = _run_block(block, h, temb)
            hs.append(h)
        h = self.mid[0](h, temb)
        h = self.mid[1](h)
        h = self.mid[2](h, temb)
        for block in self.up:
            first = next(iter(block.children()))
            h = _run_block(block, torch.cat([h, hs.pop()], dim=1) if isinstance(first, ResBlock) else h, temb)
        return self.head(h)
