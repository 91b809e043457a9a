"""Independent checks of the spectral engine's criteria and of designed schedules (issue 23, item 3; item 4's
chi-squared aggregate).

1. The criteria (spectral/criteria.py, theory.md §5) against the Gaussian Wasserstein / Frechet distance written here
   from scratch in torch float64 (nothing from zsguide.spectral.criteria):

       W2^2(N(m1, S1), N(m2, S2)) = |m1 - m2|^2 + tr S1 + tr S2 - 2 tr (S1^1/2 S2 S1^1/2)^1/2,

   with the square root of the *first* argument (criteria.py takes the posterior's or the prior's, the second), and
   the average over y of the mean term evaluated literally at the 2m sigma points ``y = +-sqrt(m) L e_k``
   (``Cov[y] = L L^T``), which average a quadratic exactly. On random blocks (real and complex, 1 x 1 and n x n,
   with and without block weights; complex blocks through their real 2n-dimensional form, so the Hermitian traces are
   checked too) and on real 3 x 8 x 8 problems (blur, x2 super-resolution, random inpainting), where the reference is
   computed in image space from dense matrices: the prior ``Q^T F^H diag(lambda) F Q`` with the DFT matrix from its definition, the
   operator and the noise restriction applied to unit images, the posterior by the textbook formula, and the
   sampler's transfer mapped to image space through the problem's own coordinate maps (``to_layout``,
   ``y_coords``), so the block machinery (per-block posterior, ``Cov[ybar]``, weights, ``dims``) is checked too.
2. Designed schedules (spectral/design.py) of every designable sampler run through the real sampler code on one
   measurement: the empirical mean and covariance of the outputs against the closed-form law of *that* schedule, by a
   chi-squared aggregate of the mean z-scores in the law's eigenbasis (independent N(0, 1) under the law), their
   component along the predicted mean, and the variances' aggregates. The unconstrained DPS design, outside its
   law's validity at this size, is a strict xfail.
3. DPS's coefficient on ``x0_hat`` (``Q`` in ``closed_form_step``) at a fixed residual norm: with the norm held at its
   value at a given state, the real step is affine in (x_t, y, x0_hat), and its differences in each equal the law's
   ``A``, ``b`` and ``Q``.
"""

import functools
import itertools
import math

import pytest
import torch

import zsguide.samplers.dps as dps_module
from zsguide.data.gaussian import gaussian_field_spectrum
from zsguide.diffusion.denoisers import AnalyticDenoiser
from zsguide.diffusion.schedule import VPSchedule
from zsguide.operators import make_operator
from zsguide.samplers import get_sampler, sampler_names
from zsguide.samplers.base import ParamSchedule
from zsguide.samplers.law import StepInputs, standard_initial
from zsguide.spectral.criteria import Criteria
from zsguide.spectral.design import design
from zsguide.spectral.options import DEFAULT_TRUST_FACTOR
from zsguide.spectral.problem import BlockProblem, problem_for
from zsguide.spectral.transfer import Transfer, transfer
from zsguide.surrogate import GaussianSurrogate

from .laws import check_law, coordinate_maps, image_law, image_map, law_statistics

SCHED = VPSchedule()
TASKS = {"deblur_gaussian": {"size": 5, "sigma": 1.0}, "sr2": {}, "inpaint_random": {}}
SIZE, SIGMA = 8, 0.1
LAWS = sampler_names(closed_form=True)
DESIGNABLE = tuple(
    n for n in sampler_names(designable=True) if not get_sampler(n).variant_of
)  # as test_spectral_transfer


def _setup(task):
    sur = GaussianSurrogate(3, SIZE, SIZE)
    sur.set(torch.zeros(3, dtype=torch.float64), gaussian_field_spectrum(3, SIZE, 0.3, 2.0, 1 / SIZE))
    op = make_operator(task, sur.shape, 0, [0], **TASKS[task])
    return sur, op, problem_for(sur, op, SIGMA)


