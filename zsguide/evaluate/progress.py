"""Rich progress over the whole grid (rank 0): items committed by every rank, this rank's batches, sampler steps.

The grid line counts the committed item files of every cell (all ranks write into the same directory), so it shows
the whole grid's progress, resumed items included; it is refreshed after each of rank 0's batches.
"""

from __future__ import annotations

from lightning.pytorch.callbacks import ProgressBar
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from . import store


class EvaluateProgressBar(ProgressBar):
    def __init__(self, plan) -> None:
        super().__init__()
        self.plan = plan
        self._enabled = True
        self._progress: Progress | None = None
        self._grid = self._batches = self._steps = None

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def _committed(self) -> int:
        return sum(len(store.committed(self.plan.output, c.folder)) for c in self.plan.cells)

    def on_predict_start(self, trainer, pl_module) -> None:
        if not self._enabled:
            return
        world = trainer.world_size
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(bar_width=24), MofNCompleteColumn(),
                                  TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True))
        self._progress.start()
        self._grid = self._progress.add_task("grid items", total=self.plan.total_items,
                                             completed=self._committed())
        label = "batches" if world == 1 else f"rank 0/{world} batches"
        self._batches = self._progress.add_task(label, total=len(pl_module.mine))
        self._steps = self._progress.add_task("sampler steps", total=1)

    def sampler_step(self, step: int) -> None:
        if self._progress is not None:
            self._progress.update(self._steps, completed=step + 1)

    def on_predict_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if self._progress is not None:
            cell = self.plan.cells[int(batch["cell"])]
            self._progress.reset(self._steps, total=cell.params.steps, description=f"steps {cell.key}")

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self._progress is not None:
            self._progress.advance(self._batches, 1)
            self._progress.update(self._grid, completed=self._committed())

    def on_predict_end(self, trainer, pl_module) -> None:
        self._stop()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
