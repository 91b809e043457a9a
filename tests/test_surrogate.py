"""The Gaussian surrogate: spectrum recovery on data with a known spectrum, and the analytic denoiser against Monte
Carlo estimates of E[x0 | x_t]."""

import math

import pytest
import torch
from torch.utils.data import DataLoader

from zsguide.data.gaussian import GaussianFieldDataset, gaussian_field_spectrum
from zsguide.diffusion.denoisers import AnalyticDenoiser
from zsguide.diffusion.schedule import VPSchedule
from zsguide.surrogate import GaussianSurrogate, SpectrumAccumulator, colour_transform, radial_average


def _gaussian_batch(n, size=16, channels=3, mean=0.2, seed=0):
    ds = GaussianFieldDataset(
        n, channels, size, amplitude=0.3, slope=2.0, f0=1 / 16, mean=mean, seed=seed, split="train"
    )
    x = torch.cat([b["image"] for b in DataLoader(ds, batch_size=512)]).double()
    return 2 * x - 1, ds.spectrum


def _self_conjugate(h, w):
    """Frequencies k with k == -k (mod size): their DFT coefficient is real."""
    ky, kx = torch.arange(h)[:, None], torch.arange(w)[None, :]
    return ((2 * ky) % h == 0) & ((2 * kx) % w == 0)


def test_colour_transform_is_orthogonal():
    for c in (1, 3):
        Q = colour_transform(c)
        assert torch.allclose(Q @ Q.T, torch.eye(c, dtype=torch.float64), atol=1e-15)


def test_surrogate_recovers_known_spectrum():
    """Tolerance: the averaged periodogram of N images has relative standard error 1/sqrt(N) at complex frequencies
    and sqrt(2/N) at self-conjugate ones; every frequency must lie within 5 standard errors, the mean within 0.5%
    of its true value and the total power within 1%."""
    N, size = 2000, 16
    x, true = _gaussian_batch(N, size)
    acc = SpectrumAccumulator(3, size, size)
    for chunk in x.split(700):
        acc.update(chunk)
    mu, lam = acc.finish(floor=1e-12)
    rel_se = torch.where(_self_conjugate(size, size), math.sqrt(2 / N), math.sqrt(1 / N))
    z = (lam / true - 1) / rel_se
    z[:, 0, 0] = 0  # DC: estimated about a fitted mean, checked through mu below
    assert z.abs().max() < 5, float(z.abs().max())
    assert abs(float(lam.sum() / true.sum()) - 1) < 0.01
    # the mean: 0.2 in every channel; its standard error is sqrt(lambda_0 / (N H W)) per decorrelated channel
    assert torch.allclose(
        mu, torch.full((3,), 0.2, dtype=torch.float64), atol=5 * math.sqrt(true[0, 0, 0] / (N * size**2))
    )


def test_accumulator_is_additive_across_shards():
    """What ranks all-reduce: the sums of two shards give the same surrogate as one pass."""
    x, _ = _gaussian_batch(200, 8)
    one, a, b = (SpectrumAccumulator(3, 8, 8) for _ in range(3))
    one.update(x)
    a.update(x[::2])
    b.update(x[1::2])
    merged = SpectrumAccumulator(3, 8, 8)
    merged.load_state(a.state() + b.state())
    for p, q in zip(one.finish(1e-9), merged.finish(1e-9)):
        assert torch.allclose(p, q, rtol=1e-12, atol=0)


def test_sample_and_spectral_round_trip():
    s = GaussianSurrogate(3, 8, 8)
    spec = gaussian_field_spectrum(3, 8, 0.3, 2.0, 1 / 8)
    s.set(torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64), spec)
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    assert torch.allclose(s.from_spectral(s.to_spectral(x)), x, atol=1e-12)
    draws = s.sample(4000, torch.Generator().manual_seed(1))
    assert torch.allclose(draws.mean((0, 2, 3)), s.mean, atol=0.02)
    emp = s.to_spectral(draws).abs().square().mean(0)
    assert abs(float(emp.sum() / spec.sum()) - 1) < 0.03


@pytest.mark.parametrize("t", [20, 300, 700])
def test_analytic_denoiser_is_the_conditional_mean(t):
    """E[x0 | x_t] = D(x_t) holds iff the residual x0 - D(x_t) is uncorrelated with every function of x_t; for a
    Gaussian pair it suffices that, per decorrelated frequency k, the least-squares slope of u0_k on d_k (the spectral
    coefficients of x0 - mu and D(x_t) - mu) is 1 and the residual mean is 0. Tolerances: 5 standard errors for every
    frequency's slope, the mean squared z-score in [0.6, 1.5], and the MSE within 5 standard errors of sum_k s_k / n
    (theory.md §3)."""
    N, size = 4000, 8
    sur = GaussianSurrogate(3, size, size)
    sur.set(torch.full((3,), 0.2, dtype=torch.float64), gaussian_field_spectrum(3, size, 0.3, 2.0, 1 / 8))
    x0 = sur.sample(N, torch.Generator().manual_seed(3))
    sched = VPSchedule()
    den = AnalyticDenoiser(sur, sched)
    abar = sched.alphas_cumprod[t]
    gen = torch.Generator().manual_seed(t)
    x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * torch.randn(x0.shape, generator=gen, dtype=torch.float64)
    d = den(x_t, t)
    assert d.dtype == torch.float64
    u0, ud = sur.to_spectral(x0), sur.to_spectral(d)
    s_k = sur.posterior_variance(abar)[0]
    slope = (u0 * ud.conj()).real.sum(0) / ud.abs().square().sum(0)
    dof = torch.where(_self_conjugate(size, size), 1.0, 2.0).to(torch.float64)
    se = (s_k / (dof * ud.abs().square().sum(0))).sqrt()
    z = (slope - 1) / se
    assert z.abs().max() < 5, float(z.abs().max())
    assert 0.6 < float(z.square().mean()) < 1.5
    resid = x0 - d
    assert resid.mean().abs() < 5 * math.sqrt(float(s_k.sum()) / (size * size * 3) ** 2 / N * 3)
    mse = resid.square().mean((1, 2, 3))
    expected = float(s_k.sum()) / (3 * size * size)
    assert abs(float(mse.mean()) - expected) < 5 * float(mse.std()) / math.sqrt(N)


def test_radial_average_of_constant_is_constant():
    f, avg = radial_average(torch.full((2, 16, 16), 3.0, dtype=torch.float64))
    assert torch.allclose(avg, torch.full_like(avg, 3.0)) and torch.all(f[1:] > f[:-1])
