"""PiGDM, DPS and DiffPIR against their papers' reference code, written out literally (issue 23, item 1).

Every test here computes one sampling step the way the reference repository computes it, with dense matrices at
3 x 8 x 8 (N = 192 pixels) in float64, and compares it with the package's ``sampler.step`` given the same state
``x_t``, measurement, denoiser and injected noise, to float64 rounding (``REL = 1e-10`` relative). Nothing here
calls the package's coefficient functions (``pigdm_coefficients``, ``dps_gain``, ``diffpir_coefficients``,
``DiffPIR.rho``, ``ddim_coefficients``, ``ddim_from_estimate``) or its SVD helpers: the operator is a dense matrix
``H`` built from the task's definition (periodic convolution with the Gaussian kernel's formula, block means,
decimation, the 0/1 mask), checked once against ``op.A`` on impulses; its truncated SVD is ``torch.linalg.svd`` of
that matrix; the denoiser is the Gaussian surrogate's analytic (Wiener) denoiser, which is affine, so
``x0_hat = J x + d`` with ``J`` its explicit Jacobian (pushed impulses) and both sides see the same ``x0_hat`` and
``J``. The step's fresh noise is the test's own tensor (the ``noise(stream)`` callable returns it).

References (fetched snapshots; line numbers are those files' at their HEAD):

- PiGDM: Song et al. 2023, "Pseudoinverse-Guided Diffusion Models for Inverse Problems" (ICLR), the noisy guidance
  ``(y - H x0_hat)^T (r_t^2 H H^T + sigma_y^2 I)^{-1} H dx0_hat/dx_t`` with ``r_t^2 = sigma_t^2 / (1 + sigma_t^2)``;
  NVlabs/RED-diff ``algos/pgdm.py`` ``PGDM.sample`` with ``_configs/algo/pgdm.yaml`` (``awd: True``).
- DPS: DPS2022/diffusion-posterior-sampling ``guided_diffusion/condition_methods.py`` (``grad_and_value``,
  ``PosteriorSampling.conditioning``) and ``guided_diffusion/gaussian_diffusion.py`` (``DDIM.p_sample``, the DDPM
  posterior ``q_posterior_mean_variance`` coefficients, ``SpacedDiffusion``'s respaced betas).
- DiffPIR: yuanzhi-zhu/DiffPIR ``main_ddpir_deblur.py``, ``main_ddpir_sisr.py``, ``main_ddpir_inpainting.py`` and
  ``utils/utils_sisr.py`` ``data_solution`` (the closed-form proximal step), the re-noising with ``zeta``.

Deliberate differences of the project, each stated where it is tested and checked to be exactly that:
``sigma`` in network units ([-1, 1]: ``sigma = 2 sigma_y``, DiffPIR's pixel-unit ``sigma_pix = sigma / 2``); the
truncated SVD (singular values ``<= rcond * max`` count as 0 for the SVD-based PiGDM and DiffPIR, as ``A_pinv``);
PiGDM's ``r_t^2`` written ``1 - abar_t``; DPS's residual norm per image (the reference: over the batch), its DDIM
step with ``eta`` (the reference's ``ddpm`` config is ``eta = 1``), no clipping of ``x0_hat``, no learned variance;
DiffPIR's ``rho`` from ``lam`` and ``sigma`` (the same formula, other units), ``lam`` per radial band on blur (an
extension), and the last step returning the data-consistent ``x0_y`` (the reference returns the state).
"""

import math

import pytest
import torch

from zsguide.data.gaussian import gaussian_field_spectrum
from zsguide.diffusion.denoisers import AnalyticDenoiser
from zsguide.diffusion.schedule import VPSchedule
from zsguide.operators import make_operator
from zsguide.samplers import get_sampler
from zsguide.surrogate import GaussianSurrogate

SCHED = VPSchedule()
ABAR = SCHED.alphas_cumprod  # float64, index t
C, S, B = 3, 8, 2  # channels, side, images per batch
N = C * S * S
REL = 1e-10
# The structures every SVD sampler supports, as (task, task parameters): circulant blur, super-resolution by block
# averaging and by blur + decimation, random and box inpainting. Kernels of size 5 fit the 8 x 8 images.
STRUCTURES = {
    "blur": ("deblur_gaussian", {"size": 5, "sigma": 1.0}),
    "sr2_block": ("sr2", {}),
    "sr2_kernel": ("sr2", {"kernel": "gaussian", "kernel_size": 5}),
    "inpaint_random": ("inpaint_random", {}),
    "inpaint_box": ("inpaint_box", {}),
}
SIGMAS = (0.0, 0.13)  # measurement noise std in network units: noiseless and noisy


# ---------------------------------------------------------------------------------------------------------------
# The problem, written from definitions
# ---------------------------------------------------------------------------------------------------------------


def _gauss(size: int, sigma: float) -> torch.Tensor:
    r = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    k = g[:, None] * g[None, :]
    return k / k.sum()


