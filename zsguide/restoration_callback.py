"""Restoration inside any Lightning run: :class:`RestorationCallback` applies zero-shot samplers with heuristic or
spectrally designed parameters to a split's images while a prior trains (``fit``) or is checked (``validate``), and
logs what they restore.

At each run (every validation, every N training steps and/or at the end of fit) and for every task x sampler x
parameter source, with the module's current denoiser (a :class:`~zsguide.diffusion.module.ScoreModule`'s EMA
network; any LightningModule with ``network_denoiser()``, ``surrogate``, ``schedule`` and ``image_shape``):

    images, indices   the first ``num_images`` of the split (dataset indices: the seeds of masks, kernels and noise)
    m = zsguide.measure(images, task, sigma_y, seed, indices)      per-image seeded, as ``restore``
    x = zsguide.restore(prior, m, sampler, steps, source, seed)    the API's one path (tests/test_callback.py)
    psnr, ssim, mse = image_metrics(x, images);  fd = spectral_frechet_distance(x, images)

``source``: ``heuristic`` (the peers' defaults), ``spectral`` (designed from the module's own surrogate with
``objective``, through the design cache: designed once per surrogate), ``spectral:<objective>``, or a params.json
path. The numbers go to the trainer's loggers as ``restoration/<task>/<sampler>/<source>/{psnr,ssim,mse,fd}`` (means
over the images; with a CSVLogger, ``metrics.csv``), with ``restoration/<task>/<sampler>/gain/psnr`` (the paired
mean PSNR gain of the first spectral source over the heuristic, on the same images) and
``restoration/seconds``. A grid per run (rows: truth, then each sampler x source) goes to
``<log_dir>/restoration/step<N>_<task>.png``, and at the end of fit a figure of PSNR and FD against the training step,
``<log_dir>/restoration.png``.

Devices: the images are cut into fixed chunks of ``batch_size`` consecutive ones and rank r of W restores chunks r,
r + W, ... (disjoint shares, none repeated, none padded). A chunk holds the same images on any number of devices, so
even a float32 network, whose rounding depends on the batch it computes (a batch of 1 and of 5 differ by 3e-8 on the
tiny test prior), restores each image the same way; the per-image metrics and spectral features are gathered to every
rank and reduced in index order in float64, so 1 and 2 devices log the same numbers, to the last digit, when each
process computes with as many threads (on the CPU, Lightning gives each of W processes 1/W of the cores unless
``OMP_NUM_THREADS`` is set; a float32 network's rounding depends on the thread count too: 3e-8 between 1 and 2). Validation runs under ``torch.inference_mode``; the callback leaves
it for its own work (DPS and PiGDM differentiate through the network, the design differentiates the knobs), freezes
the module's parameters meanwhile (no gradient reaches them, no graph outlives the run), puts the module in eval
mode and restores its modes and flags afterwards; it draws nothing from the global random generators, so training
proceeds exactly as without it.

FD with few images: the spectral Frechet distance (zsguide/evaluation/perception.py) is biased upward when the images
are few (16 by default in ``fit``); compare it across steps and sources at one ``num_images``, not with other runs.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info

from . import api
from .errors import ZSGuideError
from .evaluation.perception import frechet_distance_features, spectral_features
from .operators import TASK_NAMES
from .samplers import sampler_names

METRICS = ("psnr", "ssim", "mse")


def source_label(source: str) -> str:
    """The name a parameter source is logged under: ``heuristic``, ``spectral``, ``spectral-<objective>``, or a
    params.json's file stem."""
    if source in ("heuristic", "spectral"):
        return source
    if source.startswith("spectral:"):
        return "spectral-" + source.split(":", 1)[1]
    return Path(source).stem


