"""``python -m zsguide restore``: restore test images (or a user's measurement) with a sampler and a diffusion prior.

options   the jsonargparse parser (``--config`` YAML presets, ``--data.*`` defaulting to the checkpoint's)
plan      every check before any work: names, numbers, checkpoint vs data, task parameters, input, parameters
validate  the options checked on their own, before anything is loaded
inputs    a user's own measurement (``--input``)
module    the LightningModule: measure a batch, run the sampler (zsguide/restoration.py), per-image metrics
writer    the BasePredictionWriter: per-image files, per-rank rows, rank 0's merge and summary.json (last)
outputs   the output folder's layout, image files, the metrics table, the grid
progress  the rich progress bar (images, sampler steps)
run       wiring: parse -> plan -> Trainer.predict

The parameter schedule is :mod:`zsguide.parameters`, the shared plumbing (Trainer, options, atomic files, held-out
images) :mod:`zsguide.runtime`.
"""

from .run import run_restore

__all__ = ["run_restore"]
