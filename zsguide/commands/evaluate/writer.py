"""Committing an evaluation's results as batches finish, and the end of the run.

``write_on_batch_end`` (every rank): for each image of the batch not yet committed, the restoration's PNG (when
``--save_images``; written to a temporary name and renamed) and then the item file (store.py), which is the commit.
A failed batch writes ``failures/<first index>.txt`` instead. ``on_predict_end``: a barrier, then rank 0 checks that
every item of the grid is committed or belongs to a failed batch (a missing one means a rank wrote where rank 0
cannot see: the output directory must be on a file system every node shares) and writes the report (report.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from lightning.pytorch.callbacks import BasePredictionWriter

from ...errors import ZSGuideError
from ...runtime.files import image_name
from . import store


class EvaluateWriter(BasePredictionWriter):
    def __init__(self, plan, on_complete) -> None:
        super().__init__(write_interval="batch")
        self.plan = plan
        self.on_complete = on_complete  # rank 0, after the end barrier: writes the report
        self.past_end_barrier = False

    def write_on_batch_end(
        self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0
    ) -> None:
        if prediction is None:  # an empty batch
            return
        plan = self.plan
        cell = plan.cells[prediction["cell"]]
        if "failure" in prediction:
            store.record_failure(plan.output, cell.folder, prediction["index"][0], prediction["failure"])
            return
        done = plan.done(cell)
        for j, index in enumerate(prediction["index"]):
            if index in done:  # committed before an interruption; the chunk was re-run whole, its result is the same
                continue
            if plan.save_images:
                save_png(
                    prediction["restored"][j],
                    plan.output / "cells" / cell.folder / "restored" / f"{image_name(index)}.png",
                )
            arrays = {
                "index": np.int64(index),
                "seconds": np.float64(prediction["seconds"]),
                "spectral": prediction["spectral"][j].numpy(),
            }
            for name, values in prediction["metrics"].items():
                arrays[name] = np.float64(values[j])
            for name, count in prediction["cost"].items():  # per image (samplers/cost.py)
                arrays[name] = np.int64(count)
            if "inception" in prediction:
                arrays["inception"] = prediction["inception"][j].numpy()
            if index < plan.examples:
                arrays["restored"] = prediction["restored"][j].numpy()
                arrays["measurement"] = prediction["measurement"][j].numpy()
            store.commit_item(plan.output, cell.folder, index, arrays)

    def on_predict_end(self, trainer, pl_module) -> None:
        trainer.strategy.barrier("zsguide-evaluate-end")
        self.past_end_barrier = True
        if not trainer.is_global_zero:
            return
        plan = self.plan
        missing = []
        for cell in plan.cells:
            done = plan.done(cell)
            if len(done) < len(plan.indices) and not store.failures(plan.output, cell.folder):
                missing.append(f"{cell.key} ({len(plan.indices) - len(done)} images)")
        if missing:
            raise ZSGuideError(
                f"{len(missing)} cell(s) lack results after the run: {', '.join(missing[:5])}; with "
                f"several nodes, --output must be on a file system every node shares"
            )
        self.on_complete(trainer)


def save_png(image, path: Path) -> None:
    """An image ``(C, H, W)`` in [0, 1] (clipped) as an 8-bit PNG, written under a temporary name and renamed."""
    from torchvision.utils import save_image as tv_save

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.png")
    tv_save(image.float().clamp(0, 1), tmp)
    os.replace(tmp, path)
