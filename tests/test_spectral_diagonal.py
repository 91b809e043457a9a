"""The closed-form transfer functions for blur against Monte Carlo runs of the real sampler code."""

import math

import pytest
import torch

from zsguide.data.gaussian import gaussian_field_spectrum
from zsguide.diffusion.denoisers import AnalyticDenoiser
from zsguide.diffusion.schedule import VPSchedule
from zsguide.operators import make_operator
from zsguide.samplers import get_sampler
from zsguide.spectral.diagonal import DiagonalProblem, criteria, transfer
from zsguide.surrogate import GaussianSurrogate

SCHED = VPSchedule()
METHODS = ["ddrm", "ddnm", "pigdm", "diffpir", "oracle"]


def _setup(size=16, sigma=0.1):
    sur = GaussianSurrogate(3, size, size)
    sur.set(torch.zeros(3, dtype=torch.float64), gaussian_field_spectrum(3, size, 0.3, 2.0, 1 / size))
    op = make_operator("deblur_gaussian", sur.shape, 0, [0], size=5, sigma=1.0)
    return sur, op, DiagonalProblem.from_operator(sur.spectrum, op, sigma)


@pytest.mark.parametrize("steps", [10, 50])
@pytest.mark.parametrize("method", METHODS)
def test_transfer_matches_monte_carlo_given_y(method, steps):
    """N = 800 runs on one measurement. Tolerances: per frequency |mean - B y_hat| < 5 sqrt(v / N) and the variance
    within 5 sqrt(2 / N) relative standard errors of v; the average variance ratio within 4 sqrt(2 / (N K))."""
    N, sigma = 800, 0.1
    sur, op, prob = _setup(sigma=sigma)
    x = sur.sample(1, torch.Generator().manual_seed(4))
    y = op.measure(x, sigma, op.noise_for(0, [0], dtype=torch.float64))
    sampler = get_sampler(method)
    params = sampler.heuristic("deblur_gaussian", steps, SCHED)
    out = sampler.run(AnalyticDenoiser(sur, SCHED), op, y.expand(N, *y.shape[1:]), sigma, params, seed=2,
                      indices=list(range(N)), surrogate=sur)
    closed = transfer(method, prob, params, SCHED.alphas_cumprod)
    u, y_hat = sur.to_spectral(out, centre=False), sur.to_spectral(y, centre=False)[0]
    mean = closed.B * y_hat
    keep = closed.v > 1e-10
    z_mean = (u.mean(0) - mean).abs() / (closed.v / N).sqrt()
    assert z_mean[keep].max() < 5, float(z_mean[keep].max())
    assert torch.allclose(u.mean(0)[~keep], mean[~keep], atol=1e-6)
    ratio = (u - u.mean(0)).abs().square().mean(0)[keep] / closed.v[keep]
    assert ((ratio - 1).abs() / math.sqrt(2 / N)).max() < 5, (float(ratio.min()), float(ratio.max()))
    assert abs(float(ratio.mean()) - 1) < 4 * math.sqrt(2 / (N * ratio.numel()))


@pytest.mark.parametrize("method", METHODS)
def test_closed_form_mse_matches_monte_carlo(method):
    """N = 1000 truths, each with its own measurement and sampler noise: the mean per-pixel MSE within 3 standard
    errors of the closed form sum_k |1 - B h|^2 lam + |B|^2 sigma^2 + v (theory.md §5)."""
    N, sigma, steps = 1000, 0.1, 10
    sur, op, prob = _setup(sigma=sigma)
    x = sur.sample(N, torch.Generator().manual_seed(8))
    idx = list(range(N))
    y = op.measure(x, sigma, op.noise_for(5, idx, dtype=torch.float64))
    sampler = get_sampler(method)
    params = sampler.heuristic("deblur_gaussian", steps, SCHED)
    out = sampler.run(AnalyticDenoiser(sur, SCHED), op, y, sigma, params, seed=6, indices=idx, surrogate=sur)
    mse = (out - x).square().mean((1, 2, 3))
    closed = criteria(prob, transfer(method, prob, params, SCHED.alphas_cumprod), dims=x[0].numel())["mse"]
    assert abs(float(mse.mean()) - float(closed)) < 3 * float(mse.std()) / math.sqrt(N), (float(mse.mean()),
                                                                                           float(closed))


def test_oracle_transfer_is_the_posterior():
    """The oracle is exact for any step count: its closed form equals the posterior (W, sigma_post^2)."""
    _, _, prob = _setup()
    post = prob.posterior()
    for steps in (3, 20):
        params = get_sampler("oracle").heuristic("deblur_gaussian", steps, SCHED)
        out = transfer("oracle", prob, params, SCHED.alphas_cumprod)
        assert torch.allclose(out.B, post.B, atol=1e-10) and torch.allclose(out.v, post.v, atol=1e-10)
    c = criteria(prob, out, dims=prob.lam.numel())
    assert float(c["avg_w2"]) < 1e-10
