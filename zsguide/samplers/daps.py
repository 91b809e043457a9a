"""DAPS (Zhang et al., CVPR 2025, "Improving Diffusion Inverse Problem Solving with Decoupled Noise Annealing";
reference code zhangbingliang2019/DAPS, pixel space: ``cores/mcmc.py``, ``cores/scheduler.py``,
``configs/sampler/edm_daps.yaml``, ``configs/task/*.yaml``).

DAPS anneals a VE noise level ``sigma_i`` (levels on EDM's rho = 7 grid from 100 to 0.1: the ``edm`` spacing,
diffusion/schedule.py) and decouples consecutive levels. At level i, in VE units ``x = x_t / sqrt(abar_t)`` (network
units, [-1, 1]):

1. ``x0_hat``: the probability-flow ODE from ``sigma_i`` to 0 with ``K`` Euler steps (:data:`ODE_STEPS` = 5, the
   reference's ``diffusion_scheduler_config``: EDM's grid from ``sigma_i`` to 0.01, its last point replaced by 0),
   ``x <- x + (s_{k+1} - s_k) (x - D(x, s_k)) / s_k``: K network calls, no gradient. Each ``s_k`` is the training
   time nearest to the grid point (the network is trained on those), and the step uses that time's own level.
2. ``M`` Langevin steps (:data:`LANGEVIN_STEPS` = 100) from ``x0_hat`` on ``exp(-||A x - y||^2 / tau^2 -
   ||x - x0_hat||^2 / (2 r_i^2))``, ``r_i = r_scale sigma_i`` (the reference's ``prior_solver: gaussian``):

       x <- x + lr (-2 A^T (A x - y) / tau^2 + (x0_hat - x) / r_i^2) + sqrt(2 lr) z_m.

   The chain involves no network: given ``x0_hat`` it is linear and Gaussian, and in the operator's SVD basis
   (``A^T A = V diag(s^2) V^T``) each coordinate is an AR(1) recursion with ``G = 1 - lr (2 s^2 / tau^2 + 1 /
   r_i^2)``. The step applies its M steps at once, exactly: ``c_M = (G^M + lr / r^2 S1) c0 + (2 lr / tau^2) S1 s cy
   + sqrt(2 lr S2) w`` with ``S1 = sum_{j<M} G^j``, ``S2 = sum_{j<M} G^(2j)`` and one white draw ``w`` per level
   (the same law as M sequential draws, at the cost of a few operator applications instead of 2M;
   tests/test_reference_daps.py holds it to the literal loop).

3. Re-noise: ``x_{i+1} = x + sigma_{i+1} z`` (VP: ``x_t' = sqrt(abar') (x + sigma_{i+1} z)``).

The last level returns the ODE's ``x0_hat`` (the reference's ``return_ode``: no Langevin at the last level, then
``sigma = 0``). The start is ``sigma_max z`` (VP: ``sqrt(1 - abar_T) z``).

Closed form (samplers/law.py), per block: the ODE is a product of ``I + (s_{k+1} - s_k) / s_k (I - sqrt(abar_k)
C_k)`` (``C_k`` the denoiser's gain at that time, ``p.denoiser_at``); the Langevin chain is the exact AR(1)
recursion after M steps, not its M -> infinity limit: in the SVD basis ``A^T A`` is diagonal, so with ``G = 1 -
lr (2 s^2 / tau^2 + 1 / r^2)`` per coordinate, ``x_M = (G^M + lr / r^2 S1) x0_hat + (2 lr / tau^2) S1 H^H ybar +
N(0, 2 lr S2)``, ``S1 = sum_{j<M} G^j``, ``S2 = sum_{j<M} G^(2j)``; the re-noising adds ``sigma_{i+1}^2 I``. A
calibrated denoiser model's residual, fresh at each of the K calls, enters through each call's coefficient in the
ODE and is folded into the step's noise ``E``.

Knobs (per level): ``step_size`` (the Langevin step size, the reference's ``lr``; heuristic ``lr0 (1 + (i / N) (lr_min_ratio - 1))``, ``lr0``
1e-4 for x4 super-resolution, Gaussian blur and random inpainting, 5e-5 for motion blur and box inpainting,
``lr_min_ratio`` 0.01: ``configs/task/*.yaml``), ``tau`` (0.01, in [-1, 1] units as the reference's data term) and
``r_scale`` (1: ``r_i = sigma_i``). The data term is the reference's ``||A x - y||^2 / tau^2`` (its loss is the sum
of squares, no 1/2); InverseBench halves it (``/ (2 tau^2)``): the same as ``tau`` times sqrt(2). The reference runs
200 levels (1000 network calls); the heuristic keeps its per-level constants at any level count. Measurement noise in
the reference's configs is 0.05 in [-1, 1] units (0.025 in pixel units, ``restore --noise_convention network``).
"""