@functools.cache
def _dense(task):
    """The problem of ``task`` and its image-space pieces: ``(sur, op, p, X, Y, S, A, N, W, post)`` (module docstring)."""
    sur, op, p = _setup(task)
    X, Y = coordinate_maps(p, sur, op)
    S = dense_prior(sur)
    A, N = dense_operator(op, SIGMA)
    return (sur, op, p, X, Y, S, A, N, *posterior(S, A, N))


# --- the reference, from scratch (torch float64: one thread pool with the package's, no numpy BLAS beside it) -------


def _psd_sqrt(S):
    """``S^1/2`` of a symmetric PSD matrix (eigenvalues clamped at 0)."""
    e, U = torch.linalg.eigh(0.5 * (S + S.T))
    return (U * e.clamp(min=0).sqrt()) @ U.T


def frechet(m1, S1, m2, S2):
    """``W2^2(N(m1, S1), N(m2, S2))`` for real Gaussians; ``m1``, ``m2`` (..., d) give one value per mean pair."""
    R = _psd_sqrt(S1)
    cross = torch.linalg.eigvalsh(R @ S2 @ R).clamp(min=0).sqrt().sum()
    return (m1 - m2).square().sum(-1) + S1.trace() + S2.trace() - 2 * cross


def sigma_points(C):
    """``+-sqrt(d) L e_k`` (2d points, (2d, d)) with ``C = L L^T``: their average of any quadratic is its mean over
    ``N(0, C)``."""
    L = _psd_sqrt(C)
    return math.sqrt(C.shape[0]) * torch.cat([L.T, -L.T])


def reference_criteria(B, V, W, post, S, A, N):
    """Criteria of the law ``x | y ~ N(B y, V)`` for ``x ~ N(0, S)``, ``y = A x + n``, ``n ~ N(0, N)``, whose
    posterior is ``N(W y, post)`` (all real): the unnormalised sums of theory.md §5, each from its definition."""
    Cy = A @ S @ A.T + N
    ys = sigma_points(Cy)
    zero = torch.zeros(1, dtype=S.dtype)
    E = B @ A - torch.eye(S.shape[0], dtype=S.dtype)  # the error (B A - I) x + B n + v
    return {
        "avg_w2": float(frechet(ys @ B.T, V, ys @ W.T, post).mean()),  # E_y W2^2(N(B y, V), N(W y, post))
        "w2_mean": float((ys @ (B - W).T).square().sum(-1).mean()),
        "w2_cov": float(frechet(zero, V, zero, post)),
        "mse": float((E @ S @ E.T + B @ N @ B.T + V).trace()),
        "perception_w2": float(frechet(zero, B @ Cy @ B.T + V, zero, S)),
    }


def posterior(S, A, N):
    """``(W, Sigma_post)`` of ``x ~ N(0, S)`` given ``y = A x + n``, ``n ~ N(0, N)`` (pseudo-inverse: a missing pixel's
    y is 0 with no noise)."""
    W = S @ A.T @ torch.linalg.pinv(A @ S @ A.T + N, rtol=1e-12, hermitian=True)
    P = S - W @ A @ S
    return W, 0.5 * (P + P.T)


def realify_map(M):
    """A complex linear map as the real map on (real parts, imaginary parts)."""
    M = M.to(torch.complex128)
    return torch.cat([torch.cat([M.real, -M.imag], 1), torch.cat([M.imag, M.real], 1)], 0)


def realify_cov(C):
    """The real covariance of a circular complex Gaussian with ``E[z z^H] = C``."""
    return 0.5 * realify_map(C)


# --- 1. the criteria -------------------------------------------------------------------------------------------------


def _random_psd(g, shape, n, complex_, rank=None):
    dt = torch.complex128 if complex_ else torch.float64
    G = torch.randn(*shape, n, rank or n, generator=g, dtype=dt)
    return G @ G.mH / n + (0.05 * torch.eye(n, dtype=dt) if rank is None else 0)


