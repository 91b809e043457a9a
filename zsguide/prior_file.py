"""The prior file format: a small zsguide checkpoint that points at a pretrained network instead of holding it
(``python -m zsguide prior`` writes it, :mod:`zsguide.checkpoint` reads it).

Layout (``torch.save`` of plain containers and tensors, read back with ``weights_only=True``)::

    {"zsguide": {"format_version", "kind": "prior", "image_shape", "value_range", "schedule",
                 "surrogate_digest", "network": <description, zsguide.networks>, "surrogate_fit": {...}},
     "state_dict": {"surrogate.mean", "surrogate.spectrum", "surrogate.fitted"},
     "datamodule_hyper_parameters": <the data options the surrogate was fitted on>}

The keys the spectral engine reads (``image_shape``, ``schedule``, the surrogate's buffers) are where a ``fit``
checkpoint has them, so ``analyze`` and ``tune`` read both kinds alike; :func:`load_prior_module` rebuilds the
network from the description (refusing a file whose size or sha256 changed; :func:`check_network_file`, which
``analyze`` and ``tune`` call too) and returns the same interface as
:class:`~zsguide.diffusion.module.ScoreModule` (``network_denoiser``, ``analytic_denoiser``, ``surrogate``,
``schedule``), which is all ``restore`` and ``test`` use.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .diffusion.denoisers import AnalyticDenoiser, EpsNetworkDenoiser
from .diffusion.schedule import VPSchedule
from .errors import ZSGuideError
from .surrogate import GaussianSurrogate

PRIOR_KIND = "prior"
PRIOR_FORMAT_VERSION = 1


def prior_checkpoint(
    surrogate: GaussianSurrogate, schedule: VPSchedule, network: dict, data: dict, fit_info: dict
) -> dict:
    """The dictionary a prior file holds (see the module docstring)."""
    return {
        "zsguide": {
            "format_version": PRIOR_FORMAT_VERSION,
            "kind": PRIOR_KIND,
            "image_shape": list(surrogate.shape),
            "value_range": {"network": [-1.0, 1.0], "pixels": [0.0, 1.0]},
            "schedule": schedule.to_dict(),
            "surrogate_digest": surrogate.digest(),
            "network": network,
            "surrogate_fit": fit_info,
        },
        "state_dict": {f"surrogate.{k}": v.detach().cpu() for k, v in surrogate.state_dict().items()},
        "datamodule_hyper_parameters": data,
    }


def is_prior(ckpt: dict) -> bool:
    return ckpt.get("zsguide", {}).get("kind") == PRIOR_KIND


def check_network_file(ckpt: dict, path: str | Path) -> None:
    """Every command that reads a prior file checks its network file(s) here or in :func:`load_prior_module` (the
    same check, :func:`zsguide.networks.check_files`): each must exist with the size and sha256 recorded when the
    prior was made, otherwise one :class:`ZSGuideError` line. A ``fit`` checkpoint holds its weights: nothing to
    check. ``analyze`` and ``tune`` (:func:`zsguide.checkpoint.load_gaussian_prior`) call it although they never
    build the network, so that a prior whose network changed is refused by every command alike."""
    if not is_prior(ckpt):
        return
    from .networks import check_files

    network = ckpt["zsguide"].get("network")
    if not isinstance(network, dict) or not isinstance(network.get("files"), dict):
        raise ZSGuideError(f"prior {str(path)!r} is incomplete or damaged: it describes no network file")
    try:
        check_files(network, path)
    except (KeyError, TypeError) as exc:
        raise ZSGuideError(
            f"prior {str(path)!r} is incomplete or damaged: its network file record lacks {exc}"
        ) from None


class PriorModule(nn.Module):
    """A pretrained eps network with the Gaussian surrogate and VP schedule of its prior file."""

    alphas_cumprod: torch.Tensor

    def __init__(self, net: nn.Module, surrogate: GaussianSurrogate, schedule: VPSchedule) -> None:
        super().__init__()
        self.net = net.requires_grad_(False)
        self.surrogate = surrogate
        self.schedule = schedule
        self.register_buffer("alphas_cumprod", schedule.alphas_cumprod, persistent=False)

    @property
    def device(self) -> torch.device:
        return self.alphas_cumprod.device

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.surrogate.shape

    def network_denoiser(self, ema: bool = True) -> EpsNetworkDenoiser:
        """The pretrained network behind the denoiser interface (``ema`` is accepted for ScoreModule's signature)."""
        return EpsNetworkDenoiser(self.net, self.schedule).to(self.device)

    def analytic_denoiser(self) -> AnalyticDenoiser:
        return AnalyticDenoiser(self.surrogate, self.schedule).to(self.device)


def load_prior_module(ckpt: dict, path: str | Path) -> tuple[PriorModule, dict]:
    """The :class:`PriorModule` of a prior file's dictionary and its metadata (``data`` included)."""
    from .networks import network_from_description

    meta = ckpt["zsguide"]
    if meta.get("format_version") != PRIOR_FORMAT_VERSION:
        raise ZSGuideError(
            f"prior {str(path)!r} has format version {meta.get('format_version')!r}; this zsguide "
            f"reads version {PRIOR_FORMAT_VERSION}"
        )
    try:
        surrogate = GaussianSurrogate(*meta["image_shape"])
        surrogate.load_state_dict({k.removeprefix("surrogate."): v for k, v in ckpt["state_dict"].items()})
        schedule = VPSchedule(**meta["schedule"])
        network = meta["network"]
    except (KeyError, TypeError, RuntimeError) as exc:
        raise ZSGuideError(f"prior {str(path)!r} is incomplete or damaged: {type(exc).__name__}: {exc}") from None
    surrogate.require_fitted()
    net = network_from_description(network, path)  # checks the files first, as check_network_file does
    return PriorModule(net, surrogate, schedule).eval(), meta | {"data": ckpt.get("datamodule_hyper_parameters")}
