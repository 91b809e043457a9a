"""Agreement with deepinv 0.5.0: its DDRM, DiffPIR and DPS against ours, with the same analytic denoiser and operator.

Both sides get the closed-form Gaussian denoiser of one surrogate (8x8 Gaussian fields), the same operator, the same
measurement ``y`` (N identical copies) and, through a :class:`ParamSchedule` built here, the same time sequence and
the same knobs. With this denoiser every sampler is an affine (DPS: nearly affine) map of Gaussian noise, so the two
output distributions are compared by N = 2000 Monte Carlo samples per side (DPS: 1000).

Tolerances (identical for every test; a, b the two sample sets, N each):

- every pixel's mean difference within 5 combined standard errors ``sqrt((v_a + v_b) / N)``;
- every pixel's variance ratio ``v_a / v_b`` within 5 combined standard errors of 1, the standard error of each sample
  variance estimated from the samples (``sd((x - mean)^2) / sqrt(N)``, which holds for non-Gaussian DPS output too);
  for Gaussian output this is about ``5 sqrt(4 / N)`` = 0.22 at N = 2000;
- aggregate, mean: Hotelling's ``T^2 = d^T S^{-1} d`` (``d`` the difference of the mean images, ``S`` the pooled
  covariance of that difference) below ``p + 5 sqrt(2 p)`` (p = 64 pixels: 64 +- 11 expected, bound 121);
- aggregate, variance: the ratio of total variances (traces) within 5 combined standard errors of 1 (5-6 % here).

Conventions mapped (deepinv works on [0, 1] pixels, we on the [-1, 1] network scale):

- images ``x_pix = (x_net + 1) / 2``; measurements ``y_pix = (y_net + A 1) / 2``; noise ``sigma_net = 2 sigma_pix``;
- denoiser: deepinv's ``D(x, sigma)`` with ``x = x0 + sigma n`` in pixels is ours at ``abar = 1 / (1 + 4 sigma^2)``
  applied to ``x_t = sqrt(abar) (2 x - 1)`` (tested first, against the dense Wiener filter).

Where deepinv's discretisation is not ours by default, ours is configured to reproduce it (see each test); what
cannot be matched is stated in the test's docstring.

Draw for draw (the last section): deepinv's random draws are recorded and replayed into ours, so DDRM (at eta = 0 and
eta_b != 1), DiffPIR (zeta = 0 and 0.3, through its last step) and DPS agree per pixel after every step: 1e-12 where
deepinv computes in float64, 2e-6 relative where it computes in float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch

deepinv = pytest.importorskip(
    "deepinv",
    reason="deepinv is not installed (it is in the 'test' extra: pip install -e '.[test]'); these tests compare our "
    "DDRM, DiffPIR and DPS with deepinv's",
)
if getattr(deepinv, "__version__", None) != "0.5.0":
    pytest.skip(
        f"the convention mapping below is read from deepinv 0.5.0's source; found deepinv "
        f"{getattr(deepinv, '__version__', '?')}",
        allow_module_level=True,
    )

from zsguide.data.gaussian import gaussian_field_spectrum  # noqa: E402
from zsguide.diffusion.denoisers import AnalyticDenoiser  # noqa: E402
from zsguide.diffusion.schedule import VPSchedule  # noqa: E402
from zsguide.operators import make_operator  # noqa: E402
from zsguide.samplers import ParamSchedule, get_sampler  # noqa: E402
from zsguide.surrogate import GaussianSurrogate  # noqa: E402

SCHED = VPSchedule()
SIGMA_Y = 0.05  # measurement noise, pixel units (0.1 in network units)
SHAPE = (1, 8, 8)
N = 2000


# --- shared pieces ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableSchedule(VPSchedule):
    """A schedule given by its ``abar`` table (index 0 = least noise), for samplers whose times are not our grid."""

    table: tuple[float, ...] = ()

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        return torch.tensor(self.table, dtype=torch.float64)


def _table_schedule(abar_by_increasing_noise) -> TableSchedule:
    table = tuple(float(a) for a in abar_by_increasing_noise)
    return TableSchedule(num_timesteps=len(table), table=table)


class SurrogateDenoiser(deepinv.models.Denoiser):
    """deepinv's ``D(x, sigma)`` (pixels, ``x = x0 + sigma n``) from ``surrogate.denoise`` by the VE <-> VP map:
    ``sigma_net = 2 sigma``, ``abar = 1 / (1 + sigma_net^2)``, ``x_t = sqrt(abar) (2 x - 1)``, output ``(x0 + 1) / 2``.
    Differentiable (DPS backpropagates through it); ``sigma`` a float or a tensor of shape () or (B,)."""

    def __init__(self, surrogate: GaussianSurrogate) -> None:
        super().__init__()
        self.surrogate = surrogate

    def forward(self, x, sigma, *args, **kwargs):
        s_net = 2 * torch.as_tensor(sigma, dtype=torch.float64, device=x.device).reshape(-1)
        abar = 1 / (1 + s_net**2)
        x_t = abar.sqrt().view(-1, 1, 1, 1) * (2 * x.to(torch.float64) - 1)
        return ((self.surrogate.denoise(x_t, abar) + 1) / 2).to(x.dtype)


def _surrogate(C: int = 1, H: int = 8, mean: float = 0.0) -> GaussianSurrogate:
    """Per-pixel std 0.12 around 0 (network units): deepinv's clamps (DiffPIR clamps x0_hat to [-1, 1] in network
    units, DPS clips it to [-1, 1] in pixels) are 8 standard deviations away and never act."""
    sur = GaussianSurrogate(C, H, H)
    sur.set(torch.full((C,), mean, dtype=torch.float64), gaussian_field_spectrum(C, H, 0.12, 2.0, 1 / H))
    return sur


def _dense(fn, shape) -> torch.Tensor:
    n = math.prod(shape)
    return fn(torch.eye(n, dtype=torch.float64).reshape(n, *shape)).reshape(n, -1).T


def _problem(task: str, dtype: torch.dtype = torch.float32):
    """Our operator, one measurement (network and pixel units) and deepinv's own physics for the same operator.

    The blur is a 3x3 Gaussian (std 0.6) with periodic boundary: its smallest |h| is 0.11, above sigma_y and far above
    our ``rcond`` cut (1e-3), so no component sits where the two codes treat small singular values differently
    (ours: zero below rcond; deepinv's DDRM: "missing" below sigma_y). With a 5x5 std-1 kernel (smallest |h| 5e-4)
    DiffPIR's mean images differ (T^2 = 171 for 64 pixels; N = 2000, 20 steps): ours drops those frequencies,
    deepinv divides by them in the first, nearly data-free steps; with ``rcond = 0`` the two agree (T^2 = 61)."""
    sur = _surrogate()
    if task == "inpaint":
        op = make_operator("inpaint_random", SHAPE, seed=0, indices=[3])
        stock = deepinv.physics.Inpainting(
            img_size=SHAPE,
            mask=op.mask.expand(1, *SHAPE).to(dtype).clone(),
            noise_model=deepinv.physics.GaussianNoise(SIGMA_Y),
        )
    else:
        op = make_operator("deblur_gaussian", SHAPE, seed=0, indices=[3], size=3, sigma=0.6)
        assert float(op.singulars.min()) > 2 * SIGMA_Y
        stock = deepinv.physics.BlurFFT(
            img_size=SHAPE, filter=op.kernel.to(dtype), noise_model=deepinv.physics.GaussianNoise(SIGMA_Y)
        )
    x = sur.sample(1, torch.Generator().manual_seed(1))
    y = op.measure(x, 2 * SIGMA_Y, op.noise_for(0, [3], dtype=torch.float64))
    y_pix = (y + op.A(torch.ones_like(x))) / 2
    # deepinv's operator is ours, in pixel units
    assert torch.allclose(
        stock.A(((x + 1) / 2).to(dtype)).double(), (op.A(x) + op.A(torch.ones_like(x))) / 2, atol=1e-6
    )
    return sur, op, y, y_pix, stock


def _half_variance_physics(op, sigma_pix: float):
    """``A = U diag(s) V^T`` as a deepinv ``DecomposablePhysics`` in the coordinate convention of deepinv's DDRM.

    deepinv 0.5.0's DDRM draws its noise in the ``V^T`` coordinates as ``std * randn / sqrt(2)``: right for the
    complex coefficients of its ``BlurFFT``, whose ``V^T x = view_as_real(rfft2(x))`` gives white pixel noise of level
    sigma a std of sigma / sqrt(2) per real coordinate, but half the variance for a real orthonormal basis (its
    ``Inpainting``, ``Denoising``; see :func:`test_deepinv_ddrm_draws_half_the_pixel_variance_per_coordinate`).
    Here ``V^T x = P^T x / sqrt(2)``, ``V c = sqrt(2) P c`` (``P`` an orthonormal eigenbasis of our dense, symmetric
    A), ``U`` alike with the signs of the eigenvalues: still exactly ``A`` (``U diag(s) V^T = A``, ``V V^T = I``), with
    the coordinate variance deepinv's DDRM assumes, so its formulas are DDRM's."""
    A = _dense(op.A, SHAPE)
    assert torch.allclose(A, A.T, atol=1e-12)
    lam, P = torch.linalg.eigh(A)
    s, sign, r2 = lam.abs(), torch.where(lam < 0, -1.0, 1.0).double(), math.sqrt(2.0)

    def Vt(x):
        return x.reshape(x.shape[0], -1).to(P) @ P / r2

    def V(c):
        return (r2 * c.to(P) @ P.T).reshape(c.shape[0], *SHAPE)

    def Ut(y):
        return sign * (y.reshape(y.shape[0], -1).to(P) @ P) / r2

    def U(c):
        return (r2 * (sign * c.to(P)) @ P.T).reshape(c.shape[0], *SHAPE)

    return deepinv.physics.DecomposablePhysics(
        U=U,
        U_adjoint=Ut,
        V=V,
        V_adjoint=Vt,
        mask=s[None].clone(),
        noise_model=deepinv.physics.GaussianNoise(torch.tensor(sigma_pix, dtype=torch.float64)),
    )


def _assert_same_distribution(a: torch.Tensor, b: torch.Tensor) -> None:
    """The tolerances of the module docstring, for sample sets a, b of shape (N, C, H, W) (pixel units)."""
    n_a, n_b = a.shape[0], b.shape[0]
    a, b = a.flatten(1).double(), b.flatten(1).double()
    m_a, m_b = a.mean(0), b.mean(0)
    v_a, v_b = a.var(0), b.var(0)
    z_mean = (m_a - m_b) / (v_a / n_a + v_b / n_b).sqrt()
    assert z_mean.abs().max() < 5, f"pixel means differ: max |z| = {float(z_mean.abs().max()):.2f}"
    se_v_a = ((a - m_a) ** 2).std(0) / math.sqrt(n_a)
    se_v_b = ((b - m_b) ** 2).std(0) / math.sqrt(n_b)
    ratio = v_a / v_b
    se_ratio = ratio * ((se_v_a / v_a) ** 2 + (se_v_b / v_b) ** 2).sqrt()
    z_var = (ratio - 1) / se_ratio
    assert z_var.abs().max() < 5, (
        f"pixel variances differ: ratio in [{float(ratio.min()):.3f}, "
        f"{float(ratio.max()):.3f}], max |z| = {float(z_var.abs().max()):.2f}"
    )
    p = a.shape[1]
    S = torch.cov(a.T) / n_a + torch.cov(b.T) / n_b
    d = torch.linalg.solve_triangular(torch.linalg.cholesky(S), (m_a - m_b)[:, None], upper=False)
    t2 = float((d**2).sum())
    assert t2 < p + 5 * math.sqrt(2 * p), f"mean images differ: Hotelling T^2 = {t2:.1f} for {p} pixels"
    q_a, q_b = ((a - m_a) ** 2).sum(1), ((b - m_b) ** 2).sum(1)
    tr_ratio = float(q_a.mean() / q_b.mean())
    se_tr = tr_ratio * math.sqrt(float(q_a.var() / n_a / q_a.mean() ** 2 + q_b.var() / n_b / q_b.mean() ** 2))
    assert abs(tr_ratio - 1) < 5 * se_tr, f"total variances differ: ratio {tr_ratio:.4f} +- {se_tr:.4f}"


# --- the denoiser wrapper -----------------------------------------------------------------------------------------


def test_wrapped_denoiser_is_the_pixel_space_posterior_mean():
    """deepinv's ``D(x, sigma)`` built from ``surrogate.denoise`` equals (1) the dense Wiener filter
    ``m + S (S + sigma^2 I)^{-1} (x - m)`` of the same Gaussian prior written in pixel units (``m = (mu + 1) / 2``,
    ``S = Sigma_net / 4``), per image with its own sigma; and (2) our AnalyticDenoiser at a training time t, through
    the VE <-> VP map. RGB with a nonzero mean, so the colour transform and the affine terms are exercised."""
    sur = _surrogate(C=3, mean=0.3)
    shape = sur.shape
    cov_net = _dense(lambda b: sur.from_spectral(sur.spectrum * sur.to_spectral(b, centre=False), centre=False), shape)
    m_pix = ((sur.mean[:, None, None].expand(shape) + 1) / 2).reshape(-1)
    S_pix = cov_net / 4
    D = SurrogateDenoiser(sur)
    gen = torch.Generator().manual_seed(0)
    sigmas = torch.tensor([0.02, 0.3, 4.0], dtype=torch.float64)
    x = ((sur.sample(3, gen) + 1) / 2) + sigmas.view(-1, 1, 1, 1) * torch.randn(
        3, *shape, generator=gen, dtype=torch.float64
    )
    out = D(x, sigmas)
    eye = torch.eye(S_pix.shape[0], dtype=torch.float64)
    for i, s in enumerate(sigmas):
        wiener = m_pix + S_pix @ torch.linalg.solve(S_pix + s**2 * eye, x[i].reshape(-1) - m_pix)
        assert torch.allclose(out[i].reshape(-1), wiener, atol=1e-10), float(s)
    t = 400
    a = float(SCHED.alphas_cumprod[t])
    x_t = math.sqrt(a) * sur.sample(2, gen) + math.sqrt(1 - a) * torch.randn(
        2, *shape, generator=gen, dtype=torch.float64
    )
    ours = AnalyticDenoiser(sur, SCHED).x0(x_t, t)
    sigma_pix = math.sqrt((1 - a) / a) / 2
    theirs = 2 * D((x_t / math.sqrt(a) + 1) / 2, sigma_pix) - 1
    assert torch.allclose(theirs, ours, atol=1e-12)
    assert not torch.allclose(ours, x_t / math.sqrt(a), atol=1e-2)  # the denoiser does something


# --- DDRM ---------------------------------------------------------------------------------------------------------


def test_deepinv_ddrm_draws_half_the_pixel_variance_per_coordinate():
    """Why DDRM is given :func:`_half_variance_physics`: with an identity "denoiser" and ``sigmas = [s0, 0]`` deepinv's
    DDRM returns ``V x_bar`` of its initial draw, where each missing coordinate of ``x_bar`` is ``s0 randn / sqrt(2)``.
    Through deepinv's own ``Inpainting`` (V = identity) a missing pixel therefore has std ``s0 / sqrt(2)``, where DDRM's
    ``p(x_T | y)`` (and our initial draw) has ``s0``; through the mapped physics it has ``s0``."""

    class Identity(deepinv.models.Denoiser):
        def forward(self, x, sigma, *args, **kwargs):
            return x

    _, op, _, y_pix, stock = _problem("inpaint")
    missing = op.mask.expand(1, *SHAPE).reshape(-1) == 0
    s0, n = 0.8, 4000
    ddrm = deepinv.sampling.DDRM(Identity(), sigmas=[s0, 0.0], eta=0.85, etab=1.0)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        stock_std = ddrm(y_pix.expand(n, *SHAPE).float().clone(), stock).flatten(1)[:, missing].std(0)
        mapped_std = ddrm(y_pix.expand(n, *SHAPE).clone(), _half_variance_physics(op, SIGMA_Y)).flatten(1)[:, missing]
        mapped_std = mapped_std.std(0)
    tol = 5 / math.sqrt(2 * n)  # relative standard error of a sample std is 1 / sqrt(2 n)
    assert ((stock_std / (s0 / math.sqrt(2)) - 1).abs() < tol).all(), stock_std
    assert ((mapped_std / s0 - 1).abs() < tol).all(), mapped_std


@pytest.mark.parametrize("task", ["inpaint", "deblur"])
def test_ddrm_matches_deepinv(task):
    """deepinv's DDRM with ``sigmas = linspace(1, 0, K + 1)`` (pixel VE levels; its default has K = 99, here 10)
    against our DDRM on a :class:`TableSchedule` with ``abar_k = 1 / (1 + 4 sigma_k^2)`` at the same K levels
    (deepinv's final ``sigma = 0`` is our implicit last ``abar = 1``: both return the last denoised estimate),
    ``eta = 0.85``, ``eta_b = 1``. deepinv's three cases (``s sigma_t >= sigma_y``, ``< sigma_y``, and
    ``s <= sigma_y``: missing) are ours when no singular value lies in ``(0, sigma_y]`` (true here). deepinv gets
    the operator through :func:`_half_variance_physics`: its stock ``Inpainting`` injects half DDRM's noise variance,
    and its stock ``BlurFFT`` does so at the frequencies whose rfft coefficients are redundant or real (columns 0 and
    W/2: ``irfft2`` keeps the Hermitian part of independent draws); measured here (K = 10, N = 2000): total variance
    0.50 (inpainting) and 0.80 (blur) of ours, per-pixel means still equal. A 1e-6 regulariser in deepinv's
    ``y / (s + 1e-6)`` is ignored. Sensitivity: forgetting the factor 2 of the sigma map fails the mean check by
    25-100 standard errors."""
    sur, op, y, y_pix, _ = _problem(task)
    K, eta, eta_b = 10, 0.85, 1.0
    sigmas = torch.linspace(1, 0, K + 1, dtype=torch.float64)
    sched = _table_schedule([1 / (1 + 4 * s**2) for s in sigmas[:-1].flip(0).tolist()])
    params = ParamSchedule(
        "ddrm",
        task,
        K,
        "deepinv-ddrm",
        list(range(K - 1, -1, -1)),
        {"eta": [eta] * K, "eta_b": [eta_b] * K},
        {"source": "deepinv 0.5.0 DDRM defaults"},
    )
    ours = get_sampler("ddrm").run(
        AnalyticDenoiser(sur, sched), op, y.expand(N, *SHAPE), 2 * SIGMA_Y, params, seed=5, indices=list(range(N))
    )
    ddrm = deepinv.sampling.DDRM(SurrogateDenoiser(sur), sigmas=sigmas.numpy(), eta=eta, etab=eta_b)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        theirs = ddrm(y_pix.expand(N, *SHAPE).clone(), _half_variance_physics(op, SIGMA_Y))
    _assert_same_distribution(theirs, (ours + 1) / 2)


# --- DiffPIR ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task,zeta", [("inpaint", 1.0), ("deblur", 0.1)])
def test_diffpir_matches_deepinv(task, zeta):
    """deepinv's DiffPIR (``max_iter = 10``, ``lambda_ = 7`` its default; ``zeta`` 1.0 for inpainting as the
    reference's inpainting runs use, 0.1 for deblurring, deepinv's default, not our deblurring heuristic 0.3: both
    implementations run at the same knob values, which is what an agreement test needs; its own
    ``Inpainting`` / ``BlurFFT``, ``L2()`` fidelity) against our DiffPIR on the standard schedule at deepinv's times
    ``999 - floor(1000 sqrt(i / 9))`` (read from the model), with:

    - ``lam = 2 lambda_``: deepinv's data step is ``prox_{gamma f}`` of ``f = ||A x - y||^2 / 2`` with
      ``gamma = 1 / (2 rho)``, ``rho = lambda_ sigma_pix^2 / sigma_t^2``, i.e.
      ``argmin ||A x - y||^2 + 2 rho ||x - x0||^2`` (scale-free, the same in pixel or network units); ours is the
      reference repo's ``argmin ||A x - y||^2 + rho' ||x - x0||^2`` with ``rho' = lam sigma_pix^2 / sigma_t^2``.
    - the output: deepinv 0.5.0 returns the state ``x_t`` at ``t = 0`` (its last iteration denoises but discards the
      estimate), ours the final estimate ``x0_y``; ``callback`` gives our state at ``t = 0`` (after step 8 of 10),
      which is what is compared. (Our final output differs from it by one denoising + data step at ``t = 0``: about
      +2 % total variance, below this test's resolution.)
    - the start: deepinv draws ``x_T = sqrt(abar_T) (2 x_init - 1 + sqrt(sigma_T^2 - 4 sigma_pix^2) z)``; with
      ``x_init = 0.5`` that is ``N(0, 1 - abar_T (1 + 4 sigma_pix^2))``, ours ``N(0, 1)``: a 4e-5 relative variance
      difference, not resolvable here. (deepinv's default ``x_init = A^T y`` would add ``sqrt(abar_T) (2 A^T y - 1)``.)

    deepinv's schedule is the same linear DDPM one in float32 (1e-7 relative differences). Sensitivity:
    ``lam = lambda_`` (the factor 2 forgotten) fails the mean check by 38 (deblur) and 67 (inpainting) standard
    errors."""
    sur, op, y, y_pix, stock = _problem(task)
    M, lam = 10, 7.0
    model = deepinv.sampling.DiffPIR(
        SurrogateDenoiser(sur), deepinv.optim.data_fidelity.L2(), sigma=SIGMA_Y, max_iter=M, zeta=zeta, lambda_=lam
    )
    taus = [int(model.find_nearest(model.reduced_alpha_cumprod, model.sigmas[model.seq[i]])) for i in range(M)]
    assert taus[0] == 999 and taus[-1] == 0 and all(a > b for a, b in zip(taus, taus[1:]))
    params = ParamSchedule(
        "diffpir",
        task,
        M,
        "deepinv-diffpir",
        taus,
        {"lam": [2 * lam] * M, "zeta": [zeta] * M},
        {"source": "deepinv 0.5.0 DiffPIR"},
    )
    at_zero = {}

    def keep_state_at_zero(i, t, x, x0_y):
        if i == M - 2:
            at_zero["x"] = x.clone()

    get_sampler("diffpir").run(
        AnalyticDenoiser(sur, SCHED),
        op,
        y.expand(N, *SHAPE),
        2 * SIGMA_Y,
        params,
        seed=5,
        indices=list(range(N)),
        callback=keep_state_at_zero,
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        theirs = model(y_pix.expand(N, *SHAPE).float().clone(), stock, x_init=torch.full((N, *SHAPE), 0.5))
    _assert_same_distribution(theirs, (at_zero["x"] + 1) / 2)


# --- DPS ----------------------------------------------------------------------------------------------------------


def _dps_mapping(model, weight: float) -> tuple[TableSchedule, ParamSchedule]:
    """Our schedule and knobs for deepinv's DPS ``model`` (:func:`test_dps_matches_deepinv`'s docstring): the
    ``abar`` of its evaluation times and ``zeta_i = s_i s_{i+1} sigma_i^2 (1 - sigma_{i+1}^2 / sigma_i^2) weight / 2``,
    ``eta = 1``."""
    times = model.solver.timesteps.double()
    scale = torch.stack([model.sde.scale_t(t) for t in times]).double()
    sigma = torch.stack([model.sde.sigma_t(t) for t in times]).double()
    K = len(times) - 1
    sched = _table_schedule((scale[:K] ** 2).flip(0).tolist())
    zetas = [
        float(scale[i] * scale[i + 1] * sigma[i] ** 2 * (1 - (sigma[i + 1] / sigma[i]) ** 2) * weight / 2)
        for i in range(K)
    ]
    params = ParamSchedule(
        "dps",
        "deblur_gaussian",
        K,
        "deepinv-dps",
        list(range(K - 1, -1, -1)),
        {"zeta": zetas, "eta": [1.0] * K},
        {"source": "deepinv 0.5.0 DPS"},
    )
    return sched, params


@pytest.mark.slow
def test_dps_matches_deepinv():
    """deepinv's DPS (VP SDE ``abar(t) = exp(-(0.1 t + 9.95 t^2))``, DDPM solver, ``num_steps = 21`` times
    ``linspace(1, 0, 21)``, residual-norm guidance, ``weight = 40``, its own ``BlurFFT``) against our DPS with
    ``eta = 1`` on a :class:`TableSchedule` holding deepinv's ``abar`` at its 20 evaluation times, and per step
    ``zeta_i = s_i s_{i+1} sigma_i^2 (1 - sigma_{i+1}^2 / sigma_i^2) weight / 2`` (``s = sqrt(abar)``,
    ``sigma^2 = 1 / abar - 1``): deepinv's ancestral step puts ``s_i s_{i+1} sigma_i^2 (1 - r^2)`` in front of the
    score, whose guidance part is the gradient of ``weight ||A D_pix - y_pix||`` = ``weight / 2 ||A x0 - y||`` (network
    units). Its unguided part is exactly our DDIM step with eta = 1 (DDPM posterior variance), and its last step (to
    ``t = 0``) is our guided final ``x0`` step. deepinv's start ``N(0, 1 - abar(1))`` is replaced by ``x_init`` drawn
    from ``N(0, I)``, ours. deepinv evaluates the denoiser in float32 (1e-7 relative).

    ``weight = 40`` rather than deepinv's default 1: at 20 steps the guidance acts where the denoiser's Jacobian is
    small, so with weight 1 even switching guidance off moves the output less than this test resolves; at 40 the
    guidance halves the variance and a 15 % error in ``zeta`` fails the mean check (max |z| 6.9; doubled: 38)."""
    sur, op, y, y_pix, stock = _problem("deblur")
    n, steps, weight = 1000, 21, 40.0
    model = deepinv.sampling.DPS(SurrogateDenoiser(sur), num_steps=steps, weight=weight)
    sched, params = _dps_mapping(model, weight)
    ours = get_sampler("dps").run(
        AnalyticDenoiser(sur, sched), op, y.expand(n, *SHAPE), 2 * SIGMA_Y, params, seed=5, indices=list(range(n))
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        x_init = torch.randn(n, *SHAPE, dtype=torch.float64)
        theirs = model(y_pix.expand(n, *SHAPE).float().clone(), stock, x_init=x_init)
    _assert_same_distribution(theirs, (ours + 1) / 2)


# --- draw for draw: a shared start and shared noise ---------------------------------------------------------------
#
# The tests above compare laws, to 5-15 %. Below, deepinv's random draws are recorded and replayed into ours (each
# sampler's draws by stream name, through ``randn_per_image``), so the two codes map the same start and the same noise
# to outputs that must agree per pixel and per step, to rounding: the state after every step, not only the output.
# deepinv's state at each step is read from its denoiser's input (:class:`RecordingDenoiser`).

B = 4  # images per draw-for-draw comparison
# Where deepinv computes in float32 (DiffPIR's schedule, DPS's denoiser calls): 2e-6 relative (to max(1, |value|):
# early DPS states reach 100 pixels), about 30 float32 roundings (2^-24 = 6e-8) over a run; measured at most 1.8e-7.
# Float64 throughout (DDRM): 1e-12; measured 3e-15.
FLOAT32_TOL = 2e-6


def _difference(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    """``max |ours - theirs| / max(1, |theirs|)``: absolute for pixel-range values, relative beyond."""
    return float(((ours - theirs).abs() / theirs.abs().clamp(min=1)).max())


class RecordingDenoiser(SurrogateDenoiser):
    """:class:`SurrogateDenoiser` that keeps every call's input ``x`` (pixels, detached): deepinv's state per step."""

    def __init__(self, surrogate: GaussianSurrogate) -> None:
        super().__init__(surrogate)
        self.inputs: list[torch.Tensor] = []

    def forward(self, x, sigma, *args, **kwargs):
        self.inputs.append(x.detach().clone())
        return super().forward(x, sigma)


class NoiseTape:
    """Stands in for deepinv's ``randn_like``: draws from its own generator (in float64, then cast like the request)
    and keeps each draw, in order, for replay into ours."""

    def __init__(self, seed: int) -> None:
        self.generator = torch.Generator().manual_seed(seed)
        self.draws: list[torch.Tensor] = []

    def randn_like(self, like: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        z = torch.randn(like.shape, generator=self.generator, dtype=torch.float64)
        self.draws.append(z)
        return z.to(like.dtype)


def _replay(monkeypatch, streams: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Make our samplers draw ``streams[name]`` (shape (B, ...)) wherever they would draw stream ``name`` from
    :func:`~zsguide.seeding.randn_per_image`; each stream once. The caller checks that ``streams`` ends up empty (every
    recorded draw was used: the two codes draw the same number of times)."""
    import zsguide.samplers.base as base_module
    import zsguide.samplers.ddrm as ddrm_module

    def randn_per_image(shape, seed, indices, stream, dtype=torch.float64, device="cpu"):
        assert stream in streams, f"ours draws stream {stream!r}, which deepinv did not"
        z = streams.pop(stream)
        assert tuple(z.shape) == (len(indices), *shape), (stream, tuple(z.shape))
        return z.to(dtype=dtype, device=device)

    for module in (base_module, ddrm_module):
        monkeypatch.setattr(module, "randn_per_image", randn_per_image)
    return streams


