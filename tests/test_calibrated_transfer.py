"""The closed forms with a calibrated denoiser model (zsguide/spectral/denoiser_model.py) against Monte Carlo of the
real sampler code run with a synthetic "network" that is exactly such a model: a known linear filter per decorrelated
frequency, ``g_t = rho_g c_t``, plus fresh independent noise of the known spectrum ``r_t = rho_r s_t``, on Gaussian
data, for every sampler on blur, x2 super-resolution and random inpainting (dense 16 x 16 x 3, exactly)."""

import math

import pytest
import torch

from zsguide.data.gaussian import gaussian_field_spectrum
from zsguide.diffusion.denoisers import Denoiser
from zsguide.diffusion.schedule import VPSchedule
from zsguide.operators import make_operator
from zsguide.samplers import get_sampler, sampler_names
from zsguide.samplers.oracle import apply_cov
from zsguide.spectral.criteria import Criteria
from zsguide.spectral.denoiser_model import CalibratedDenoiser, wiener_error, wiener_gain
from zsguide.spectral.problem import problem_for
from zsguide.spectral.transfer import transfer
from zsguide.surrogate import GaussianSurrogate, radial_frequency

SCHED = VPSchedule()
TASKS = {"deblur_gaussian": {"size": 5, "sigma": 1.0}, "sr2": {}, "inpaint_random": {}}
# random inpainting is the slowest structure (a dense block per window); its cases are marked slow (pyproject.toml)
TASK_CASES = [pytest.param(t, marks=pytest.mark.slow) if t == "inpaint_random" else t for t in TASKS]
SIZE, SIGMA, STEPS = 16, 0.1, 20


def _surrogate() -> GaussianSurrogate:
    sur = GaussianSurrogate(3, SIZE, SIZE)
    sur.set(torch.tensor([0.1, -0.1, 0.0], dtype=torch.float64), gaussian_field_spectrum(3, SIZE, 0.3, 2.0, 1 / SIZE))
    return sur


def _ratios() -> tuple[torch.Tensor, torch.Tensor]:
    """A gain 20% below Wiener at the lowest frequencies to 20% above at the highest, and a residual of 20-60% of the
    Wiener error: a denoiser far enough from Wiener that the Gaussian closed form misses it."""
    f = radial_frequency(SIZE, SIZE).to(torch.float64)
    f = (f / f.max()).expand(3, SIZE, SIZE)
    return 0.8 + 0.4 * f, 0.2 + 0.4 * f


class FilterPlusNoise(Denoiser):
    """``x0_hat = mu + Q^T F^H (g_t F Q (x_t - sqrt(abar) mu)) + n``, ``n ~ N(0, Q^T F^H diag(r_t) F Q)`` fresh at
    every call (float64): autograd sees only the filter, as the model assumes."""

    def __init__(self, sur, gain_ratio, residual_ratio, seed: int) -> None:
        super().__init__(SCHED)
        self.sur, self.gr, self.rr = sur, gain_ratio, residual_ratio
        self.gen = torch.Generator().manual_seed(seed)

    def x0(self, x_t, t):
        a = float(SCHED.alphas_cumprod[int(t)])
        lam, mu = self.sur.spectrum, self.sur.mean[:, None, None]
        filtered = self.sur.from_spectral(
            self.gr * wiener_gain(lam, a) * self.sur.to_spectral(x_t - a**0.5 * mu, centre=False), centre=False
        )
        w = torch.randn(x_t.shape, generator=self.gen, dtype=torch.float64)
        noise = apply_cov(self.sur, (self.rr * wiener_error(lam, a)).sqrt(), w)
        return mu + filtered + noise.to(x_t.dtype)


def _model(sur, gr, rr) -> CalibratedDenoiser:
    """The model as a calibration at five times would give it (constant ratios: interpolation is exact)."""
    times = [999, 700, 400, 100, 5]
    abar = SCHED.alphas_cumprod[times].to(torch.float64)
    a, lam = abar.reshape(-1, 1, 1, 1), sur.spectrum
    return CalibratedDenoiser.from_fields(lam, abar, gr * wiener_gain(lam, a), rr * wiener_error(lam, a))