class RestorationCallback(L.Callback):
    """Restore a split's images with zero-shot samplers during a Lightning run and log PSNR, SSIM, MSE and FD per
    task x sampler x parameter source (module docstring).

    Args:
        tasks: task names (operators/tasks.py), or a mapping ``{task: {parameter: value}}`` (e.g. a blur's ``size``).
        samplers: sampler names (``zsguide.sampler_names()``).
        params: parameter sources: ``heuristic``, ``spectral``, ``spectral:<objective>`` (``w2``, ``mse``, ...), or
            a params.json path.
        steps: sampler steps (the command line's default 20).
        sigma_y: measurement noise std, [0, 1] pixel units (recorded in every log name's run).
        num_images: images restored per run, the first of the split.
        split: ``val`` (default), ``test`` or ``train`` of the trainer's datamodule (or of ``datamodule``), read
            through its ``dataset(split)`` (zsguide's ImageDataModule) or else its ``<split>_dataloader()``.
        datamodule: a datamodule of its own (default: the trainer's).
        every_n_steps: also run every N training steps (0: never).
        at_validation: run at the end of every validation (not the sanity check).
        at_fit_end: run once more when fit ends.
        seed: the seed of masks, kernels, measurement and sampler noise (with each image's index).
        objective: the design objective of the ``spectral`` source.
        design: further design options (``trust_factor``, ``pareto_guard``, ...; ``zsguide.design_options``).
        batch_size: images per sampler call, the chunks the ranks share (module docstring).
        grid_images: images in the grid written per run (0: none).
    """

    def __init__(
        self,
        tasks: Sequence[str] | Mapping[str, Mapping[str, Any]] = ("sr4", "deblur_gaussian", "inpaint_box"),
        samplers: Sequence[str] = ("ddrm", "dps"),
        params: Sequence[str] = ("heuristic", "spectral"),
        steps: int = 20,
        sigma_y: float = 0.01,
        num_images: int = 16,
        split: str = "val",
        datamodule: L.LightningDataModule | None = None,
        every_n_steps: int = 0,
        at_validation: bool = True,
        at_fit_end: bool = False,
        seed: int = 0,
        objective: str = "w2",
        design: Mapping[str, Any] | None = None,
        batch_size: int = 4,
        grid_images: int = 8,
    ) -> None:
        super().__init__()
        self.tasks: dict[str, dict[str, Any]] = (
            {str(k): dict(v or {}) for k, v in tasks.items()} if isinstance(tasks, Mapping) else {t: {} for t in tasks}
        )
        for task in self.tasks:
            if task not in TASK_NAMES:
                raise ZSGuideError(f"RestorationCallback: unknown task {task!r}; choose from {', '.join(TASK_NAMES)}")
        known = sampler_names()
        for name in samplers:
            if name not in known:
                raise ZSGuideError(f"RestorationCallback: unknown sampler {name!r}; choose from {', '.join(known)}")
        for source in params:
            if source not in ("heuristic", "spectral") and not source.startswith("spectral:"):
                if not Path(source).is_file():
                    raise ZSGuideError(
                        f"RestorationCallback: parameter source {source!r} is neither heuristic, spectral, "
                        f"spectral:<objective> nor an existing params.json"
                    )
        if not samplers or not params or not self.tasks:
            raise ZSGuideError("RestorationCallback: give at least one task, one sampler and one parameter source")
        for name, value in (("steps", steps), ("batch_size", batch_size)):
            if int(value) < 1:
                raise ZSGuideError(f"RestorationCallback: {name} must be >= 1, got {value}")
        if int(num_images) < 2:
            raise ZSGuideError(f"RestorationCallback: num_images must be >= 2 (FD compares sets), got {num_images}")
        if int(every_n_steps) < 0 or int(grid_images) < 0:
            raise ZSGuideError("RestorationCallback: every_n_steps and grid_images must be >= 0")
        if not (math.isfinite(float(sigma_y)) and float(sigma_y) >= 0):
            raise ZSGuideError(f"RestorationCallback: sigma_y must be a finite number >= 0, got {sigma_y!r}")
        if split not in ("train", "val", "test"):
            raise ZSGuideError(f"RestorationCallback: split must be train, val or test, got {split!r}")
        self.samplers = list(samplers)
        self.params = list(params)
        self.steps, self.sigma_y, self.num_images = int(steps), float(sigma_y), int(num_images)
        self.split, self.datamodule = split, datamodule
        self.every_n_steps, self.at_validation, self.at_fit_end = int(every_n_steps), at_validation, at_fit_end
        self.seed, self.objective = int(seed), objective
        self.design = dict(design or {})
        api.design_options(objective=objective, **self.design)  # bad options fail here, not at the first validation
        self.batch_size, self.grid_images = int(batch_size), int(grid_images)
        self.records: list[dict[str, Any]] = []  # one per run x task x sampler x source (what was logged)
        self._images: tuple[torch.Tensor, list[int]] | None = None
        self._last_step: int | None = None

    # ------------------------------------------------------------------ hooks
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.at_validation and not trainer.sanity_checking:
            self.run(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if self.every_n_steps and trainer.global_step % self.every_n_steps == 0:
            self.run(trainer, pl_module)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.at_fit_end:
            self.run(trainer, pl_module)
        log_dir = trainer.log_dir  # a collective under DDP: every rank asks
        if trainer.is_global_zero and log_dir and self.records:
            from .evaluation.figures import restoration_history_figure

            restoration_history_figure(self.records, Path(log_dir) / "restoration.png")

    # ------------------------------------------------------------------ one run
    def run(self, trainer: L.Trainer, pl_module: L.LightningModule) -> list[dict[str, Any]]:
        """Restore, gather, log; returns this run's records (also appended to :attr:`records`). A step already run
        (a validation at the step an ``every_n_steps`` run just took) is not run twice."""
        step = int(trainer.global_step)
        if self._last_step == step:
            return []
        self._last_step = step
        start = time.perf_counter()
        log_dir = trainer.log_dir  # a collective under DDP: every rank asks, before any rank-dependent work
        rank, world = int(trainer.global_rank), int(trainer.world_size)
        images, indices = self._split_images(trainer)
        chunks = [
            list(range(lo, min(lo + self.batch_size, len(indices)))) for lo in range(0, len(indices), self.batch_size)
        ]
        mine = [p for chunk in chunks[rank::world] for p in chunk]
        prior = api.Prior.from_module(pl_module, data=_data_meta(trainer, self.datamodule))
        records, grids = [], {}
        with _restoration_mode(pl_module):
            for task, task_params in self.tasks.items():
                truth = images[mine]
                rows, shown = {}, {}
                for sampler in self.samplers:
                    for source in self.params:
                        restored = self._restore(
                            prior, task, task_params, sampler, source, truth, [indices[i] for i in mine]
                        )
                        label = source_label(source)
                        rows[(sampler, label)] = _per_image(restored, truth, [indices[i] for i in mine], prior.clipped)
                        shown[(sampler, label)] = [
                            (p, restored[j].cpu()) for j, p in enumerate(mine) if p < self.grid_images
                        ]
                gathered = _gather({"rows": rows, "shown": shown}, world)
                for (sampler, label), _ in rows.items():
                    per_image = _merge([g["rows"][(sampler, label)] for g in gathered])
                    records.append(self._record(step, task, sampler, label, per_image, images))
                if self.grid_images:
                    grids[task] = {key: _merge_shown([g["shown"][key] for g in gathered]) for key in shown}
        seconds = time.perf_counter() - start
        self._gains(records)
        self.records.extend(records)
        if trainer.is_global_zero:
            self._log(trainer, records, seconds, step)
            if log_dir and self.grid_images:
                self._write_grids(Path(log_dir) / "restoration", step, images, grids)
        return records

    def _restore(self, prior, task, task_params, sampler, source, truth, idx) -> torch.Tensor:
        params: Any = "spectral" if source.startswith("spectral") else source
        objective = source.split(":", 1)[1] if source.startswith("spectral:") else self.objective
        out = []
        for lo in range(0, len(idx), self.batch_size):
            chunk = slice(lo, lo + self.batch_size)
            m = api.measure(
                truth[chunk], task, self.sigma_y, self.seed, idx[chunk], check_range=prior.clipped, **task_params
            )
            r = api.restore(
                prior,
                m,
                sampler,
                self.steps,
                params,
                self.seed,
                design=api.design_options(objective=objective, **self.design),
            )
            out.append(r.images.to(torch.float64).cpu())
        return torch.cat(out) if out else torch.empty(0, *truth.shape[1:], dtype=torch.float64)

    def _record(self, step, task, sampler, label, per_image, images) -> dict[str, Any]:
        """One task x sampler x source's record: means over the images in index order, FD against the clean ones."""
        order = sorted(per_image)  # index order: the same sums on any number of devices
        values = torch.stack([per_image[i]["metrics"] for i in order])  # (N, 3) float64
        features = torch.stack([per_image[i]["features"] for i in order])
        truth_features = spectral_features(images.to(torch.float64))
        return {
            "step": step,
            "task": task,
            "sampler": sampler,
            "source": label,
            "num_images": len(order),
            "sigma_y": self.sigma_y,
            "steps": self.steps,
            **{k: float(values[:, j].mean()) for j, k in enumerate(METRICS)},
            "fd": frechet_distance_features(features, truth_features),
            "_psnr": values[:, 0],
        }

    def _gains(self, records: list[dict[str, Any]]) -> None:
        """The paired PSNR gain of the first spectral source over the heuristic, per task and sampler."""
        spectral = next((source_label(s) for s in self.params if s.startswith("spectral")), None)
        for r in records:
            if r["source"] != "heuristic" or spectral is None:
                continue
            twin = next(
                (q for q in records if (q["task"], q["sampler"], q["source"]) == (r["task"], r["sampler"], spectral)),
                None,
            )
            if twin is not None:
                twin["gain_psnr"] = float((twin["_psnr"] - r["_psnr"]).mean())
        for r in records:
            r.pop("_psnr", None)

    def _log(self, trainer: L.Trainer, records: list[dict[str, Any]], seconds: float, step: int) -> None:
        metrics: dict[str, float] = {"restoration/seconds": seconds}
        for r in records:
            base = f"restoration/{r['task']}/{r['sampler']}"
            for k in (*METRICS, "fd"):
                metrics[f"{base}/{r['source']}/{k}"] = r[k]
            if "gain_psnr" in r:
                metrics[f"{base}/gain/psnr"] = r["gain_psnr"]
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)
            logger.save()
        for name, value in metrics.items():
            trainer.callback_metrics[name] = torch.tensor(value)
        rank_zero_info(
            f"zsguide: restoration at step {step}: "
            + ", ".join(f"{r['task']}/{r['sampler']}/{r['source']} {r['psnr']:.2f} dB" for r in records)
            + f" ({seconds:.1f} s)"
        )

    def _write_grids(self, folder: Path, step: int, images, grids) -> None:
        from torchvision.utils import save_image

        folder.mkdir(parents=True, exist_ok=True)
        n = min(self.grid_images, images.shape[0])
        for task, shown in grids.items():
            rows = [images[:n].to(torch.float64)] + [shown[key][:n] for key in shown]  # sampler x source, as given
            grid = torch.cat(rows).clamp(0, 1).float()
            save_image(grid, folder / f"step{step:06d}_{task}.png", nrow=n)

    # ------------------------------------------------------------------ images
    def _split_images(self, trainer: L.Trainer) -> tuple[torch.Tensor, list[int]]:
        """The first ``num_images`` of the split, read once: ``(images (N, C, H, W) in [0, 1], dataset indices)``."""
        if self._images is None:
            dm = self.datamodule if self.datamodule is not None else getattr(trainer, "datamodule", None)
            if dm is None:
                raise ZSGuideError("RestorationCallback: the trainer has no datamodule; give the callback one")
            images: list[torch.Tensor] = []
            indices: list[int] = []
            for item in _items(dm, self.split):
                image, index = _image_and_index(item, len(indices))
                images.append(image)
                indices.append(index)
                if len(images) == self.num_images:
                    break
            if len(images) < self.num_images:
                raise ZSGuideError(
                    f"RestorationCallback: the {self.split} split holds {len(images)} images, fewer than "
                    f"num_images = {self.num_images}"
                )
            self._images = (torch.stack(images).detach().cpu().float(), indices)
        return self._images