def _run_ours(name, denoiser, op, y, params, monkeypatch, streams):
    """Our sampler on ``B`` copies of ``y`` with ``streams`` replayed; returns (output, state after each step), all in
    network units."""
    states: list[torch.Tensor] = []
    _replay(monkeypatch, streams)
    out = get_sampler(name).run(
        denoiser,
        op,
        y.expand(B, *SHAPE),
        2 * SIGMA_Y,
        params,
        seed=0,
        indices=list(range(B)),
        callback=lambda i, t, x, x0_y: states.append(x.detach().clone()),
    )
    assert not streams, f"deepinv drew {sorted(streams)}, which ours never used"
    return out, states


@pytest.mark.parametrize(
    "task,eta,eta_b", [("inpaint", 0.0, 1.0), ("deblur", 0.0, 1.0), ("deblur", 0.85, 0.6), ("inpaint", 0.5, 1.4)]
)
def test_ddrm_matches_deepinv_draw_for_draw(task, eta, eta_b, monkeypatch):
    """deepinv's DDRM and ours (the mapping of :func:`test_ddrm_matches_deepinv`, ``K = 10``) from one start and one
    noise, at ``eta = 0`` (DDRM's deterministic setting: noise enters only where the measurement is noisier) and at
    ``eta_b != 1`` (where ``(1 - eta_b) x0_hat`` enters: invisible at the usual ``eta_b = 1``). deepinv's draw ``z``
    in its ``V^T`` coordinates enters its state as ``V(std z / sqrt 2) = P (std z)`` (:func:`_half_variance_physics`),
    so ours is given the white pixel noise ``P z = V(z / sqrt 2)``: our step applies ``V diag(std) V^T`` to it, the
    same ``f(A^T A)``. One deliberate difference: deepinv starts the unmeasured components (``s <= sigma_y``) at mean 0
    in pixel units, i.e. -1 on the network scale, where DDRM's reference (``x_T ~ N(0, sigma_T^2)`` in [-1, 1]) and
    ours start at the data range's centre; ours is given deepinv's start by shifting its replayed start noise by
    ``-Pi 1 / sn_T`` (``Pi`` the projection on those components, ``sn_T = 2 sigma_T``), and nothing else differs.
    (Its effect on deepinv's output decays as ``prod c sigma_t / sigma_{t-1}``: 1e-4 pixels here, invisible to the
    distributional test.) deepinv's regulariser ``eps`` in ``y / (s + eps)`` is set to 0 (its default 1e-6 would be a
    1e-5 relative difference at s = 0.11). Compared: the state after every step (ours ``x_t / sqrt(abar_t)`` mapped
    to pixels, theirs the input of its next denoiser call) and the output, all in float64."""
    sur, op, y, y_pix, _ = _problem(task)
    K = 10
    sigmas = torch.linspace(1, 0, K + 1, dtype=torch.float64)
    sched = _table_schedule([1 / (1 + 4 * s**2) for s in sigmas[:-1].flip(0).tolist()])
    params = ParamSchedule(
        "ddrm", task, K, "deepinv-ddrm", list(range(K - 1, -1, -1)), {"eta": [eta] * K, "eta_b": [eta_b] * K}
    )
    physics, tape, den = _half_variance_physics(op, SIGMA_Y), NoiseTape(11), RecordingDenoiser(sur)
    with monkeypatch.context() as m:
        m.setattr(torch, "randn_like", tape.randn_like)
        theirs = deepinv.sampling.DDRM(den, sigmas=sigmas.numpy(), eta=eta, etab=eta_b, eps=0.0)(
            y_pix.expand(B, *SHAPE).clone(), physics
        )
    assert len(tape.draws) == K + 1 and len(den.inputs) == K + 1  # start + one per level; the last (sigma = 0) unused
    white = [physics.V(z / math.sqrt(2)) for z in tape.draws]
    ones = torch.ones(1, *SHAPE, dtype=torch.float64)
    unmeasured = physics.V(torch.where(physics.mask <= SIGMA_Y, physics.V_adjoint(ones), 0.0))  # projection of 1
    start = white[0] - unmeasured / (2 * float(sigmas[0]))  # deepinv's start: mean 0 in pixels where unmeasured
    streams = {"ddrm/init": start, **{f"ddrm/z{i}": white[i + 1] for i in range(K - 1)}}
    ours, states = _run_ours("ddrm", AnalyticDenoiser(sur, sched), op, y, params, monkeypatch, streams)
    abar_next = [float(sched.alphas_cumprod[t]) for t in params.timesteps[1:]] + [1.0]
    for i in range(K):
        ours_pix = (states[i] / math.sqrt(abar_next[i]) + 1) / 2
        err = float((ours_pix - den.inputs[i + 1]).abs().max())
        assert err < 1e-12, f"state after step {i}: max |difference| {err:.2e} (pixels)"
    assert float(((ours + 1) / 2 - theirs).abs().max()) < 1e-12
    assert float(theirs.std(0).max()) > 1e-3  # the images differ: the shared noise was used


