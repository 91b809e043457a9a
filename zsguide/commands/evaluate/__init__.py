"""``python -m zsguide evaluate``: a grid of restorations as one multi-device, resumable run, with a report.

options    the jsonargparse parser (``--config`` YAML, ``--grid.*``, the shared data/trainer options)
grid       the grid's entries checked one by one, cells and their identities (key, twin, digest)
plan       everything checked and prepared before any image runs: prior, images, schedules and designs
store      the output directory: cell folders, atomic per-image commits, runs.json (the lock: runtime/lock.py)
module     the LightningModule: this rank's dataloader, one batch of one cell restored and measured
writer     commits as batches finish; the end barrier and the report
progress   rich progress over the whole grid
report     cells.csv/json, results.csv from the committed items; markdown and figures in their own modules
run        wiring: parse -> lock -> plan -> Trainer.predict -> report

The fixed batches and each rank's share are :mod:`zsguide.runtime.shard` (calibrate shares them).
"""

from .run import run_evaluate

__all__ = ["run_evaluate"]