from __future__ import annotations

import math

import torch

from ..diffusion.schedule import edm_grid_times
from ..errors import ZSGuideError
from .base import Knob, Sampler
from .law import AffineStep, BlockLike, StepInputs, col, embed, eye, mm, pad, zero_b

ODE_STEPS = 5  # configs/sampler/edm_daps.yaml diffusion_scheduler_config.num_steps
ODE_SIGMA_MIN = 0.01  # ... sigma_min
LANGEVIN_STEPS = 100  # configs/task/*.yaml mcmc_sampler_config.num_steps (pixel)
TAU = 0.01
LR_MIN_RATIO = 0.01
LR0, LR_SMALL = 1e-4, 5e-5  # configs/task/*.yaml lr: 1e-4, and 5e-5 for motion blur and box inpainting
SMALL_LR_TASKS = ("deblur_motion", "inpaint_box")


def ode_levels(abar: torch.Tensor, t: int, steps: int = ODE_STEPS) -> list[tuple[int, float, float]]:
    """The inner ODE's Euler steps from time ``t``: ``(t_k, abar_k, s_{k+1} - s_k over s_k)`` for k = 0 .. K-1, the
    times nearest to EDM's grid from ``sigma_t`` to 0.01 (its last point replaced by 0: the last step lands on
    ``D(x, s_{K-1})``). Both the step and the closed form use it."""
    a_t = float(abar[t])
    times = edm_grid_times(abar, math.sqrt((1 - a_t) / a_t), ODE_SIGMA_MIN, steps + 1)[:steps]
    times[0] = t
    sig = [math.sqrt((1 - float(abar[k])) / float(abar[k])) for k in times] + [0.0]
    return [(k, float(abar[k]), (sig[j + 1] - sig[j]) / sig[j]) for j, k in enumerate(times)]


def _dense(R: torch.Tensor, p: BlockLike) -> torch.Tensor:
    """A residual covariance per block as a matrix (..., n, n) (a diagonal one, (..., n), embedded)."""
    return torch.diag_embed(R.to(p.dtype)) if R.ndim == p.s.ndim else R.to(p.dtype)


