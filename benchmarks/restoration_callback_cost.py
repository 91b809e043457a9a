"""What ``zsguide.RestorationCallback`` costs per validation with ``fit``'s default (configs/fit/patches.yaml: 16
validation images, sr4 and inpaint_box, DDRM and DPS, heuristic and spectral, 20 steps) on the shipped prior.

Two validations of checkpoints/patches32.ckpt (``limit_val_batches=1``, the module's own sample grid cut to one image
and one step so that the callback dominates): the first designs (an empty design cache in a temporary folder), the
second finds the designs cached, as every validation after the first in a fit does. Prints the callback's own seconds
(``restoration/seconds``) of each and the validation's wall time::

    nice .venv/bin/python benchmarks/restoration_callback_cost.py
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import lightning as L
import yaml

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    os.environ["ZSGUIDE_CACHE"] = tempfile.mkdtemp(prefix="zsguide_cache_")
    import zsguide
    from zsguide.checkpoint import load_score_module
    from zsguide.data import ImageDataModule

    config = yaml.safe_load((ROOT / "configs" / "fit" / "patches.yaml").read_text())
    (entry,) = [c for c in config["trainer"]["callbacks"] if c["class_path"] == "zsguide.RestorationCallback"]
    module, meta = load_score_module(ROOT / "checkpoints" / "patches32.ckpt")
    module.hparams["num_samples"], module.hparams["sample_steps"] = 1, 1
    dm = ImageDataModule(**{k: meta["data"][k] for k in ("name", "image_size", "channels", "seed")})
    cb = zsguide.RestorationCallback(**entry["init_args"])
    with tempfile.TemporaryDirectory() as tmp:
        trainer = L.Trainer(
            accelerator="cpu",
            devices=1,
            logger=L.pytorch.loggers.CSVLogger(tmp),
            callbacks=[cb],
            limit_val_batches=1,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        for label in ("first (designs)", "second (cached)"):
            cb._last_step = None  # the same step again: run anyway
            start = time.perf_counter()
            trainer.validate(module, datamodule=dm, verbose=False)
            wall = time.perf_counter() - start
            seconds = float(trainer.callback_metrics["restoration/seconds"])
            print(f"{label}: callback {seconds:.1f} s, validation {wall:.1f} s (torch threads {os.cpu_count()})")
    for r in cb.records[: len(cb.records) // 2]:
        print(f"  {r['task']}/{r['sampler']}/{r['source']}: PSNR {r['psnr']:.2f} dB, FD {r['fd']:.3f}")


if __name__ == "__main__":
    main()