@pytest.mark.parametrize(
    "complex_,n,m,weighted",
    [(False, 1, 1, False), (True, 1, 1, True), (False, 4, 2, True), (True, 4, 1, False), (True, 3, 3, True)],
)
def test_criteria_match_the_frechet_formula_on_random_blocks(complex_, n, m, weighted):
    """Random prior blocks, singular values, noise, ``B`` and ``V`` (one ``V`` block rank-deficient, so the clamped
    square roots are exercised), on a (2, 3) grid of blocks, optionally weighted: every criterion equals the
    reference summed over blocks with the weights, divided by ``dims``, within 1e-10 relative or 5e-8 absolute. The
    absolute part is the singular block's: a zero eigenvalue of ``S^1/2 V S^1/2`` comes out as +-eps ||M||, whose
    clamped square root is up to sqrt(eps ||M||) ~ 1.5e-8 ||M||^1/2 on either side; two per singular complex block
    (its real form), times 2, weight <= 5, over dims = 17: <= 2e-8 (measured 1.4e-9; the other cases and the other
    criteria agree to 1e-15 relative). A 1% error in any term is ~1e-3 here."""
    g = torch.Generator().manual_seed(10 * n + m + complex_)
    shape, dt = (2, 3), torch.complex128 if complex_ else torch.float64
    Sigma = _random_psd(g, shape, n, complex_)
    s = 0.2 + 1.8 * torch.rand(*shape, m, generator=g, dtype=torch.float64)
    sigma, dims = 0.3, 17
    weight = 1 + 4 * torch.rand(shape, generator=g, dtype=torch.float64) if weighted else None
    p = BlockProblem(Sigma, s, s, torch.ones_like(s), sigma, dims, "fourier_block", weight=weight)
    B = torch.randn(*shape, n, m, generator=g, dtype=dt)
    V = _random_psd(g, shape, n, complex_)
    V[1, 2] = _random_psd(g, (), n, complex_, rank=n - 1) if n > 1 else 0  # singular (1 x 1: zero)
    got = Criteria(p)(Transfer(B, V))
    ref = dict.fromkeys(got, 0.0)
    mmse = 0.0
    for idx in itertools.product(*map(range, shape)):  # block by block
        S, H = Sigma[idx], torch.zeros(m, n, dtype=torch.float64)
        H[:, :m] = torch.diag(s[idx])  # H_bar = [diag(s) 0]
        Bb, Vb, N = B[idx], V[idx], sigma**2 * torch.eye(m, dtype=torch.float64)
        if complex_:
            S, H, Bb, Vb, N = realify_cov(S), realify_map(H), realify_map(Bb), realify_cov(Vb), realify_cov(N)
        W, post = posterior(S, H, N)
        w = float(weight[idx]) if weighted else 1.0
        for k, v in reference_criteria(Bb, Vb, W, post, S, H, N).items():
            ref[k] += w * v
        mmse += w * float(post.trace())
    for k in got:
        assert float(got[k]) == pytest.approx(ref[k] / dims, rel=1e-10, abs=5e-8), k
    assert Criteria(p).references()["mmse"] == pytest.approx(mmse / dims, rel=1e-10)


# --- image space: dense matrices of a real problem --------------------------------------------------------------------


def _dft(n):
    """The unitary DFT matrix of size n, from its definition."""
    k = torch.arange(n, dtype=torch.float64)
    return torch.exp(-2j * math.pi * torch.outer(k, k) / n) / math.sqrt(n)


def dense_prior(sur):
    """The surrogate's covariance ``Q^T F^H diag(lambda) F Q`` (C H W x C H W)."""
    C, H, Wd = sur.shape
    F = torch.kron(_dft(H), _dft(Wd))  # the 2D DFT of a row-major image
    M = torch.kron(sur.Q.T.to(torch.complex128), F.mH)  # spectra of the decorrelated channels -> image
    S = (M * sur.spectrum.reshape(-1)) @ M.mH
    assert S.imag.abs().max() < 1e-12
    return S.real


