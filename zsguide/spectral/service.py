"""Designed schedules on demand, cached: what ``restore --params spectral``, ``analyze`` and ``tune`` share.

A design is a pure function of (surrogate, operator, sigma, VP schedule, sampler, steps, spacing, objective), so it is
cached under a key hashing exactly those: the surrogate digest, the block problem the operator defines (its singular
values, measured coordinates, structure and any dimension reduction), sigma (network units), the schedule's
parameters, the sampler, its heuristic timesteps and values (the warm start), the objective (its criterion and MSE
weight), the parameterisation degree, the trust region and the Pareto guard. Designs of the same problem at other step counts share a "family" hash; the nearest one's
coefficients are the second warm start (design.py; the better start is used, and the provenance lists the candidates,
so a design can depend on which neighbours were cached). The cache is a folder of JSON files (``$ZSGUIDE_CACHE/designs``, default
``~/.cache/zsguide/designs``); a corrupt entry is ignored and rewritten.

Operators drawn per image (random masks, motion kernels) are designed on the first image's operator: for random
masks the statistics are the same for every image; for motion blur it is one representative kernel (recorded in the
provenance).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import torch

from ..errors import ZSGuideError
from ..samplers import get_sampler, sampler_names
from ..samplers.base import ParamSchedule
from .design import GUARD_TOLERANCE, GUARDED, OBJECTIVES, DesignResult, design, objective_criterion
from .options import DEFAULT_TRUST_FACTOR
from .problem import BlockProblem, problem_for

ENGINE_VERSION = 2  # bump when the closed forms or the designer change what a design is
GROUP_ABOVE = 3 * 32 * 32  # blur problems with more blocks are designed on their grouped form (problem.grouped)
DESIGNABLE = sampler_names(designable=True)


UNCONSTRAINED = ("none", "inf", "unconstrained")


def resolve_trust_factor(value, option: str = "--trust_factor") -> float | None:
    """A command line's trust factor as ``design(trust=...)`` takes it: left out (None) -> DEFAULT_TRUST_FACTOR;
    ``none`` / ``inf`` / ``unconstrained`` -> None (the unconstrained optimum for the surrogate); a number > 1 -> itself.
    Anything else is a one-line error naming the option and the value."""
    if value is None:
        return DEFAULT_TRUST_FACTOR
    given = value
    if isinstance(value, str):
        if value.strip().lower() in UNCONSTRAINED:
            return None
        try:
            value = float(value)
        except ValueError:
            value = math.nan
    if isinstance(value, (int, float)) and math.isinf(value) and value > 0:
        return None
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 1):
        raise ZSGuideError(f"{option} must be a number > 1 (every knob within that factor of its heuristic) or "
                           f"'none' for an unconstrained design, got {given!r}")
    return float(value)


def resolve_objective(value, option: str = "--objective") -> str:
    """A command line's design objective (design.py: w2, mse, perception or pareto); anything else is a one-line
    error naming the option and the value."""
    if value not in OBJECTIVES:
        raise ZSGuideError(f"{option} must be one of {', '.join(OBJECTIVES)} (the closed-form criterion the design "
                           f"minimises), got {value!r}")
    return str(value)


def cache_dir() -> Path:
    return Path(os.environ.get("ZSGUIDE_CACHE", Path.home() / ".cache" / "zsguide")) / "designs"


def block_problem(surrogate, operator, sigma_net: float, denoiser=None) -> BlockProblem:
    """The spectral engine's problem for ``operator`` (problem.py), with ``denoiser`` a calibrated denoiser model
    (denoiser_model.py; None: the Wiener denoiser)."""
    return problem_for(surrogate, operator, sigma_net, denoiser=denoiser)


def _digest(parts: dict, tensors: list[torch.Tensor]) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    h.update(json.dumps(parts, sort_keys=True).encode())
    return h.hexdigest()[:16]


def design_keys(surrogate, problem: BlockProblem, schedule, heuristic: ParamSchedule, mse_weight: float,
                degree: int, bands: int = 0, trust: float | None = None, guard: bool = False,
                objective: str = "w2") -> tuple[str, str]:
    """``(family, key)``: the family ignores the step count (for warm starts across step counts). A trust region,
    the Pareto guard and a criterion other than avg W2 enter the key only when set, so earlier designs keep their
    keys (``pareto`` is the W2 criterion with the guard: the same key as ``--pareto_guard true``)."""
    parts: dict = {"trust_factor": float(trust)} if trust is not None else {}
    criterion = objective_criterion(objective)
    if guard or objective == "pareto":
        parts["pareto_guard"] = True
    if criterion != "avg_w2":
        parts["criterion"] = criterion
    if problem.denoiser is not None:
        parts["denoiser_model"] = problem.denoiser.digest
    family = _digest({**parts, "surrogate": surrogate.digest(), "sigma": round(problem.sigma, 12), "structure": problem.structure,
                      "grid": list(problem.grid), "factor": problem.factor, "note": problem.note,
                      "schedule": schedule.to_dict(), "method": heuristic.method, "spacing": heuristic.spacing,
                      "mse_weight": mse_weight, "degree": degree, "engine": ENGINE_VERSION,
                      "origin": list(problem.origin), "frequency_bands": bands},
                     [problem.s.to(torch.float64), problem.s_eff.to(torch.float64), problem.measured,
                      problem.Sigma.to(torch.complex128)])
    key = _digest({"family": family, "steps": heuristic.steps, "timesteps": heuristic.timesteps,
                   "warm": heuristic.values}, [])
    return family, key


def _read(path: Path) -> dict | None:
    try:
        d = json.loads(path.read_text())
        d["params"] = ParamSchedule.from_dict(d["params"])
        d["heuristic"] = {k: float(v) for k, v in d["heuristic"].items()}
        d["designed"] = {k: float(v) for k, v in d["designed"].items()}
        d["theta"] = {k: [float(x) for x in v] for k, v in d.get("theta", {}).items()}
        return d
    except (OSError, ValueError, KeyError, TypeError, AttributeError, ZSGuideError):
        return None  # a corrupt entry: design again and overwrite it


def _neighbour_theta(method: str, task: str, family: str, steps: int) -> dict | None:
    """Coefficients of the cached design of the same family at the nearest other step count."""
    best = None
    for path in cache_dir().glob(f"{method}-{task}-*-{family}-*.json"):
        try:
            n = int(path.name.split("-")[-3])
        except ValueError:
            continue
        if n != steps and (best is None or (abs(n - steps), n) < (abs(best[0] - steps), best[0])):
            best = (n, path)
    if best is None:
        return None
    d = _read(best[1])
    return None if d is None else {"steps": best[0], "theta": d["theta"]}


def _check_on_exact(result: DesignResult, problem: BlockProblem, criteria, heuristic: ParamSchedule, schedule,
                    mse_weight: float, guard: bool, criterion: str = "avg_w2") -> None:
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


def designed_schedule(surrogate, operator, sigma_net: float, schedule, heuristic: ParamSchedule, task: str, *,
                      mse_weight: float = 0.0, degree: int = 3, use_cache: bool = True,
                      problem: BlockProblem | None = None, criteria=None, bands: int = 0,
                      trust: float | None = None, guard: bool = False, denoiser=None,
                      objective: str = "w2") -> DesignResult:
    """The designed schedule for ``heuristic``'s sampler and steps (from the cache when it is there). ``bands`` > 0:
    the per-frequency variant (DiffPIR's ``lam`` per radial band on circulant operators), warm-started from the
    scalar design. ``trust`` (> 1): every knob within that factor of its heuristic (design.py); None here is the
    unconstrained design (the command lines' default, DEFAULT_TRUST_FACTOR, is applied by resolve_trust_factor).
    ``guard``: the Pareto guard (MSE and perception W2 no worse than the heuristic's; design.py). ``denoiser``: a
    calibrated denoiser model (denoiser_model.py) the closed forms assume in place of the Wiener denoiser (ignored
    when ``problem`` is given: the problem carries its own); it enters the cache key. ``objective``: the criterion
    minimised, w2 (avg W2), mse, perception or pareto (avg W2 under the guard); design.py."""
    if heuristic.method not in DESIGNABLE:
        raise ZSGuideError(f"spectral design has no knobs to design for sampler {heuristic.method!r}; "
                           f"choose one of {', '.join(DESIGNABLE)}")
    problem = problem if problem is not None else block_problem(surrogate, operator, sigma_net, denoiser)
    per_band = [k.name for k in get_sampler(heuristic.method).knob_specs if k.per_band]
    if bands and (not per_band or problem.structure != "fourier_diagonal"):
        per_band_knobs = ", ".join(f"{n}'s {k.name}" for n in DESIGNABLE for k in get_sampler(n).knob_specs
                                   if k.per_band)
        raise ZSGuideError(f"per-frequency design (frequency_bands {bands}) exists for {per_band_knobs} on blur "
                           f"tasks, not for {heuristic.method} on a {problem.structure} operator")
    if trust is not None and not (math.isfinite(trust) and trust > 1):
        raise ZSGuideError(f"trust factor must be a finite number > 1 (a knob within that factor of its heuristic), "
                           f"got {trust!r}")
    criterion = objective_criterion(resolve_objective(objective, "design objective"))
    guard = guard or objective == "pareto"
    family, key = design_keys(surrogate, problem, schedule, heuristic, mse_weight, degree, bands, trust, guard,
                              objective)
    path = cache_dir() / f"{heuristic.method}-{task}-{heuristic.steps}-{family}-{key}.json"
    if use_cache and path.is_file():
        d = _read(path)
        if d is not None:
            return DesignResult(d["params"], d["heuristic"], d["designed"], d.get("theta", {}))
    warm = _neighbour_theta(heuristic.method, task, family, heuristic.steps) if use_cache else None
    if bands and warm is None:  # start from the scalar design, broadcast over the bands
        scalar = designed_schedule(surrogate, operator, sigma_net, schedule, heuristic, task, mse_weight=mse_weight,
                                   degree=degree, use_cache=use_cache, problem=problem, criteria=criteria,
                                   trust=trust, guard=guard, objective=objective)
        warm = {"steps": f"{heuristic.steps} (scalar design)", "theta": scalar.theta}
    grouped = (problem.structure == "fourier_diagonal" and problem.num_blocks > GROUP_ABOVE and not bands
               and problem.denoiser is None)
    on = problem.grouped() if grouped else problem
    result = design(heuristic.method, on, heuristic, schedule.alphas_cumprod, mse_weight=mse_weight,
                    degree=degree, warm_theta=warm["theta"] if warm else None,
                    criteria=None if grouped else criteria, bands={k: bands for k in per_band} if bands else None, trust=trust,
                    guard=guard, objective=objective)
    if grouped:
        _check_on_exact(result, problem, criteria, heuristic, schedule, mse_weight, guard, criterion)
        result.params.provenance["designed_on"] = (f"the grouped problem: {on.num_blocks} weighted blocks of nearly "
                                                   f"equal (lambda, s) for the {problem.num_blocks} frequencies "
                                                   f"(problem.grouped); predictions exact")
    result.params.provenance["warm_start_candidates"] = ["heuristic"] + ([f"design at {warm['steps']} steps"]
                                                                          if warm else [])
    result.params.provenance.update({"surrogate_digest": surrogate.digest(), "sigma_network": float(sigma_net),
                                     "denoiser_model": "gaussian" if problem.denoiser is None else "calibrated",
                                     "calibration": None if problem.denoiser is None else {
                                         "file": problem.denoiser.source, "digest": problem.denoiser.digest},
                                     "cache_key": key, "predicted_heuristic": result.heuristic,
                                     "predicted_designed": result.designed})
    if getattr(operator, "batch_size", 1) > 1:
        result.params.provenance["operator"] = "designed on the first image's operator (drawn per image)"
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"params": result.params.to_dict(), "heuristic": result.heuristic,
                                   "designed": result.designed, "theta": result.theta}))
        tmp.replace(path)
    return result
