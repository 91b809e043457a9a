"""An evaluation checked and prepared before any image runs: the grid's entries, the prior, the images, every
cell's operator and parameter schedule (designs made now, or read from the design cache), and its identity.

Checks (each a one-line :class:`ZSGuideError` naming the option or grid entry, before anything is written): the
numbers, the grid's entries (grid.py), the checkpoint, the data against the checkpoint's image shape, every task's
parameters (by building the operator of the first image for every seed), LPIPS and FID weights. Then every cell's
schedule is resolved exactly as ``restore --params`` resolves it (zsguide/parameters.py), so a cell's image is the
image ``restore`` gives with the same options.

A cell's settings (what its results depend on, and nothing else): the checkpoint file's sha256, the data options and
image shape, the denoiser, the noise convention and level (pixel and network units), the seed, the sampler, the task
and its resolved parameters, the full parameter schedule (a changed design is a changed cell) and its label, the
precision and device type (cpu or cuda), the LPIPS and FID weights' sha256 (so adding LPIPS or FID weights later
recomputes the grid: those metrics are taken from the restorations as they are made), and :data:`RESULTS_VERSION`.
``--batch_size``, device and node counts, and whether the run was interrupted are not settings: the results do not
depend on them (a resume with the same ``--batch_size`` reruns exactly the same batches; runtime/shard.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Union

from jsonargparse import Namespace
from lightning.fabric.utilities.rank_zero import rank_zero_info

from ...errors import ZSGuideError
from ...parameters import param_schedule
from ...restoration import network_sigma
from ...runtime.files import check_output_dir
from ...runtime.options import DENOISERS
from .grid import CellSpec, digest, expand_grid, folder_name

if TYPE_CHECKING:
    from torch.utils.data import Dataset

    from ...diffusion.module import ScoreModule
    from ...prior_file import PriorModule
    from ...samplers import ParamSchedule, Sampler

RESULTS_VERSION = 2  # 2: mse_unclipped per image; bump when what an item holds, or how it is computed, changes


@dataclass
class Cell:
    spec: CellSpec
    sampler: Sampler
    params: ParamSchedule
    params_source: str
    sigma_net: float
    task_params_resolved: dict
    settings: dict
    folder: str
    twin: int | None = None  # index of the heuristic twin in plan.cells

    @property
    def key(self) -> str:
        return self.spec.key


@dataclass
class EvaluatePlan:
    ckpt_path: str
    module: Union[ScoreModule, PriorModule]
    meta: dict
    image_shape: tuple[int, int, int]
    data_options: dict
    dataset: Dataset  # Subset of the test split: the first num_images images
    test_split: Dataset  # the whole test split (for the clean floor)
    indices: list[int]
    cells: list[Cell]
    output: Path
    batch_size: int
    num_workers: int
    denoiser: str
    noise_convention: str
    clipped: bool
    bootstrap: int
    examples: int
    save_images: bool
    lpips_path: Path | None
    fid_path: Path | None
    notes: list[str] = field(default_factory=list)

    @property
    def needs_grad(self) -> bool:
        return any(c.sampler.needs_grad for c in self.cells)

    @property
    def total_items(self) -> int:
        return len(self.cells) * len(self.indices)

    def done(self, cell: Cell) -> set[int]:
        """The cell's committed images among this run's (a larger earlier ``--num_images`` left more on disk)."""
        from . import store

        return store.committed(self.output, cell.folder) & set(self.indices)


def _check_numbers(cfg: Namespace) -> None:
    network_sigma(0.0, cfg.noise_convention)  # an unknown convention: one line naming --noise_convention
    if cfg.denoiser not in DENOISERS:
        raise ZSGuideError(f"unknown --denoiser {cfg.denoiser!r}; choose network or analytic")
    if cfg.batch_size < 1:
        raise ZSGuideError(f"--batch_size must be >= 1, got {cfg.batch_size}")
    if cfg.num_images is not None and cfg.num_images < 2:
        raise ZSGuideError(f"--num_images must be >= 2 (a Frechet distance needs two images), got {cfg.num_images}")
    if cfg.bootstrap != 0 and cfg.bootstrap < 2:
        raise ZSGuideError(f"--bootstrap must be 0 (no standard errors) or >= 2, got {cfg.bootstrap}")
    if cfg.examples < 0:
        raise ZSGuideError(f"--examples must be >= 0, got {cfg.examples}")
    if cfg.ckpt_path is None:
        raise ZSGuideError("--ckpt_path is required (a checkpoint written by 'python -m zsguide fit' or a prior file)")


def output_dir(cfg: Namespace) -> Path:
    """``--output``, or ``runs/evaluate/<the config file's name>`` (``grid`` without one)."""
    if cfg.output:
        return Path(cfg.output)
    config = cfg.get("config")
    name = Path(str(config[0])).stem if config else "grid"
    return Path("runs/evaluate") / name


