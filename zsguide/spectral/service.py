"""Designed schedules on demand: what ``restore --params spectral``, ``analyze`` and ``tune`` share.

:func:`designed_schedule` builds the block problem, designs on it (design.py; on the grouped problem for large blur
images, judged again on the exact one), records the provenance and keeps the result in the design cache (cache.py:
the key, the files and the warm starts across step counts). The command lines' design options are
checked and resolved in options.py (:class:`~zsguide.spectral.options.DesignOptions`).

Operators drawn per image (random masks, motion kernels) are designed on the first image's operator: for random
masks the statistics are the same for every image; for motion blur it is one representative kernel (recorded in the
provenance).
"""

from __future__ import annotations

import math

from ..errors import ZSGuideError
from ..samplers import get_sampler, sampler_names
from ..samplers.base import ParamSchedule
from .cache import cache_path, design_keys, neighbour_theta, read_design, write_design
from .design import GUARD_TOLERANCE, GUARDED, DesignResult, design, objective_criterion
from .options import resolve_objective
from .problem import BlockProblem, problem_for

GROUP_ABOVE = 3 * 32 * 32  # blur problems with more blocks are designed on their grouped form (problem.grouped)


def block_problem(surrogate, operator, sigma_net: float, denoiser=None) -> BlockProblem:
    """The spectral engine's problem for ``operator`` (problem.py), with ``denoiser`` a calibrated denoiser model
    (denoiser_model.py; None: the Wiener denoiser)."""
    return problem_for(surrogate, operator, sigma_net, denoiser=denoiser)


def _check_on_exact(
    result: DesignResult,
    problem: BlockProblem,
    criteria,
    heuristic: ParamSchedule,
    schedule,
    mse_weight: float,
    guard: bool,
    criterion: str = "avg_w2",
) -> None:
    """A design made on the grouped problem, judged on the exact one: its quoted criteria are the exact problem's,
    and it falls back to the heuristic unless it is better there on its objective (``criterion`` + mse_weight MSE;
    with the guard, also no more than GUARD_TOLERANCE past the heuristic's MSE and perception W2), the rule design()
    applies on its own problem."""
    from .criteria import Criteria
    from .transfer import transfer

    exact = criteria if criteria is not None else Criteria(problem)
    for label, params in (("heuristic", heuristic), ("designed", result.params)):
        c = exact(transfer(heuristic.method, problem, params, schedule.alphas_cumprod))
        setattr(result, label, {k: float(v) for k, v in c.items()})
    h, d = result.heuristic, result.designed
    breach = guard and any(d[k] > h[k] * (1 + GUARD_TOLERANCE) for k in GUARDED)
    if breach or not d[criterion] + mse_weight * d["mse"] < h[criterion] + mse_weight * h["mse"]:
        result.params.values = {k: list(v) for k, v in heuristic.values.items()}
        result.designed = dict(h)
        result.theta = {k: [0.0] * len(v) for k, v in result.theta.items()}


