"""What a search maximises: a metric of a parameter schedule's restorations of a few validation images.

The validation images come from the prior's *validation* split (the data it was made with: its
``datamodule_hyper_parameters``, or a prior file's surrogate data), never its test split, which ``restore`` and
``evaluate`` score: disjoint by construction (on the shipped patches the two splits are crops of different
photographs, data/patches.py). A draw is ``num_images`` indices of that split chosen by a permutation seeded by
``draw``, so three draws are three different validation sets.

A trial restores every validation image exactly as ``restore`` does (its measurement and the sampler's noise from
``(seed, index)``), in fixed chunks of ``batch_size`` (shared across devices as ``evaluate`` shares them,
runtime/shard.py), and reduces the per-image metrics:

- ``psnr`` (default), ``ssim``: the mean over the images, maximised;
- ``lpips``: the mean LPIPS (AlexNet weights by path), minimised;
- ``psnr_fd``: ``mean PSNR - fd_weight FD``, maximised, FD the Frechet spectral distance between the restorations and
  the validation images (evaluation/perception.py; the trade of distortion against perception).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import ZSGuideError
from ..runtime.shard import chunks

METRICS = {"psnr": "maximize", "ssim": "maximize", "lpips": "minimize", "psnr_fd": "maximize"}
FD_WEIGHT = 1.0  # psnr_fd: dB traded per unit of spectral FD; an unmeasured default, set --fd_weight for your trade


@dataclass(frozen=True)
class Validation:
    """The validation images of a search: ``images`` (N, C, H, W) in [0, 1] and their ``indices`` in the split."""

    images: torch.Tensor
    indices: list[int]
    split: str = "val"
    draw: int = 0


def validation_draw(split_size: int, num_images: int, draw: int) -> list[int]:
    """``num_images`` indices of a split of ``split_size`` images, the first of a permutation seeded by ``draw``,
    sorted."""
    if not 1 <= num_images <= split_size:
        raise ZSGuideError(
            f"--num_images must be within 1 .. {split_size} (the validation split's size), got {num_images}"
        )
    gen = torch.Generator().manual_seed(int(draw))
    return sorted(int(i) for i in torch.randperm(split_size, generator=gen)[:num_images])


def validation_images(
    meta: dict, image_shape: tuple[int, int, int], num_images: int, draw: int, data: Mapping | None = None
) -> Validation:
    """Draw ``draw`` of ``num_images`` images of the validation split of the prior's data (``meta``, overridden by
    ``data`` as ``--data.*``)."""
    from ..data import ImageDataModule
    from ..runtime.heldout import data_options_for

    options = data_options_for(meta, image_shape, data)
    split = ImageDataModule(**options).dataset("val")
    if len(split) == 0:
        raise ZSGuideError(f"the validation split of data set {options.get('name')!r} is empty; a search needs one")
    indices = validation_draw(len(split), int(num_images), int(draw))
    images = torch.stack([split[i]["image"] for i in indices])
    if tuple(images.shape[1:]) != tuple(image_shape):
        raise ZSGuideError(
            f"the validation images are of shape {tuple(images.shape[1:])}, the prior's {image_shape}; pass matching "
            f"--data.image_size / --data.channels"
        )
    return Validation(images, indices, "val", int(draw))


@dataclass(frozen=True)
class Objective:
    """The metric of a search and what it needs."""

    metric: str = "psnr"
    fd_weight: float = FD_WEIGHT
    lpips_weights: str | None = None

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ZSGuideError(f"unknown --metric {self.metric!r}; choose one of {', '.join(METRICS)}")
        if self.metric == "lpips" and self.lpips_weights is None:
            raise ZSGuideError("--metric lpips needs --lpips_weights PATH (a torchvision AlexNet state_dict)")
        if not self.fd_weight >= 0:
            raise ZSGuideError(f"--fd_weight must be >= 0, got {self.fd_weight}")

    @property
    def direction(self) -> str:
        return METRICS[self.metric]


@dataclass
class ShardOutcome:
    """One rank's part of a trial: per image index its metrics, the restorations (for the FD), what it cost, or the
    error that ended it (a diverged sampler: the trial failed) or the stop signal that interrupted it."""

    metrics: dict[int, dict[str, float]] = field(default_factory=dict)
    images: dict[int, torch.Tensor] = field(default_factory=dict)
    network_calls: int = 0
    vjps: int = 0
    error: str | None = None
    stopped: int | None = None


def restore_shard(
    prior: Any,
    validation: Validation,
    positions: Sequence[int],
    *,
    task: str,
    sampler: str,
    params: Any,
    sigma_y: float,
    seed: int,
    denoiser: str = "network",
    noise_convention: str = "pixel",
    task_params: Mapping | None = None,
    lpips_net: torch.nn.Module | None = None,
    keep_images: bool = False,
    batch_size: int = 16,
) -> ShardOutcome:
    """Restore the validation images at ``positions`` (in fixed chunks of ``batch_size``) with ``params`` and
    score them (``psnr``, ``ssim``, ``mse`` of the clipped restoration, ``mse_unclipped``, ``lpips`` with a net)."""
    from ..api import measure, restore
    from ..evaluation.metrics import image_metrics, lpips_per_image
    from ..samplers.cost import Cost, CountingDenoiser

    out = ShardOutcome()
    network = prior.denoiser(denoiser)
    for chunk in chunks(list(positions), batch_size):
        truth = validation.images[list(chunk)]
        idx = [validation.indices[p] for p in chunk]
        m = measure(
            truth.to(prior.device, prior.dtype),
            task,
            sigma_y,
            seed,
            idx,
            noise_convention=noise_convention,
            check_range=prior.clipped,
            **dict(task_params or {}),
        )
        cost = Cost()  # counted outside restore, so a run that diverges still reports what it spent
        try:
            r = restore(prior, m, sampler, params=params, seed=seed, denoiser=CountingDenoiser(network, cost))
        except ZSGuideError as exc:  # a diverged or NaN run: the trial fails, the search goes on
            out.error = str(exc)
            return out
        finally:
            out.network_calls += cost.network_calls * len(idx)
            out.vjps += cost.vjps * len(idx)
        restored, truth = r.images.detach().cpu().float(), truth.float()
        scores = image_metrics(restored, truth, clip=prior.clipped)
        if lpips_net is not None:
            scores["lpips"] = lpips_per_image(lpips_net, restored.clamp(0, 1) if prior.clipped else restored, truth)
        for j, i in enumerate(idx):
            out.metrics[i] = {k: float(v[j]) for k, v in scores.items()}
            if keep_images:
                out.images[i] = restored[j].clamp(0, 1) if prior.clipped else restored[j]
    return out


def combine(parts: Sequence[ShardOutcome], objective: Objective, validation: Validation) -> dict[str, Any]:
    """The trial's value from every rank's part: ``{"value", "metrics" (per index, in index order), "network_calls",
    "vjps"}``; a part's error raises :class:`ZSGuideError` (the trial failed). The reduction runs over the images in
    index order, so its value does not depend on how the images were shared out."""
    from ..evaluation.perception import spectral_frechet_distance
    from ..runtime.signals import Stopped
    from .study import TrialFailed

    for part in parts:
        if part.stopped is not None:
            raise Stopped(part.stopped)
    errors = [p.error for p in parts if p.error is not None]
    if errors:
        spent = {"network_calls": sum(p.network_calls for p in parts), "vjps": sum(p.vjps for p in parts)}
        raise TrialFailed(errors[0], spent)
    metrics: dict[int, dict[str, float]] = {}
    images: dict[int, torch.Tensor] = {}
    for part in parts:
        metrics.update(part.metrics)
        images.update(part.images)
    order = sorted(metrics)
    if order != sorted(validation.indices):
        raise ZSGuideError(f"a trial scored images {order}, not the validation images {sorted(validation.indices)}")

    def mean(key: str) -> float:
        return sum(metrics[i][key] for i in order) / len(order)

    summary = {k: mean(k) for k in metrics[order[0]]}
    if objective.metric == "psnr_fd":
        truths = validation.images[[validation.indices.index(i) for i in order]].float()
        summary["fd"] = spectral_frechet_distance(torch.stack([images[i] for i in order]), truths)
        value = summary["psnr"] - objective.fd_weight * summary["fd"]
    else:
        value = summary[objective.metric]
    return {
        "value": float(value),
        "summary": summary,
        "metrics": {i: metrics[i] for i in order},
        "network_calls": sum(p.network_calls for p in parts),
        "vjps": sum(p.vjps for p in parts),
    }
