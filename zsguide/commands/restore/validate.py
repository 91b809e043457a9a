"""The options of ``restore`` checked on their own, cheapest first, before anything is loaded: the numbers (sigma_y
>= 0 and finite, steps and counts >= 1), the noise convention and denoiser, the options that apply to ``--params
spectral`` only and their values, the task and sampler names, the files named (``--input``, ``--ckpt_path``) and the
output folder (a folder or creatable, and writable: runtime/files.py). Each failure is one
:class:`~zsguide.errors.ZSGuideError` line naming the option and the value."""

from __future__ import annotations

import math
from pathlib import Path

from jsonargparse import Namespace

from ...errors import ZSGuideError
from ...restoration import network_sigma
from ...runtime.files import check_output_dir
from ...runtime.options import DENOISERS
from ...spectral.options import DesignOptions


def check_options(cfg: Namespace):
    """``(sigma_y, task parameters as given, the task's defaults, the sampler, the output folder)`` of ``cfg``."""
    from ...operators import task_defaults
    from ...samplers import get_sampler

    sigma_y = float(cfg.sigma_y)
    if not math.isfinite(sigma_y) or sigma_y < 0:
        raise ZSGuideError(f"--sigma_y must be a finite number >= 0, got {cfg.sigma_y!r}")
    network_sigma(sigma_y, cfg.noise_convention)  # an unknown convention: one line naming --noise_convention
    if cfg.denoiser not in DENOISERS:
        raise ZSGuideError(f"unknown --denoiser {cfg.denoiser!r}; choose network or analytic")
    for name in ("batch_size", "num_samples"):
        if cfg[name] < 1:
            raise ZSGuideError(f"--{name} must be >= 1, got {cfg[name]}")
    if cfg.num_images is not None and cfg.num_images < 1:
        raise ZSGuideError(f"--num_images must be >= 1, got {cfg.num_images}")
    if cfg.steps is not None and cfg.steps < 1:
        raise ZSGuideError(f"--steps must be >= 1, got {cfg.steps}")
    if cfg.num_samples > 1 and cfg.input is None:
        raise ZSGuideError("--num_samples > 1 needs --input (test images are restored once each)")
    design = DesignOptions.from_config(cfg)
    for option in design.given():
        if cfg.params != "spectral":
            raise ZSGuideError(
                f"--{option} applies to --params spectral only (got --{option} "
                f"{getattr(cfg, option)!r} with --params {cfg.params!r})"
            )
    if cfg.params == "spectral":  # validated here; cfg keeps the option as given, so a saved config repeats the run
        design.checked()
    task_params_given = dict(cfg.task_params or {})
    defaults = task_defaults(cfg.task)  # unknown task -> error listing the valid ones
    sampler = get_sampler(cfg.sampler)  # unknown sampler -> error listing the valid ones
    if cfg.input is not None and not Path(cfg.input).is_file():
        raise ZSGuideError(f"input file {cfg.input!r} does not exist (--input)")
    if cfg.ckpt_path is None:
        raise ZSGuideError("--ckpt_path is required (a checkpoint written by 'python -m zsguide fit')")
    output = check_output_dir(cfg.output or f"runs/restore/{cfg.task}_{cfg.sampler}", "--output")
    return sigma_y, task_params_given, defaults, sampler, output