def _items(dm, split: str) -> Iterator[Any]:
    if hasattr(dm, "dataset"):
        dataset = dm.dataset(split)
        for i in range(len(dataset)):
            yield dataset[i]
        return
    dm.setup({"train": "fit", "val": "validate", "test": "test"}[split])
    loader = getattr(dm, {"train": "train_dataloader", "val": "val_dataloader", "test": "test_dataloader"}[split])()
    for batch in loader:
        images = (
            batch["image"] if isinstance(batch, Mapping) else batch[0] if isinstance(batch, (list, tuple)) else batch
        )
        index = batch.get("index") if isinstance(batch, Mapping) else None
        for j in range(images.shape[0]):
            yield {"image": images[j], **({"index": int(index[j])} if index is not None else {})}


def _image_and_index(item: Any, position: int) -> tuple[torch.Tensor, int]:
    """A dataset item as ``(image, index)``: a mapping with ``image`` (and ``index``), a tuple whose first element is
    the image, or the image itself; the index defaults to the position in the split."""
    if isinstance(item, Mapping):
        return torch.as_tensor(item["image"]), int(item.get("index", position))
    if isinstance(item, (list, tuple)):
        return torch.as_tensor(item[0]), position
    return torch.as_tensor(item), position


def _data_meta(trainer: L.Trainer, datamodule) -> dict:
    dm = datamodule if datamodule is not None else getattr(trainer, "datamodule", None)
    hparams = getattr(dm, "hparams", None) or {}
    return {"name": hparams.get("name")} if "name" in hparams else {}


