"""The project's central test: the closed-form transfer of every sampler (zsguide/spectral/transfer.py) against Monte
Carlo runs of the real sampler code with the analytic denoiser on Gaussian data, for blur (1 x 1 Fourier blocks),
x2 super-resolution (4 x 4 alias blocks) and random inpainting (dense, 16 x 16 x 3 exactly).

What each step does is checked exactly by tests/test_transfer_sync.py (impulses through the real step give the closed
form's per-step map at random knobs). The Monte Carlo runs here check what that cannot: the whole chain's noise law
(the start, every step's fresh draws independent and white, the output Gaussian with the predicted covariance) and
DPS, whose step divides by the residual norm that the closed form replaces by its expectation. So every sampler of
the registry with a law (``sampler_names(closed_form=True)``, registered variants aside: a new one is checked without
editing this file) runs at
10 steps, and those whose step is not affine (``Sampler.affine`` False: DPS), whose approximation depends on the step
count, also at 50; an exact sampler's law (``Sampler.exact``: the oracle) is the posterior itself."""

import math

import pytest
import torch

from zsguide.data.gaussian import gaussian_field_spectrum
from zsguide.diffusion.denoisers import AnalyticDenoiser
from zsguide.diffusion.schedule import VPSchedule
from zsguide.operators import make_operator
from zsguide.samplers import get_sampler, sampler_names
from zsguide.spectral.criteria import Criteria
from zsguide.spectral.problem import problem_for
from zsguide.spectral.transfer import transfer
from zsguide.surrogate import GaussianSurrogate

from .laws import check_law, coordinate_maps, image_law, law_statistics

SCHED = VPSchedule()
TASKS = {"deblur_gaussian": {"size": 5, "sigma": 1.0}, "sr2": {}, "inpaint_random": {}}
SIZE, SIGMA = 16, 0.1
# random inpainting is the slowest structure (a dense block per window); its cases are marked slow (pyproject.toml)
TASK_CASES = [pytest.param(t, marks=pytest.mark.slow) if t == "inpaint_random" else t for t in TASKS]
# the registry's samplers with a closed-form law; a registered variant (``variant_of``: daps_fast, the same code with
# another ODE step count) has its per-step law checked exactly (test_transfer_sync.py) and shares the chain with it
LAWS = tuple(n for n in sampler_names(closed_form=True) if not get_sampler(n).variant_of)
CASES = [(m, 10) for m in LAWS] + [
    pytest.param(m, 50, marks=pytest.mark.slow) for m in LAWS if not get_sampler(m).affine
]  # module docstring: the per-step maps are checked exactly elsewhere
EXACT = [m for m in LAWS if get_sampler(m).exact]  # the oracle


def _setup(task):
    sur = GaussianSurrogate(3, SIZE, SIZE)
    sur.set(torch.zeros(3, dtype=torch.float64), gaussian_field_spectrum(3, SIZE, 0.3, 2.0, 1 / SIZE))
    op = make_operator(task, sur.shape, 0, [0], **TASKS[task])
    return sur, op, problem_for(sur, op, SIGMA)


@pytest.mark.parametrize("method,steps", CASES)
@pytest.mark.parametrize("task", TASK_CASES)
def test_output_law_given_y_matches_monte_carlo(task, method, steps):
    """N = 500 runs on one measurement against the closed-form law given it, ``N(B ybar, V)`` written in image space
    (tests/laws.py), in the law's eigenbasis, where the K = 768 coordinates are independent N(0, 1) under the law
    (:func:`~tests.laws.check_law`, each bound at about 1e-4 false alarms): the chi-squared aggregate of the K mean
    z-scores below its 1e-4 quantile (922; a per-coordinate 5-SE bound alone lets a systematic error spread thinly
    over many coordinates pass), every |z| < 5 and the component along the predicted mean |z| < 4; the pooled
    variance within 4 standard errors (0.9% of the total) and the spread statistic below 5 (a variance error confined
    to a few directions); the mean exact where the law has no spread. Measured on these cases: chi-squared 724 to
    799, |z| at most 4.0, along the mean at most 2.8, the variance statistics within 2.3."""
    N = 500
    sur, op, p = _setup(task)
    x = sur.sample(1, torch.Generator().manual_seed(4))
    y = op.measure(x, SIGMA, op.noise_for(0, [0], dtype=torch.float64))
    sampler = get_sampler(method)
    params = sampler.heuristic(task, steps, SCHED)
    out = sampler.run(
        AnalyticDenoiser(sur, SCHED),
        op,
        y.expand(N, *y.shape[1:]),
        SIGMA,
        params,
        seed=2,
        indices=list(range(N)),
        surrogate=sur,
    )
    # (DPS: the law with the norm's expectation given y)
    law = transfer(method, p, params, SCHED.alphas_cumprod, y_coords=p.y_coords(y, sur)[0])
    B, V = image_law(law, *coordinate_maps(p, sur, op))
    check_law(*law_statistics(out.flatten(1), B @ y.flatten(), V))


