"""DAPS against its reference code, written out literally with dense matrices (issue 25, with issue 23's fidelity
tests).

The reference: zhangbingliang2019/DAPS, pixel space. One annealing level at ``sigma`` (``configs/sampler/
edm_daps.yaml``, ``cores/scheduler.py`` ``EDMScheduler``, ``cores/mcmc.py`` ``MCMCSampler`` with ``mc_algo:
langevin``, ``prior_solver: gaussian``):

1. ``x0hat``: the PF-ODE by Euler steps on ``EDMScheduler(num_steps=5, sigma_max=sigma, sigma_min=0.01)``: 6 points
   of ``(sigma_max^(1/7) + r (sigma_min^(1/7) - sigma_max^(1/7)))^7`` (``num_steps + 1``), ``sigma_steps`` the first
   5 then 0 (``discretize``); ``x <- x + (s_{k+1} - s_k) (x - D(x, s_k)) / s_k``.
2. ``MCMCSampler.sample``: ``x = x0hat``; 100 times ``score = -grad ||A x - y||^2 / tau^2 + (xt - x) / sigma^2 +
   (x0hat - xt) / sigma^2`` (``score_fn``: the operator's ``loss`` is the sum of squares, ``prepare_prior_score``
   with ``gaussian``), ``x = x + lr score + sqrt(2 lr) epsilon`` (``mc_update``);
3. ``x_next = x + sigma_next randn``; the last level returns the ODE's ``x0hat`` (``return_ode``).

Written here in float64 with the dense operator ``H``, the surrogate's affine Wiener denoiser ``D = J x + d`` and the
test's noise. Deliberate differences of the package, stated and checked to be exactly that: the network is evaluated
at the training time nearest each ODE sigma, with that time's own level in the Euler step (a discrete-time network
has no other levels; the reference's networks take a continuous time), so the reference loop here takes the same
levels; ``r_i = r_scale sigma_i`` with ``r_scale`` a knob (the reference: 1); and the 100 Langevin steps, which involve
no network, are applied at once in the operator's SVD basis with one white draw (samplers/daps.py): the same Gaussian
law, so the test compares the step's mean map with the literal loop run without noise, and its noise covariance with
the loop's, ``2 lr sum_j G^j G^jT`` with the dense ``G = I - lr (2 H^T H / tau^2 + I / r^2)``, to 1e-10.
"""

import math

import pytest
import torch

from zsguide.operators import make_operator
from zsguide.samplers import get_sampler

from .test_reference_pigdm_dps_diffpir import ABAR, STRUCTURES, C, Problem, S, _params, _uniform

N = C * S * S
REL = 1e-10


def nearest_time(sigma: float) -> int:
    sig = ((1 - ABAR) / ABAR).sqrt()
    return int((sig.log() - math.log(sigma)).abs().argmin())


def ode_reference(prob, x_ve, sigma_max, num_steps=5):
    """Step 1, literally (EDMScheduler's grid and discretize), each sigma taken at its nearest training time."""
    r = torch.linspace(0, 1, num_steps + 1, dtype=torch.float64)
    time_steps = (sigma_max ** (1 / 7) + r * (0.01 ** (1 / 7) - sigma_max ** (1 / 7))) ** 7
    levels = [nearest_time(float(s)) for s in time_steps[:-1]]
    levels[0] = nearest_time(sigma_max)
    sig = [float(((1 - ABAR[k]) / ABAR[k]).sqrt()) for k in levels] + [0.0]
    x = x_ve
    for j, k in enumerate(levels):
        Jk, dk = prob.affine_denoiser(k)
        D = (math.sqrt(float(ABAR[k])) * x) @ Jk.T + dk  # the denoiser takes x_t = sqrt(abar) x_ve
        x = x + (sig[j + 1] - sig[j]) * (x - D) / sig[j]
    return x


def langevin_reference(H, y, x0, lr, tau, r, steps=100):
    """Step 2 with no noise (its mean), literally, and its noise covariance from the dense recursion."""
    x = x0.clone()
    for _ in range(steps):
        data = 2 * (x @ H.T - y) @ H  # grad ||H x - y||^2
        score = -data / tau**2 + (x0 - x) / r**2
        x = x + lr * score
    G = torch.eye(N, dtype=torch.float64) - lr * (2 * H.T @ H / tau**2 + torch.eye(N, dtype=torch.float64) / r**2)
    cov, Gj = torch.zeros(N, N, dtype=torch.float64), torch.eye(N, dtype=torch.float64)
    for _ in range(steps):
        cov = cov + 2 * lr * Gj @ Gj.T
        Gj = G @ Gj
    return x, cov


