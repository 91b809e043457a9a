"""A network-in-the-loop search of one sampler's parameters for a prior, task, step count and noise level, on 1..N
processes: :func:`search` (what ``python -m zsguide search`` runs; docs/search.md).

Rank 0 runs the study (study.py); each trial's schedule goes to every rank, each restores its share of the
validation images (fixed chunks of ``batch_size``, chunk ``j`` on rank ``j mod W``, as ``evaluate`` shares its
batches), and rank 0 gathers the per-image metrics and reduces them in image order (objective.py). An image's
restoration depends only on ``(seed, index)`` and its chunk, never on the number of processes, so 1 and 2 devices
give the same trial values and the same study.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ZSGuideError
from ..runtime.shard import chunks
from ..runtime.signals import Stopped
from ..samplers import get_sampler
from ..samplers.base import ParamSchedule
from ..spectral.options import DesignOptions
from .objective import Objective, ShardOutcome, Validation, combine, restore_shard
from .space import SPACES, SearchSpace
from .study import STARTUP_TRIALS, SearchResult, TrialRecord, run_study


class LocalShards:
    """One process: every chunk is this rank's."""

    rank, world_size = 0, 1

    def broadcast(self, obj: Any) -> Any:
        return obj

    def gather(self, obj: Any) -> list[Any]:
        return [obj]


class DistributedShards:
    """The ranks of an initialised ``torch.distributed`` group (a Lightning Fabric's): rank 0 sends, all gather."""

    def __init__(self) -> None:
        import torch.distributed as dist

        self._dist = dist
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()

    def broadcast(self, obj: Any) -> Any:
        box = [obj]
        self._dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any) -> list[Any]:
        out: list[Any] = [None] * self.world_size
        self._dist.all_gather_object(out, obj)
        return out


@dataclass(frozen=True)
class SearchSettings:
    """What a search is of (its study's identity, with the prior and the validation images): the sampler, the task
    (and its parameters), the step count, the noise, the space (``peers`` or ``design``, the latter designed with
    ``design``), the metric, the seed of the measurements, the sampler's noise and the optimiser, the denoiser."""

    sampler: str
    task: str
    steps: int = 20
    sigma_y: float = 0.02
    space: str = "design"
    objective: Objective = Objective()
    seed: int = 0
    denoiser: str = "network"
    noise_convention: str = "pixel"
    task_params: dict = field(default_factory=dict)
    design: DesignOptions = DesignOptions()
    startup_trials: int = STARTUP_TRIALS

    def identity(self) -> dict:
        """The settings as plain data (params.json's provenance, the study's identity)."""
        return asdict(self)


def search_space(prior: Any, settings: SearchSettings, validation: Validation) -> SearchSpace:
    """The space of ``settings.space`` around the sampler's heuristic (``peers``) or its spectral design
    (``design``: designed as ``restore --params spectral`` designs, on the first validation image's operator)."""
    from ..operators import make_operator
    from ..parameters import param_schedule
    from ..restoration import network_sigma

    if settings.space not in SPACES:
        raise ZSGuideError(f"unknown --space {settings.space!r}; choose one of {', '.join(SPACES)}")
    sampler = get_sampler(settings.sampler)
    if not sampler.knob_specs:
        raise ZSGuideError(f"sampler {sampler.name} has no knobs to search")
    source = "heuristic" if settings.space == "peers" else "spectral"
    operator = make_operator(
        settings.task, prior.image_shape, settings.seed, validation.indices[:1], **settings.task_params
    )
    base, _ = param_schedule(
        source,
        sampler,
        prior.module,
        operator,
        network_sigma(settings.sigma_y, settings.noise_convention),
        task=settings.task,
        steps=settings.steps,
        design=settings.design,
        ckpt_path=str(prior.path),
        option="--space design",
    )
    return SPACES[settings.space](sampler, base)


def search(
    prior: Any,
    settings: SearchSettings,
    validation: Validation,
    *,
    trials: int = 30,
    network_calls: int | None = None,
    storage: str | Path | None = None,
    batch_size: int = 16,
    shards: LocalShards | DistributedShards | None = None,
    on_trial: Callable[[TrialRecord, int], None] | None = None,
    lpips_net: Any = None,
) -> SearchResult | None:
    """Search ``settings.sampler``'s parameters on ``validation`` with the prior (:class:`zsguide.api.Prior`) for at
    most ``trials`` trials and ``network_calls`` network calls (forward evaluations, summed over the images); the
    study is kept in ``storage`` (SQLite, resumable) when given. Every rank of ``shards`` calls it; rank 0 gets the
    :class:`SearchResult` (``result.params(k)``: the best schedule of the first ``k`` trials), the others None."""
    shards = shards or LocalShards()
    space = search_space(prior, settings, validation)
    if batch_size < 1:
        raise ZSGuideError(f"--batch_size must be >= 1, got {batch_size}")
    share = chunks(list(range(len(validation.indices))), batch_size)[shards.rank :: shards.world_size]
    positions = [p for chunk in share for p in chunk]  # this rank's chunks, whole: the same batches on any W

    def shard(params: ParamSchedule) -> ShardOutcome:
        try:
            return _restore(params)
        except Stopped as exc:  # every rank still reaches the gather, and the study stops on rank 0
            return ShardOutcome(stopped=exc.signum)

    def _restore(params: ParamSchedule) -> ShardOutcome:
        return restore_shard(
            prior,
            validation,
            positions,
            task=settings.task,
            sampler=settings.sampler,
            params=params,
            sigma_y=settings.sigma_y,
            seed=settings.seed,
            denoiser=settings.denoiser,
            noise_convention=settings.noise_convention,
            task_params=settings.task_params,
            lpips_net=lpips_net,
            keep_images=settings.objective.metric == "psnr_fd",
            batch_size=batch_size,
        )

    if shards.rank != 0:
        while (message := shards.broadcast(None)) is not None:
            shards.gather(shard(ParamSchedule.from_dict(message)))
        return None

    def evaluate(params: ParamSchedule) -> dict:
        shards.broadcast(params.to_dict())
        return combine(shards.gather(shard(params)), settings.objective, validation)

    try:
        return run_study(
            space,
            evaluate,
            trials=trials,
            direction=settings.objective.direction,
            network_calls=network_calls,
            storage=storage,
            identity={
                "settings": settings.identity(),
                "validation": {"split": validation.split, "draw": validation.draw, "indices": validation.indices},
                "batch_size": int(batch_size),
            },
            seed=settings.seed,
            startup_trials=settings.startup_trials,
            on_trial=on_trial,
        )
    finally:
        shards.broadcast(None)  # the other ranks leave their loop, also when the study stopped on an error


def provenance(
    settings: SearchSettings,
    validation: Validation,
    result: SearchResult,
    prior_path: str,
    budget: dict | None = None,
) -> dict:
    """What a searched params.json records beside the space and the spend: the search's settings, its budget
    (``{"trials", "network_calls"}`` as asked) and its validation images."""
    return {
        "prior": prior_path,
        "budget": dict(budget or {}),
        "settings": settings.identity(),
        "validation": {"split": validation.split, "draw": validation.draw, "indices": list(validation.indices)},
        "stopped_by": result.stopped_by,
        "direction": result.direction,
    }