@pytest.mark.parametrize("method,steps", CASES)
@pytest.mark.parametrize("task", TASK_CASES)
def test_closed_form_mse_matches_monte_carlo(task, method, steps):
    """N = 1000 truths, each with its own measurement and sampler noise (one operator): the mean per-pixel MSE within
    3 standard errors of the closed form (theory.md §5). For DPS the closed form replaces the residual norm by its
    expectation, which this test holds to the same 3 SE."""
    N = 1000
    sur, op, p = _setup(task)
    x = sur.sample(N, torch.Generator().manual_seed(8))
    idx = list(range(N))
    y = op.measure(x, SIGMA, op.noise_for(5, idx, dtype=torch.float64))
    sampler = get_sampler(method)
    params = sampler.heuristic(task, steps, SCHED)
    out = sampler.run(AnalyticDenoiser(sur, SCHED), op, y, SIGMA, params, seed=3, indices=idx, surrogate=sur)
    per_image = (out - x).square().flatten(1).mean(1)
    predicted = float(Criteria(p)(transfer(method, p, params, SCHED.alphas_cumprod))["mse"])
    se = float(per_image.std()) / math.sqrt(N)
    assert abs(float(per_image.mean()) - predicted) < 3 * se, (float(per_image.mean()), predicted, se)


@pytest.mark.parametrize("method", EXACT)
@pytest.mark.parametrize("task", TASK_CASES)
def test_oracle_transfer_is_the_posterior(task, method):
    """The oracle's closed form equals the posterior (W, Sigma_post) for any number of steps, up to the start
    ``x_T ~ N(0, I)`` in place of ``p(x_T | y)`` (abar_T = 4e-5): measured 2e-6 on the dense mask problem, 1e-12 on
    Fourier blocks; tolerance 1e-5."""
    sur, op, p = _setup(task)
    params = get_sampler(method).heuristic(task, 7, SCHED)
    out = transfer(method, p, params, SCHED.alphas_cumprod)
    W, post = p.posterior()
    assert torch.allclose(out.B, W, atol=1e-5) and torch.allclose(out.V, post, atol=1e-5)
    c = Criteria(p)(out)
    assert float(c["avg_w2"]) < 1e-8
    assert abs(float(c["mse"]) - Criteria(p).references()["posterior_sampler_mse"]) < 1e-6


@pytest.mark.slow
def test_inpainting_reduction_is_the_window_marginal():
    """Above 16 x 16 a mask problem is the exact law on a 16 x 16 window that keeps the mask's measured fraction: its
    prior covariance equals the empirical covariance of the image's pixels in that window (20000 Gaussian fields, 5
    standard errors), and its mask is the image's mask there; a centred box hole does not swallow the window."""
    sur = GaussianSurrogate(1, 32, 32)
    sur.set(torch.zeros(1, dtype=torch.float64), gaussian_field_spectrum(1, 32, 0.3, 2.0, 1 / 32))
    op = make_operator("inpaint_random", sur.shape, 0, [0])
    p = problem_for(sur, op, SIGMA)
    (r0, c0), mask = p.origin, op.mask[0, 0]
    assert p.grid == (16, 16) and p.note and p.norm_scale == pytest.approx(float(mask.sum() / p.s[0].sum()))
    x = sur.sample(20000, torch.Generator().manual_seed(1))[:, 0, r0 : r0 + 16, c0 : c0 + 16].flatten(1)
    emp = x.T @ x / x.shape[0]
    assert (emp - p.Sigma[0]).abs().max() < 5 * p.Sigma[0].diagonal().max() * math.sqrt(2 / x.shape[0])
    assert torch.equal(p.s[0], mask[r0 : r0 + 16, c0 : c0 + 16].flatten())
    assert abs(float(p.s[0].mean()) - float(mask.mean())) < 0.01
    box = problem_for(sur, make_operator("inpaint_box", sur.shape, 0, [0]), SIGMA)
    assert float(box.s.mean()) == pytest.approx(0.75)  # the whole image keeps 75%; a centred window would keep 0%