def check_options(cfg: Namespace) -> list[CellSpec]:
    """The cheap checks (numbers, grid entries, paths), before the output directory is touched; the grid's cells."""
    _check_numbers(cfg)
    specs = expand_grid(cfg.grid)
    check_output_dir(output_dir(cfg), "--output")  # a folder, or creatable, and writable: before any work
    if not Path(cfg.ckpt_path).is_file():
        raise ZSGuideError(f"checkpoint {cfg.ckpt_path!r} does not exist (--ckpt_path)")
    from ...evaluation.fid import fid_weights_path
    from ...evaluation.metrics import lpips_weights_path

    lpips_weights_path(cfg.lpips_weights)
    fid_weights_path(cfg.fid_weights)
    return specs


def make_plan(cfg: Namespace, specs: list[CellSpec] | None = None) -> EvaluatePlan:
    """Check everything and prepare every cell (designs are made here, or read from the design cache); ``specs``:
    the cells :func:`check_options` already returned (otherwise it is run here)."""
    from ...checkpoint import image_shape as checkpoint_image_shape
    from ...checkpoint import load_score_module
    from ...evaluation.fid import fid_weights_path
    from ...evaluation.metrics import lpips_min_side, lpips_weights_path
    from ...operators import make_operator, task_defaults
    from ...runtime.heldout import held_out_images
    from ...safe_files import file_sha256
    from ...samplers import get_sampler

    specs = check_options(cfg) if specs is None else specs
    output = output_dir(cfg)
    lpips_path = lpips_weights_path(cfg.lpips_weights)
    fid_path = fid_weights_path(cfg.fid_weights)

    module, meta = load_score_module(cfg.ckpt_path)
    image_shape = checkpoint_image_shape(meta)
    data_options, dataset, indices = held_out_images(
        meta,
        image_shape,
        num_images=cfg.num_images,
        data=cfg.data,
        ckpt_path=cfg.ckpt_path,
        batch_size=cfg.batch_size,
    )
    if len(indices) < 2:
        raise ZSGuideError("the evaluation needs at least 2 held-out images (a Frechet distance needs two)")
    clipped = data_options.get("name") != "gaussian"
    notes = []
    if lpips_path is not None and min(image_shape[1:]) < lpips_min_side():
        notes.append(
            f"LPIPS skipped: images are {image_shape[1]}x{image_shape[2]}, AlexNet needs at least "
            f"{lpips_min_side()} pixels a side"
        )
        lpips_path = None
    elif lpips_path is None:
        notes.append("LPIPS skipped: no local AlexNet weights (give --lpips_weights PATH or set ZSGUIDE_LPIPS_WEIGHTS)")
    if fid_path is None:
        notes.append("FID skipped: no local Inception weights (give --fid_weights PATH or set ZSGUIDE_FID_WEIGHTS)")
    elif image_shape[0] not in (1, 3):
        raise ZSGuideError(
            f"--fid_weights: FID needs grey or RGB images, the checkpoint's have {image_shape[0]} channels"
        )

    base = {
        "version": RESULTS_VERSION,
        "checkpoint_sha256": file_sha256(cfg.ckpt_path),
        "data": {k: v for k, v in data_options.items() if k not in ("batch_size", "num_workers")},
        "image_shape": list(image_shape),
        "denoiser": cfg.denoiser,
        "noise_convention": cfg.noise_convention,
        "precision": str(cfg.trainer.precision),
        "device_type": device_type(cfg.trainer.accelerator),
        "clipped": clipped,
        "lpips_weights_sha256": file_sha256(lpips_path) if lpips_path else None,
        "fid_weights_sha256": file_sha256(fid_path) if fid_path else None,
    }
    operators: dict = {}
    for spec in specs:  # every task's parameters first (one error naming the entry), before any design is made
        op_key = (spec.task.label, spec.seed)
        if op_key not in operators:
            try:
                operators[op_key] = make_operator(
                    spec.task.name, image_shape, spec.seed, [indices[0]], **spec.task.params
                )
            except ZSGuideError as exc:
                where = next(i for i, t in enumerate(cfg.grid.tasks) if _task_label(t) == spec.task.label)
                raise ZSGuideError(f"grid.tasks[{where}] ({spec.task.label}): {exc}") from None
    cells: list[Cell] = []
    for spec in specs:
        sampler = get_sampler(spec.sampler)
        operator = operators[(spec.task.label, spec.seed)]
        sigma_net = network_sigma(spec.sigma_y, cfg.noise_convention)
        if spec.params.source == "spectral":
            rank_zero_info(f"zsguide: design {spec.key} (made now or read from the design cache) ...")
        try:
            params, source = _schedule(spec, sampler, module, operator, sigma_net, str(cfg.ckpt_path))
        except ZSGuideError as exc:
            raise ZSGuideError(f"grid cell {spec.key}: {exc}") from None
        defaults = task_defaults(spec.task.name)
        resolved = {k: spec.task.params.get(k, v["value"]) for k, v in defaults.items()}
        settings = base | {
            "sampler": spec.sampler,
            "task": spec.task.name,
            "task_params": resolved,
            "steps": spec.steps,
            "params_label": spec.params.label,
            "params": params.to_dict(),
            "sigma_y": spec.sigma_y,
            "sigma_network": sigma_net,
            "seed": spec.seed,
        }
        d = digest(settings)
        cells.append(Cell(spec, sampler, params, source, sigma_net, resolved, settings, folder_name(spec, d)))
    by_key = {c.key: i for i, c in enumerate(cells)}
    for c in cells:
        if c.spec.params.label != "heuristic":
            c.twin = by_key.get(c.spec.twin_key)
    test_split = getattr(dataset, "dataset", dataset)
    return EvaluatePlan(
        ckpt_path=str(cfg.ckpt_path),
        module=module,
        meta=meta,
        image_shape=image_shape,
        data_options=data_options,
        dataset=dataset,
        test_split=test_split,
        indices=list(indices),
        cells=cells,
        output=output,
        batch_size=int(cfg.batch_size),
        num_workers=int(cfg.data.num_workers or 0),
        denoiser=cfg.denoiser,
        noise_convention=cfg.noise_convention,
        clipped=clipped,
        bootstrap=int(cfg.bootstrap),
        examples=int(cfg.examples),
        save_images=bool(cfg.save_images),
        lpips_path=lpips_path,
        fid_path=fid_path,
        notes=notes,
    )


def device_type(accelerator: str) -> str:
    """``cpu`` or ``cuda`` (what ``--trainer.accelerator`` resolves to here): part of a cell's settings, since a CPU
    and a GPU round differently."""
    import torch

    name = str(accelerator).lower()
    if name == "cpu":
        return "cpu"
    if name in ("gpu", "cuda"):
        return "cuda"
    return "cuda" if torch.cuda.is_available() else "cpu"  # auto (mps and others: not used by zsguide)


def _task_label(entry) -> str:
    from .grid import _task_spec

    return _task_spec(entry, "").label


def _schedule(spec: CellSpec, sampler, module, operator, sigma_net: float, ckpt_path: str):
    return param_schedule(
        spec.source,
        sampler,
        module,
        operator,
        sigma_net,
        task=spec.task.name,
        steps=spec.steps,
        design=spec.params.design,
        ckpt_path=ckpt_path,
        option="grid.params",
    )