def dense_operator(op, sigma):
    """``A`` (m x d) from the operator applied to unit images, and the noise covariance ``sigma^2 P P^T`` from its
    noise restriction applied to unit measurements."""
    d, m = math.prod(op.image_shape), math.prod(op.measurement_shape)
    A = op.A(torch.eye(d, dtype=torch.float64).reshape(d, *op.image_shape)).reshape(d, m).T
    P = op.restrict_noise(torch.eye(m, dtype=torch.float64).reshape(m, *op.measurement_shape)).reshape(m, m).T
    return A, sigma**2 * (P @ P.T)


@pytest.mark.parametrize("method", LAWS)
@pytest.mark.parametrize("task", list(TASKS))
def test_criteria_match_dense_image_space_reference(task, method):
    """The real 3 x 8 x 8 problem and the sampler's heuristic transfer at 6 steps: the criteria from the image-space
    reference (prior, operator, posterior and W2 in 192 dimensions, module docstring) within 1e-8 relative or 1e-12
    absolute per pixel, and the references (MMSE ``tr Sigma_post``, the posterior sampler's ``2 tr Sigma_post``)
    within 1e-10 relative. Rounding: the posterior and the laws are nearly singular (well-measured coordinates, the
    oracle's V equal to the posterior), and the square root of an eigenvalue that is zero up to rounding, eps ||M||,
    is up to sqrt(eps ||M||) ~ 1e-8 ||M||^1/2 before the division by 192 (none is that close here: measured at most
    3e-16 per pixel, for criteria of 1e-2 to 1e-1 and the oracle's avg W2 of ~1e-13)."""
    sur, op, p, X, Y, S, A, N, W, post = _dense(task)
    assert torch.allclose(X.mH @ X, torch.eye(X.shape[0], dtype=X.dtype), atol=1e-12)  # X is a change of basis
    params = get_sampler(method).heuristic(task, 6, SCHED)
    law = transfer(method, p, params, SCHED.alphas_cumprod)
    ref = reference_criteria(*image_law(law, X, Y), W, post, S, A, N)
    crit = Criteria(p)
    got = crit(law)
    for k in ref:
        assert float(got[k]) == pytest.approx(ref[k] / p.dims, rel=1e-8, abs=1e-12), (k, float(got[k]), ref[k] / p.dims)
    refs = crit.references()
    assert refs["mmse"] == pytest.approx(float(post.trace()) / p.dims, rel=1e-10)
    assert refs["posterior_sampler_mse"] == pytest.approx(2 * float(post.trace()) / p.dims, rel=1e-10)


# --- 2. designed schedules by Monte Carlo ---------------------------------------------------------------------------


def _designed(task, method, steps=8):
    """The design of ``method`` on the 3 x 8 x 8 problem (L-BFGS, 10 iterations, from the heuristic); DPS's with the
    commands' default trust factor 2 (test docstring), the rest unconstrained (knobs far from the heuristic)."""
    _, _, p = _setup(task)
    h = get_sampler(method).heuristic(task, steps, SCHED)
    trust = DEFAULT_TRUST_FACTOR if not get_sampler(method).affine else None
    return design(method, p, h, SCHED.alphas_cumprod, max_iter=10, trust=trust)


def _monte_carlo_law(task, method, params, N, run_params=None):
    """N runs of the real sampler code (analytic denoiser) on one measurement with ``run_params`` (default
    ``params``), and :func:`law_statistics` against the closed-form law of ``params`` given that measurement, in
    image space."""
    sur, op, p, X, Y, *_ = _dense(task)
    x = sur.sample(1, torch.Generator().manual_seed(4))
    y = op.measure(x, SIGMA, op.noise_for(0, [0], dtype=torch.float64))
    out = get_sampler(method).run(
        AnalyticDenoiser(sur, SCHED),
        op,
        y.expand(N, *y.shape[1:]),
        SIGMA,
        run_params or params,
        seed=2,
        indices=list(range(N)),
        surrogate=sur,
    )
    law = transfer(method, p, params, SCHED.alphas_cumprod, y_coords=p.y_coords(y, sur)[0])
    B, V = image_law(law, X, Y)
    return law_statistics(out.flatten(1), B @ y.flatten(), V)