def designed_schedule(
    surrogate,
    operator,
    sigma_net: float,
    schedule,
    heuristic: ParamSchedule,
    task: str,
    *,
    mse_weight: float = 0.0,
    degree: int = 3,
    use_cache: bool = True,
    problem: BlockProblem | None = None,
    criteria=None,
    bands: int = 0,
    trust: float | None = None,
    guard: bool = False,
    denoiser=None,
    objective: str = "w2",
) -> DesignResult:
    """The designed schedule for ``heuristic``'s sampler and steps (from the cache when it is there). ``bands`` > 0:
    the per-frequency variant (DiffPIR's ``lam`` per radial band on circulant operators), warm-started from the
    scalar design. ``trust`` (> 1): every knob within that factor of its heuristic (design.py); None here is the
    unconstrained design (the command lines' default, DEFAULT_TRUST_FACTOR, is applied by resolve_trust_factor).
    ``guard``: the Pareto guard (MSE and perception W2 no worse than the heuristic's; design.py). ``denoiser``: a
    calibrated denoiser model (denoiser_model.py) the closed forms assume in place of the Wiener denoiser (ignored
    when ``problem`` is given: the problem carries its own); it enters the cache key. ``objective``: the criterion
    minimised, w2 (avg W2), mse, perception or pareto (avg W2 under the guard); design.py."""
    designable = sampler_names(designable=True)  # the registry now, registered samplers included
    if heuristic.method not in designable:
        raise ZSGuideError(
            f"spectral design has no knobs to design for sampler {heuristic.method!r}; "
            f"choose one of {', '.join(designable)}"
        )
    problem = problem if problem is not None else block_problem(surrogate, operator, sigma_net, denoiser)
    per_band = [k.name for k in get_sampler(heuristic.method).knob_specs if k.per_band]
    if bands and (not per_band or problem.structure != "fourier_diagonal"):
        per_band_knobs = ", ".join(
            f"{n}'s {k.name}" for n in designable for k in get_sampler(n).knob_specs if k.per_band
        )
        raise ZSGuideError(
            f"per-frequency design (frequency_bands {bands}) exists for {per_band_knobs} on blur "
            f"tasks, not for {heuristic.method} on a {problem.structure} operator"
        )
    if trust is not None and not (math.isfinite(trust) and trust > 1):
        raise ZSGuideError(
            f"trust factor must be a finite number > 1 (a knob within that factor of its heuristic), got {trust!r}"
        )
    criterion = objective_criterion(resolve_objective(objective, "design objective"))
    guard = guard or objective == "pareto"
    family, key = design_keys(
        surrogate, problem, schedule, heuristic, mse_weight, degree, bands, trust, guard, objective
    )
    path = cache_path(heuristic.method, task, heuristic.steps, family, key)
    if use_cache and path.is_file():
        d = read_design(path)
        if d is not None:
            return DesignResult(d["params"], d["heuristic"], d["designed"], d.get("theta", {}))
    warm = neighbour_theta(heuristic.method, task, family, heuristic.steps) if use_cache else None
    if bands and warm is None:  # start from the scalar design, broadcast over the bands
        scalar = designed_schedule(
            surrogate,
            operator,
            sigma_net,
            schedule,
            heuristic,
            task,
            mse_weight=mse_weight,
            degree=degree,
            use_cache=use_cache,
            problem=problem,
            criteria=criteria,
            trust=trust,
            guard=guard,
            objective=objective,
        )
        warm = {"steps": f"{heuristic.steps} (scalar design)", "theta": scalar.theta}
    grouped = (
        problem.structure == "fourier_diagonal"
        and problem.num_blocks > GROUP_ABOVE
        and not bands
        and problem.denoiser is None
    )
    on = problem.grouped() if grouped else problem
    result = design(
        heuristic.method,
        on,
        heuristic,
        schedule.alphas_cumprod,
        mse_weight=mse_weight,
        degree=degree,
        warm_theta=warm["theta"] if warm else None,
        criteria=None if grouped else criteria,
        bands={k: bands for k in per_band} if bands else None,
        trust=trust,
        guard=guard,
        objective=objective,
    )
    if grouped:
        _check_on_exact(result, problem, criteria, heuristic, schedule, mse_weight, guard, criterion)
        result.params.provenance["designed_on"] = (
            f"the grouped problem: {on.num_blocks} weighted blocks of nearly "
            f"equal (lambda, s) for the {problem.num_blocks} frequencies "
            f"(problem.grouped); predictions exact"
        )
    result.params.provenance["warm_start_candidates"] = ["heuristic"] + (
        [f"design at {warm['steps']} steps"] if warm else []
    )
    result.params.provenance.update(
        {
            "surrogate_digest": surrogate.digest(),
            "sigma_network": float(sigma_net),
            "denoiser_model": "gaussian" if problem.denoiser is None else "calibrated",
            "calibration": None
            if problem.denoiser is None
            else {"file": problem.denoiser.source, "digest": problem.denoiser.digest},
            "cache_key": key,
            "predicted_heuristic": result.heuristic,
            "predicted_designed": result.designed,
        }
    )
    if getattr(operator, "batch_size", 1) > 1:
        result.params.provenance["operator"] = "designed on the first image's operator (drawn per image)"
    if use_cache:
        write_design(path, result)
    return result
