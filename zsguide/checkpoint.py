"""Loading a zsguide checkpoint outside the Trainer: the score module (network, EMA, surrogate) and its metadata.

A checkpoint written by ``python -m zsguide fit`` holds, besides Lightning's usual keys:
``state_dict`` (``net.*``, ``ema.*``, ``surrogate.mean``, ``surrogate.spectrum``, ``surrogate.fitted``),
``hyper_parameters`` (the model's), ``datamodule_hyper_parameters`` (the data's, seeds included) and ``zsguide``
(format version, image shape, value ranges, the VP schedule, the surrogate digest, the data options).

A *prior file* (``python -m zsguide prior``, :mod:`zsguide.prior_file`) is read by the same functions: it holds the
surrogate and schedule where a ``fit`` checkpoint does, and a description of a pretrained network in place of the
weights. Every file is read with ``torch.load(weights_only=True)``: tensors and plain containers, never code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Union

import torch

from .errors import ZSGuideError
from .safe_files import read_tensor_file

if TYPE_CHECKING:
    from .diffusion.module import ScoreModule
    from .diffusion.schedule import VPSchedule
    from .prior_file import PriorModule
    from .surrogate import GaussianSurrogate


def read_checkpoint(path: str | Path) -> dict:
    """The raw checkpoint dictionary, with clear errors for a missing, unreadable or foreign file."""
    ckpt = read_tensor_file(path, what="checkpoint")
    if not isinstance(ckpt, dict) or "zsguide" not in ckpt:
        raise ZSGuideError(f"{str(path)!r} is not a zsguide checkpoint (no 'zsguide' metadata)")
    return ckpt


def image_shape(meta: dict) -> tuple[int, int, int]:
    """The ``(C, H, W)`` a checkpoint's ``zsguide`` metadata was made for."""
    C, H, W = (int(v) for v in meta["image_shape"])
    return C, H, W


def load_score_module(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[Union["ScoreModule", "PriorModule"], dict]:
    """The :class:`ScoreModule` stored in ``path`` (or the :class:`~zsguide.prior_file.PriorModule` of a prior file),
    in eval mode, and the checkpoint's ``zsguide`` metadata."""
    ckpt = read_checkpoint(path)
    from .prior_file import is_prior, load_prior_module

    if is_prior(ckpt):
        module, meta = load_prior_module(ckpt, path)
        return module.to(map_location), meta
    from .diffusion.module import ScoreModule

    hparams = {k: v for k, v in ckpt["hyper_parameters"].items() if not k.startswith("_")}  # e.g. _instantiator
    score = ScoreModule(**hparams)
    score.on_load_checkpoint(ckpt)
    score.load_state_dict(ckpt["state_dict"])
    score.surrogate.require_fitted()
    return score.to(map_location).eval(), ckpt["zsguide"] | {"data": ckpt.get("datamodule_hyper_parameters")}


@dataclass
class GaussianPrior:
    """What the spectral engine needs from a checkpoint: the fitted surrogate, the VP schedule, the metadata."""

    surrogate: GaussianSurrogate
    schedule: VPSchedule
    meta: dict


def load_gaussian_prior(path: str | Path) -> GaussianPrior:
    """The Gaussian surrogate and VP schedule stored in ``path``, without building the network: ``analyze`` and
    ``tune`` never import Lightning or the UNet (the same surrogate digest and schedule as :func:`load_score_module`,
    tested). A prior file's network file is checked all the same (size and sha256,
    :func:`zsguide.prior_file.check_network_file`), as every command that reads a prior file does."""
    from .diffusion.schedule import VPSchedule
    from .prior_file import check_network_file
    from .surrogate import GaussianSurrogate

    ckpt = read_checkpoint(path)
    check_network_file(ckpt, path)
    meta = ckpt["zsguide"]
    try:
        surrogate = GaussianSurrogate(*image_shape(meta))
        surrogate.load_state_dict(
            {k.removeprefix("surrogate."): v for k, v in ckpt["state_dict"].items() if k.startswith("surrogate.")}
        )
        schedule = VPSchedule(**meta["schedule"])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise ZSGuideError(f"checkpoint {str(path)!r} has no readable surrogate or schedule: {exc}") from None
    surrogate.require_fitted()
    return GaussianPrior(surrogate, schedule, meta | {"data": ckpt.get("datamodule_hyper_parameters")})
