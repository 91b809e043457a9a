"""Turning the parsed options into a checked plan, before any work is done or any file is written.

Everything a user can get wrong is checked before anything is written, so that bad input stops with one ``error:
...`` line and nothing in the output directory: first the options alone (validate.py: the numbers, the task and
sampler names, the files named, the design options), then here, while preparing the run, what needs the checkpoint:
the data against its image shape, the task parameters (by building the operator of the first image: a mask of the
wrong shape, a super-resolution factor that does not divide the image), the ``--input`` file's size, and the
parameter schedule.

Data options: the checkpoint's own data options (``meta["data"]``, what ``fit`` trained on), overridden by
``--data.*``; restore takes the test split's first ``--num_images`` images. DataLoader workers: 0 unless
``--data.num_workers`` is given (the checkpoint's training value is not reused: restoring is compute-bound).

Noise: ``--sigma_y`` is the measurement noise std in pixel units [0, 1] (the canonical convention, README); the
network sees std ``sigma = 2 sigma_y``. ``--noise_convention network`` takes ``sigma_y`` as the [-1, 1] std instead
(``sigma = sigma_y``; DPS's 0.05 is such a number). Both are recorded in summary.json.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Union

import torch
from jsonargparse import Namespace
from torch.utils.data import Dataset

from ...errors import ZSGuideError
from ...operators.base import LinearOperator
from ...parameters import param_schedule
from ...restoration import network_sigma, to_network_units
from ...runtime.heldout import held_out_images
from ...samplers.base import ParamSchedule, Sampler
from ...spectral.options import DesignOptions
from .validate import check_options

if TYPE_CHECKING:
    from ...diffusion.module import ScoreModule
    from ...prior_file import PriorModule


@dataclass
class RestorePlan:
    """A checked restore job: what to restore, how, and where to write it."""

    mode: str  # "dataset" (test images with ground truth) or "input" (a user's measurement, no ground truth)
    ckpt_path: str
    module: Union[ScoreModule, PriorModule]
    meta: dict
    image_shape: tuple[int, int, int]
    data_options: dict | None
    dataset: Dataset
    expected_indices: list[int]
    task: str
    task_params: dict  # as given
    task_params_resolved: dict  # every parameter of the task, defaults filled in
    operator: LinearOperator  # the first image's operator: what the design and the writer use
    sampler: Sampler
    params: ParamSchedule
    params_source: str
    sigma_y: float
    noise_convention: str
    sigma_net: float
    seed: int
    denoiser: str
    clipped: bool
    batch_size: int
    num_workers: int
    output: Path
    num_samples: int = 1
    input_path: str | None = None
    input_measurement: torch.Tensor | None = None  # (1, *measurement_shape) network units, --input mode
    lpips_path: Path | None = None
    lpips_note: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def has_truth(self) -> bool:
        return self.mode == "dataset"

    @property
    def num_outputs(self) -> int:
        return len(self.expected_indices)


def make_plan(cfg: Namespace, checked: tuple | None = None) -> RestorePlan:
    """Check every option and load what the run needs; raises :class:`ZSGuideError` on bad input. ``checked``:
    what :func:`~.validate.check_options` already returned (otherwise it is run here)."""
    from ...checkpoint import image_shape as checkpoint_image_shape
    from ...checkpoint import load_score_module
    from ...operators import make_operator

    sigma_y, task_params_given, defaults, sampler, output = check_options(cfg) if checked is None else checked

    # --- the checkpoint
    module, meta = load_score_module(cfg.ckpt_path)
    image_shape = checkpoint_image_shape(meta)

    # --- the images (or the user's measurement)
    seed = int(cfg.seed)
    notes: list[str] = []
    dataset: Dataset
    if cfg.input is None:
        mode = "dataset"
        data_options, dataset, expected = held_out_images(
            meta,
            image_shape,
            num_images=cfg.num_images,
            data=cfg.data,
            ckpt_path=cfg.ckpt_path,
            batch_size=cfg.batch_size,
        )
        first = expected[0]
        clipped = data_options.get("name") != "gaussian"
    else:
        mode, data_options, clipped, first = "input", None, True, 0
        if cfg.num_images is not None:
            notes.append("--num_images is ignored with --input")
    sigma_net = network_sigma(sigma_y, cfg.noise_convention)

    # --- the task: build the first image's operator now, so bad parameters fail before any work
    try:
        operator = make_operator(cfg.task, image_shape, seed, [first], **task_params_given)
    except ZSGuideError as exc:
        message = str(exc)
        raise ZSGuideError(message if repr(cfg.task) in message else f"task {cfg.task!r}: {message}") from None
    resolved = {k: task_params_given.get(k, v["value"]) for k, v in defaults.items()}
    input_measurement = None
    if mode == "input":
        from .inputs import InputSamples, check_input_shape, check_input_values, read_input

        y_pix = read_input(cfg.input, image_shape[0])
        check_input_shape(y_pix, operator, cfg.input, cfg.task)
        check_input_values(y_pix, operator, cfg.input, sigma_net)
        input_measurement = to_network_units(y_pix, operator)
        dataset = InputSamples(input_measurement, cfg.num_samples)
        expected = list(range(cfg.num_samples))

    # --- the parameter schedule
    params, params_source = param_schedule(
        cfg.params,
        sampler,
        module,
        operator,
        sigma_net,
        task=cfg.task,
        steps=cfg.steps,
        spacing=cfg.spacing,
        design=DesignOptions.from_config(cfg),
        ckpt_path=cfg.ckpt_path,
    )

    # --- LPIPS (only with ground truth, only from local weights)
    lpips_path, lpips_note = lpips_weights(cfg, image_shape) if mode == "dataset" else (None, None)

    return RestorePlan(
        mode=mode,
        ckpt_path=str(cfg.ckpt_path),
        module=module,
        meta=meta,
        image_shape=image_shape,
        data_options=data_options,
        dataset=dataset,
        expected_indices=expected,
        task=cfg.task,
        task_params=task_params_given,
        task_params_resolved=resolved,
        operator=operator,
        sampler=sampler,
        params=params,
        params_source=params_source,
        sigma_y=sigma_y,
        noise_convention=cfg.noise_convention,
        sigma_net=sigma_net,
        seed=seed,
        denoiser=cfg.denoiser,
        clipped=clipped,
        batch_size=int(cfg.batch_size),
        num_workers=int(cfg.data.num_workers or 0),
        output=output,
        num_samples=int(cfg.num_samples),
        input_path=cfg.input,
        input_measurement=input_measurement,
        lpips_path=lpips_path,
        lpips_note=lpips_note,
        notes=notes,
    )


def lpips_weights(cfg: Namespace, image_shape: tuple[int, int, int]) -> tuple[Path | None, str | None]:
    """``(weights path, None)`` for LPIPS from local AlexNet weights, or ``(None, why it is skipped)``."""
    from ...evaluation.metrics import lpips_min_side, lpips_weights_path

    path = lpips_weights_path(cfg.lpips_weights)
    if path is None:
        return None, (
            "LPIPS skipped: no local AlexNet weights (give --lpips_weights PATH or set "
            "ZSGUIDE_LPIPS_WEIGHTS); psnr, ssim and mse are computed"
        )
    if min(image_shape[1:]) < lpips_min_side():
        return None, (
            f"LPIPS skipped: images are {image_shape[1]}x{image_shape[2]}, AlexNet needs at least "
            f"{lpips_min_side()} pixels a side"
        )
    return path, None
