"""The ADM UNet (Dhariwal & Nichol 2021, openai/guided-diffusion), written for zsguide with guided-diffusion's module
and parameter names, so that any raw guided-diffusion state dict loads strictly into it.

Architecture (``UNetModel`` of guided-diffusion, 2-D only):

    emb   = time_embed(sinusoid(t, model_channels))                   Linear -> SiLU -> Linear, width 4 model_channels
    h     = input_blocks(x, emb)   conv, then per level num_res_blocks x [ResBlock (+ AttentionBlock)] and a
                                   downsampling ResBlock (resblock_updown) or strided conv between levels
    h     = middle_block(h, emb)   ResBlock, AttentionBlock, ResBlock
    h     = output_blocks(cat(h, skip), emb)   per level (num_res_blocks + 1) x [ResBlock (+ Attention)] + upsampling
    out   = conv(SiLU(GroupNorm32(h)))                                 C channels (eps) or 2C (eps and variance)

ResBlock with ``use_scale_shift_norm`` (FiLM): ``h = GN(h) * (1 + scale) + shift`` from the time embedding. Attention
heads: ``channels // num_head_channels`` when ``num_head_channels > 0``, else ``num_heads``; the "legacy" order splits
heads before q, k, v (``use_new_attention_order=False``, what both public 256x256 checkpoints use). GroupNorm has 32
groups and runs in at least float32 (guided-diffusion's ``GroupNorm32`` upcasts half precision; float64 stays). Attention is computed by
``scaled_dot_product_attention``, which equals guided-diffusion's ``softmax(q k^T / sqrt(ch)) v`` up to float rounding.

:class:`ADMConfig` holds guided-diffusion's ``create_model`` arguments with its defaults (``script_util.py``);
``PRESETS`` holds the two public 256x256 checkpoints' arguments (sources in the docstring of ``PRESETS``).
Gradient checkpointing (``use_checkpoint``) recomputes each block's activations in the backward pass: DPS and PiGDM
backpropagate through the network, and this trades about one extra forward per step for activation
memory (measured at 256 x 256: docs/benchmarks.md).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from ..errors import ZSGuideError

# guided-diffusion's create_model picks channel multipliers from the image size when channel_mult is "".
DEFAULT_CHANNEL_MULT = {512: (0.5, 1, 1, 2, 2, 4, 4), 256: (1, 1, 2, 2, 4, 4), 128: (1, 1, 2, 3, 4), 64: (1, 2, 3, 4)}


@dataclass
class ADMConfig:
    """guided-diffusion's ``create_model`` arguments (``guided_diffusion/script_util.py``), with its defaults.

    ``channel_mult`` and ``attention_resolutions`` are comma-separated strings as on guided-diffusion's command line;
    ``attention_resolutions`` are resolutions (image_size // downsampling rate), not rates. ``in_channels`` is 3 in
    guided-diffusion; other values are for small grey-level networks.
    """

    image_size: int = 64
    num_channels: int = 128
    num_res_blocks: int = 2
    channel_mult: str = ""
    learn_sigma: bool = False
    class_cond: bool = False
    use_checkpoint: bool = False
    attention_resolutions: str = "16,8"
    num_heads: int = 4
    num_head_channels: int = -1
    num_heads_upsample: int = -1
    use_scale_shift_norm: bool = True
    dropout: float = 0.0
    resblock_updown: bool = False
    use_fp16: bool = False
    use_new_attention_order: bool = False
    in_channels: int = 3

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def out_channels(self) -> int:
        return 2 * self.in_channels if self.learn_sigma else self.in_channels

    def channel_multipliers(self) -> tuple[float, ...]:
        if self.channel_mult in ("", None):
            if self.image_size not in DEFAULT_CHANNEL_MULT:
                raise ZSGuideError(
                    f"adm: no default channel_mult for image_size {self.image_size} (guided-diffusion "
                    f"has them for {sorted(DEFAULT_CHANNEL_MULT)}); give --adm.channel_mult, e.g. 1,2,2"
                )
            return DEFAULT_CHANNEL_MULT[self.image_size]
        try:
            return tuple(float(m) if "." in m else int(m) for m in str(self.channel_mult).split(","))
        except ValueError:
            raise ZSGuideError(f"adm: channel_mult {self.channel_mult!r} is not a comma-separated list of numbers")

    def attention_rates(self) -> tuple[int, ...]:
        """Downsampling rates with attention: ``image_size // res`` for each listed resolution (create_model)."""
        text = str(self.attention_resolutions).strip()
        if not text:
            return ()
        try:
            return tuple(self.image_size // int(r) for r in text.split(","))
        except (ValueError, ZeroDivisionError):
            raise ZSGuideError(
                f"adm: attention_resolutions {self.attention_resolutions!r} is not a comma-separated "
                f"list of resolutions"
            ) from None


PRESETS: dict[str, dict] = {
    # ffhq_10m.pt (DPS, DiffPIR, DAPS, InverseBench): DPS2022/diffusion-posterior-sampling configs/model_config.yaml;
    # the same network is deepinv's DiffUNet(large_model=False).
    "ffhq_10m": dict(
        image_size=256,
        num_channels=128,
        num_res_blocks=1,
        channel_mult="",
        learn_sigma=True,
        class_cond=False,
        attention_resolutions="16",
        num_heads=4,
        num_head_channels=64,
        num_heads_upsample=-1,
        use_scale_shift_norm=True,
        dropout=0.0,
        resblock_updown=True,
        use_fp16=False,
        use_new_attention_order=False,
    ),
    # 256x256_diffusion_uncond.pt (DDRM, DDNM, DiffPIR, RED-diff): openai/guided-diffusion README, "256x256 model
    # (unconditional)" MODEL_FLAGS (use_fp16 only casts the torso at run time; the file stores float32 weights).
    "imagenet256_uncond": dict(
        image_size=256,
        num_channels=256,
        num_res_blocks=2,
        channel_mult="",
        learn_sigma=True,
        class_cond=False,
        attention_resolutions="32,16,8",
        num_heads=4,
        num_head_channels=64,
        num_heads_upsample=-1,
        use_scale_shift_norm=True,
        dropout=0.0,
        resblock_updown=True,
        use_fp16=True,
        use_new_attention_order=False,
    ),
}


def preset_config(name: str, **overrides) -> ADMConfig:
    if name not in PRESETS:
        raise ZSGuideError(
            f"unknown ADM preset {name!r} (--arch adm:{name}); choose one of "
            f"{', '.join('adm:' + p for p in PRESETS)}, or --arch adm with --adm.* arguments"
        )
    return ADMConfig(**(PRESETS[name] | overrides))


# ---------------------------------------------------------------------------------------------------------- layers
class GroupNorm32(nn.GroupNorm):
    """GroupNorm with 32 groups, computed in at least float32 (guided-diffusion's ``normalization``: half-precision
    activations are normalised in float32; float64 stays float64)."""

    def __init__(self, channels: int) -> None:
        super().__init__(32, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        wide = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        return super().forward(wide.to(self.weight.dtype)).type(x.dtype)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """``[cos(t w_i), sin(t w_i)]``, ``w_i = max_period^(-i / half)`` (guided-diffusion's ``timestep_embedding``)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1) if dim % 2 else emb


class TimestepBlock(nn.Module):
    """A module whose forward takes the time embedding as a second argument."""


class TimestepEmbedSequential(nn.Sequential, TimestepBlock):
    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, TimestepBlock) else layer(x)
        return x


class Upsample(nn.Module):
    """Nearest-neighbour x2, then an optional 3x3 conv (parameter ``conv``)."""

    def __init__(self, channels: int, use_conv: bool) -> None:
        super().__init__()
        self.use_conv = use_conv
        if use_conv:
            self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x) if self.use_conv else x


class Downsample(nn.Module):
    """A strided 3x3 conv or 2x2 average pooling (parameter ``op``)."""

    def __init__(self, channels: int, use_conv: bool) -> None:
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1) if use_conv else nn.AvgPool2d(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class ResBlock(TimestepBlock):
    """``h = in_layers(x)`` (GN, SiLU, [resample], conv); time embedding added (or FiLM scale/shift after the second
    GN); ``out = skip_connection(x) + out_layers(h)``."""

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        dropout: float,
        out_channels: int | None = None,
        use_scale_shift_norm: bool = False,
        up: bool = False,
        down: bool = False,
        use_checkpoint: bool = False,
    ) -> None:
        super().__init__()
        out_channels = out_channels or channels
        self.use_scale_shift_norm = use_scale_shift_norm
        self.use_checkpoint = use_checkpoint
        self.in_layers = nn.Sequential(
            GroupNorm32(channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1)
        )
        self.updown = up or down
        self.h_upd: nn.Module
        self.x_upd: nn.Module
        if up:
            self.h_upd, self.x_upd = Upsample(channels, False), Upsample(channels, False)
        elif down:
            self.h_upd, self.x_upd = Downsample(channels, False), Downsample(channels, False)
        else:
            self.h_upd = self.x_upd = nn.Identity()
        self.emb_layers = nn.Sequential(
            nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels if use_scale_shift_norm else out_channels)
        )
        self.out_layers = nn.Sequential(
            GroupNorm32(out_channels),
            nn.SiLU(),
            nn.Dropout(p=dropout),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
        )
        self.skip_connection = nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if self.use_checkpoint and torch.is_grad_enabled():
            return checkpoint(self._forward, x, emb, use_reentrant=False)
        return self._forward(x, emb)

    def _forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if self.updown:
            h = self.in_layers[:-1](x)
            h, x = self.h_upd(h), self.x_upd(x)
            h = self.in_layers[-1](h)
        else:
            h = self.in_layers(x)
        emb_out = self.emb_layers(emb).type(h.dtype)[:, :, None, None]
        if self.use_scale_shift_norm:
            scale, shift = emb_out.chunk(2, dim=1)
            h = self.out_layers[0](h) * (1 + scale) + shift
            h = self.out_layers[1:](h)
        else:
            h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    """Self-attention over pixels: ``x + proj_out(attention(qkv(GN(x))))`` with 1x1 Conv1d ``qkv`` and ``proj_out``."""

    def __init__(
        self,
        channels: int,
        num_heads: int = 1,
        num_head_channels: int = -1,
        use_new_attention_order: bool = False,
        use_checkpoint: bool = False,
    ) -> None:
        super().__init__()
        if num_head_channels == -1:
            self.num_heads = num_heads
        else:
            if channels % num_head_channels:
                raise ZSGuideError(
                    f"adm: {channels} attention channels are not divisible by num_head_channels {num_head_channels}"
                )
            self.num_heads = channels // num_head_channels
        self.new_order = use_new_attention_order
        self.use_checkpoint = use_checkpoint
        self.norm = GroupNorm32(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_checkpoint and torch.is_grad_enabled():
            return checkpoint(self._forward, x, use_reentrant=False)
        return self._forward(x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, *spatial = x.shape
        x = x.reshape(b, c, -1)
        qkv = self.qkv(self.norm(x))  # (B, 3C, T)
        length, heads = qkv.shape[-1], self.num_heads
        ch = c // heads
        if self.new_order:  # split q, k, v first, then heads
            q, k, v = (z.reshape(b * heads, ch, length) for z in qkv.chunk(3, dim=1))
        else:  # legacy: split heads first, then q, k, v
            q, k, v = qkv.reshape(b * heads, 3 * ch, length).split(ch, dim=1)
        a = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))  # (BH, T, ch)
        h = self.proj_out(a.transpose(1, 2).reshape(b, c, length))
        return (x + h).reshape(b, c, *spatial)


# ---------------------------------------------------------------------------------------------------------- model
class ADMUNet(nn.Module):
    """``out = ADMUNet(x, t)``: (B, C, H, W) and integer times (B,) to (B, C or 2C, H, W); H, W divisible by
    ``2 ** (levels - 1)``. Unconditional only (a class-conditional file is refused by the loader)."""

    def __init__(self, config: ADMConfig) -> None:
        super().__init__()
        if config.class_cond:
            raise ZSGuideError("adm: class-conditional networks are not supported (class_cond must be false)")
        self.config = config
        mults = config.channel_multipliers()
        rates = config.attention_rates()
        widths = sorted({int(m * config.num_channels) for m in mults})
        if any(w % 32 for w in widths):
            raise ZSGuideError(
                f"adm: every level's width must be a multiple of 32 (GroupNorm's 32 groups); "
                f"num_channels {config.num_channels} x channel_mult gives {widths}"
            )
        for heads in {config.num_heads, config.num_heads_upsample}:
            if config.num_head_channels == -1 and heads > 0 and any(w % heads for w in widths):
                raise ZSGuideError(
                    f"adm: {heads} attention heads do not divide the widths {widths} (num_heads / num_heads_upsample)"
                )
        mc, dropout, ssn, ckpt = config.num_channels, config.dropout, config.use_scale_shift_norm, config.use_checkpoint
        heads_up = config.num_heads if config.num_heads_upsample == -1 else config.num_heads_upsample
        emb_dim = 4 * mc
        self.levels = len(mults)
        self.model_channels = mc
        self.time_embed = nn.Sequential(nn.Linear(mc, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))

        def attention(ch: int, heads: int) -> AttentionBlock:
            return AttentionBlock(ch, heads, config.num_head_channels, config.use_new_attention_order, ckpt)

        ch = input_ch = int(mults[0] * mc)
        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(nn.Conv2d(config.in_channels, ch, 3, padding=1))])
        skip_chans, ds = [ch], 1
        for level, mult in enumerate(mults):
            for _ in range(config.num_res_blocks):
                layers: list[nn.Module] = [ResBlock(ch, emb_dim, dropout, int(mult * mc), ssn, use_checkpoint=ckpt)]
                ch = int(mult * mc)
                if ds in rates:
                    layers.append(attention(ch, config.num_heads))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                skip_chans.append(ch)
            if level != len(mults) - 1:
                down = (
                    ResBlock(ch, emb_dim, dropout, ch, ssn, down=True, use_checkpoint=ckpt)
                    if config.resblock_updown
                    else Downsample(ch, True)
                )
                self.input_blocks.append(TimestepEmbedSequential(down))
                skip_chans.append(ch)
                ds *= 2
        self.middle_block = TimestepEmbedSequential(
            ResBlock(ch, emb_dim, dropout, use_scale_shift_norm=ssn, use_checkpoint=ckpt),
            attention(ch, config.num_heads),
            ResBlock(ch, emb_dim, dropout, use_scale_shift_norm=ssn, use_checkpoint=ckpt),
        )
        self.output_blocks = nn.ModuleList()
        for level, mult in list(enumerate(mults))[::-1]:
            for i in range(config.num_res_blocks + 1):
                layers = [ResBlock(ch + skip_chans.pop(), emb_dim, dropout, int(mc * mult), ssn, use_checkpoint=ckpt)]
                ch = int(mc * mult)
                if ds in rates:
                    layers.append(attention(ch, heads_up))
                if level and i == config.num_res_blocks:
                    layers.append(
                        ResBlock(ch, emb_dim, dropout, ch, ssn, up=True, use_checkpoint=ckpt)
                        if config.resblock_updown
                        else Upsample(ch, True)
                    )
                    ds //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))
        self.out = nn.Sequential(GroupNorm32(ch), nn.SiLU(), nn.Conv2d(input_ch, config.out_channels, 3, padding=1))

    @property
    def divisor(self) -> int:
        """Image sides must be multiples of this (one halving per level boundary)."""
        return 2 ** (self.levels - 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        sinusoid = timestep_embedding(t.reshape(-1).expand(x.shape[0]), self.model_channels)
        emb = self.time_embed(sinusoid.to(next(self.time_embed.parameters()).dtype))
        hs, h = [], x
        for module in self.input_blocks:
            h = module(h, emb)
            hs.append(h)
        h = self.middle_block(h, emb)
        for module in self.output_blocks:
            h = module(torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h)
