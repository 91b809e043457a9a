"""The LightningModule of ``evaluate``: its own dataloader (this rank's share of the pending batches) and a
``predict_step`` that restores one batch of one cell and computes every per-image quantity the report needs.

Per batch of cell c and images ``idx`` (pixel units ``img``): the Python API's ``measure`` and ``restore``
(zsguide/api.py), exactly as the ``restore`` command runs them, then per image: PSNR, SSIM, MSE (clipped as restore clips), LPIPS when weights
are given, the spectral features of the (clipped) restoration for the Frechet spectral distance
(evaluation/perception.py), the Inception features for FID when weights are given (evaluation/fid.py), and the
batch's compute time shared over its images. The writer (writer.py) commits them.

The Trainer runs with ``inference_mode=False`` when any cell's sampler differentiates through the denoiser (DPS,
PiGDM), and ``use_distributed_sampler=False``: the sharding is ours (runtime/shard.py), so it is the same for every launcher.
A sampler failure (:class:`ZSGuideError`, e.g. its NaN guard) is the batch's result, not the run's end: the writer
records it for the cell and the grid goes on.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import cast

import lightning as L
import torch
from torch.utils.data import DataLoader

from ...api import Prior, measure, restore
from ...errors import ZSGuideError
from ...evaluation.metrics import image_metrics, lpips_per_image
from ...evaluation.perception import spectral_features
from ...runtime.progress import sampler_step_callback
from ...runtime.shard import EMPTY_BATCH, WorkBatches, pending_batches, shard
from . import store


class EvaluateModule(L.LightningModule):
    def __init__(self, plan, lpips: torch.nn.Module | None = None, inception: torch.nn.Module | None = None) -> None:
        super().__init__()
        self.plan = plan
        self.score = plan.module.requires_grad_(False).eval()
        self.prior = Prior(Path(plan.ckpt_path), self.score, plan.meta)
        self.lpips = lpips
        self.inception = inception
        self._denoiser = None
        self.pending: list = []  # every rank's pending batches (rank 0's list, broadcast)
        self.mine: list = []

    def denoiser(self):
        if self._denoiser is None:
            self._denoiser = (
                self.score.network_denoiser() if self.plan.denoiser == "network" else self.score.analytic_denoiser()
            )
        return self._denoiser

    def predict_dataloader(self) -> DataLoader:
        """Rank 0 prepares the cell folders, lists the pending batches and broadcasts them with its cells' folder
        names; every rank checks that it built the same cells (the same designs: a rank with another design cache
        could design differently), then takes its share. A rank with no batch gets one empty batch, so that every
        rank runs the loop and reaches the end barrier (Lightning skips a rank whose loader is empty)."""
        plan = self.plan
        strategy = self.trainer.strategy
        shared: tuple[list, list[str]] | None = None  # rank 0's (pending batches, cell folders)
        if self.trainer.is_global_zero:
            for cell in plan.cells:
                store.prepare_cell_folder(plan.output, cell.folder, cell_record(cell))
            done = [plan.done(c) for c in plan.cells]
            shared = (
                pending_batches(len(plan.cells), plan.indices, plan.batch_size, done),
                [c.folder for c in plan.cells],
            )
        self.pending, folders = cast(tuple[list, list[str]], strategy.broadcast(shared, src=0))  # rank 0's, on all
        differs = torch.tensor([float(folders != [c.folder for c in plan.cells])], device=self.device)
        if self.trainer.world_size > 1:
            differs = strategy.reduce(differs, reduce_op="sum")
        if float(differs) > 0:
            raise ZSGuideError(
                f"{int(float(differs))} rank(s) prepared other cells than rank 0 (a design or a setting "
                f"differs between the processes: give every node the same $ZSGUIDE_CACHE and files)"
            )
        self.mine = shard(self.pending, self.trainer.global_rank, self.trainer.world_size)
        batches = self.mine or [EMPTY_BATCH]
        return DataLoader(
            WorkBatches(plan.dataset, batches), batch_size=None, shuffle=False, num_workers=plan.num_workers
        )

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict | None:
        if int(batch["cell"]) < 0:  # the empty batch of a rank with nothing to do
            return None
        cell = self.plan.cells[int(batch["cell"])]
        indices = [int(i) for i in batch["index"]]
        img = batch["image"]
        t0 = time.perf_counter()
        try:
            m = measure(img, cell.spec.task.name, cell.spec.sigma_y, cell.spec.seed, indices,
                        noise_convention=self.plan.noise_convention, check_range=self.plan.clipped,
                        **cell.spec.task.params)  # fmt: skip
            r = restore(self.prior, m, cell.sampler, params=cell.params, denoiser=self.denoiser(),
                        callback=sampler_step_callback(self))  # fmt: skip
        except ZSGuideError as exc:
            return {"cell": int(batch["cell"]), "index": indices, "failure": str(exc)}
        restored = r.images
        metrics = image_metrics(restored, img.float(), clip=self.plan.clipped)
        if self.lpips is not None:
            metrics["lpips"] = lpips_per_image(self.lpips, restored, img)
        shown = restored.clamp(0, 1) if self.plan.clipped else restored
        out = {
            "cell": int(batch["cell"]),
            "index": indices,
            "metrics": {k: v.cpu() for k, v in metrics.items()},
            "spectral": spectral_features(shown.to(torch.float64).cpu()),
            "restored": restored.cpu(),
            "measurement": m.y.detach().float().cpu(),
            "cost": r.cost,
        }
        if self.inception is not None:
            from ...evaluation.fid import inception_features

            out["inception"] = inception_features(self.inception, restored)
        out["seconds"] = (time.perf_counter() - t0) / len(indices)
        return out


def cell_record(cell) -> dict:
    """What ``cells/<folder>/cell.json`` holds: the key, the grid coordinates and the settings."""
    s = cell.spec
    return {
        "key": s.key,
        "sampler": s.sampler,
        "task": s.task.label,
        "steps": s.steps,
        "params": s.params.label,
        "sigma_y": s.sigma_y,
        "seed": s.seed,
        "params_source": cell.params_source,
        "settings": cell.settings,
    }
