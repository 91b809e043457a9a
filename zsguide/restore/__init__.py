"""``python -m zsguide restore``: restore test images (or a user's measurement) with a sampler and a diffusion prior.

options   the jsonargparse parser (``--config`` YAML presets, ``--data.*`` defaulting to the checkpoint's)
plan      every check before any work: names, numbers, checkpoint vs data, task parameters, input, parameters
inputs    a user's own measurement (``--input``) and the pixel <-> network unit maps of measurements
module    the LightningModule: measure a batch, run the sampler, compute per-image metrics
writer    the BasePredictionWriter: per-image files, per-rank rows, rank 0's merge and summary.json (last)
outputs   file names, atomic writes, the metrics table, the grid
progress  the rich progress bar (images, sampler steps)
run       wiring: parse -> plan -> Trainer.predict
"""

from .run import run_restore

__all__ = ["run_restore"]