@pytest.mark.parametrize("method", DESIGNABLE)
@pytest.mark.parametrize("task", ["sr2", "deblur_gaussian"])
def test_designed_schedule_output_law_matches_monte_carlo(task, method):
    """Every designable sampler (the registry's ``designable``), its schedule designed on the 3 x 8 x 8 problem at 8
    steps (at least 2% lower avg W2 than the heuristic, knobs that vary over the steps), run N = 2000 times by the
    real sampler code on one measurement: the outputs against the closed-form law of the designed schedule given that
    measurement (``N(B ybar, V)``, DPS's norm conditioned on it), in the law's eigenbasis (:func:`law_statistics`),
    each bound at about 1e-4 false alarms:

    - the mean: the chi-squared aggregate of the K = 192 z-scores below its 1e-4 upper quantile (274; fails for a
      noncentrality N |dm|^2_{V^-1} of ~100, e.g. a shift of 1.4% of the spread in every direction), every
      |z| < 5 (Bonferroni over K), and the component along the predicted mean |z| < 4 (a 1% error in DDRM's,
      DDNM+'s or DiffPIR's measurement gain or PiGDM's guidance, in the step alone, gives 7 to 18);
    - the variance: the pooled statistic within 4 standard errors (0.23% of the scaled total) and the spread
      statistic below 5 (a 10% variance error confined to 11 of the 192 directions reaches 5);
    - the directions the law gives no spread: the mean within 1e-8.

    DPS's law replaces its residual norm by the norm's expectation, exact only as the norm concentrates; its design
    here uses the commands' default trust factor 2 (knobs within a factor 2 of the reference's), where that holds at
    this size. Its unconstrained design leaves that regime: the xfail test below. (DPS's step normalises its
    gradient by the residual norm, so a 1% error in its gain is corrected by the next steps and does not show
    here; the fixed-norm test below sees it.)"""
    r = _designed(task, method)
    assert r.params.provenance["source"] == "spectral" and r.designed["avg_w2"] < 0.98 * r.heuristic["avg_w2"]
    assert any(max(v) - min(v) > 1e-3 for v in r.params.values.values()), "the design should vary over the steps"
    check_law(*_monte_carlo_law(task, method, r.params, N=2000))


@pytest.mark.xfail(
    strict=True, raises=AssertionError, reason="DPS's closed form needs a concentrated residual norm (see docstring)"
)
def test_unconstrained_dps_design_is_outside_its_laws_validity():
    """The unconstrained DPS design on 3 x 8 x 8 blur (zeta up to 3.8, 13 times the reference's 0.3, at the late steps)
    drives the residual norm to fluctuate by 8% between runs (its mean still within 0.1% of the closed form's
    ``nu_t``), and the output law is then far from the closed form: chi-squared 5555 for 192 degrees of freedom, the
    pooled variance statistic 821 standard errors off (16 x 16: 3072 for 768, the total variance 21% above the law).
    Strict xfail: if DPS's law learns the norm's spread, this passes and must become a plain test."""
    _, _, p = _setup("deblur_gaussian")
    h = get_sampler("dps").heuristic("deblur_gaussian", 8, SCHED)
    r = design("dps", p, h, SCHED.alphas_cumprod, max_iter=10)
    check_law(*_monte_carlo_law("deblur_gaussian", "dps", r.params, N=400))


# --- 3. DPS's coefficient on x0_hat at a fixed residual norm ------------------------------------------------------


class _ShiftedDenoiser:
    """The analytic denoiser plus a fixed offset per image, ``x0_hat = C_t x_t + r`` (``r`` does not depend on
    ``x_t``, as a calibrated denoiser's residual): the offset enters a step through its coefficient ``Q``."""

    def __init__(self, sur, offset):
        self.base, self.offset, self.schedule = AnalyticDenoiser(sur, SCHED), offset, SCHED

    def x0(self, x_t, t):
        return self.base.x0(x_t, t) + self.offset


