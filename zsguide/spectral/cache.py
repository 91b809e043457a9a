"""The design cache: a design is a pure function of (surrogate, operator, sigma, VP schedule, sampler, steps, spacing,
objective), so it is kept under a key hashing exactly those: the surrogate digest, the block problem the operator
defines (its singular values, measured coordinates, structure and any dimension reduction), sigma (network units),
the schedule's parameters, the sampler, its heuristic timesteps and values (the warm start), the objective (its
criterion and MSE weight), the parameterisation degree, the trust region, the Pareto guard and a calibrated
denoiser model's digest. Designs of the same problem at other step counts share a "family" hash; the nearest one's
coefficients are the second warm start (design.py: L-BFGS runs from both and the better end is kept, so a cached
neighbour can only improve a design on its objective; the provenance lists the candidates and the start kept). The cache is a folder of JSON files
(``$ZSGUIDE_CACHE/designs``, default ``~/.cache/zsguide/designs``), each written to a temporary file and renamed; a
corrupt entry is ignored and rewritten.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from ..errors import ZSGuideError
from ..samplers.base import ParamSchedule
from .design import DesignResult, objective_criterion
from .problem import BlockProblem

ENGINE_VERSION = 4  # bump when the closed forms or the designer change what a design is (4: design penalties)


def cache_dir() -> Path:
    return Path(os.environ.get("ZSGUIDE_CACHE", Path.home() / ".cache" / "zsguide")) / "designs"


def cache_path(method: str, task: str, steps: int, family: str, key: str) -> Path:
    """The file of one design: ``<method>-<task>-<steps>-<family>-<key>.json`` in :func:`cache_dir`."""
    return cache_dir() / f"{method}-{task}-{steps}-{family}-{key}.json"


def _digest(parts: dict, tensors: list[torch.Tensor]) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    h.update(json.dumps(parts, sort_keys=True).encode())
    return h.hexdigest()[:16]


def design_keys(
    surrogate,
    problem: BlockProblem,
    schedule,
    heuristic: ParamSchedule,
    mse_weight: float,
    degree: int,
    bands: int = 0,
    trust: float | None = None,
    guard: bool = False,
    objective: str = "w2",
) -> tuple[str, str]:
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
    family = _digest(
        {
            **parts,
            "surrogate": surrogate.digest(),
            "sigma": round(problem.sigma, 12),
            "structure": problem.structure,
            "grid": list(problem.grid),
            "factor": problem.factor,
            "note": problem.note,
            "schedule": schedule.to_dict(),
            "method": heuristic.method,
            "spacing": heuristic.spacing,
            "mse_weight": mse_weight,
            "degree": degree,
            "engine": ENGINE_VERSION,
            "origin": list(problem.origin),
            "frequency_bands": bands,
        },
        [
            problem.s.to(torch.float64),
            problem.s_eff.to(torch.float64),
            problem.measured,
            problem.Sigma.to(torch.complex128),
        ],
    )
    key = _digest(
        {"family": family, "steps": heuristic.steps, "timesteps": heuristic.timesteps, "warm": heuristic.values}, []
    )
    return family, key


def read_design(path: Path) -> dict | None:
    """A cached design as a dict (params a ParamSchedule), or None for a missing or corrupt entry."""
    try:
        d = json.loads(path.read_text())
        d["params"] = ParamSchedule.from_dict(d["params"])
        d["heuristic"] = {k: float(v) for k, v in d["heuristic"].items()}
        d["designed"] = {k: float(v) for k, v in d["designed"].items()}
        d["theta"] = {k: [float(x) for x in v] for k, v in d.get("theta", {}).items()}
        return d
    except (OSError, ValueError, KeyError, TypeError, AttributeError, ZSGuideError):
        return None  # a corrupt entry: design again and overwrite it


def write_design(path: Path, result: DesignResult) -> None:
    """Keep ``result`` at ``path`` (a temporary file renamed into place: a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(
        json.dumps(
            {
                "params": result.params.to_dict(),
                "heuristic": result.heuristic,
                "designed": result.designed,
                "theta": result.theta,
            }
        )
    )
    tmp.replace(path)


def neighbour_theta(method: str, task: str, family: str, steps: int) -> dict | None:
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
    d = read_design(best[1])
    return None if d is None else {"steps": best[0], "theta": d["theta"]}
