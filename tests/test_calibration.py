"""Calibration of a denoiser against the Gaussian surrogate (zsguide/calibration/): the Wiener denoiser's calibration
is its own gain with no residual; a synthetic "network" that is a known linear filter plus independent noise of a
known spectrum is recovered within the jackknife standard errors; the command gives the same result on 1 and 2
devices."""

import math

import pytest
import torch

from zsguide.commands.calibration.response import GROUPS, ResponseAccumulator, ring_index
from zsguide.diffusion.schedule import VPSchedule
from zsguide.surrogate import GaussianSurrogate, apply_colour, power_law_spectrum

from .cli_helpers import ROOT, run_cli

SHAPE = (3, 16, 16)


def surrogate() -> GaussianSurrogate:
    s = GaussianSurrogate(*SHAPE)
    s.set(torch.tensor([0.1, -0.2, 0.05], dtype=torch.float64), power_law_spectrum(*SHAPE, 0.02, 2.0, 0.05))
    return s


def run(denoise, times=(900, 500, 100, 10), n=64, draws=2, seed=0):
    sur, sched = surrogate(), VPSchedule()
    acc = ResponseAccumulator(sur, list(times), sched.alphas_cumprod)
    g = torch.Generator().manual_seed(seed)
    x0 = sur.sample(n, generator=g)
    for j, t in enumerate(times):
        a = float(sched.alphas_cumprod[t])
        for _ in range(draws):
            for start in range(0, n, 16):
                idx = list(range(start, min(start + 16, n)))
                x_t = a**0.5 * x0[idx] + (1 - a) ** 0.5 * torch.randn(
                    len(idx), *SHAPE, generator=g, dtype=torch.float64
                )
                acc.update(j, x_t, denoise(sur, x_t, a, g), idx)
    return sur, acc.finish(draws)


def test_the_wiener_denoiser_calibrates_to_its_own_gain_and_no_residual():
    sur, r = run(lambda s, x_t, a, g: s.denoise(x_t, torch.tensor(a, dtype=torch.float64)))
    c = r.wiener_gain(sur)
    assert torch.allclose(r.gain, c, rtol=1e-9, atol=0)
    power = (r.gain.square() * r.input_power).amax()
    assert float(r.residual.abs().max()) <= 1e-12 * float(power)
    # per ring: the input-power-weighted mean of c, and a residual that is only c's spread within the ring
    ring, R = ring_index(*SHAPE[1:])
    P, flat = r.input_power.flatten(2), ring.flatten()

    def ring_sum(v):
        return torch.zeros(*v.shape[:2], R, dtype=torch.float64).index_add_(-1, flat, v)

    g_b = ring_sum(c.flatten(2) * P) / ring_sum(P)
    assert torch.allclose(r.gain_ring, g_b, rtol=1e-10, atol=0)
    spread = ring_sum((c.flatten(2) - g_b[..., flat]).square() * P) / torch.bincount(flat, minlength=R)
    assert torch.allclose(r.residual_ring, spread, rtol=1e-6, atol=1e-14 * float(power))
    assert r.groups == GROUPS and r.num_images == 64


def test_a_known_filter_plus_known_noise_is_recovered_within_its_standard_errors():
    """Y_k = h_b Z_k + N_k with h_b and E|N_k|^2 = nu_b constant on each ring b: the ring estimates must find h and
    nu, each within 4 jackknife standard errors, and the z-scores must look standard (|z| < 2 for most)."""
    ring, R = ring_index(*SHAPE[1:])
    h = 0.6 + 0.3 * torch.cos(torch.arange(R, dtype=torch.float64))  # per ring
    nu = 1e-3 * (1 + torch.arange(R, dtype=torch.float64)) / R

    def network(s, x_t, a, g):
        z = torch.fft.fft2(apply_colour(s.Q, x_t - a**0.5 * s.mean[:, None, None]), norm="ortho")
        noise = torch.fft.fft2(torch.randn(x_t.shape, generator=g, dtype=torch.float64), norm="ortho")
        y = h[ring] * z + nu[ring].sqrt() * noise
        return s.from_spectral(y)

    _, r = run(network, n=128, draws=2)
    z_gain = (r.gain_ring - h) / r.gain_ring_se
    z_res = (r.residual_ring - nu) / r.residual_ring_se
    for z in (z_gain, z_res):
        assert float(z.abs().max()) < 4.5, z
        assert float((z.abs() < 2).double().mean()) > 0.8


@pytest.mark.slow
def test_calibrate_on_two_devices_equals_one(tmp_path, monkeypatch):
    """With the trained network: OMP_NUM_THREADS=1 in both runs, since Lightning gives each of N CPU processes
    cores / N threads, and a float32 convolution rounds differently with another thread count."""
    ckpt = ROOT / "checkpoints" / "patches32.ckpt"
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # run_cli passes os.environ to the subprocesses; restored after
    common = (
        "calibrate",
        "--ckpt_path",
        ckpt,
        "--denoiser",
        "network",
        "--num_images",
        "16",
        "--num_times",
        "3",
        "--draws",
        "1",
        "--batch_size",
        "5",
        "--trainer.accelerator",
        "cpu",
        "--trainer.enable_progress_bar",
        "false",
    )
    one = run_cli(*common, "--output", tmp_path / "one.pt", cwd=tmp_path)
    assert one.returncode == 0, one.stderr[-2000:]
    two = run_cli(
        *common, "--output", tmp_path / "two.pt", "--trainer.devices", "2", "--trainer.strategy", "ddp", cwd=tmp_path
    )
    assert two.returncode == 0, two.stderr[-2000:]
    a = torch.load(tmp_path / "one.pt", weights_only=True)
    b = torch.load(tmp_path / "two.pt", weights_only=True)
    assert a["timesteps"] == b["timesteps"] and len(a["timesteps"]) == 3 and b["zsguide"]["devices"] == 2
    for key in ("gain", "residual", "gain_ring", "residual_ring", "gain_ring_se", "residual_ring_se"):
        # float64 sums reduced in another order; a residual is a difference of such sums, so it is compared on the
        # scale of the largest value
        assert torch.allclose(a[key], b[key], rtol=1e-9, atol=1e-9 * float(a[key].abs().max())), key
    assert math.isfinite(float(a["gain_ring"].sum()))