def langevin_sums(G: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(G^M, S1 = sum_{j<M} G^j, S2 = sum_{j<M} G^(2j))`` elementwise, by accumulation (differentiable, exact for
    any G, including |G| >= 1)."""
    power, s1, s2 = torch.ones_like(G), torch.zeros_like(G), torch.zeros_like(G)
    for _ in range(steps):
        s1 = s1 + power
        s2 = s2 + power * power
        power = power * G
    return power, s1, s2


class DAPS(Sampler):
    """DAPS with ``ode_steps`` network calls per level (the PF-ODE's Euler steps) and ``langevin_steps`` Langevin steps
    per level: ``daps`` is the reference's 5 and 100; ``daps_fast`` takes 1 ODE step (Tweedie's estimate at the level,
    one network call), so 20 levels cost what 20 steps of the other samplers cost. Another variant is one line:
    ``register_sampler(DAPS("daps_k2", ode_steps=2, langevin_steps=50))`` (samplers/__init__.py)."""

    knob_specs = (
        Knob(
            "step_size",
            "positive",
            meaning="Langevin step size at the level (the reference's lr)",
            search=(1e-5, 1e-3, True),
            search_source="InverseBench's DAPS sweep: lr log-uniform in [1e-5, 1e-3]",
        ),
        Knob(
            "tau",
            "positive",
            meaning="the data term's std (network units): exp(-||Ax - y||^2 / tau^2)",
            search=(1e-3, 1e-1, True),
            search_source="InverseBench's DAPS sweep: tau log-uniform in [1e-3, 1e-1]",
        ),
        Knob("r_scale", "positive", meaning="prior width r_i = r_scale sigma_i of the Langevin target"),
    )
    default_spacing = "edm"

    def __init__(self, name: str = "daps", ode_steps: int = ODE_STEPS, langevin_steps: int = LANGEVIN_STEPS) -> None:
        if ode_steps < 1 or langevin_steps < 1:
            raise ZSGuideError(f"DAPS needs >= 1 ODE and Langevin steps, got {ode_steps} and {langevin_steps}")
        self.name, self.ode_steps, self.langevin_steps = name, int(ode_steps), int(langevin_steps)
        self.variant_of = "" if name == "daps" else "daps"
        self.reference = (
            f"Zhang et al. 2025 (zhangbingliang2019/DAPS, DAPS-1K: 200 edm levels, 5 ODE steps, 100 Langevin steps); "
            f"here {self.ode_steps} ODE and {self.langevin_steps} Langevin steps per level; lr 1e-4 (5e-5 motion blur, "
            f"box inpainting) decaying to 1% over the levels, tau 0.01, r_i = sigma_i"
        )

    def heuristic_values(self, task: str, steps: int) -> dict:
        lr0 = LR_SMALL if task in SMALL_LR_TASKS else LR0
        return {
            "step_size": [lr0 * (1 + (i / steps) * (LR_MIN_RATIO - 1)) for i in range(steps)],
            "tau": TAU,
            "r_scale": 1.0,
        }

    def design_penalty(self, p: BlockLike, params, abar: torch.Tensor, knobs) -> torch.Tensor:
        """``sum_i (|G_i| - 1)_+^2`` over the levels before the last, ``G_i = 1 - lr_i (2 s_max^2 / tau_i^2 +
        1 / r_i^2)`` the most negative per-coordinate factor of level i's Langevin chain: a design with ``|G| > 1``
        has a finite law (later levels forget the blown-up start) but its real chain grows by ``|G|^100`` first,
        past float32 and the divergence guard (found on the shipped prior: ``tau`` at the trust region's 0.005 gave
        ``|G| = 15``). The reference's own setting sits at the edge, ``|G| = 1 + lr / r^2`` where ``s = 1``."""
        s_max = float(p.s.max())
        total = torch.zeros((), dtype=torch.float64)
        for i, t in enumerate(params.timesteps[:-1]):
            a_t = float(abar[t])
            r2 = (knobs["r_scale"][i] * math.sqrt((1 - a_t) / a_t)) ** 2
            G = 1 - knobs["step_size"][i] * (2 * s_max**2 / knobs["tau"][i] ** 2 + 1 / r2)
            total = total + torch.relu(-G - 1) ** 2
        return total

    def initial(self, operator, y, sigma, params, seed, indices, abar, shape) -> torch.Tensor:
        """``sigma_max z`` in VE units, ``sqrt(1 - abar_T) z`` on the VP scale."""
        a_T = float(abar[params.timesteps[0]])
        return math.sqrt(1 - a_T) * super().initial(operator, y, sigma, params, seed, indices, abar, shape)

    def closed_form_initial(self, p: BlockLike, a_T: float) -> tuple[torch.Tensor, torch.Tensor]:
        """``x_T ~ N(0, (1 - abar_T) I)``."""
        return zero_b(p), (1 - a_T) * torch.eye(p.n, dtype=p.dtype).expand(*p.s.shape[:-1], p.n, p.n)

    def step(self, denoiser, operator, y, sigma, params, i, t, a_t, a_prev, x, noise, surrogate):
        lr, tau, r_scale = params.value("step_size", i), params.value("tau", i), params.value("r_scale", i)
        x = x / math.sqrt(a_t)  # VE units
        with torch.no_grad():
            for k, a_k, ratio in ode_levels(denoiser.schedule.alphas_cumprod, t, self.ode_steps):
                d = denoiser.x0(math.sqrt(a_k) * x, k)
                x = x + ratio * (x - d)
        x0 = x
        if a_prev >= 1.0:
            return x0, x0
        r2 = (r_scale * math.sqrt((1 - a_t) / a_t)) ** 2
        c0, cy = operator.Vt(x0), operator.Ut(y)
        s = torch.broadcast_to(torch.as_tensor(operator.singulars, device=c0.device), c0.shape).to(c0.real.dtype)
        GM, S1, S2 = langevin_sums(1 - lr * (2 * s * s / tau**2 + 1 / r2), self.langevin_steps)
        c = (
            (GM + lr / r2 * S1) * c0
            + (2 * lr / tau**2) * S1 * s * cy
            + (2 * lr * S2).sqrt() * operator.Vt(noise("langevin"))
        )
        x = operator.V(c)
        sigma_next = math.sqrt((1 - a_prev) / a_prev)
        return math.sqrt(a_prev) * (x + sigma_next * noise("z")), x

    def closed_form_step(self, step: StepInputs) -> AffineStep:
        """:meth:`step` per block (module docstring): ``X = P / sqrt(abar_t)`` the ODE map from the state, then
        ``A = sqrt(abar') diag(L) X``, ``b = sqrt(abar') (2 lr / tau^2) diag(S1) H^H``, ``E = abar' 2 lr diag(S2) +
        (1 - abar') I``, ``Q = sqrt(abar') L``, ``L = G^M + lr / r^2 S1``; the last step ``(X, 0, 0, 1)``."""
        p = step.p
        if step.abar is None:
            raise ZSGuideError("DAPS's law needs the schedule's abar table (StepInputs.abar)")
        t = int((step.abar - step.a_t).abs().argmin())
        P = eye(p).expand(*p.s.shape[:-1], p.n, p.n)
        D = torch.zeros_like(P)  # the ODE output's coefficient on an offset d added to every denoiser output
        calls: list[tuple[torch.Tensor, torch.Tensor]] = []  # per call: (its residual's coefficient, R_k)
        for k, a_k, ratio in ode_levels(step.abar, t, self.ode_steps):
            C_k, R_k = (step.C, step.resid) if k == t else p.denoiser_at(a_k)
            M = eye(p) + ratio * (eye(p) - math.sqrt(a_k) * C_k)
            P, D = mm(M, P), mm(M, D) - ratio * eye(p)
            calls = [(mm(M, c), R) for c, R in calls]
            if R_k is not None:
                calls.append((-ratio * eye(p).expand_as(P), R_k))
        # a calibrated model's residual, fresh at each of the K calls, is folded into the noise (Q then carries none)
        R_ode = sum((mm(mm(c, _dense(R, p)), c.mH) for c, R in calls), torch.zeros_like(P)) if calls else None
        X = P / math.sqrt(step.a_t)
        if step.last:
            return AffineStep(X, zero_b(p), 0.0 if R_ode is None else R_ode, D if R_ode is None else 0 * D)
        lr, tau, r_scale = step.value("step_size"), step.value("tau"), step.value("r_scale")
        r2 = (r_scale * math.sqrt((1 - step.a_t) / step.a_t)) ** 2
        s = pad(p.s, p.n).to(torch.float64)
        G = 1 - lr * (2 * s * s / tau**2 + 1 / r2)
        GM, S1, S2 = langevin_sums(G, self.langevin_steps)
        L = GM + lr / r2 * S1
        root = math.sqrt(step.a_prev)
        A = root * col(L.to(p.dtype)) * X
        b = root * (2 * lr / tau**2) * col(S1.to(p.dtype)) * embed(p.s.to(p.dtype), p.n)
        E = step.a_prev * 2 * lr * torch.diag_embed(S2.to(p.dtype)) + (1 - step.a_prev) * eye(p)
        Lc = root * col(L.to(p.dtype))
        if R_ode is not None:
            E = E + Lc * R_ode * Lc.mT.conj()
        return AffineStep(A, b, E, Lc * D if R_ode is None else 0 * D)
