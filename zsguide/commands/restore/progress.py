"""restore's progress display: images restored (this rank's share) and the sampler's steps, on the shared rich bar
(:class:`zsguide.runtime.progress.RichPredictBar`)."""

from __future__ import annotations

from ...runtime.progress import RichPredictBar


class RestoreProgressBar(RichPredictBar):
    def __init__(self, num_images: int, steps: int) -> None:
        super().__init__()
        self.num_images = int(num_images)
        self.steps = int(steps)

    def on_predict_start(self, trainer, pl_module) -> None:
        if not self._enabled:
            return
        world = trainer.world_size
        share = len(range(0, self.num_images, world))  # the non-repeating sampler gives rank 0 indices 0::world
        label = "restoring" if world == 1 else f"restoring (rank 0 of {world})"
        self._start()
        self._add("images", f"{label}: images", total=share)
        self._add("steps", "sampler steps (batch)", total=self.steps)

    def on_predict_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._update("steps", reset=True, total=self.steps)

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._advance("images", int(len(batch["index"])))

    def __repr__(self) -> str:  # pragma: no cover - cosmetic
        return f"RestoreProgressBar(num_images={self.num_images}, steps={self.steps})"
