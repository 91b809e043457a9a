"""DPS (Chung et al. 2023, "Diffusion Posterior Sampling for General Noisy Inverse Problems"; reference code
DPS2022/diffusion-posterior-sampling).

    x0_hat = D(x_t, t);  x'_{t-1} = DDIM step from x0_hat with eta (1: the DDPM ancestral step of the reference)
    x_{t-1} = x'_{t-1} - zeta_t grad_{x_t} || y - H x0_hat ||_2

The residual norm (not squared, as in the reference code) is taken **per image**, so an image's result does not
depend on the batch it is in (the reference takes it over the whole batch). Two more deliberate differences from the
reference: ``x0_hat`` is not clamped to [-1, 1] (its ``clip_denoised``; a clamp has no closed form), and the step's
variance is the DDIM one (``eta = 1``: the DDPM ``fixed_small`` variance), not a network's learned variance
(``learned_range``), which a denoiser given by its ``x0`` has not (docs/peers.md, "DPS"). Heuristic defaults: ``zeta`` 0.5 for
inpainting and 0.3 for deblurring and super-resolution (the reference configs), 1000 steps in the paper; at fewer
steps the same constants are used, which is what the spectral design replaces.

Closed form (theory.md §4, samplers/law.py): linear once the residual norm is replaced by its expectation under the
state's current law ``N(B ybar, V)``, with ``M = I - H C B`` (the residual is ``M ybar - H C w`` for a state
``x = B ybar + w``):

    nu_t^2 = norm_scale sum_blocks w_b [ tr(M Cov[ybar] M^H) + tr(H C V C^H H^H) ]
    A = A_ddim - (zeta_t / nu_t) (H C)^H H C,   b = (zeta_t / nu_t) (H C)^H,   E = s_t^2 I,

and given one measurement's coordinates ``ybar`` the first trace is ``||M ybar||^2`` (the law given that y). A
calibrated denoiser's residual ``N(0, R_t)`` adds ``tr(H R_t H^H)`` to the norm. The norm of a high-dimensional
residual concentrates around ``nu_t``: this is the large-image limit.
"""

from __future__ import annotations

import torch

from ..operators.tasks import task_family
from .base import Knob, Sampler, ddim_from_estimate
from .law import AffineStep, StepInputs, block_sum, eye, mm, zero_b
from .svd import sqrt_pos


def dps_gain(zeta, sq_norm) -> torch.Tensor:
    """DPS's step per unit of residual: with ``r = y - H x0_hat`` and ``J = d x0_hat / d x_t``,

        zeta_t grad_{x_t} ||r|| = gain (H J)^T (H x0_hat - y),   gain = zeta_t / ||r||,

    from the squared norm ``sq_norm`` (``sqrt_pos``: a float64 tensor, finite for a zero residual, whose gradient
    stays finite). The sampler's step takes it per image at the real residual; the closed form (spectral/transfer.py)
    at the residual's expected squared norm. ``zeta`` may be a float or a 0-dim tensor (the designer's knob)."""
    return zeta / sqrt_pos(sq_norm)


class DPS(Sampler):
    name = "dps"
    knob_specs = (
        Knob(
            "zeta",
            "positive",
            meaning="step size on the residual norm's gradient",
            search=(1e-3, 1e3, True),
            search_source="InverseBench's DPS sweep: guidance scale log-uniform in [1e-3, 1e3]",
        ),
        Knob("eta", "unit", meaning="stochasticity of the DDIM step"),
    )
    needs_grad = True
    affine = False  # its gain divides by the residual norm: the law uses the norm's expectation
    reference = "Chung et al. 2023 (DPS2022/diffusion-posterior-sampling): zeta 0.5 inpainting, 0.3 otherwise, eta 1"

    def heuristic_values(self, task: str, steps: int) -> dict:
        return {"zeta": 0.5 if task_family(task) == "inpainting" else 0.3, "eta": 1.0}

    def step(self, denoiser, operator, y, sigma, params, i, t, a_t, a_prev, x, noise, surrogate):
        zeta, eta = params.value("zeta", i), params.value("eta", i)
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            x0 = denoiser.x0(xg, t)
            sq = (y - operator.A(x0)).flatten(1).square().sum(1)  # one squared residual norm per image
            (g,) = torch.autograd.grad(0.5 * sq.sum(), xg)  # per image: (H J)^T (H x0_hat - y)
        x0 = x0.detach()
        gain = dps_gain(zeta, sq.detach()).view(-1, *[1] * (g.dim() - 1))
        x_prev = ddim_from_estimate(x, x0, a_t, a_prev, eta, lambda: noise("z"))
        return x_prev - (gain * g).to(g.dtype), x0

    def closed_form_step(self, step: StepInputs) -> AffineStep:
        """:meth:`step` at the residual's expected squared norm ``nu_t^2`` under the state's law (module docstring;
        :func:`dps_gain`): ``A = A_ddim - gain (H C)^H H C``, ``b = gain (H C)^H``, ``E = s_t^2 I``,
        ``Q = k1 I - gain (H C)^H H``. Needs ``step.B`` and ``step.V``; ``step.y_coords`` conditions the norm on one
        measurement, ``step.resid`` adds a calibrated denoiser's residual to it."""
        p, C, B, V = step.p, step.C, step.B, step.V
        assert B is not None and V is not None, "DPS's law needs the state's current law (B, V)"
        zeta, eta = step.value("zeta"), step.value("eta")
        H = p.H()
        HC = mm(H, C)
        M = torch.eye(p.m, dtype=p.dtype) - mm(HC, B)  # residual = M ybar - H C w for a state x = B ybar + w
        if step.y_coords is None:
            mean_part = block_sum(mm(mm(M, p.y_cov()), M.mH).diagonal(dim1=-2, dim2=-1).real.sum(-1), p.weight)
        elif p.weight is None:
            mean_part = (M @ step.y_coords[..., None].to(p.dtype)).abs().square().sum()
        else:
            raise ValueError("a grouped problem (weighted blocks) has no per-measurement coordinates")
        spread = mm(mm(HC, V), HC.mH)
        if step.resid is not None:
            spread = spread + mm(mm(H, step.resid), H.mH)
        r2 = (mean_part + block_sum(spread.diagonal(dim1=-2, dim2=-1).real.sum(-1), p.weight)) * p.norm_scale
        gain = dps_gain(zeta, r2)  # the sampler's own gain, at the expected squared norm nu_t^2
        G = HC.mH  # (H C)^H = C^H H^H: the vector-Jacobian product of the residual
        A, _, E, k1 = step.ddim(C, zero_b(p), 0.0, eta)
        return AffineStep(A - gain * mm(G, HC), gain * G, E, k1 * eye(p) - gain * mm(G, H))