def _circulant(k: torch.Tensor) -> torch.Tensor:
    """(S*S, S*S): periodic convolution ``y[i, j] = sum_ab k[a, b] x[i - a + c, j - b + c]`` (kernel centred at c)."""
    c = k.shape[0] // 2
    M = torch.zeros(S * S, S * S, dtype=torch.float64)
    for i in range(S):
        for j in range(S):
            for a in range(k.shape[0]):
                for b in range(k.shape[1]):
                    M[i * S + j, ((i - a + c) % S) * S + (j - b + c) % S] += k[a, b]
    return M


def _dense_operator(name: str, op, image: int) -> torch.Tensor:
    """``H`` (M x N) of image ``image`` from the task's definition (per channel, block diagonal over channels)."""
    task, params = STRUCTURES[name]
    eye_c = torch.eye(C, dtype=torch.float64)
    if task == "deblur_gaussian":
        return torch.kron(eye_c, _circulant(_gauss(params["size"], params["sigma"])))
    if task == "sr2":
        f, h = 2, S // 2
        if "kernel" in params:  # y = (k * x)[::2, ::2], kernel sigma = factor / 2
            dec = torch.zeros(h * h, S * S, dtype=torch.float64)
            for i in range(h):
                for j in range(h):
                    dec[i * h + j, (f * i) * S + f * j] = 1.0
            per = dec @ _circulant(_gauss(params["kernel_size"], f / 2))
        else:  # y = mean of each 2 x 2 block
            per = torch.zeros(h * h, S * S, dtype=torch.float64)
            for i in range(h):
                for j in range(h):
                    for a in range(f):
                        for b in range(f):
                            per[i * h + j, (f * i + a) * S + f * j + b] = 1.0 / f**2
        return torch.kron(eye_c, per)
    mask = op.mask[min(image, op.mask.shape[0] - 1), 0].reshape(-1)  # the drawn 0/1 mask is data
    return torch.kron(eye_c, torch.diag(mask.to(torch.float64)))


def _truncated(H: torch.Tensor, rcond: float) -> tuple[torch.Tensor, ...]:
    """``(H_eff, H_eff^+, U_k, s_k, Vh_k)``: ``H``'s dense SVD with singular values ``<= rcond * max`` set to 0 (the
    project's convention for its SVD samplers, as ``A_pinv``; a 1e-9 floor drops the SVD's numerical zeros)."""
    U, s, Vh = torch.linalg.svd(H, full_matrices=False)
    keep = s > max(rcond, 1e-9) * s.max()
    U, s, Vh = U[:, keep], s[keep], Vh[keep]
    return U @ torch.diag(s) @ Vh, Vh.T @ torch.diag(1 / s) @ U.T, U, s, Vh


