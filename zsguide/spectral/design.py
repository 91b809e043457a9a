"""Parameter design: per-step schedules of a sampler's own knobs that minimise its averaged W2 to the posterior
(theory.md §6), solved with autograd through the closed-form recursion in float64.

Parameterisation (smooth in the step index, well conditioned): with ``u_i = 2 i / (N - 1) - 1`` and Legendre
polynomials ``P_j`` (j < ``degree`` + 1), each knob is

    bounded in [0, 1] (``eta``; DiffPIR's ``zeta``):  knob_i = sigmoid(logit(h_i) + sum_j theta_j P_j(u_i))
    positive (the rest):                    knob_i = h_i exp(clamp(sum_j theta_j P_j(u_i), -12, 12))

around the heuristic ``h`` (clipped into [1e-3, 1 - 1e-3] for the logit), so ``theta = 0`` is the heuristic itself
(or its clipped value, for a heuristic of exactly 0 or 1): the warm start.

Trust region (``trust`` = T > 1, optional): the offset ``z = sum_j theta_j P_j(u_i)`` is replaced by
``L tanh(z / L)`` with ``L = log T``, so every positive knob stays within a factor T of its heuristic
(``h / T <= knob <= T h``) and every bounded knob's odds ``knob / (1 - knob)`` within a factor T of the heuristic's;
the map is the identity to first order at ``theta = 0``, so the warm start and its gradient are unchanged. The
closed forms are exact only for the Gaussian surrogate; a real network's denoiser can diverge under knobs far from
the values it was tuned with (docs/benchmarks.md, real prior), and T bounds how far the design may go. Because ``u`` is normalised, the coefficients ``theta`` of a design at a neighbouring step count
are a second warm start (``warm_theta``); L-BFGS runs from both starts and the better end is kept (a start that is
better where it begins can end in a worse local optimum). The objective is ``avg_W2^2 + mse_weight * MSE`` (``mse_weight`` trades fidelity against sampling the
posterior), minimised by L-BFGS with a strong-Wolfe line search; if the search ends worse than the heuristic (or not
finite), the heuristic is returned, so a designed schedule is never worse on its own objective.

Objective (``objective``, the command lines' ``--objective``): which closed-form criterion (criteria.py) is minimised,
so that a user picks the perception-distortion trade directly:

    w2          avg W2^2 to the posterior (the default): sample the posterior
    mse         MSE to the truth: distortion only (the MMSE end; the output loses power where the measurement is weak)
    perception  perception W2^2 of the output marginal to the prior: realism only (the measurement enters only
                through what keeps the marginal right)
    pareto      avg W2^2 under the Pareto guard below: lower W2 without raising either MSE or perception W2

``mse_weight`` adds ``mse_weight * MSE`` to the first three.

Pareto guard (``guard``, optional): the design may lower avg W2 only without raising the MSE or the perception W2
(output marginal to prior) above the heuristic's, all three in closed form. It is a quadratic penalty
``GUARD_PENALTY * loss_h * sum_k relu(c_k / c_k,h - 1)^2`` on the two guarded criteria, zero at the heuristic; a
result more than ``GUARD_TOLERANCE`` (0.1%) past either is rejected for the heuristic. Why: on
blur, DDRM's and DDNM+'s W2-optimal schedules trade the output marginal's match to the prior (a higher perception
W2) for a closer match to the posterior, which shows on a trained network as a higher Frechet spectral distance
(docs/benchmarks.md, "The Pareto guard"); the guard keeps every design a closed-form improvement on all three counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..samplers.base import ParamSchedule
from .criteria import Criteria
from .problem import BlockProblem
from .transfer import sampler_with_law, transfer

OBJECTIVES = {"w2": "avg_w2", "mse": "mse", "perception": "perception_w2", "pareto": "avg_w2"}
"""``--objective`` value -> the criterion it minimises (``pareto`` also turns the guard on)."""
GUARDED = ("mse", "perception_w2")
GUARD_PENALTY = 1e4  # quadratic penalty weight: a violation of relative size d costs 1e4 d^2 heuristic objectives,
# so the optimum overshoots a guarded criterion by O(1 / GUARD_PENALTY) of its heuristic value
CONSTRAINT_PENALTY = 1e4  # a sampler's design_penalty P costs 1e4 P objectives (DAPS: P = sum (|G| - 1)_+^2)
GUARD_TOLERANCE = 1e-3  # a design past the guard by more than this (relative) is rejected: the heuristic is returned
LOG_RANGE = 12.0  # positive knobs stay within a factor e^12 (~1.6e5) of the heuristic: no under/overflow in float32


def bounded(method: str, knob: str) -> bool:
    """Knobs that live in [0, 1] (the registry's ``unit`` domain: every ``eta`` and DiffPIR's ``zeta``; DPS's
    ``zeta`` is a positive step size)."""
    from ..samplers import get_sampler

    return get_sampler(method).knob(knob).domain == "unit"


def legendre_basis(steps: int, degree: int) -> torch.Tensor:
    """``P_j(u_i)`` for j = 0..degree, shape (degree + 1, steps), float64."""
    u = torch.linspace(-1, 1, steps, dtype=torch.float64) if steps > 1 else torch.zeros(1, dtype=torch.float64)
    rows = [torch.ones_like(u), u]
    for n in range(1, degree):
        rows.append(((2 * n + 1) * u * rows[n] - n * rows[n - 1]) / (n + 1))
    return torch.stack(rows[: degree + 1])


def objective_criterion(objective: str) -> str:
    """The criterion ``objective`` minimises (OBJECTIVES); an unknown name is a one-line error listing the valid ones."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown design objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")
    return OBJECTIVES[objective]


