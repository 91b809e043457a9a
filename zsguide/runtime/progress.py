"""A rich progress display for a predict loop (restore, evaluate): the commands' lines and the sampler's steps.

A Lightning :class:`~lightning.pytorch.callbacks.ProgressBar`, so the Trainer uses it in place of its default bar;
only global rank 0 shows it (``ProgressBar.setup`` disables the others). The step bar is fed by the sampler's
``callback(step, t, x_t, x0_y)`` through :meth:`RichPredictBar.sampler_step` (:func:`sampler_step_callback`).
Output goes to stderr, leaving stdout to the results table.
"""

from __future__ import annotations

from lightning.pytorch.callbacks import ProgressBar
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from .signals import check


class RichPredictBar(ProgressBar):
    """A rich ``Progress`` on stderr for a predict loop, shown by global rank 0 only; subclasses add their lines
    (named, through :meth:`_add`) and move them with :meth:`_update` / :meth:`_advance`, which do nothing while no
    display runs."""

    def __init__(self) -> None:
        super().__init__()
        self._enabled = True
        self._progress: Progress | None = None
        self._lines: dict[str, TaskID] = {}

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def _start(self) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self._progress.start()

    def _add(self, line: str, description: str, total: int, completed: int = 0) -> None:
        if self._progress is not None:
            self._lines[line] = self._progress.add_task(description, total=total, completed=completed)

    def _update(self, line: str, reset: bool = False, **fields) -> None:
        """Set a line's fields (``completed``, ``total``, ``description``); ``reset`` also restarts its clock."""
        if self._progress is not None and line in self._lines:
            (self._progress.reset if reset else self._progress.update)(self._lines[line], **fields)

    def _advance(self, line: str, by: int) -> None:
        if self._progress is not None and line in self._lines:
            self._progress.advance(self._lines[line], by)

    def sampler_step(self, step: int) -> None:
        """Called after sampler step ``step`` (0-based) of the current batch."""
        self._update("steps", completed=step + 1)

    def on_predict_end(self, trainer, pl_module) -> None:
        self._stop()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
            self._lines = {}


def sampler_step_callback(module):
    """The sampler's ``callback(step, t, x_t, x0_y)`` that feeds the trainer's :class:`RichPredictBar` (when it has an
    enabled one: rank 0 with the bar on) and stops the run at the step after a SIGTERM or SIGINT
    (:func:`zsguide.runtime.signals.check`)."""
    bar = module.trainer.progress_bar_callback if module._trainer is not None else None
    if isinstance(bar, RichPredictBar) and bar.is_enabled:

        def step_done(step: int, t, x, x0) -> None:
            bar.sampler_step(step)
            check()

        return step_done
    return lambda step, t, x, x0: check()
