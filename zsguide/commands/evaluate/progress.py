"""Rich progress over the whole grid (rank 0): items committed by every rank, this rank's batches, sampler steps.

The grid line counts the committed item files of every cell (all ranks write into the same directory), so it shows
the whole grid's progress, resumed items included; it is refreshed after each of rank 0's batches.
"""

from __future__ import annotations

from ...runtime.progress import RichPredictBar


class EvaluateProgressBar(RichPredictBar):
    def __init__(self, plan) -> None:
        super().__init__()
        self.plan = plan

    def _committed(self) -> int:
        return sum(len(self.plan.done(c)) for c in self.plan.cells)

    def on_predict_start(self, trainer, pl_module) -> None:
        if not self._enabled:
            return
        world = trainer.world_size
        self._start()
        self._add("grid", "grid items", total=self.plan.total_items, completed=self._committed())
        self._add("batches", "batches" if world == 1 else f"rank 0/{world} batches", total=len(pl_module.mine))
        self._add("steps", "sampler steps", total=1)

    def on_predict_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if self._progress is not None and int(batch["cell"]) >= 0:
            cell = self.plan.cells[int(batch["cell"])]
            self._update("steps", reset=True, total=cell.params.steps, description=f"steps {cell.key}")

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self._progress is not None:
            self._advance("batches", 1)
            self._update("grid", completed=self._committed())