@pytest.mark.parametrize("method", [n for n in sampler_names(closed_form=True) if not get_sampler(n).variant_of])
@pytest.mark.parametrize("task", TASK_CASES)
def test_calibrated_closed_form_mse_matches_monte_carlo(task, method):
    """N = 1000 truths, each with its own measurement and sampler noise (one operator), heuristic knobs at 20 steps:
    the mean per-pixel MSE within 3 standard errors of the calibrated closed form, and closer to it than to the
    Gaussian (Wiener) closed form, which ignores the filter's deviation and the residual. Measured: calibrated
    |z| <= 2.0 in all 18 cells (the cells share their truths, so their z-scores move together), Gaussian z of 47 to
    150 except DPS (12 on blur, 8.6 on inpainting, 3.0 on sr2: its residual-norm step is nearly blind to the
    denoiser)."""
    N = 1000
    sur = _surrogate()
    gr, rr = _ratios()
    op = make_operator(task, sur.shape, 0, [0], **TASKS[task])
    x = sur.sample(N, torch.Generator().manual_seed(8))
    idx = list(range(N))
    y = op.measure(x, SIGMA, op.noise_for(5, idx, dtype=torch.float64))
    sampler = get_sampler(method)
    params = sampler.heuristic(task, STEPS, SCHED)
    out = sampler.run(FilterPlusNoise(sur, gr, rr, seed=11), op, y, SIGMA, params, seed=3, indices=idx, surrogate=sur)
    per_image = (out - x).square().flatten(1).mean(1)
    se = float(per_image.std()) / math.sqrt(N)
    p = problem_for(sur, op, SIGMA, denoiser=_model(sur, gr, rr))
    predicted = float(Criteria(p)(transfer(method, p, params, SCHED.alphas_cumprod))["mse"])
    assert abs(float(per_image.mean()) - predicted) < 3 * se, (float(per_image.mean()), predicted, se)
    g = problem_for(sur, op, SIGMA)
    gaussian = float(Criteria(g)(transfer(method, g, params, SCHED.alphas_cumprod))["mse"])
    assert abs(float(per_image.mean()) - gaussian) > abs(float(per_image.mean()) - predicted), (gaussian, predicted)


@pytest.mark.slow
def test_a_wiener_calibration_reproduces_the_gaussian_closed_form():
    """Ratios 1 and 0: the calibrated model is the Wiener denoiser, so every sampler's closed form is the Gaussian one
    (to float rounding) on every structure; in between calibrated times the ratios are interpolated in log SNR."""
    sur = _surrogate()
    one, zero = torch.ones(3, SIZE, SIZE, dtype=torch.float64), torch.zeros(3, SIZE, SIZE, dtype=torch.float64)
    model = _model(sur, one, zero)
    for task in TASKS:
        op = make_operator(task, sur.shape, 0, [0], **TASKS[task])
        cal, gau = problem_for(sur, op, SIGMA, denoiser=model), problem_for(sur, op, SIGMA)
        for method in sampler_names(closed_form=True):
            params = get_sampler(method).heuristic(task, 7, SCHED)
            a = transfer(method, cal, params, SCHED.alphas_cumprod)
            b = transfer(method, gau, params, SCHED.alphas_cumprod)
            assert torch.allclose(a.B, b.B, atol=1e-9) and torch.allclose(a.V, b.V, atol=1e-9), (task, method)
    g, r = model.fields(float(SCHED.alphas_cumprod[550]))  # between calibrated times 700 and 400
    assert torch.allclose(g, wiener_gain(sur.spectrum, float(SCHED.alphas_cumprod[550])), rtol=1e-12)
    assert float(r.abs().max()) == 0.0


def test_calibration_files_are_checked_against_the_surrogate_and_checkpoint(tmp_path):
    """A calibration file is read with weights_only and refused, naming it, when it describes another surrogate or
    checkpoint file; a matching one gives the model its fields; --denoiser_model takes gaussian or calibrated only."""
    from zsguide.errors import ZSGuideError
    from zsguide.runtime.files import atomic_torch_save
    from zsguide.spectral.denoiser_model import denoiser_model_for, load_calibration

    sur = _surrogate()
    abar = SCHED.alphas_cumprod[[900, 100]].to(torch.float64)
    gain = 0.9 * wiener_gain(sur.spectrum, abar.reshape(-1, 1, 1, 1))
    content = {
        "zsguide": {"kind": "calibration", "surrogate_digest": sur.digest(), "checkpoint_sha256": "ab" * 32},
        "abar": abar,
        "gain": gain,
        "residual": torch.zeros_like(gain),
    }
    path = tmp_path / "cal.pt"
    atomic_torch_save(content, path)
    model = load_calibration(path, sur, "ab" * 32)
    g, _ = model.fields(float(abar[0]))
    assert torch.allclose(g, gain[0], rtol=1e-12)
    with pytest.raises(ZSGuideError, match="another checkpoint file"):
        load_calibration(path, sur, "cd" * 32)
    other = _surrogate()
    other.set(other.mean, 2 * other.spectrum)
    with pytest.raises(ZSGuideError, match=r"cal\.pt.*another Gaussian surrogate"):
        load_calibration(path, other)
    with pytest.raises(ZSGuideError, match="--denoiser_model must be one of gaussian, calibrated"):
        denoiser_model_for("network", sur)
    with pytest.raises(ZSGuideError, match="no calibration of"):
        denoiser_model_for("calibrated", sur, str(path))  # no file next to this 'checkpoint'
    ckpt = tmp_path / "other.ckpt"
    ckpt.write_bytes(b"another checkpoint")
    with pytest.raises(ZSGuideError, match="another checkpoint file"):  # an explicit file is checked as well
        denoiser_model_for("calibrated", sur, str(ckpt), str(path))
    assert denoiser_model_for("gaussian", sur) is None