@pytest.mark.parametrize("name", list(STRUCTURES))
@pytest.mark.parametrize("last", [False, True])
@pytest.mark.parametrize("variant", ["daps", "daps_fast"])
def test_daps_step_is_the_reference_level(name, last, variant):
    """One level at a random time with random knobs (``step_size`` in [1e-4, 5e-4], ``tau`` in [0.1, 0.3],
    ``r_scale`` in [0.5, 2]), noisy measurements, two images: the step's output with its noise set to 0 equals the
    reference level without noise, and its noise covariance (impulses through its two streams) the reference's, to
    1e-10 relative; the last level is the ODE's estimate alone."""
    seed = 61 + list(STRUCTURES).index(name) + (13 if last else 0)
    prob = Problem(name, seed=seed)
    sigma = 0.1
    x, y, _ = prob.draw(sigma)
    g = prob.gen
    t, a_t, a_prev = prob.times(last)
    lr, tau, r_scale = _uniform(g, 1e-4, 5e-4), _uniform(g, 0.1, 0.3), _uniform(g, 0.5, 2.0)
    sampler = get_sampler(variant)  # daps_fast: the reference's diffusion_scheduler_config with num_steps 1
    params = _params(sampler, prob.task, {"step_size": lr, "tau": tau, "r_scale": r_scale})

    def zeros_for(n):
        return lambda stream, of_shape=(C, S, S), dtype=torch.float64, **_: torch.zeros(n, *of_shape, dtype=dtype)

    zeros = zeros_for(x.shape[0])

    out, _ = sampler.step(prob.den, prob.op, y, sigma, params, 0, t, a_t, a_prev, x, zeros, prob.sur)
    sigma_t = math.sqrt((1 - a_t) / a_t)
    for b in range(x.shape[0]):
        x0 = ode_reference(prob, x[b].reshape(-1) / math.sqrt(a_t), sigma_t, sampler.ode_steps)
        if last:
            want = x0
        else:
            mean, _ = langevin_reference(prob.H[b], y[b].reshape(-1), x0, lr, tau, r_scale * sigma_t)
            want = math.sqrt(a_prev) * mean
        err = float((out[b].reshape(-1) - want).abs().max()) / float(want.abs().max())
        assert err < REL, f"{name} image {b}: mean, relative error {err:.2e}"
    if last:
        return
    # the noise: impulses through each of the step's streams, with image 0's operator for every impulse
    task, task_params = STRUCTURES[name]
    op0 = make_operator(task, (C, S, S), seed, [0], **task_params)
    base, _ = sampler.step(prob.den, op0, y[:1], sigma, params, 0, t, a_t, a_prev, x[:1], zeros_for(1), prob.sur)
    xs, ys = x[:1].expand(N, -1, -1, -1), y[:1].expand(N, *y.shape[1:])
    cols = []
    for stream in ("langevin", "z"):

        def noise(st, of_shape=(C, S, S), dtype=torch.float64, stream=stream, **_):
            return torch.eye(N, dtype=dtype).reshape(N, C, S, S) if st == stream else torch.zeros(N, *of_shape)

        resp, _ = sampler.step(prob.den, op0, ys, sigma, params, 0, t, a_t, a_prev, xs, noise, prob.sur)
        cols.append((resp - base).reshape(N, -1).T)
    J = torch.cat(cols, dim=1)
    r = r_scale * sigma_t
    _, cov = langevin_reference(prob.H[0], y[0].reshape(-1), torch.zeros(N, dtype=torch.float64), lr, tau, r)
    want = a_prev * cov + (1 - a_prev) * torch.eye(N, dtype=torch.float64)
    err = float((J @ J.T - want).abs().max()) / float(want.abs().max())
    assert err < REL, f"{name}: noise covariance, relative error {err:.2e}"


def test_langevin_with_many_steps_reaches_the_conditional_gaussian():
    """The law's Langevin block (``langevin_sums``: the AR(1) recursion after M steps, per SVD coordinate) with many
    small steps reaches the exact Gaussian of its target ``exp(-(s x - cy)^2 / tau^2 - (x - x0)^2 / (2 r^2))``:
    precision ``lam = 2 s^2 / tau^2 + 1 / r^2``, mean ``(2 s cy / tau^2 + x0 / r^2) / lam``. The discretised chain's
    stationary variance is ``2 / (lam (2 - lr lam))``, so at ``lr lam <= 2e-3`` the variance is within 2e-3 of
    ``1 / lam`` (relative) and, after ``M lr lam >= 40`` (``G^M < e^-40``), the mean to 1e-12."""
    from zsguide.samplers.daps import langevin_sums

    s = torch.tensor([0.0, 0.05, 0.2, 0.3], dtype=torch.float64)
    tau, r, x0, cy = 0.2, 0.5, torch.tensor([0.3, -1.0, 2.0, 0.1]), torch.tensor([0.0, 0.4, -0.2, 0.7])
    lam = 2 * s**2 / tau**2 + 1 / r**2
    lr = 2e-3 / float(lam.max())
    M = int(40 / (lr * float(lam.min()))) + 1
    GM, S1, S2 = langevin_sums(1 - lr * lam, M)
    mean = (GM + lr / r**2 * S1) * x0 + (2 * lr / tau**2) * S1 * s * cy
    var = 2 * lr * S2
    exact_mean = (2 * s * cy / tau**2 + x0 / r**2) / lam
    assert torch.allclose(mean, exact_mean.double(), rtol=1e-12, atol=1e-12)
    assert torch.allclose(var, 1 / lam, rtol=2e-3, atol=0)
    assert torch.allclose(var, 2 / (lam * (2 - lr * lam)), rtol=1e-10, atol=0)  # the discretised chain's, exactly
