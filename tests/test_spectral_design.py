"""The designer: designed schedules beat the heuristic in closed form, and the real sampler code confirms the
closed-form prediction for a designed schedule by Monte Carlo."""

import math

import pytest
import torch

from zsguide.data.gaussian import gaussian_field_spectrum
from zsguide.diffusion.denoisers import AnalyticDenoiser
from zsguide.diffusion.schedule import VPSchedule
from zsguide.operators import make_operator
from zsguide.samplers import get_sampler
from zsguide.spectral.design import design_diagonal, legendre_basis
from zsguide.spectral.diagonal import DiagonalProblem, transfer
from zsguide.surrogate import GaussianSurrogate

SCHED = VPSchedule()


def _problem(size=16, sigma=0.1):
    lam = gaussian_field_spectrum(3, size, 0.3, 2.0, 1 / size)
    op = make_operator("deblur_gaussian", (3, size, size), 0, [0], size=5, sigma=1.0)
    return lam, op, DiagonalProblem.from_operator(lam, op, sigma)


def test_legendre_basis_is_orthogonal_on_a_fine_grid():
    P = legendre_basis(2001, 3)
    gram = (P @ P.T) / 2001
    assert torch.allclose(gram, torch.diag(torch.tensor([1, 1 / 3, 1 / 5, 1 / 7], dtype=torch.float64)), atol=2e-3)


@pytest.mark.parametrize("steps", [10, 50])
@pytest.mark.parametrize("method", ["ddrm", "ddnm", "pigdm", "diffpir"])
def test_design_lowers_avg_w2(method, steps):
    _, _, prob = _problem()
    h = get_sampler(method).heuristic("deblur_gaussian", steps, SCHED)
    r = design_diagonal(method, prob, h, SCHED.alphas_cumprod, max_iter=30)
    assert r.designed["avg_w2"] < 0.98 * r.heuristic["avg_w2"], (r.heuristic, r.designed)
    assert r.params.provenance["source"] == "spectral" and r.params.timesteps == h.timesteps
    varied = [k for k, v in r.params.values.items() if max(v) - min(v) > 1e-6]
    assert varied, "the designed schedule should not be a constant like the heuristic"


def test_designed_schedule_runs_as_predicted():
    """Monte Carlo of the real DiffPIR code with a designed schedule, N = 800 runs on one measurement: the output
    variance per frequency within 5 sqrt(2/N) relative standard errors of the closed form, averaged ratio within
    4 sqrt(2 / (N K))."""
    N, sigma = 800, 0.1
    lam, op, prob = _problem(sigma=sigma)
    sur = GaussianSurrogate(3, 16, 16)
    sur.set(torch.zeros(3, dtype=torch.float64), lam)
    h = get_sampler("diffpir").heuristic("deblur_gaussian", 10, SCHED)
    designed = design_diagonal("diffpir", prob, h, SCHED.alphas_cumprod, max_iter=30).params
    x = sur.sample(1, torch.Generator().manual_seed(4))
    y = op.measure(x, sigma, op.noise_for(0, [0], dtype=torch.float64))
    out = get_sampler("diffpir").run(AnalyticDenoiser(sur, SCHED), op, y.expand(N, *y.shape[1:]), sigma, designed,
                                     seed=2, indices=list(range(N)))
    closed = transfer("diffpir", prob, designed, SCHED.alphas_cumprod)
    u = sur.to_spectral(out, centre=False)
    ratio = (u - u.mean(0)).abs().square().mean(0) / closed.v
    assert ((ratio - 1).abs() / math.sqrt(2 / N)).max() < 5
    assert abs(float(ratio.mean()) - 1) < 4 * math.sqrt(2 / (N * ratio.numel()))