@pytest.mark.parametrize("task", list(TASKS))
def test_dps_step_at_a_fixed_residual_norm_has_the_laws_coefficients(task, monkeypatch):
    """DPS's step ``x' = DDIM(x0_hat) - zeta grad_x ||y - A x0_hat||`` at step 3 of 8 with random knobs (zeta 0.7,
    eta 0.6), its residual norm held at ``nu = ||y - A x0_hat||`` of a random state (``dps_gain`` replaced by
    ``zeta / nu`` in the step and in the closed form alike): the step is then affine in (x_t, y, x0_hat), and its
    differences along every unit image of x_t, of y and of an offset of x0_hat (exact for an affine map; the fresh
    noise set to 0) equal the law's ``A``, ``b`` and ``Q`` (``closed_form_step``) mapped to image space, within 1e-10
    of their largest entry (float64 rounding through the FFTs). Holding the norm changes nothing at the state itself:
    the unpatched step there gives the same output (1e-12), so ``nu`` is the norm the step divides by."""
    sur, op, p, X, Y, *_ = _dense(task)
    sampler = get_sampler("dps")
    h = sampler.heuristic(task, 8, SCHED)
    params = ParamSchedule("dps", task, 8, h.spacing, h.timesteps, {"zeta": [0.7] * 8, "eta": [0.6] * 8})
    i, abar = 3, SCHED.alphas_cumprod
    t, a_t, a_prev = h.timesteps[i], float(abar[h.timesteps[i]]), float(abar[h.timesteps[i + 1]])
    g = torch.Generator().manual_seed(7)
    x = math.sqrt(a_t) * sur.sample(1, g) + math.sqrt(1 - a_t) * torch.randn(
        1, *sur.shape, generator=g, dtype=torch.float64
    )
    y = op.measure(sur.sample(1, g), SIGMA, torch.randn(1, *op.measurement_shape, generator=g, dtype=torch.float64))
    nu = float((y - op.A(sur.denoise(x, torch.tensor([a_t], dtype=torch.float64)))).norm())

    def step(xs, ys, offsets):
        zeros = lambda stream, of_shape=sur.shape: torch.zeros(xs.shape[0], *of_shape, dtype=torch.float64)  # noqa: E731
        out, _ = sampler.step(_ShiftedDenoiser(sur, offsets), op, ys, SIGMA, params, i, t, a_t, a_prev, xs, zeros, sur)
        return out.detach().flatten(1)

    base = step(x, y, torch.zeros_like(x))
    monkeypatch.setattr(dps_module, "dps_gain", lambda zeta, sq: zeta / (nu * torch.ones_like(torch.as_tensor(sq))))
    assert torch.allclose(step(x, y, torch.zeros_like(x)), base, rtol=0, atol=1e-12 * float(base.abs().max()))
    d, m = x[0].numel(), y[0].numel()
    unit_x = torch.eye(d, dtype=torch.float64).reshape(d, *sur.shape)
    unit_y = torch.eye(m, dtype=torch.float64).reshape(m, *op.measurement_shape)
    A_img = (step(x + unit_x, y.expand(d, *y.shape[1:]), torch.zeros_like(unit_x)) - base).T
    b_img = (step(x.expand(m, *x.shape[1:]), y + unit_y, torch.zeros(m, *sur.shape, dtype=torch.float64)) - base).T
    Q_img = (step(x.expand(d, *x.shape[1:]), y.expand(d, *y.shape[1:]), unit_x) - base).T

    C, _ = p.denoiser_at(a_t)
    knobs = {k: torch.tensor(v, dtype=torch.float64) for k, v in params.values.items()}
    B0, V0 = standard_initial(p)  # any state law: the gain is held at zeta / nu
    law = sampler.closed_form_step(StepInputs(p, C, a_t, a_prev, knobs, i, B0, V0))
    for name, got, want in (
        ("A", A_img, image_map(law.A, X, X.mH)),
        ("b", b_img, image_map(law.b, X, Y)),
        ("Q", Q_img, image_map(law.Q, X, X.mH)),
    ):
        assert torch.allclose(got, want, rtol=0, atol=1e-10 * float(want.abs().max())), (
            name,
            float((got - want).abs().max()),
        )