class Problem:
    """The operator (package and dense), the analytic denoiser and its affine form ``x0_hat = J x + d``."""

    def __init__(self, name: str, seed: int) -> None:
        task, params = STRUCTURES[name]
        self.name, self.task = name, task
        self.gen = torch.Generator().manual_seed(seed)
        sur = GaussianSurrogate(C, S, S)
        sur.set(torch.tensor([0.1, -0.05, 0.02], dtype=torch.float64), gaussian_field_spectrum(C, S, 0.3, 2.0, 1 / S))
        self.sur, self.den = sur, AnalyticDenoiser(sur, SCHED)
        self.op = make_operator(task, (C, S, S), seed, list(range(B)), **params)
        self.H = [_dense_operator(name, self.op, b) for b in range(B)]
        impulses = torch.eye(N, dtype=torch.float64).reshape(N, C, S, S)
        for b, H in enumerate(self.H):  # the definition is the package's operator
            op_b = make_operator(task, (C, S, S), seed, [b], **params)
            assert torch.allclose(op_b.A(impulses).reshape(N, -1).T, H, atol=1e-13, rtol=0), f"{name}: H[{b}]"
        self.eff = [_truncated(H, self.op.rcond) for H in self.H]
        self.M = self.H[0].shape[0]

    def affine_denoiser(self, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(J, d)`` with ``D(x, t) = J x + d`` (flattened), by pushing impulses through the denoiser."""
        d = self.den.x0(torch.zeros(1, C, S, S, dtype=torch.float64), t).reshape(-1)
        cols = self.den.x0(torch.eye(N, dtype=torch.float64).reshape(N, C, S, S), t).reshape(N, -1)
        return (cols - d).T, d

    def draw(self, sigma: float):
        """A batch: states ``x_t`` (B, C, S, S), measurements ``y = H x + sigma n`` of draws of the prior, noise z."""
        x = torch.randn(B, C, S, S, generator=self.gen, dtype=torch.float64)
        clean = self.sur.sample(B, self.gen).to(torch.float64)
        y = torch.stack(
            [
                H @ clean[b].reshape(-1) + sigma * self._restricted(b, torch.randn(self.M, generator=self.gen))
                for b, H in enumerate(self.H)
            ]
        )
        z = torch.randn(B, C, S, S, generator=self.gen, dtype=torch.float64)
        return x, y.reshape(B, *self.op.measurement_shape), z

    def _restricted(self, b: int, n: torch.Tensor) -> torch.Tensor:
        """Inpainting measures nothing at missing pixels (their y is 0); elsewhere the noise is white."""
        n = n.to(torch.float64)
        return n * self.H[b].diagonal() if self.task.startswith("inpaint") else n

    def times(self, last: bool) -> tuple[int, float, float]:
        """A random time ``t`` and the next one's ``abar`` (1 at the last step, as the package's ``run`` passes)."""
        t = int(torch.randint(2, 1000, (1,), generator=self.gen))
        if last:
            return t, float(ABAR[t]), 1.0
        t_prev = int(torch.randint(0, t, (1,), generator=self.gen))
        return t, float(ABAR[t]), float(ABAR[t_prev])


def _params(sampler, task: str, values: dict):
    p = sampler.heuristic(task, 1, SCHED)
    for k, v in values.items():
        p.values[k] = [v]
    return p


def _step(sampler, prob: Problem, y, sigma, params, t, a_t, a_prev, x, z):
    """The package's step with the test's noise: every stream gets ``z`` (each sampler here draws at most one)."""
    streams = []

    def noise(stream, of_shape=None, **_):
        streams.append(stream)
        return z.clone()

    out, x0_y = sampler.step(prob.den, prob.op, y, sigma, params, 0, t, a_t, a_prev, x, noise, prob.sur)
    assert len(streams) <= 1, streams
    return out.detach(), x0_y.detach()


def _close(got: torch.Tensor, want: torch.Tensor, what: str) -> None:
    err = float((got - want).abs().max()) / max(float(want.abs().max()), 1e-300)
    assert err < REL, f"{what}: relative error {err:.2e}"


def _uniform(gen, lo, hi) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=gen, dtype=torch.float64))


CASES = [(name, sigma) for name in STRUCTURES for sigma in SIGMAS]


# ---------------------------------------------------------------------------------------------------------------
# PiGDM
# ---------------------------------------------------------------------------------------------------------------


def pigdm_reference(x, y, H, H_pinv, J, d, sigma, w, eta, a_t, a_s, z):
    """One step of NVlabs/RED-diff ``algos/pgdm.py`` ``PGDM.sample`` (``awd: True``, ``mcg: False``,
    ``_configs/algo/pgdm.yaml``), one image, flattened, with the paper's noisy guidance.

    - line 41: ``c1 = ((1 - alpha_t / alpha_s) * (1 - alpha_s) / (1 - alpha_t)).sqrt() * self.eta``
    - line 42: ``c2 = ((1 - alpha_s) - c1 ** 2).sqrt()``
    - line 52: ``mat = H.H_pinv(y_0) - H.H_pinv(H.H(x0_pred))`` (noiseless). For ``sigma_y > 0`` the paper (Song
      et al. 2023, its Gaussian approximation ``p(y | x_t) ~ N(H x0_hat, r_t^2 H H^T + sigma_y^2 I)``) replaces
      ``H^+`` by ``r_t^2 H^T (r_t^2 H H^T + sigma_y^2 I)^{-1}``, which is ``H^+`` at ``sigma_y = 0``: ``mat`` is
      ``r_t^2`` times the approximate score ``H^T (r_t^2 H H^T + sigma_y^2)^{-1} (y - H x0_hat)``. RED-diff's
      ``pgdm.py`` reads no ``sigma_y`` and uses ``H^+`` at every noise level; the package and this test follow the
      paper there.
    - lines 55, 63: ``mat_x = (mat.detach() * x0_pred).sum()``; ``grad_term = autograd.grad(mat_x, xt)`` = ``J^T mat``
    - lines 70, 73: ``coeff = alpha_s.sqrt() * alpha_t.sqrt() * self.grad_term_weight`` (``awd``: no c2 term)
    - line 93 is skipped (``awd``): ``et`` is the model's unguided eps, ``(x_t - sqrt(abar_t) x0_hat) /
      sqrt(1 - abar_t)`` for a denoiser given by its ``x0``
    - line 96: ``xs = alpha_s.sqrt() * x0_pred + c1 * randn + c2 * et + grad_term * coeff``
    - ``ss = [-1] + ts[:-1]`` and ``models/diffusion.py`` ``alpha(-1) = 1``: the last step has ``alpha_s = 1``.
    """
    x0 = J @ x + d
    sigma_t2 = (1 - a_t) / a_t  # the paper's VE noise level of x_t / sqrt(abar_t)
    r2 = sigma_t2 / (1 + sigma_t2)  # the paper's r_t^2 (unit-variance data)
    if sigma > 0:
        mat = r2 * H.T @ torch.linalg.solve(r2 * H @ H.T + sigma**2 * torch.eye(H.shape[0], dtype=H.dtype), y - H @ x0)
    else:
        mat = H_pinv @ y - H_pinv @ (H @ x0)
    grad = J.T @ mat
    c1 = math.sqrt((1 - a_t / a_s) * (1 - a_s) / (1 - a_t)) * eta
    c2 = math.sqrt(max((1 - a_s) - c1**2, 0.0))
    coeff = math.sqrt(a_s) * math.sqrt(a_t) * w
    et = (x - math.sqrt(a_t) * x0) / math.sqrt(1 - a_t)
    return math.sqrt(a_s) * x0 + c1 * z + c2 * et + grad * coeff, x0, grad


@pytest.mark.parametrize("name,sigma", CASES)
def test_pigdm_step_is_red_diff_pgdm(name, sigma):
    """PiGDM's step against RED-diff's ``PGDM.sample`` (noisy guidance of the paper) at random ``weight`` in
    [0.2, 3], ``eta`` in [0, 1] and times, a middle step and a last step, every structure, sigma 0 and 0.13.

    Project conventions checked exactly here: ``r_t^2 = 1 - abar_t`` is the paper's ``sigma_t^2 / (1 + sigma_t^2)``
    with ``sigma_t^2 = (1 - abar_t) / abar_t`` (the reference side uses the paper's form); ``sigma`` is the noise std
    of ``y`` in network units, the units in which RED-diff's ``y_0`` lives; ``H`` is the truncated-SVD ``H_eff`` (the
    package's ``rcond`` cut: it matters for the blur, whose smallest ``|h|`` is 5.4e-4 < 1e-3). The returned ``x0_y``
    (for callbacks) is ``x0_hat + w sqrt(abar_t) g``, the reference's output at the last step."""
    prob = Problem(name, seed=1 + list(STRUCTURES).index(name))
    sampler = get_sampler("pigdm")
    for last in (False, True):
        w, eta = _uniform(prob.gen, 0.2, 3.0), _uniform(prob.gen, 0.0, 1.0)
        t, a_t, a_s = prob.times(last)
        params = _params(sampler, prob.task, {"weight": w, "eta": eta})
        x, y, z = prob.draw(sigma)
        out, x0_y = _step(sampler, prob, y, sigma, params, t, a_t, a_s, x, z)
        J, d = prob.affine_denoiser(t)
        for b in range(B):
            H_eff, H_pinv = prob.eff[b][:2]
            want, x0, grad = pigdm_reference(
                x[b].reshape(-1), y[b].reshape(-1), H_eff, H_pinv, J, d, sigma, w, eta, a_t, a_s, z[b].reshape(-1)
            )
            where = f"pigdm {name} sigma={sigma} t={t} a_prev={a_s:.4g} w={w:.3g} eta={eta:.3g} image {b}"
            _close(out[b].reshape(-1), want, where)
            _close(x0_y[b].reshape(-1), x0 + w * math.sqrt(a_t) * grad, where + ": x0_y")
            if last:
                _close(out[b].reshape(-1), x0_y[b].reshape(-1), where + ": last output = x0_y")
        assert abs((1 - a_t) - ((1 - a_t) / a_t) / (1 + (1 - a_t) / a_t)) < 1e-15  # r_t^2, two forms


def test_pigdm_truncation_is_the_only_change_from_the_full_operator():
    """The blur's ``rcond`` cut is the one place the package's PiGDM differs from the paper's formula with the full
    ``H``: with the task's ``rcond = 0`` the full ``H`` matches; with the default cut the full ``H`` does not."""
    prob = Problem("blur", seed=11)
    sampler = get_sampler("pigdm")
    sigma, w, eta = 0.05, 1.3, 0.4
    t, a_t, a_s = 400, float(ABAR[400]), float(ABAR[300])
    params = _params(sampler, prob.task, {"weight": w, "eta": eta})
    x, y, z = prob.draw(sigma)
    J, d = prob.affine_denoiser(t)
    H = prob.H[0]
    full, _, _ = pigdm_reference(
        x[0].reshape(-1), y[0].reshape(-1), H, None, J, d, sigma, w, eta, a_t, a_s, z[0].reshape(-1)
    )
    cut, _ = _step(sampler, prob, y, sigma, params, t, a_t, a_s, x, z)
    err = float((cut[0].reshape(-1) - full).abs().max() / full.abs().max())
    assert err > 1e3 * REL, "the cut should change the step"
    prob.op = make_operator("deblur_gaussian", (C, S, S), 11, list(range(B)), size=5, sigma=1.0, rcond=0.0)
    exact, _ = _step(sampler, prob, y, sigma, params, t, a_t, a_s, x, z)
    _close(exact[0].reshape(-1), full, "pigdm blur rcond=0 vs the full H")


# ---------------------------------------------------------------------------------------------------------------
# DPS
# ---------------------------------------------------------------------------------------------------------------


def dps_reference(x, y, H, J, d, zeta, eta, a_t, a_s, z, norm=None):
    """One step of DPS2022/diffusion-posterior-sampling, one image, flattened.

    ``guided_diffusion/gaussian_diffusion.py`` ``DDIM.p_sample`` (lines 378-401):
    ``eps = predict_eps_from_x_start(x, t, pred_xstart)`` = ``(x / sqrt(abar) - x0) / sqrt(1 / abar - 1)``;
    ``sigma = eta * sqrt((1 - abar_prev) / (1 - abar)) * sqrt(1 - abar / abar_prev)``;
    ``mean_pred = pred_xstart * sqrt(abar_prev) + sqrt(1 - abar_prev - sigma ** 2) * eps``; ``+ sigma * noise`` unless
    ``t == 0``. ``guided_diffusion/condition_methods.py`` ``grad_and_value`` (lines 28-32): ``difference =
    measurement - operator.forward(x_0_hat)``, ``norm = torch.linalg.norm(difference)``, ``norm_grad =
    autograd.grad(norm, x_prev)`` = ``-J^T H^T difference / norm``; ``PosteriorSampling.conditioning`` (lines
    84-87): ``x_t -= norm_grad * self.scale``. ``norm`` may be given (the reference's batch norm)."""
    x0 = J @ x + d
    difference = y - H @ x0
    norm = difference.norm() if norm is None else norm
    norm_grad = -(J.T @ (H.T @ difference)) / norm
    eps = (x / math.sqrt(a_t) - x0) / math.sqrt(1 / a_t - 1)
    sig = eta * math.sqrt((1 - a_s) / (1 - a_t)) * math.sqrt(1 - a_t / a_s)
    sample = x0 * math.sqrt(a_s) + math.sqrt(max(1 - a_s - sig**2, 0.0)) * eps
    if a_s < 1:  # the reference's t == 0 is the step whose abar_prev is 1 (alphas_cumprod_prev[0] = 1)
        sample = sample + sig * z
    return sample - norm_grad * zeta


def ddpm_reference(x, x0, a_t, a_s, z):
    """``gaussian_diffusion.py`` with the config's ``sampler: ddpm`` (``DDPM.p_sample``, lines 365-373): the posterior
    ``q(x_{t-1} | x_t, x0)`` of the respaced chain (``SpacedDiffusion.__init__``, line 314: ``beta = 1 - abar /
    abar_prev``): ``posterior_mean_coef1 = beta sqrt(abar_prev) / (1 - abar)`` (line 98), ``coef2 = (1 - abar_prev)
    sqrt(alpha) / (1 - abar)`` (lines 100-104), variance ``beta (1 - abar_prev) / (1 - abar)`` (lines 89-91;
    ``posterior_mean_variance.py`` ``FixedSmallVarianceProcessor``, lines 159-177), no noise at t == 0."""
    beta = 1 - a_t / a_s
    mean = beta * math.sqrt(a_s) / (1 - a_t) * x0 + (1 - a_s) * math.sqrt(1 - beta) / (1 - a_t) * x
    return mean + (math.sqrt(beta * (1 - a_s) / (1 - a_t)) * z if a_s < 1 else 0.0)


@pytest.mark.parametrize("name", list(STRUCTURES))
def test_dps_step_is_the_reference_posterior_sampling(name):
    """DPS's step against the reference's ``PosteriorSampling`` on its ``DDIM.p_sample`` at random ``zeta`` in
    [0.05, 2], ``eta`` in [0, 1] and times, a middle and a last step, every structure (DPS uses the true ``H``, no
    truncation), noisy measurements.

    Project conventions, checked exactly: the residual norm is per image (the reference's ``torch.linalg.norm`` over
    the whole batch: the package equals the reference applied image by image, and differs from it on the batch by
    exactly the norm ratio); the DDIM form with ``eta`` is the reference's ``ddpm`` sampler at ``eta = 1``
    (``fixed_small`` posterior variance; the reference's FFHQ model learns its variance, ``learned_range``, which a
    denoiser given by ``x0`` has not); ``x0_hat`` is not clipped (the reference's ``clip_denoised: True`` clamps
    ``pred_xstart`` to [-1, 1]; not applied on either side here)."""
    prob = Problem(name, seed=21 + list(STRUCTURES).index(name))
    sampler = get_sampler("dps")
    sigma = 0.1
    for last in (False, True):
        zeta, eta = _uniform(prob.gen, 0.05, 2.0), _uniform(prob.gen, 0.0, 1.0)
        t, a_t, a_s = prob.times(last)
        params = _params(sampler, prob.task, {"zeta": zeta, "eta": eta})
        x, y, z = prob.draw(sigma)
        out, x0_y = _step(sampler, prob, y, sigma, params, t, a_t, a_s, x, z)
        J, d = prob.affine_denoiser(t)
        args = [(x[b].reshape(-1), y[b].reshape(-1), prob.H[b], J, d) for b in range(B)]
        batch_norm = torch.cat([(yb - H @ (J @ xb + d)) for xb, yb, H, J, d in args]).norm()
        for b, (xb, yb, H, J_, d_) in enumerate(args):
            where = f"dps {name} t={t} a_prev={a_s:.4g} zeta={zeta:.3g} eta={eta:.3g} image {b}"
            want = dps_reference(xb, yb, H, J_, d_, zeta, eta, a_t, a_s, z[b].reshape(-1))
            _close(out[b].reshape(-1), want, where)
            _close(x0_y[b].reshape(-1), J_ @ xb + d_, where + ": x0_y is x0_hat")
            # the batch norm of the reference: the guidance term scales by (per-image norm / batch norm), exactly
            own = (yb - H @ (J_ @ xb + d_)).norm()
            ref_batch = dps_reference(xb, yb, H, J_, d_, zeta, eta, a_t, a_s, z[b].reshape(-1), norm=batch_norm)
            unguided = dps_reference(xb, yb, H, J_, d_, 0.0, eta, a_t, a_s, z[b].reshape(-1))
            _close(out[b].reshape(-1) - unguided, (ref_batch - unguided) * batch_norm / own, where + ": batch norm")
            assert float((ref_batch - out[b].reshape(-1)).abs().max()) > 1e3 * REL * float(want.abs().max())


@pytest.mark.parametrize("name", ["blur", "inpaint_random"])
def test_dps_at_eta_1_is_the_reference_ddpm_sampler(name):
    """At ``eta = 1`` the package's DDIM step is the reference's configured ``ddpm`` sampler (the respaced DDPM
    posterior), then ``PosteriorSampling``; and the guidance by autograd through the dense ``H`` (the reference's
    ``torch.autograd.grad(norm, x_prev)``, line 32) equals its closed form."""
    prob = Problem(name, seed=31 + list(STRUCTURES).index(name))
    sampler = get_sampler("dps")
    sigma, zeta = 0.1, 0.7
    for last in (False, True):
        t, a_t, a_s = prob.times(last)
        params = _params(sampler, prob.task, {"zeta": zeta, "eta": 1.0})
        x, y, z = prob.draw(sigma)
        out, _ = _step(sampler, prob, y, sigma, params, t, a_t, a_s, x, z)
        for b in range(B):
            xb = x[b : b + 1].clone().requires_grad_(True)
            x0 = prob.den.x0(xb, t)
            norm = torch.linalg.norm(y[b].reshape(-1) - prob.H[b] @ x0.reshape(-1))
            (norm_grad,) = torch.autograd.grad(norm, xb)
            sample = ddpm_reference(x[b].reshape(-1), x0.detach().reshape(-1), a_t, a_s, z[b].reshape(-1))
            want = sample - norm_grad.reshape(-1) * zeta
            _close(out[b].reshape(-1), want, f"dps ddpm {name} t={t} a_prev={a_s:.4g} image {b}")


# ---------------------------------------------------------------------------------------------------------------
# DiffPIR
# ---------------------------------------------------------------------------------------------------------------


def diffpir_data_step(x0, y, H, eff, rho, inpainting):
    """DiffPIR's closed-form data step (``guidance_scale = 1``: ``x0 = x0 + 1 * (x0_p - x0)``), one image, flattened.

    Blur and super-resolution (``main_ddpir_deblur.py`` lines 288-295, ``main_ddpir_sisr.py`` lines 315-320): in
    [0, 1] pixel units, ``x0_p = x0 / 2 + 0.5``; ``x0_p = sr.data_solution(x0_p, FB, FBC, F2B, FBFy, tau, sf)``;
    ``x0_p = x0_p * 2 - 1``. ``utils/utils_sisr.py`` ``data_solution`` (lines 65-75) is USRNet's FFT solution of
    ``argmin_x ||y - (k * x) downarrow_sf||^2 + tau ||x - x0_p||^2`` = ``(H^T H + tau I)^{-1} (H^T y + tau x0_p)``;
    ``y_pix = (y + H 1) / 2`` is the package's network-unit measurement in the reference's pixel units (``img_L``
    in [0, 1]). The minimiser is written here in ``H``'s dense SVD ``(U_k, s_k, Vh_k)`` (the reference's FFT
    diagonalisation, for any H): ``Vh_k^T (s_k U_k^T y + tau Vh_k x0) / (s_k^2 + tau) + (I - Vh_k^T Vh_k) x0``,
    which stays at rounding when ``tau`` is tiny (the dense solve of :func:`diffpir_dense_solve` loses
    ``eps cond``; it is checked against this one within that).

    Inpainting (``main_ddpir_inpainting.py`` line 267, network units): ``x0_p = (mask * y + rho * x0) / (mask +
    rho)`` per pixel."""
    if inpainting:
        mask = H.diagonal()
        return (mask * y + rho * x0) / (mask + rho)
    _, _, U, s, Vh = eff
    y_pix = (y + H @ torch.ones(H.shape[1], dtype=H.dtype)) / 2
    x0_p = x0 / 2 + 0.5
    c0 = Vh @ x0_p
    x_p = Vh.T @ ((s * (U.T @ y_pix) + rho * c0) / (s**2 + rho)) + (x0_p - Vh.T @ c0)
    return x_p * 2 - 1


def diffpir_dense_solve(x0, y, H, H_eff, R):
    """The same data step as one dense linear solve in pixel units, ``(H^T H + R) x = H^T y_pix + R x0_p`` (``R =
    rho I``, or the per-band operator), and its relative rounding bound ``1e-14 cond(H^T H + R)`` (at least 1e-12)."""
    y_pix = (y + H @ torch.ones(H.shape[1], dtype=H.dtype)) / 2
    x0_p = x0 / 2 + 0.5
    A = H_eff.T @ H_eff + R
    x_p = torch.linalg.solve(A, H_eff.T @ y_pix + R @ x0_p)
    return x_p * 2 - 1, max(1e-12, 1e-14 * float(torch.linalg.cond(A)))


def diffpir_rho(lam, sigma, a_t):
    """``main_ddpir_deblur.py`` line 49: ``sigma = max(0.001, noise_level_img)`` (pixel units: line 199 adds
    ``noise_level_img * 2`` in [-1, 1]); line 212: ``sigma_ks = sqrt_1m_alphas_cumprod / sqrt_alphas_cumprod``;
    line 216: ``rhos = lambda_ * sigma**2 / sigma_ks**2``. The package's ``sigma`` is in network units: the
    reference's ``noise_level_img`` is ``sigma / 2``."""
    noise_level_img = sigma / 2
    sigma_ref = max(0.001, noise_level_img)
    sigma_k = math.sqrt(1 - a_t) / math.sqrt(a_t)
    return lam * sigma_ref**2 / sigma_k**2


def diffpir_renoise(x, x0, a_t, a_s, zeta, z):
    """``main_ddpir_deblur.py`` lines 344-347 (also ``main_ddpir_sisr.py`` 368-372, ``main_ddpir_inpainting.py``
    290-293) with the scripts' ``eta = 0.0`` (line 58; the package has no ``eta`` for DiffPIR, so ``eta_sigma = 0``):
    ``eps = (x - sqrt_alphas_cumprod[t_i] * x0) / sqrt_1m_alphas_cumprod[t_i]``; ``x = sqrt_alphas_cumprod[t_im1] *
    x0 + np.sqrt(1 - zeta) * (sqrt(sqrt_1m_alphas_cumprod[t_im1]**2 - eta_sigma**2) * eps + eta_sigma * randn) +
    np.sqrt(zeta) * sqrt_1m_alphas_cumprod[t_im1] * randn``, ``x0`` the data-consistent estimate."""
    eps = (x - math.sqrt(a_t) * x0) / math.sqrt(1 - a_t)
    eta_sigma = 0.0
    return (
        math.sqrt(a_s) * x0
        + math.sqrt(1 - zeta) * (math.sqrt(1 - a_s - eta_sigma**2) * eps)
        + math.sqrt(zeta) * math.sqrt(1 - a_s) * z
    )


@pytest.mark.parametrize("name,sigma", CASES)
def test_diffpir_step_is_the_reference_data_step_and_renoising(name, sigma):
    """DiffPIR's step against the reference scripts' data step and re-noising at random ``lam`` in [0.5, 30],
    ``zeta`` in [0, 1] and times, every structure, sigma 0 (the reference's 1e-3 floor) and 0.13.

    Project conventions, checked exactly: ``rho_t`` is the reference's ``lambda_ * sigma**2 / sigma_ks**2`` with the
    pixel-unit noise ``sigma / 2`` (the reference side computes it in its own form and units); the proximal step is
    solved in the reference's pixel units on that side and must agree with the package's network units; the
    truncated ``H_eff`` (the blur's ``rcond`` cut) stands for ``H`` in the solve. The last step: the reference does
    neither the data step nor the re-noising at ``seq[-1]`` (deblur lines 284 and 339, ``else: pass``) and returns
    the state ``x`` (line 360, ``x_0 = x / 2 + 0.5``); the package returns the data step's ``x0_y`` at that time,
    checked to be exactly the reference's data step applied there (and not the state)."""
    prob = Problem(name, seed=41 + list(STRUCTURES).index(name))
    sampler = get_sampler("diffpir")
    inpainting = prob.task.startswith("inpaint")
    for last in (False, True):
        lam, zeta = _uniform(prob.gen, 0.5, 30.0), _uniform(prob.gen, 0.0, 1.0)
        t, a_t, a_s = prob.times(last)
        params = _params(sampler, prob.task, {"lam": lam, "zeta": zeta})
        x, y, z = prob.draw(sigma)
        out, x0_y = _step(sampler, prob, y, sigma, params, t, a_t, a_s, x, z)
        J, d = prob.affine_denoiser(t)
        rho = diffpir_rho(lam, sigma, a_t)
        for b in range(B):
            xb, yb = x[b].reshape(-1), y[b].reshape(-1)
            x0 = diffpir_data_step(J @ xb + d, yb, prob.H[b], prob.eff[b], rho, inpainting)
            where = f"diffpir {name} sigma={sigma} t={t} a_prev={a_s:.4g} lam={lam:.3g} zeta={zeta:.3g} image {b}"
            _close(x0_y[b].reshape(-1), x0, where + ": x0_y (data step)")
            R = rho * torch.eye(N, dtype=torch.float64)
            solved, tol = diffpir_dense_solve(J @ xb + d, yb, prob.H[b], prob.eff[b][0], R)
            err = float((solved - x0).abs().max() / x0.abs().max())
            assert err < tol, f"{where}: dense solve {err:.2e} (bound {tol:.2e})"
            if last:
                _close(out[b].reshape(-1), x0, where + ": the last step returns x0_y")
                assert float((out[b].reshape(-1) - xb).abs().max()) > 1e-3, "the reference's last state is x itself"
            else:
                _close(out[b].reshape(-1), diffpir_renoise(xb, x0, a_t, a_s, zeta, z[b].reshape(-1)), where)


def test_diffpir_per_band_lam_on_blur_is_a_frequency_dependent_rho():
    """The project's per-frequency variant (not in the reference): ``lam`` given per radial band on blur makes the
    proximal weight an operator ``R = F^H diag(rho_f) F`` (``rho_f`` the reference's ``rho`` at the band's ``lam``;
    band ``b`` of ``n`` holds ``b <= n |f| / max|f| < b + 1``, ``|f|`` in cycles per pixel, the last band closed),
    so the data step is ``argmin ||y - H x||^2 + (x - x0)^T R (x - x0)``: per frequency, with ``h`` the diagonal of
    ``F K F^H`` (``K`` the dense circulant; ``|h| <= 1e-3 max|h|`` cut), ``(conj(h) Y + rho_f X0) / (|h|^2 +
    rho_f)`` in pixel units (the reference's ``data_solution`` with ``tau`` per frequency), and as a dense solve;
    then the reference's re-noising."""
    prob = Problem("blur", seed=51)
    sampler = get_sampler("diffpir")
    sigma, zeta, lams = 0.08, 0.35, [2.0, 9.0, 25.0]
    f = torch.fft.fftfreq(S, dtype=torch.float64)
    radius = torch.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    band = torch.clamp(torch.floor(radius / radius.max() * len(lams)).long(), max=len(lams) - 1).reshape(-1)
    F1 = torch.fft.fft(torch.eye(S, dtype=torch.complex128), norm="ortho")  # unitary 1-D DFT matrix
    F = torch.kron(F1, F1)  # 2-D DFT on row-major (i, j)
    K = prob.H[0][: S * S, : S * S].to(torch.complex128)  # one channel's circulant
    D = F @ K @ F.mH
    assert float((D - torch.diag(D.diagonal())).abs().max()) < 1e-13  # circulant: diagonal in the DFT basis
    h = D.diagonal()
    h = torch.where(h.abs() > 1e-3 * h.abs().max(), h, torch.zeros_like(h))
    ones = torch.ones(S * S, dtype=torch.float64)
    for t, t_prev in ((600, 450), (120, 0), (900, 700)):
        a_t, a_s = float(ABAR[t]), float(ABAR[t_prev])
        rho_f = torch.tensor([diffpir_rho(v, sigma, a_t) for v in lams], dtype=torch.float64)[band]
        R_pix = (F.mH @ torch.diag(rho_f.to(torch.complex128)) @ F).real
        R = torch.kron(torch.eye(C, dtype=torch.float64), R_pix)
        params = _params(sampler, prob.task, {"zeta": zeta})
        params.values["lam"] = [list(lams)]
        x, y, z = prob.draw(sigma)
        out, x0_y = _step(sampler, prob, y, sigma, params, t, a_t, a_s, x, z)
        J, d = prob.affine_denoiser(t)
        for b in range(B):
            xb, yb = x[b].reshape(-1), y[b].reshape(-1)
            x0 = (J @ xb + d).reshape(C, -1)
            want = []
            for c in range(C):
                y_pix = (yb.reshape(C, -1)[c] + K.real @ ones) / 2
                Y, X0 = F @ y_pix.to(torch.complex128), F @ (x0[c] / 2 + 0.5).to(torch.complex128)
                x_p = (F.mH @ ((h.conj() * Y + rho_f * X0) / (h.abs() ** 2 + rho_f))).real
                want.append(x_p * 2 - 1)
            want = torch.cat(want)
            where = f"diffpir per-band blur t={t} image {b}"
            _close(x0_y[b].reshape(-1), want, where + ": x0_y")
            solved, tol = diffpir_dense_solve(x0.reshape(-1), yb, prob.H[b], prob.eff[b][0], R)
            err = float((solved - want).abs().max() / want.abs().max())
            assert err < tol, f"{where}: dense solve {err:.2e} (bound {tol:.2e})"
            _close(out[b].reshape(-1), diffpir_renoise(xb, want, a_t, a_s, zeta, z[b].reshape(-1)), where)
