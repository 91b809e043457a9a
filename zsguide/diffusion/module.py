"""The Lightning training module: an eps-prediction UNet on the VP schedule, its EMA, and the Gaussian surrogate.

Loss (Ho et al. 2020): ``E_{x0, t, eps} || eps - eps_theta(sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, t) ||^2`` with
``t`` uniform on 0 .. T-1 and images mapped to ``x0 = 2 img - 1``.

Gaussian skip (``gaussian_skip=True``, the default): the network predicts a correction to the surrogate's analytic
noise prediction, ``eps_theta = eps_gauss + UNet``, with the UNet's last layer initialised to zero. Training starts
from the Wiener denoiser and can only learn what the Gaussian model misses, so a small network trained for minutes on
two CPU cores already improves on the surrogate at every noise level (the denoise check measures it).

When fit starts, the surrogate is fitted from the whole training split (each rank streams its share of the images;
the float64 sums are all-reduced, so 1 and 2 devices give the same spectrum up to summation order), before the
first training step. ``test`` runs the denoise check: held-out images noised at VE levels ``sigma`` (network units),
MSE per pixel in [0, 1] units of the EMA network against the analytic denoiser, written to
``<log_dir>/denoise_check.json``.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import TYPE_CHECKING, cast

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader, Subset

from ..errors import ZSGuideError
from ..seeding import rand_per_image, randn_per_image
from ..surrogate import GaussianSurrogate, SpectrumAccumulator
from .denoise_check import DenoiseCheck
from .denoisers import AnalyticDenoiser, EpsNetworkDenoiser
from .sampling import ddim_sample
from .schedule import VPSchedule
from .unet import UNet

if TYPE_CHECKING:
    from ..data import ImageDataModule

FORMAT_VERSION = 1


class ScoreModule(DenoiseCheck, L.LightningModule):
    """Score network + EMA + Gaussian surrogate, trained and checked by ``python -m zsguide fit`` / ``test``.

    Args:
        channels, image_size: the data's shape (linked from ``data.*`` by the CLI).
        base_channels, channel_mults, num_res_blocks, attention_levels, dropout: the UNet.
        schedule, num_timesteps, beta_start, beta_end: the VP schedule (DDPM defaults).
        gaussian_skip: predict a correction to the surrogate's noise prediction (see the module docstring).
        lr, warmup_steps: Adam learning rate (DDPM's 2e-4) with a linear warm-up.
        ema_decay: EMA of the weights used for inference (0.999, with the usual (1 + n) / (10 + n) warm-up).
        spectrum_floor: lower bound on the surrogate spectrum (per-pixel variance, network units).
        num_samples, sample_steps: the unconditional DDIM grid written at each validation.
        check_sigmas, check_seed: VE noise levels and seed of the denoise check run by ``test``.
    """

    def __init__(
        self,
        channels: int = 3,
        image_size: int = 32,
        base_channels: int = 32,
        channel_mults: tuple[int, ...] = (1, 2, 2),
        num_res_blocks: int = 1,
        attention_levels: tuple[int, ...] = (2,),
        dropout: float = 0.0,
        schedule: str = "linear",
        num_timesteps: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        gaussian_skip: bool = True,
        lr: float = 2e-4,
        warmup_steps: int = 100,
        ema_decay: float = 0.999,
        spectrum_floor: float = 1e-5,
        num_samples: int = 16,
        sample_steps: int = 50,
        check_sigmas: tuple[float, ...] = (0.1, 0.3, 1.0),
        check_seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if image_size % 2 ** (len(channel_mults) - 1):
            raise ZSGuideError(
                f"image_size {image_size} must be divisible by {2 ** (len(channel_mults) - 1)} for "
                f"model.channel_mults={list(channel_mults)}"
            )
        self.schedule = VPSchedule(num_timesteps, schedule, beta_start, beta_end)
        self.net = UNet(channels, base_channels, channel_mults, num_res_blocks, attention_levels, dropout)
        self.ema = copy.deepcopy(self.net).requires_grad_(False)
        self.surrogate = GaussianSurrogate(channels, image_size, image_size)
        self.register_buffer("alphas_cumprod", self.schedule.alphas_cumprod, persistent=False)
        self.check_mse = torch.nn.ModuleDict()

    # ------------------------------------------------------------------ shape and checkpoint metadata
    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.hparams["channels"], self.hparams["image_size"], self.hparams["image_size"])

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        checkpoint["zsguide"] = {
            "format_version": FORMAT_VERSION,
            "image_shape": list(self.image_shape),
            "value_range": {"network": [-1.0, 1.0], "pixels": [0.0, 1.0]},
            "schedule": self.schedule.to_dict(),
            "surrogate_digest": self.surrogate.digest() if bool(self.surrogate.fitted) else None,
            "data": dict(dm.hparams) if dm is not None else None,
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        meta = checkpoint.get("zsguide")
        if meta is None:
            raise ZSGuideError("this checkpoint was not written by zsguide fit (it has no 'zsguide' metadata)")
        if tuple(meta["image_shape"]) != self.image_shape:
            raise ZSGuideError(
                f"the checkpoint was made for images of shape {tuple(meta['image_shape'])} (C, H, W), but the data "
                f"gives {self.image_shape}; pass matching --data.image_size / --data.channels"
            )

    # ------------------------------------------------------------------ prediction
    def eps_prediction(self, net: torch.nn.Module, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``eps_theta(x_t, t)``: the UNet, plus the surrogate's analytic noise prediction with the Gaussian skip."""
        out = net(x_t, t)
        if self.hparams["gaussian_skip"]:
            abar = self.alphas_cumprod[t].reshape(-1, 1, 1, 1)
            x0_gauss = self.surrogate.denoise(x_t, abar.reshape(-1)).to(torch.float64)
            eps_gauss = (x_t.to(torch.float64) - abar.sqrt() * x0_gauss) / (1 - abar).sqrt()
            out = out.to(torch.float32) + eps_gauss.to(torch.float32)
        return out

    def network_denoiser(self, ema: bool = True) -> EpsNetworkDenoiser:
        """The trained network behind the denoiser interface (EMA weights by default)."""
        net = self.ema if ema else self.net
        return EpsNetworkDenoiser(lambda x, t: self.eps_prediction(net, x, t), self.schedule).to(self.device)

    def analytic_denoiser(self) -> AnalyticDenoiser:
        return AnalyticDenoiser(self.surrogate, self.schedule).to(self.device)

    # ------------------------------------------------------------------ surrogate
    def fit_surrogate(self, dataset, batch_size: int = 256) -> None:
        """Stream this rank's share of ``dataset`` (indices rank::world), all-reduce the sums, set the surrogate."""
        rank, world = self.global_rank, self.trainer.world_size if self._trainer is not None else 1
        acc = SpectrumAccumulator(*self.image_shape)
        for batch in DataLoader(Subset(dataset, range(rank, len(dataset), world)), batch_size=batch_size):
            acc.update(2 * batch["image"] - 1)
        packed = acc.state()
        if world > 1:
            packed = self.trainer.strategy.reduce(packed.to(self.device), reduce_op="sum").cpu()
        acc.load_state(packed)
        mean, spectrum = acc.finish(self.hparams["spectrum_floor"])
        self.surrogate.set(mean, spectrum)
        rank_zero_info(
            f"zsguide: Gaussian surrogate fitted on {int(packed[0])} training images (digest {self.surrogate.digest()})"
        )

    def on_fit_start(self) -> None:
        dm = cast("ImageDataModule", getattr(self.trainer, "datamodule"))  # untyped in Lightning's Trainer
        if not bool(self.surrogate.fitted):
            self.fit_surrogate(dm.dataset("train"))
        log_dir = self.trainer.log_dir  # a collective (broadcast) under DDP: every rank must ask
        if self.trainer.is_global_zero and log_dir:
            from ..evaluation.figures import spectrum_figure

            spectrum_figure(
                self.surrogate, dm.dataset("val"), Path(log_dir) / "spectrum.png", true_spectrum=dm.true_spectrum()
            )

    # ------------------------------------------------------------------ training
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        x0 = 2 * batch["image"] - 1
        t = torch.randint(0, self.schedule.num_timesteps, (x0.shape[0],), device=self.device)
        eps = torch.randn_like(x0)
        abar = self.alphas_cumprod[t].reshape(-1, 1, 1, 1).to(x0.dtype)
        x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
        loss = torch.nn.functional.mse_loss(self.eps_prediction(self.net, x_t, t).float(), eps)
        self.log("train/loss", loss, prog_bar=True, batch_size=x_t.shape[0])
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        n = self.global_step
        decay = min(self.hparams["ema_decay"], (1 + n) / (10 + n))
        with torch.no_grad():
            ema_p: list[torch.Tensor] = list(self.ema.parameters())
            net_p: list[torch.Tensor] = list(self.net.parameters())
            torch._foreach_lerp_(ema_p, net_p, 1 - decay)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        # Deterministic validation loss: times and noise from (check_seed, index).
        idx = batch["index"]
        u = rand_per_image((), self.hparams["check_seed"], idx, "val/t", device=self.device)
        t = (u * self.schedule.num_timesteps).long().clamp(max=self.schedule.num_timesteps - 1)
        x0 = 2 * batch["image"] - 1
        eps = randn_per_image(x0.shape[1:], self.hparams["check_seed"], idx, "val/eps", device=self.device)
        abar = self.alphas_cumprod[t].reshape(-1, 1, 1, 1).to(x0.dtype)
        x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
        loss = torch.nn.functional.mse_loss(self.eps_prediction(self.ema, x_t, t).float(), eps)
        self.log("val/loss", loss, prog_bar=True, sync_dist=True, batch_size=x0.shape[0])

    def on_validation_epoch_end(self) -> None:
        log_dir = self.trainer.log_dir  # a collective (broadcast) under DDP: every rank must ask
        if self.trainer.sanity_checking or not self.trainer.is_global_zero or not log_dir:
            return
        from torchvision.utils import save_image

        n = self.hparams["num_samples"]
        x = ddim_sample(
            self.network_denoiser(),
            self.image_shape,
            list(range(n)),
            self.hparams["check_seed"],
            steps=self.hparams["sample_steps"],
            device=self.device,
        )
        out = Path(log_dir) / "samples"
        out.mkdir(parents=True, exist_ok=True)
        save_image(
            ((x + 1) / 2).clamp(0, 1).float(), out / f"step{self.global_step:06d}.png", nrow=int(math.sqrt(n)) or 1
        )

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.net.parameters(), lr=self.hparams["lr"])
        warm = max(1, self.hparams["warmup_steps"])
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + 1) / warm))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
