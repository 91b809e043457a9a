"""The parameter schedule of a run: the sampler's heuristic, a spectral design, or a params.json from an earlier run.

Used by ``restore`` (one schedule per run), ``evaluate`` (one per grid cell) and the Python API, so all resolve
``--params`` the same way:

- ``heuristic``: ``sampler.heuristic(task, steps, schedule, spacing)``, the peers' hand-set defaults (docs/peers.md),
  ``steps`` defaulting to :data:`DEFAULT_STEPS`;
- ``spectral``: that heuristic's knobs designed on the prior's Gaussian surrogate for this operator and noise
  (:func:`zsguide.spectral.service.designed_schedule`, cached) with the design options ``design``
  (:class:`~zsguide.spectral.options.DesignOptions`: the trust region, the Pareto guard, the objective, and the
  denoiser the closed forms assume: the Wiener denoiser or, with ``denoiser_model`` ``calibrated``, the network's
  calibration, ``calibration`` or by default the one next to ``ckpt_path``; spectral/denoiser_model.py). The oracle
  is exact as it is, so its "design" is its heuristic;
- a path: a ``params.json`` checked against the sampler, the task, ``steps`` / ``spacing`` when given, and the
  prior's timesteps.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from .errors import ZSGuideError
from .operators.base import LinearOperator
from .samplers.base import ParamSchedule, Sampler
from .spectral.options import DesignOptions

if TYPE_CHECKING:
    from .diffusion.schedule import VPSchedule
    from .surrogate import GaussianSurrogate

DEFAULT_STEPS = 20  # DDRM's README default (docs/peers.md); the heuristic's step count when --steps is not given


class SurrogatePrior(Protocol):
    """What a schedule is designed on: a prior's Gaussian surrogate and VP schedule (a ``ScoreModule``, a
    ``PriorModule`` or :class:`~zsguide.checkpoint.GaussianPrior`)."""

    @property
    def surrogate(self) -> GaussianSurrogate: ...

    @property
    def schedule(self) -> VPSchedule: ...


def param_schedule(
    source: str,
    sampler: Sampler,
    prior: SurrogatePrior,
    operator: LinearOperator,
    sigma_net: float,
    *,
    task: str,
    steps: int | None = None,
    spacing: str | None = None,
    design: DesignOptions = DesignOptions(),
    ckpt_path: str | None = None,
    option: str = "--params",
) -> tuple[ParamSchedule, str]:
    """``(ParamSchedule, params_source)`` for ``source`` (heuristic, spectral or a params.json path) on ``prior``'s
    surrogate and schedule; bad input is one :class:`ZSGuideError` line that names ``option``."""
    schedule = prior.schedule
    if source in ("heuristic", "spectral"):
        n = DEFAULT_STEPS if steps is None else int(steps)
        heuristic = sampler.heuristic(task, n, schedule, spacing=spacing)
        if source == "heuristic":
            return heuristic, "heuristic"
        return _designed(sampler, prior, operator, sigma_net, heuristic, task, design, ckpt_path, option), "spectral"
    path = Path(source)
    if not path.is_file():
        raise ZSGuideError(f"{option} {source!r} is neither 'heuristic', 'spectral' nor an existing params.json")
    params = ParamSchedule.load(path)
    check_schedule(
        params, sampler, schedule, task=task, steps=steps, spacing=spacing, what=f"parameter file {str(path)!r}"
    )
    return params, str(path)


def record_design_inputs(params: ParamSchedule, task_params: dict, sigma_y: float, noise_convention: str) -> None:
    """What a designed schedule (``tune``, the API's ``design``) records of the measurement it was designed for, in
    its provenance: the task parameters, ``sigma_y`` and its convention."""
    params.provenance.update(
        {"task_params": dict(task_params), "sigma_y": sigma_y, "noise_convention": noise_convention}
    )


def check_schedule(
    params: ParamSchedule,
    sampler: Sampler,
    schedule: VPSchedule,
    *,
    task: str,
    steps: int | None = None,
    spacing: str | None = None,
    what: str = "parameter schedule",
    option: str = "--",
) -> None:
    """A given schedule (a params.json, or a :class:`ParamSchedule` handed to the Python API) must be ``sampler``'s,
    for ``task``, with ``steps`` / ``spacing`` when those are given, and timesteps that decrease strictly within the
    prior's schedule; each failure is one :class:`ZSGuideError` line naming ``what`` (``option`` prefixes the names
    of the options it is compared with: ``--steps`` on the command line, ``steps`` in the API)."""
    sampler.check_params(params)
    if params.task != task:
        raise ZSGuideError(f"{what} is for task {params.task!r}, not {task!r}")
    if steps is not None and int(steps) != params.steps:
        raise ZSGuideError(f"{what} has {params.steps} steps, but {option}steps is {steps}")
    if spacing is not None and spacing != params.spacing:
        raise ZSGuideError(f"{what} has {params.spacing!r} spacing, but {option}spacing is {spacing!r}")
    T = schedule.num_timesteps
    if any(not 0 <= t < T for t in params.timesteps) or any(
        a <= b for a, b in zip(params.timesteps, params.timesteps[1:])
    ):
        raise ZSGuideError(f"{what}: timesteps must decrease strictly within 0 .. {T - 1}")


def _designed(
    sampler: Sampler,
    prior: SurrogatePrior,
    operator: LinearOperator,
    sigma_net: float,
    heuristic: ParamSchedule,
    task: str,
    design: DesignOptions,
    ckpt_path: str | None,
    option: str,
) -> ParamSchedule:
    from .spectral.denoiser_model import denoiser_model_for
    from .spectral.service import designed_schedule

    if not sampler.closed_form:  # RED-diff with Adam: nothing to design with
        raise ZSGuideError(
            f"{option} spectral: sampler {sampler.name} has no closed form ({sampler.no_law_reason or 'no law'}); "
            f"run it with heuristic parameters or a params.json"
        )
    if not sampler.designable:  # the oracle: exact as it is
        heuristic.provenance = {"source": "spectral", "objective": "exact already (the oracle)"}
        return heuristic
    try:
        denoiser = denoiser_model_for(design.denoiser_model, prior.surrogate, ckpt_path, design.calibration)
        return designed_schedule(
            prior.surrogate,
            operator,
            sigma_net,
            prior.schedule,
            heuristic,
            task,
            denoiser=denoiser,
            **design.resolved(),
        ).params
    except ZSGuideError as exc:
        raise ZSGuideError(f"{option} spectral: {exc}") from None
