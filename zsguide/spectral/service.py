"""Designed schedules on demand, cached: what ``restore --params spectral``, ``analyze`` and ``tune`` share.

A design is a pure function of (surrogate, operator, sigma, VP schedule, sampler, steps, spacing, objective), so it is
cached under a key hashing exactly those: the surrogate digest, the operator's Fourier symbol, sigma (network units),
the schedule's parameters, the sampler, its heuristic timesteps and values (the warm start), the objective (MSE weight)
and the parameterisation degree. The cache is a folder of JSON files (``$ZSGUIDE_CACHE``, default
``~/.cache/zsguide/designs``); a corrupt entry is ignored and rewritten.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from ..errors import ZSGuideError
from ..samplers.base import ParamSchedule
from .design import DesignResult, design_diagonal
from .diagonal import DiagonalProblem

DESIGNABLE = ("ddrm", "ddnm", "pigdm", "diffpir")


def cache_dir() -> Path:
    return Path(os.environ.get("ZSGUIDE_CACHE", Path.home() / ".cache" / "zsguide")) / "designs"


def diagonal_problem(surrogate, operator, sigma_net: float, task: str) -> DiagonalProblem:
    if operator.structure != "fourier_diagonal" or operator.batch_size != 1:
        raise ZSGuideError(f"spectral design is available so far for blur shared by every image (deblur_gaussian, "
                           f"deblur_uniform, deblur_kernel); task {task!r} is not one of them")
    return DiagonalProblem.from_operator(surrogate.spectrum.detach().cpu(), operator, sigma_net)


def design_key(surrogate, operator, sigma_net: float, schedule, heuristic: ParamSchedule, mse_weight: float,
               degree: int) -> str:
    h = hashlib.sha256()
    symbol = operator.symbol.detach().cpu().to(torch.complex128).numpy()
    h.update(symbol.tobytes())
    h.update(json.dumps({"surrogate": surrogate.digest(), "sigma": round(float(sigma_net), 12),
                         "schedule": schedule.to_dict(), "method": heuristic.method, "steps": heuristic.steps,
                         "spacing": heuristic.spacing, "timesteps": heuristic.timesteps, "warm": heuristic.values,
                         "mse_weight": mse_weight, "degree": degree, "rcond": operator.rcond}, sort_keys=True).encode())
    return h.hexdigest()[:24]


def designed_schedule(surrogate, operator, sigma_net: float, schedule, heuristic: ParamSchedule, task: str, *,
                      mse_weight: float = 0.0, degree: int = 3, use_cache: bool = True) -> DesignResult:
    """The designed schedule for ``heuristic``'s sampler and steps (from the cache when it is there)."""
    if heuristic.method not in DESIGNABLE:
        raise ZSGuideError(f"spectral design has no closed form for sampler {heuristic.method!r} yet; "
                           f"choose one of {', '.join(DESIGNABLE)}")
    problem = diagonal_problem(surrogate, operator, sigma_net, task)
    key = design_key(surrogate, operator, sigma_net, schedule, heuristic, mse_weight, degree)
    path = cache_dir() / f"{heuristic.method}-{task}-{heuristic.steps}-{key}.json"
    if use_cache and path.is_file():
        try:
            d = json.loads(path.read_text())
            return DesignResult(ParamSchedule.from_dict(d["params"]), d["heuristic"], d["designed"])
        except (ValueError, KeyError, ZSGuideError):
            pass  # a corrupt entry: design again and overwrite it
    result = design_diagonal(heuristic.method, problem, heuristic, schedule.alphas_cumprod, mse_weight=mse_weight,
                             degree=degree)
    result.params.provenance.update({"surrogate_digest": surrogate.digest(), "sigma_network": float(sigma_net),
                                     "cache_key": key, "predicted_heuristic": result.heuristic,
                                     "predicted_designed": result.designed})
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"params": result.params.to_dict(), "heuristic": result.heuristic,
                                   "designed": result.designed}))
        tmp.replace(path)
    return result