@dataclass
class DesignResult:
    params: ParamSchedule
    heuristic: dict[str, float]
    designed: dict[str, float]
    theta: dict[str, list[float]]


def _offset(z: torch.Tensor, trust: float | None) -> torch.Tensor:
    """The knob's log (or log-odds) offset from its heuristic: ``z`` clamped to +-LOG_RANGE, or ``L tanh(z / L)``
    with ``L = log(trust)`` inside a trust region."""
    if trust is None:
        return z.clamp(-LOG_RANGE, LOG_RANGE)
    L = min(math.log(trust), LOG_RANGE)
    return L * torch.tanh(z / L)


def _knob_values(
    method,
    theta: dict[str, torch.Tensor],
    base: dict[str, torch.Tensor],
    basis: torch.Tensor,
    trust: float | None = None,
):
    """Knob schedules from coefficients: ``theta[k]`` (degree + 1) gives one value per step, (degree + 1, bands) one
    value per step and frequency band (shape (steps, bands))."""
    out = {}
    for k, h in base.items():
        if k not in theta:
            out[k] = h
            continue
        z = theta[k] @ basis if theta[k].ndim == 1 else (theta[k].T @ basis).T  # (steps,) or (steps, bands)
        hh = h if theta[k].ndim == 1 else h[:, None]
        if bounded(method, k):
            hc = hh.clamp(1e-3, 1 - 1e-3)
            out[k] = torch.sigmoid(torch.log(hc / (1 - hc)) + (z if trust is None else _offset(z, trust)))
        else:
            out[k] = hh * torch.exp(_offset(z, trust))
    return out