@pytest.mark.parametrize("task,zeta", [("inpaint", 0.0), ("deblur", 0.0), ("deblur", 0.3)])
def test_diffpir_matches_deepinv_draw_for_draw(task, zeta, monkeypatch):
    """deepinv's DiffPIR and ours (the mapping of :func:`test_diffpir_matches_deepinv`, ``M = 10``) through every
    step, from deepinv's own start ``x_T = sqrt(abar_999) (2 x_init - 1 + sqrt(sigma_T^2 - 4 sigma_y^2) z)`` given to
    ours as its ``x_T``: at ``zeta = 0`` (deterministic after the start) and at ``zeta = 0.3`` with the noise shared.
    Ours runs on deepinv's float32 ``abar`` table (its cumprod, as float64), and deepinv's operator is given in float64,
    so what remains is deepinv's float32 schedule arithmetic: about 1e-7 relative. Compared: the state after each
    step, read from the input of deepinv's next denoiser call; deepinv's output (its state at t = 0); and, where the
    two deliberately differ, our output: ours takes one more denoise-and-project at t = 0, which deepinv evaluates and
    discards (``if not self.seq[i] == self.seq[-1]``); applying deepinv's own ``prox`` to its last denoised estimate
    gives ours."""
    sur, op, y, y_pix, stock = _problem(task, torch.float64)
    M, lam = 10, 7.0
    den = RecordingDenoiser(sur)
    model = deepinv.sampling.DiffPIR(
        den, deepinv.optim.data_fidelity.L2(), sigma=SIGMA_Y, max_iter=M, zeta=zeta, lambda_=lam
    )
    taus = [int(model.find_nearest(model.reduced_alpha_cumprod, model.sigmas[model.seq[i]])) for i in range(M)]
    sched = _table_schedule((model.sqrt_alphas_cumprod.double() ** 2).tolist())
    params = ParamSchedule("diffpir", task, M, "deepinv-diffpir", taus, {"lam": [2 * lam] * M, "zeta": [zeta] * M})
    tape, x_init = NoiseTape(12), torch.full((B, *SHAPE), 0.5, dtype=torch.float64)
    with monkeypatch.context() as m:
        m.setattr(torch, "randn_like", tape.randn_like)
        theirs = model(y_pix.expand(B, *SHAPE).clone(), stock, x_init=x_init)
    assert len(tape.draws) == M and len(den.inputs) == M  # the start, one per step but the last; a denoise per step
    recip = model.get_alpha_prod()[0].double()
    sigma_T = model.sigmas[model.seq[0]].double()
    x_T = (2 * x_init - 1 + (sigma_T**2 - 4 * SIGMA_Y**2).sqrt() * tape.draws[0]) / recip[-1]
    streams = {"diffpir/init": x_T, **{f"diffpir/z{i}": tape.draws[i + 1] for i in range(M - 1)}}
    ours, states = _run_ours("diffpir", AnalyticDenoiser(sur, sched), op, y, params, monkeypatch, streams)
    for i in range(M - 1):
        a = 1 / recip[taus[i + 1]] ** 2  # deepinv's abar for its denoiser's input
        ours_pix = states[i] / (2 * a.sqrt()) + 0.5
        err = _difference(ours_pix, den.inputs[i + 1])
        assert err < FLOAT32_TOL, f"state after step {i}: max |difference| {err:.2e} (pixels)"
    assert _difference((states[M - 2] + 1) / 2, theirs) < FLOAT32_TOL  # deepinv returns its state at t = 0
    last = 2 * den(den.inputs[-1], model.sigmas[model.seq[-1]] / 2) - 1
    projected = deepinv.optim.data_fidelity.L2().prox(
        last.clamp(-1, 1) / 2 + 0.5, y_pix.expand(B, *SHAPE), stock, gamma=1.0 / (2 * model.rhos[taus[-1]])
    )
    assert _difference((ours + 1) / 2, projected) < FLOAT32_TOL
    assert float(((ours + 1) / 2 - theirs).abs().max()) > 1e-3  # the extra step does something


