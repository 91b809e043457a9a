"""The VP schedule's identities and the UNet's shapes."""

import pytest
import torch

from zsguide.diffusion.schedule import VPSchedule
from zsguide.diffusion.unet import UNet
from zsguide.errors import ZSGuideError


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_schedule_identities(kind):
    s = VPSchedule(kind=kind)
    betas, abar = s.betas, s.alphas_cumprod
    assert betas.shape == abar.shape == (1000,)
    assert torch.allclose(abar, torch.cumprod(1 - betas, 0))
    assert torch.all(betas > 0) and torch.all(betas < 1)
    assert torch.all(abar[1:] < abar[:-1])  # strictly decreasing signal level
    assert torch.allclose(s.sigmas**2, (1 - abar) / abar)
    # the VE view: x_t / sqrt(abar) = x0 + sigma_t eps
    x0, eps, t = torch.randn(5, dtype=torch.float64), torch.randn(5, dtype=torch.float64), 417
    x_t = abar[t].sqrt() * x0 + (1 - abar[t]).sqrt() * eps
    assert torch.allclose(x_t / abar[t].sqrt(), x0 + s.sigmas[t] * eps)


def test_linear_schedule_matches_ddpm():
    s = VPSchedule()
    assert s.betas[0] == pytest.approx(1e-4) and s.betas[-1] == pytest.approx(0.02)
    assert float(s.alphas_cumprod[-1]) < 1e-4  # x_T is (almost) pure noise


@pytest.mark.parametrize("spacing", ["uniform", "quadratic"])
@pytest.mark.parametrize("steps", [1, 2, 10, 50, 100, 1000])
def test_timesteps_are_a_decreasing_subsequence(spacing, steps):
    taus = VPSchedule().timesteps(steps, spacing)
    assert len(taus) == steps and int(taus[0]) == 999
    if steps > 1:
        assert int(taus[-1]) == 0
        assert torch.all(taus[:-1] > taus[1:])


def test_quadratic_spacing_is_denser_near_zero():
    taus = VPSchedule().timesteps(20, "quadratic").flip(0)
    gaps = taus[1:] - taus[:-1]
    assert gaps[0] < gaps[-1]


def test_nearest_timestep():
    s = VPSchedule()
    for sigma in (0.1, 0.3, 1.0):
        t = s.nearest_timestep(sigma)
        assert abs(float(s.sigmas[t]) / sigma - 1) < 0.05


def test_schedule_errors():
    with pytest.raises(ZSGuideError, match="sqrt"):
        VPSchedule(kind="sqrt")
    with pytest.raises(ZSGuideError, match="steps"):
        VPSchedule().timesteps(0)
    with pytest.raises(ZSGuideError, match="spacing"):
        VPSchedule().timesteps(10, "log")


@pytest.mark.parametrize(
    "channels,size,kwargs",
    [
        (3, 32, {}),
        (1, 16, dict(base_channels=16, channel_mults=(1, 2), attention_levels=())),
        (3, 16, dict(base_channels=8, channel_mults=(1, 2, 2, 2), num_res_blocks=2, attention_levels=(1, 3))),
    ],
)
def test_unet_output_shape(channels, size, kwargs):
    net = UNet(in_channels=channels, **kwargs)
    x = torch.randn(2, channels, size, size)
    out = net(x, torch.tensor([3, 900]))
    assert out.shape == x.shape
    # the head starts at zero, so the Gaussian skip starts as the analytic denoiser
    assert torch.all(out == 0)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.01 * torch.randn_like(p))
    out = net(x, torch.tensor([3, 900]))
    assert out.shape == x.shape and out.abs().sum() > 0 and torch.isfinite(out).all()
