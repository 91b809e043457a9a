"""The parameter schedule of a run: the sampler's heuristic, a spectral design, or a params.json from an earlier run.

Used by ``restore`` (one schedule per run) and ``evaluate`` (one per grid cell), so both resolve ``--params`` the same
way:

- ``heuristic``: ``sampler.heuristic(task, steps, schedule, spacing)``, the peers' hand-set defaults (docs/peers.md),
  ``steps`` defaulting to :data:`DEFAULT_STEPS`;
- ``spectral``: that heuristic's knobs designed on the checkpoint's Gaussian surrogate for this operator and noise
  (:func:`zsguide.spectral.service.designed_schedule`, cached), inside the trust region ``trust_factor`` (resolved by
  :func:`~zsguide.spectral.service.resolve_trust_factor`: None -> the default factor, ``none`` -> unconstrained), with
  the Pareto guard when ``pareto_guard``, minimising ``objective`` (w2, mse, perception or pareto; design.py), for
  the Wiener denoiser or, with ``denoiser_model`` ``calibrated``, the network's calibration (``calibration``,
  default: the one next to ``ckpt_path``; spectral/denoiser_model.py). The oracle is exact as it is, so its "design" is its heuristic;
- a path: a ``params.json`` checked against the sampler, the task, ``steps`` / ``spacing`` when given, and the
  checkpoint's timesteps.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ZSGuideError

DEFAULT_STEPS = 20  # DDRM's README default (docs/peers.md); the heuristic's step count when --steps is not given


@dataclass(frozen=True)
class DesignOptions:
    """How ``spectral`` designs (the module docstring): restore's ``--trust_factor``, ``--pareto_guard``,
    ``--objective``, ``--denoiser_model`` and ``--calibration``, or one of evaluate's ``grid.params`` entries."""

    trust_factor: Any = None  # as the command line takes it: None -> the default factor, "none" -> unconstrained
    pareto_guard: bool = False
    objective: str = "w2"
    denoiser_model: str = "gaussian"
    calibration: str | None = None  # None: the calibration next to the checkpoint (denoiser_model calibrated)


def param_schedule(
    source: str,
    sampler,
    module,
    operator,
    sigma_net: float,
    *,
    task: str,
    steps: int | None = None,
    spacing: str | None = None,
    design: DesignOptions = DesignOptions(),
    ckpt_path: str | None = None,
    option: str = "--params",
):
    """``(ParamSchedule, params_source)`` for ``source`` (heuristic, spectral or a params.json path); bad input is one
    :class:`ZSGuideError` line that names ``option``."""
    from ..samplers import ParamSchedule

    schedule = module.schedule
    if source in ("heuristic", "spectral"):
        n = DEFAULT_STEPS if steps is None else int(steps)
        heuristic = sampler.heuristic(task, n, schedule, spacing=spacing)
        if source == "heuristic":
            return heuristic, "heuristic"
        return _designed(sampler, module, operator, sigma_net, heuristic, task, design, ckpt_path, option), "spectral"
    path = Path(source)
    if not path.is_file():
        raise ZSGuideError(f"{option} {source!r} is neither 'heuristic', 'spectral' nor an existing params.json")
    params = ParamSchedule.load(path)
    sampler.check_params(params)
    if params.task != task:
        raise ZSGuideError(f"parameter file {str(path)!r} is for task {params.task!r}, not {task!r}")
    if steps is not None and int(steps) != params.steps:
        raise ZSGuideError(f"parameter file {str(path)!r} has {params.steps} steps, but --steps is {steps}")
    if spacing is not None and spacing != params.spacing:
        raise ZSGuideError(f"parameter file {str(path)!r} has {params.spacing!r} spacing, but --spacing is {spacing!r}")
    T = schedule.num_timesteps
    if any(not 0 <= t < T for t in params.timesteps) or any(
        a <= b for a, b in zip(params.timesteps, params.timesteps[1:])
    ):
        raise ZSGuideError(f"parameter file {str(path)!r}: timesteps must decrease strictly within 0 .. {T - 1}")
    return params, str(path)


def _designed(sampler, module, operator, sigma_net, heuristic, task, design: DesignOptions, ckpt_path, option):
    from ..spectral.denoiser_model import denoiser_model_for
    from ..spectral.service import designed_schedule, resolve_trust_factor

    if not sampler.designable:  # the oracle: exact as it is
        heuristic.provenance = {"source": "spectral", "objective": "exact already (the oracle)"}
        return heuristic
    try:
        denoiser = denoiser_model_for(design.denoiser_model, module.surrogate, ckpt_path, design.calibration)
        return designed_schedule(
            module.surrogate,
            operator,
            sigma_net,
            module.schedule,
            heuristic,
            task,
            trust=resolve_trust_factor(design.trust_factor),
            guard=design.pareto_guard,
            objective=design.objective,
            denoiser=denoiser,
        ).params
    except ZSGuideError as exc:
        raise ZSGuideError(f"{option} spectral: {exc}") from None