def _per_image(restored: torch.Tensor, truth: torch.Tensor, idx: list[int], clip: bool) -> dict[int, dict]:
    """Per image index: its metrics (psnr, ssim, mse; float64) and spectral features (clipped as the metrics)."""
    if not idx:
        return {}
    metrics = api.image_metrics(restored, truth.to(torch.float64), clip=clip)
    shown = restored.clamp(0, 1) if clip else restored
    features = spectral_features(shown)
    return {
        i: {"metrics": torch.stack([metrics[k][j] for k in METRICS]), "features": features[j]}
        for j, i in enumerate(idx)
    }


def _gather(obj: Any, world: int) -> list[Any]:
    """Every rank's ``obj`` (small: per-image metrics, features, a few images), in rank order."""
    if world == 1 or not torch.distributed.is_available() or not torch.distributed.is_initialized():
        return [obj]
    out: list[Any] = [None] * world
    torch.distributed.all_gather_object(out, obj)
    return out


def _merge(parts: list[dict[int, dict]]) -> dict[int, dict]:
    merged: dict[int, dict] = {}
    for part in parts:
        for i, row in part.items():
            if i in merged:
                raise ZSGuideError(f"RestorationCallback: image index {i} was restored on two ranks")
            merged[i] = row
    return merged


def _merge_shown(parts: list[list[tuple[int, torch.Tensor]]]) -> torch.Tensor:
    rows = sorted((p, img) for part in parts for p, img in part)
    return torch.stack([img for _, img in rows]).to(torch.float64)


@contextlib.contextmanager
def _restoration_mode(module: torch.nn.Module):
    """Outside inference mode, the module in eval mode with its parameters frozen; every mode and flag restored."""
    training = module.training
    flags = [(p, p.requires_grad) for p in module.parameters()]
    try:
        with torch.inference_mode(False), torch.enable_grad():
            module.eval()
            for p, _ in flags:
                p.requires_grad_(False)
            yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        module.train(training)
