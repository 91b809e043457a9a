"""Named restoration tasks: ``make_operator(task, image_shape, seed, indices, **params)`` builds the batched operator.

Per-image randomness (random masks, random box positions, motion kernels) comes from the generator of
``(seed, image index, stream)``, so image ``i``'s operator is the same in any batch. Operators that are the same for
every image (centred box, file mask, Gaussian/uniform/file kernels, super-resolution) have batch dim 1 and broadcast.
Each parameter's default and where it comes from is in :func:`task_defaults`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zsguide.errors import ZSGuideError
from zsguide.operators.base import LinearOperator, check_image_shape
from zsguide.operators.blur import BLUR_RCOND, Blur
from zsguide.operators.inpaint import Inpainting
from zsguide.operators.kernels import gaussian_kernel, load_kernel, motion_kernel, uniform_kernel
from zsguide.operators.masks import box_mask, load_mask, random_pixel_mask
from zsguide.operators.superres import SuperResolution

REQUIRED = object()  # marks a parameter without a default


@dataclass(frozen=True)
class Param:
    """One task parameter: its default (or REQUIRED) and where the default comes from."""

    default: Any
    source: str


Builder = Callable[[tuple[int, int, int], int, list[int], dict[str, Any]], LinearOperator]


TASK_FAMILIES = ("inpainting", "deblurring", "super-resolution")
"""The kinds of task; a sampler's hand-set defaults depend on the family (samplers/dps.py, samplers/diffpir.py)."""


@dataclass(frozen=True)
class TaskSpec:
    """A named task: a one-line summary, its parameters, the function that builds the operator and its family (one of
    :data:`TASK_FAMILIES`)."""

    name: str
    summary: str
    params: Mapping[str, Param]
    build: Builder
    family: str

    def __post_init__(self) -> None:
        if self.family not in TASK_FAMILIES:
            raise ValueError(
                f"task {self.name!r}: family must be one of {', '.join(TASK_FAMILIES)}, got {self.family!r}"
            )


_RCOND_EXACT = Param(0.0, "exact pseudo-inverse: the singular values are 0 or 1")
_RCOND_BLUR = Param(BLUR_RCOND, "ours: |h| <= 1e-3 max|h| treated as lost (DDRM cuts at 3e-2, docs/peers.md)")
_RCOND_SR = Param(None, "0 for block averaging (all singular values 1/s); 1e-3 with a kernel, as for blur")
_PATH_MASK = Param(REQUIRED, "required: a PNG or .npy mask of the image size, nonzero = kept")
_PATH_KERNEL = Param(REQUIRED, "required: a 2-D .npy kernel, nonnegative with a positive sum")
_SR_PARAMS = {
    "kernel": Param("block", "DDRM's SR by block averaging; 'gaussian' or a .npy path for blur + decimation"),
    "kernel_size": Param(9, "ours, for kernel='gaussian': the deblurring window at 32x32"),
    "kernel_sigma": Param(None, "ours, for kernel='gaussian': factor / 2 (an anti-aliasing width)"),
    "rcond": _RCOND_SR,
}


def _inpaint_random(shape, seed, indices, p):
    mask = random_pixel_mask(shape[1], shape[2], seed, indices, keep=p["keep"])
    return Inpainting(mask, channels=shape[0], rcond=p["rcond"])


def _inpaint_box(shape, seed, indices, p):
    mask = box_mask(shape[1], shape[2], seed, indices, box_size=p["box_size"], box_position=p["box_position"])
    return Inpainting(mask, channels=shape[0], rcond=p["rcond"])


def _inpaint_mask(shape, seed, indices, p):
    return Inpainting(load_mask(_path(p["path"]), shape), channels=shape[0], rcond=p["rcond"])


def _deblur_gaussian(shape, seed, indices, p):
    return Blur(gaussian_kernel(p["size"], p["sigma"]), shape, rcond=p["rcond"])


def _deblur_uniform(shape, seed, indices, p):
    return Blur(uniform_kernel(p["size"]), shape, rcond=p["rcond"])


def _deblur_motion(shape, seed, indices, p):
    return Blur(motion_kernel(seed, indices, p["size"], p["intensity"]), shape, rcond=p["rcond"])


def _deblur_kernel(shape, seed, indices, p):
    return Blur(load_kernel(_path(p["path"])), shape, rcond=p["rcond"])


def _superres(factor: int) -> Builder:
    def build(shape, seed, indices, p):
        choice = p["kernel"]
        if choice in (None, "block"):
            kernel = None
        elif choice == "gaussian":
            sigma = factor / 2 if p["kernel_sigma"] is None else p["kernel_sigma"]
            kernel = gaussian_kernel(p["kernel_size"], sigma)
        elif isinstance(choice, (str, Path)) and str(choice).lower().endswith(".npy"):
            kernel = load_kernel(choice)
        else:
            raise ZSGuideError(f"kernel must be 'block', 'gaussian' or a path to a .npy file, got {choice!r}")
        return SuperResolution(factor, shape, kernel=kernel, rcond=p["rcond"])

    return build


TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec(
            "inpaint_random",
            "keep a random fraction of the pixels (shared across channels), seeded per image",
            {"keep": Param(0.5, "DDRM's random 50% inpainting (DPS draws 30-70%)"), "rcond": _RCOND_EXACT},
            _inpaint_random,
            family="inpainting",
        ),
        TaskSpec(
            "inpaint_box",
            "remove a square box",
            {
                "box_size": Param(None, "min(H, W) // 2: DPS's 128-pixel box in 256x256 images"),
                "box_position": Param("center", "deterministic; 'random' draws it per image as DPS does"),
                "rcond": _RCOND_EXACT,
            },
            _inpaint_box,
            family="inpainting",
        ),
        TaskSpec(
            "inpaint_mask",
            "a mask from a file",
            {"path": _PATH_MASK, "rcond": _RCOND_EXACT},
            _inpaint_mask,
            family="inpainting",
        ),
        TaskSpec(
            "deblur_gaussian",
            "periodic Gaussian blur",
            {
                "size": Param(9, "DPS's 61x61 window at 256x256, scaled to 32x32"),
                "sigma": Param(1.5, "ours for 32x32 (DPS: sigma 3 at 256x256; a literal 1/8 scaling barely blurs)"),
                "rcond": _RCOND_BLUR,
            },
            _deblur_gaussian,
            family="deblurring",
        ),
        TaskSpec(
            "deblur_uniform",
            "periodic uniform (box) blur",
            {"size": Param(9, "DDRM's 9-tap uniform deblurring kernel"), "rcond": _RCOND_BLUR},
            _deblur_uniform,
            family="deblurring",
        ),
        TaskSpec(
            "deblur_motion",
            "periodic motion blur, a random trajectory per image",
            {
                "size": Param(9, "DPS's 61x61 motion kernels at 256x256, scaled to 32x32"),
                "intensity": Param(0.5, "DPS's motion-blur intensity"),
                "rcond": _RCOND_BLUR,
            },
            _deblur_motion,
            family="deblurring",
        ),
        TaskSpec(
            "deblur_kernel",
            "periodic blur by a kernel from a file",
            {"path": _PATH_KERNEL, "rcond": _RCOND_BLUR},
            _deblur_kernel,
            family="deblurring",
        ),
        TaskSpec("sr2", "x2 super-resolution", dict(_SR_PARAMS), _superres(2), family="super-resolution"),
        TaskSpec("sr4", "x4 super-resolution", dict(_SR_PARAMS), _superres(4), family="super-resolution"),
    )
}
TASK_NAMES: tuple[str, ...] = tuple(TASKS)


def get_task(task: str) -> TaskSpec:
    """The :class:`TaskSpec` named ``task``; an unknown name raises :class:`ZSGuideError` listing the valid ones."""
    if task not in TASKS:
        raise ZSGuideError(f"unknown task {task!r}; valid tasks: {', '.join(TASK_NAMES)}")
    return TASKS[task]


def task_family(task: str) -> str:
    """The family of ``task`` (:data:`TASK_FAMILIES`); an unknown name raises :class:`ZSGuideError`."""
    return get_task(task).family


def task_defaults(task: str) -> dict[str, dict[str, Any]]:
    """``{parameter: {"value": default, "source": where it comes from}}``; required parameters have value None."""
    spec = get_task(task)
    return {
        name: {"value": None if param.default is REQUIRED else param.default, "source": param.source}
        for name, param in spec.params.items()
    }


def make_operator(
    task: str, image_shape: Sequence[int], seed: int, indices: Sequence[int], **params: Any
) -> LinearOperator:
    """The operator of ``task`` for images ``indices`` (batch dim ``len(indices)``, or 1 if shared by all images).

    ``params`` override the defaults of :func:`task_defaults`; unknown names, missing required parameters and invalid
    values raise :class:`ZSGuideError`.
    """
    spec = get_task(task)
    unknown = sorted(set(params) - set(spec.params))
    if unknown:
        raise ZSGuideError(
            f"unknown parameter(s) {', '.join(map(repr, unknown))} for task {task!r}; "
            f"valid parameters: {', '.join(spec.params)}"
        )
    values = {name: params.get(name, param.default) for name, param in spec.params.items()}
    missing = [name for name, value in values.items() if value is REQUIRED]
    if missing:
        raise ZSGuideError(f"task {task!r} needs parameter(s) {', '.join(map(repr, missing))}")
    shape = check_image_shape(image_shape)
    return spec.build(shape, _seed(seed), _indices(indices), values)


def _seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ZSGuideError(f"seed must be an integer, got {seed!r}")
    return int(seed)


def _indices(indices: Sequence[int]) -> list[int]:
    try:
        values = [int(i) for i in indices]
    except (TypeError, ValueError):
        raise ZSGuideError(f"indices must be a sequence of non-negative integers, got {indices!r}") from None
    if not values or min(values) < 0 or any(float(a) != b for a, b in zip(indices, values)):
        raise ZSGuideError(f"indices must be a non-empty sequence of non-negative integers, got {indices!r}")
    return values


def _path(value: Any) -> Path:
    if not isinstance(value, (str, Path)) or not str(value):
        raise ZSGuideError(f"path must be a file path, got {value!r}")
    return Path(value)