def test_dps_matches_deepinv_draw_for_draw(monkeypatch):
    """deepinv's DPS and ours (the mapping of :func:`test_dps_matches_deepinv`: 20 steps, ``weight = 40``) from one
    start ``x_init ~ N(0, I)`` and with deepinv's solver noise (its ``randn_like``) replayed into ours: the state after
    every step (read from deepinv's denoiser input ``(x / scale + 1) / 2``) and the output agree per pixel. deepinv's
    SDE is float64, its denoiser calls float32 (``DPSDataFidelity`` casts ``x`` and ``sigma``; the states read from them
    are float32 too): :data:`FLOAT32_TOL`.
    Its clip of the denoised estimate to [-1, 1] never acts here (the prior's std is 0.12)."""
    sur, op, y, y_pix, stock = _problem("deblur", torch.float64)
    den = RecordingDenoiser(sur)
    model = deepinv.sampling.DPS(den, num_steps=21, weight=40.0)
    sched, params = _dps_mapping(model, 40.0)
    K = params.steps
    tape, x_init = (
        NoiseTape(13),
        torch.randn(B, *SHAPE, generator=torch.Generator().manual_seed(14), dtype=torch.float64),
    )
    model.solver.randn_like = tape.randn_like
    theirs = model(y_pix.expand(B, *SHAPE).clone(), stock, x_init=x_init)
    assert len(tape.draws) == K - 1  # none on the last step (to t = 0)
    assert len(den.inputs) == K  # one call per step: the guidance's, whose output also gives the prior score
    states_theirs = den.inputs
    streams = {"dps/init": x_init.clone(), **{f"dps/z{i}": tape.draws[i] for i in range(K - 1)}}
    ours, states = _run_ours("dps", AnalyticDenoiser(sur, sched), op, y, params, monkeypatch, streams)
    abar = sched.alphas_cumprod
    for i in range(K - 1):
        ours_pix = (states[i] / abar[params.timesteps[i + 1]].sqrt() + 1) / 2
        err = _difference(ours_pix, states_theirs[i + 1])
        assert err < FLOAT32_TOL, f"state after step {i}: max |difference| {err:.2e} (pixels)"
    assert _difference((ours + 1) / 2, theirs) < FLOAT32_TOL
    assert float(theirs.std(0).max()) > 1e-3  # the images differ: the shared noise was used