def design(
    method: str,
    problem: BlockProblem,
    heuristic: ParamSchedule,
    abar: torch.Tensor,
    *,
    knobs: tuple[str, ...] | None = None,
    degree: int = 3,
    mse_weight: float = 0.0,
    max_iter: int = 60,
    warm_theta: dict[str, list] | None = None,
    criteria: Criteria | None = None,
    bands: dict[str, int] | None = None,
    trust: float | None = None,
    guard: bool = False,
    objective: str = "w2",
) -> DesignResult:
    """Design ``method``'s knobs (all of them unless ``knobs`` is given) for ``problem``; ``bands`` (e.g.
    ``{"lam": 8}``) designs those knobs per radial frequency band (the per-frequency variant). A scalar warm start
    for a per-band knob is broadcast over its bands. ``trust`` (> 1): keep every knob within that factor of its
    heuristic (its odds, for knobs in [0, 1]; see the module docstring). ``guard``: the Pareto guard, MSE and
    perception W2 kept no worse than the heuristic's (module docstring). ``objective``: w2, mse, perception or pareto
    (module docstring). A sampler without a closed-form law is refused (:class:`ZSGuideError`)."""
    sampler = sampler_with_law(method)  # a sampler without a closed form is refused, naming it
    criterion, guard = objective_criterion(objective), guard or objective == "pareto"
    if trust is not None and not (math.isfinite(trust) and trust > 1):
        raise ValueError(f"trust factor must be a finite number > 1, got {trust!r}")
    bands = dict(bands or {})
    base = {k: torch.tensor(v, dtype=torch.float64) for k, v in heuristic.values.items()}
    names = tuple(knobs) if knobs is not None else tuple(base)
    basis = legendre_basis(heuristic.steps, degree)
    crit = criteria if criteria is not None else Criteria(problem)

    ref: dict[str, float] = {}  # the heuristic's criteria, for the Pareto guard

    def loss_and_criteria(vals) -> tuple[torch.Tensor, dict]:
        try:
            c = crit(transfer(method, problem, heuristic, abar, vals))
        except torch.linalg.LinAlgError:  # a trial point whose covariances are not finite: infinitely bad
            inf = torch.tensor(float("inf"), dtype=torch.float64)
            return inf, {"avg_w2": inf, "mse": inf, "perception_w2": inf}
        loss = c[criterion] + mse_weight * c["mse"]
        penalty = sampler.design_penalty(problem, heuristic, abar, vals)
        if penalty is not None:  # a constraint the law cannot express (Sampler.design_penalty)
            loss = loss + CONSTRAINT_PENALTY * loss.detach().abs() * penalty
        if guard and ref:
            excess = sum(torch.relu(c[k] / max(ref[k], 1e-300) - 1) ** 2 for k in GUARDED)
            loss = loss + GUARD_PENALTY * ref["loss"] * excess
        return loss, c

    with torch.no_grad():
        loss0, c0 = loss_and_criteria(base)
        if guard and bool(torch.isfinite(loss0)) and all(math.isfinite(float(c0[k])) for k in GUARDED):
            ref.update({k: float(c0[k]) for k in GUARDED}, loss=float(loss0))  # else nothing to guard: all is better
        start = {k: torch.zeros(degree + 1, *([bands[k]] if k in bands else []), dtype=torch.float64) for k in names}
        cand: dict[str, torch.Tensor] | None = None
        if warm_theta and set(warm_theta) >= set(names):
            cand = {}
            for k in names:
                t = torch.tensor(warm_theta[k], dtype=torch.float64)
                if t.ndim == 1 and start[k].ndim == 2 and len(t) == degree + 1:
                    t = t[:, None].expand_as(start[k]).clone()
                if t.shape != start[k].shape:
                    cand = None
                    break
                cand[k] = t
        starts = [("heuristic", start)]
        if cand is not None:
            loss_w, _ = loss_and_criteria(_knob_values(method, cand, base, basis, trust))
            if bool(torch.isfinite(loss_w)):
                starts.append(("neighbour", cand))

    def solve(start: dict) -> dict[str, torch.Tensor]:
        """L-BFGS from ``start``: the coefficients it ends at."""
        theta = {k: v.clone().requires_grad_(True) for k, v in start.items()}
        opt = torch.optim.LBFGS(list(theta.values()), lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss, _ = loss_and_criteria(_knob_values(method, theta, base, basis, trust))
            if not loss.requires_grad:  # the objective failed (LinAlgError): reject the trial point
                for t in theta.values():
                    t.grad = torch.zeros_like(t)
                return loss
            loss.backward()
            grads_ok = all(bool(torch.isfinite(t.grad).all()) for t in theta.values())
            if not (bool(torch.isfinite(loss)) and grads_ok):  # a trial point off the cliff: reject it
                for t in theta.values():
                    t.grad = torch.zeros_like(t)
                return torch.tensor(float("inf"), dtype=torch.float64)
            return loss

        opt.step(closure)
        return {k: v.detach() for k, v in theta.items()}

    # every start is solved and the best end kept: a second start can only help (a better start can still end in a
    # worse local optimum, so the starts are compared where they end, not where they begin); the heuristic itself
    # stands unless an end beats it
    vals, c1, loss1, started = base, c0, loss0, None
    thetas = {k: torch.zeros_like(v).tolist() for k, v in start.items()}
    for label, s0 in starts:
        theta = solve(s0)
        with torch.no_grad():
            v1 = _knob_values(method, theta, base, basis, trust)
            l1, cc = loss_and_criteria(v1)
            finite = all(bool(torch.isfinite(v).all()) for v in v1.values()) and bool(torch.isfinite(l1))
            breach = bool(ref) and any(float(cc[k]) > ref[k] * (1 + GUARD_TOLERANCE) for k in GUARDED)
            if finite and not breach and l1 <= loss1:  # never worse than the heuristic (nor past the guard)
                vals, c1, thetas, loss1, started = v1, cc, {k: v.tolist() for k, v in theta.items()}, l1, label
    values = {k: v.tolist() for k, v in vals.items()}
    provenance = {
        "source": "spectral",
        "objective": criterion
        + (f" + {mse_weight} mse" if mse_weight else "")
        + (" (Pareto guard: mse, perception_w2 <= heuristic's, within 0.1%)" if guard else ""),
        "degree": degree,
        "heuristic_reference": heuristic.provenance.get("reference", ""),
    }
    if bands:
        provenance["frequency_bands"] = bands
    provenance["trust_factor"] = trust  # None: unconstrained
    provenance["pareto_guard"] = bool(guard)
    provenance["started_from"] = started  # the start whose end was kept (None: the heuristic itself)
    if problem.note:
        provenance["reduction"] = problem.note
    params = ParamSchedule(
        heuristic.method,
        heuristic.task,
        heuristic.steps,
        heuristic.spacing,
        list(heuristic.timesteps),
        values,
        provenance,
    )
    return DesignResult(params, {k: float(v) for k, v in c0.items()}, {k: float(v) for k, v in c1.items()}, thetas)
