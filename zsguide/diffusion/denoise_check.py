"""The denoise check run by ``python -m zsguide test``: does the network denoise better than the Gaussian surrogate?

Held-out images ``x0 = 2 img - 1`` are noised at VE levels ``sigma`` (network units; the nearest training time is
used and reported), ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps`` with ``eps`` from (check_seed, image index), and
denoised by the network and by the surrogate's analytic (Wiener) denoiser; the MSE per pixel in [0, 1] units of each
is averaged (torchmetrics) and written to ``<log_dir>/denoise_check.json``. Shared by a ``fit`` checkpoint's
:class:`~zsguide.diffusion.module.ScoreModule` and a prior file's network (:mod:`zsguide.commands.prior.check`): the host
provides ``network_denoiser()``, ``analytic_denoiser()``, ``surrogate``, ``schedule``, ``alphas_cumprod`` and the
hyperparameters ``check_sigmas`` and ``check_seed``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

import lightning as L
import torch
from torchmetrics import MeanMetric

from ..seeding import randn_per_image
from ..surrogate import GaussianSurrogate
from .denoisers import Denoiser
from .schedule import VPSchedule


class DenoiseCheck(L.LightningModule):
    """Lightning test hooks of the denoise check; the host module provides the parts below."""

    surrogate: GaussianSurrogate
    schedule: VPSchedule
    alphas_cumprod: torch.Tensor

    def network_denoiser(self) -> Denoiser:
        raise NotImplementedError

    def analytic_denoiser(self) -> Denoiser:
        raise NotImplementedError

    def on_test_start(self) -> None:
        self.surrogate.require_fitted()
        self.check_mse = torch.nn.ModuleDict(
            {
                f"{kind}_{i}": MeanMetric().to(self.device)
                for i in range(len(self.hparams["check_sigmas"]))
                for kind in ("network", "gaussian")
            }
        )

    def _mse(self, kind: str, i: int) -> MeanMetric:
        """The running MSE of denoiser ``kind`` (network or gaussian) at the ``i``-th check level."""
        return cast(MeanMetric, self.check_mse[f"{kind}_{i}"])

    def test_step(self, batch: dict, batch_idx: int) -> None:
        x0 = 2 * batch["image"] - 1
        idx = batch["index"]
        net, gauss = self.network_denoiser(), self.analytic_denoiser()
        for i, sigma in enumerate(self.hparams["check_sigmas"]):
            t = self.schedule.nearest_timestep(sigma)
            abar = float(self.alphas_cumprod[t])
            eps = randn_per_image(x0.shape[1:], self.hparams["check_seed"], idx, f"check/{sigma}", device=self.device)
            x_t = abar**0.5 * x0 + (1 - abar) ** 0.5 * eps
            for kind, den in (("network", net), ("gaussian", gauss)):
                err = ((den.x0(x_t, t) - x0) / 2).float().pow(2).mean(dim=(1, 2, 3))  # [0, 1] pixel units
                self._mse(kind, i).update(err)

    def on_test_epoch_end(self) -> None:
        rows = []
        for i, sigma in enumerate(self.hparams["check_sigmas"]):
            t = self.schedule.nearest_timestep(sigma)
            row = {
                "sigma": sigma,
                "timestep": t,
                "sigma_at_timestep": float(self.schedule.sigmas[t]),
                "mse_network": float(self._mse("network", i).compute()),
                "mse_gaussian": float(self._mse("gaussian", i).compute()),
            }
            rows.append(row)
            self.log(f"test/mse_network_sigma{sigma}", row["mse_network"])
            self.log(f"test/mse_gaussian_sigma{sigma}", row["mse_gaussian"])
        log_dir = self.trainer.log_dir  # a collective (broadcast) under DDP: every rank must ask
        if self.trainer.is_global_zero:
            lines = [
                "denoise check on held-out test images (MSE per pixel, [0, 1] units)",
                f"{'sigma':>6} {'t':>4} {'mse_network':>12} {'mse_gaussian':>13} {'ratio':>6}",
            ]
            for r in rows:
                lines.append(
                    f"{r['sigma']:>6} {r['timestep']:>4} {r['mse_network']:>12.3e} "
                    f"{r['mse_gaussian']:>13.3e} {r['mse_network'] / r['mse_gaussian']:>6.3f}"
                )
            print("\n".join(lines))
            if log_dir:
                path = Path(log_dir) / "denoise_check.json"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(rows, indent=2))
                print(f"wrote {path}")
