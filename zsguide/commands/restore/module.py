"""The LightningModule whose ``predict_step`` measures a batch and restores it, with the Python API's
:func:`~zsguide.api.measure` and :func:`~zsguide.api.restore` (so the API gives the command's images bit for bit).

Per batch of test images ``img`` (pixel units [0, 1]) with dataset indices ``idx``:

    x      = 2 img - 1                                        network units [-1, 1]
    A      = make_operator(task, shape, seed, idx, **task_params)   masks/kernels from (seed, index)
    y      = A x + sigma P n,  n from (seed, index)           sigma = 2 sigma_y (pixel convention)
    x0_hat = sampler.run(D, A, y, sigma, params, seed, idx)   sampler noise from (seed, index)
    restored = (x0_hat + 1) / 2,   measurement = (y + A 1) / 2   back to pixel units

so image i's result never depends on the batch it sat in or on the device count. With ``--input`` the batch holds
the user's measurement (already in network units) and sample k's index k; the operator is the one of index 0 for every
sample (one measurement, K posterior samples).

Samplers that differentiate through the denoiser (``needs_grad``: DPS, PiGDM) run inside ``torch.enable_grad()``;
the Trainer is then built with ``inference_mode=False`` (under ``torch.inference_mode`` no autograd graph can be
recorded). The score network's parameters are frozen (``requires_grad_(False)``): gradients flow to ``x_t`` only.

A sampler error (:class:`ZSGuideError`, e.g. its NaN/Inf guard) does not raise inside the loop: it is recorded and the
rank skips its remaining batches, so that under DDP every rank still reaches the end-of-run barrier and the error is
reported once, by rank 0 (see :mod:`zsguide.commands.restore.writer`).
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch

from ...api import Measurement, Prior, measure, restore
from ...errors import ZSGuideError
from ...evaluation.metrics import image_metrics, lpips_per_image
from ...operators import make_operator
from ...runtime.progress import sampler_step_callback


class RestoreModule(L.LightningModule):
    def __init__(self, plan, lpips: torch.nn.Module | None = None) -> None:
        super().__init__()
        self.score = plan.module.requires_grad_(False).eval()
        self.prior = Prior(Path(plan.ckpt_path), self.score, plan.meta)
        self.lpips = lpips
        self.mode = plan.mode
        self.task = plan.task
        self.task_params = dict(plan.task_params)
        self.image_shape = tuple(plan.image_shape)
        self.sampler = plan.sampler
        self.params = plan.params
        self.sigma_y = float(plan.sigma_y)
        self.noise_convention = plan.noise_convention
        self.seed = int(plan.seed)
        self.denoiser_kind = plan.denoiser
        self.clipped = bool(plan.clipped)
        self.failure: str | None = None
        self.cost: dict[str, int] | None = None  # network calls, VJPs and operator applications per image
        self._denoiser = None

    def denoiser(self):
        """The denoiser, built once on the module's device (after Lightning moved the module there)."""
        if self._denoiser is None:
            self._denoiser = (
                self.score.network_denoiser() if self.denoiser_kind == "network" else self.score.analytic_denoiser()
            )
        return self._denoiser

    def _operator(self, like: torch.Tensor):
        """The operator of image index 0, for the user's measurement (``--input``)."""
        return make_operator(self.task, self.image_shape, self.seed, [0], **self.task_params).to(
            like.device, like.dtype
        )

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict | None:
        if self.failure is not None:  # an earlier batch failed: skip, report at the end
            return None
        indices = [int(i) for i in batch["index"]]
        try:
            return self._restore(batch, indices)
        except ZSGuideError as exc:
            self.failure = str(exc)
            return None

    def _restore(self, batch: dict, indices: list[int]) -> dict:
        if self.mode == "dataset":
            img = batch["image"]
            m = measure(img, self.task, self.sigma_y, self.seed, indices, noise_convention=self.noise_convention,
                        check_range=self.clipped, **self.task_params)  # fmt: skip
        else:  # the user's measurement (network units), one sample per index, the operator of index 0
            img = None
            y = batch["measurement"]
            m = Measurement(y, self._operator(y), self.task, self.sigma_y, self.seed, indices, self.noise_convention)
        r = restore(self.prior, m, self.sampler, params=self.params, denoiser=self.denoiser(),
                    callback=sampler_step_callback(self))  # fmt: skip
        self.cost = r.cost  # per image, the same for every batch (samplers/cost.py)
        out = {
            "index": indices,
            "restored": r.images.cpu(),
            "measurement": m.y.detach().float().cpu(),
        }
        if img is not None:
            restored = r.images
            metrics = image_metrics(restored, img.float(), clip=self.clipped)
            if self.lpips is not None:
                metrics["lpips"] = lpips_per_image(self.lpips, restored, img)
            out["truth"] = img.float().cpu()
            out["metrics"] = {k: v.cpu() for k, v in metrics.items()}
        return out
