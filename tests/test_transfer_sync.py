"""The closed form's per-step map is the real sampler step, exactly (issue 13, part 1).

With the analytic denoiser of a zero-mean surrogate every step of an affine sampler (``Sampler.affine``: DDRM,
DDNM+, PiGDM, DiffPIR, the oracle, and any sampler registered with a law) is linear in (the state x, the measurement
y, the step's fresh noise z, an additive perturbation d of the denoiser's output ``x0_hat``):

    x' = J_x x + J_y y + J_z z + J_d d.

Pushing impulses through the real ``Sampler.step`` gives those four matrices to float64 rounding. In the closed
form's block coordinates (``xi = P x``, ``ybar = Y y``; P unitary) the sampler's own law (``closed_form_step``,
samplers/law.py) claims

    P J_x P^H = A,   P J_y = b Y,   (P J_z)(P J_z)^H = E,   P J_d P^H = Q,

and this test checks all four at random knob values (not only the heuristic, where terms such as DDRM's
``(1 - eta_b) c0`` vanish), at every step of a 6-step schedule, on blur, sr2 and inpaint_random (8 x 8 x 3, where
every structure is exact), for every sampler of the registry with a law (``sampler_names(closed_form=True)``): a
new sampler is checked without editing this file. Two further paths are checked the same way (issue 23, item 4):
super-resolution with a blur kernel (sr2, Gaussian 5 x 5: ``BlurDecimation``, complex alias blocks with
kernel-dependent singular values and bases, for every sampler with a law), and every knob a sampler takes per radial
frequency band (``Knob.per_band``: DiffPIR's ``lam``) on blur, with random values per band and step, so the step's
expansion (samplers/bands.py ``expand_bands``) meets the closed form's (``radial_bands`` on the problem's grid).
``Q`` is the coefficient through which a calibrated denoiser's residual enters (spectral/denoiser_model.py).

DPS is not linear (``affine`` False): its step divides by the residual norm ``nu = ||y - H x0_hat||``. At a given
state and measurement it is the affine step of the closed form with ``nu`` in place of the norm's expectation, so the
second test compares the real step's output at random (x, y) with ``A x + b y`` built from that ``nu``, and its
fresh-noise map with ``E``. How well the expectation stands in for the norm stays a Monte Carlo question (test_spectral_transfer.py).
"""

import pytest
import torch

from zsguide.data.gaussian import gaussian_field_spectrum
from zsguide.diffusion.denoisers import AnalyticDenoiser, Denoiser
from zsguide.diffusion.schedule import VPSchedule
from zsguide.operators import make_operator
from zsguide.samplers import get_sampler, sampler_names
from zsguide.samplers.bands import radial_bands
from zsguide.samplers.law import StepInputs
from zsguide.spectral.problem import problem_for
from zsguide.surrogate import GaussianSurrogate, apply_colour

SCHED = VPSchedule()
TASKS = {"deblur_gaussian": {"size": 5, "sigma": 1.0}, "sr2": {}, "inpaint_random": {}}
KERNEL_SR = ("sr2", {"kernel": "gaussian", "kernel_size": 5})  # blur + decimation (kernel sigma factor / 2 = 1)
BANDS = 4  # radial bands of a per-band knob: on the 8 x 8 grid they hold 5, 16, 30 and 13 frequencies
SIZE, CHANNELS, SIGMA, STEPS = 8, 3, 0.1, 6
# Random knob values per step, in each knob's domain (uniform on these ranges; a knob not named here: its domain's)
KNOB_RANGES = {
    "eta": (0.05, 0.95),
    "eta_b": (0.3, 1.8),
    "lambda_scale": (0.3, 1.5),
    "weight": (0.3, 3.0),
    "lam": (0.5, 20.0),
    "zeta": (0.05, 0.95),
    "step_size": (1e-4, 5e-4),  # DAPS: |G| = |1 - lr (2 s^2 / tau^2 + 1 / r^2)| < 1 over 100 Langevin steps
    "tau": (0.1, 0.3),
    "r_scale": (0.5, 2.0),
}
DOMAIN_RANGES = {"unit": (0.05, 0.95), "positive": (0.3, 3.0)}
LAWS = sampler_names(closed_form=True)  # the registry's samplers with a closed-form law
LINEAR = tuple(n for n in LAWS if get_sampler(n).affine)  # ddrm, ddnm, pigdm, diffpir, oracle
NORM = tuple(n for n in LAWS if not get_sampler(n).affine)  # dps: affine at its own residual norm
PER_BAND = tuple((n, k.name) for n in LINEAR for k in get_sampler(n).knob_specs if k.per_band)  # (diffpir, lam)


class PerturbedDenoiser(Denoiser):
    """The analytic denoiser plus a fixed additive ``d`` on its output: ``x0_hat = D(x_t) + d``."""

    def __init__(self, base: AnalyticDenoiser) -> None:
        super().__init__(base.schedule)
        self.base, self.d = base, None

    def x0(self, x_t, t):
        out = self.base.x0(x_t, t)
        return out if self.d is None else out + self.d


def _setup(task, task_params=None):
    sur = GaussianSurrogate(CHANNELS, SIZE, SIZE)
    sur.set(torch.zeros(CHANNELS, dtype=torch.float64), gaussian_field_spectrum(CHANNELS, SIZE, 0.3, 2.0, 1 / SIZE))
    op = make_operator(task, sur.shape, 0, [0], **(TASKS[task] if task_params is None else task_params))
    p = problem_for(sur, op, SIGMA)
    assert not p.note, "the sync test needs the exact problem, not a reduction"
    return sur, op, p


def _block_matrix(M, p) -> torch.Tensor:
    """A per-block field (..., n, n) (or a vector (..., n) standing for its diagonal, or a scalar) as one K x K
    block-diagonal matrix over the flattened block coordinates."""
    blocks = p.Sigma.shape[:-2]
    if not torch.is_tensor(M):
        M = torch.as_tensor(M, dtype=p.dtype) * torch.eye(p.n, dtype=p.dtype)
    M = M.to(p.dtype)
    if M.ndim == len(blocks) + 1 and tuple(M.shape[:-1]) == tuple(blocks):  # a diagonal, given as its vector
        M = torch.diag_embed(M)
    M = M.expand(*blocks, *M.shape[-2:]).reshape(-1, *M.shape[-2:])
    return torch.block_diag(*M)


def _coordinates(p, sur, op):
    """``P`` (K x N: image -> block coordinates) and ``Y`` (m_total x M: measurement -> ybar), as matrices."""
    N = sur.shape[0] * SIZE * SIZE
    eye = torch.eye(N, dtype=torch.float64).reshape(N, *sur.shape)
    layout = apply_colour(sur.Q, eye) if p.structure == "pixel_mask" else sur.to_spectral(eye, centre=False)
    layout = layout.reshape(N, -1).to(torch.complex128).T  # (K, N): image -> layout
    K = layout.shape[0]
    basis = torch.eye(K, dtype=p.dtype).reshape(K, *p.Sigma.shape[:-1])
    L = p.to_layout(basis).reshape(K, -1).to(torch.complex128).T  # (K, K): block coordinates -> layout
    assert torch.allclose(L.mH @ L, torch.eye(K, dtype=L.dtype), atol=1e-12)
    M = int(torch.tensor(op.measurement_shape).prod())
    ey = torch.eye(M, dtype=torch.float64).reshape(M, *op.measurement_shape)
    Y = p.y_coords(ey, sur).reshape(M, -1).to(torch.complex128).T  # (m_total, M)
    return L.mH @ layout, Y


def _random_params(sampler, task, gen, per_band=()):
    """The heuristic's schedule with random knob values per step; a knob in ``per_band``: ``BANDS`` values per step."""
    params = sampler.heuristic(task, STEPS, SCHED)
    for knob in params.values:
        lo, hi = KNOB_RANGES.get(knob, DOMAIN_RANGES[sampler.knob(knob).domain])
        shape = (STEPS, BANDS) if knob in per_band else (STEPS,)
        params.values[knob] = (lo + (hi - lo) * torch.rand(*shape, generator=gen, dtype=torch.float64)).tolist()
    return params


def _jacobians(sampler, den, sur, op, params, i):
    """The real step's matrices J_x, J_y, J_z (all noise streams side by side) and J_d, each (N, inputs)."""
    shape = sur.shape
    N = shape[0] * SIZE * SIZE
    t = params.timesteps[i]
    abar = SCHED.alphas_cumprod
    a_t = float(abar[t])
    a_prev = float(abar[params.timesteps[i + 1]]) if i + 1 < STEPS else 1.0
    streams: dict[str, tuple] = {}

    def record(stream, of_shape=shape, dtype=torch.float64, **_):
        streams[stream] = tuple(of_shape)
        return torch.zeros(1, *of_shape, dtype=dtype)

    x0 = torch.zeros(1, *shape, dtype=torch.float64)
    y0 = torch.zeros(1, *op.measurement_shape, dtype=torch.float64)
    sampler.step(den, op, y0, SIGMA, params, i, t, a_t, a_prev, x0, record, sur)

    def run(x, y, fill=None, d=None):
        B = x.shape[0]

        def noise(stream, of_shape=shape, dtype=torch.float64, **_):
            return fill(stream, B) if fill is not None else torch.zeros(B, *of_shape, dtype=dtype)

        den.d = d
        out, _ = sampler.step(den, op, y, SIGMA, params, i, t, a_t, a_prev, x, noise, sur)
        den.d = None
        return out.reshape(B, -1).T  # (N, B)

    zeros = lambda B: torch.zeros(B, *shape, dtype=torch.float64)  # noqa: E731
    zeros_y = lambda B: torch.zeros(B, *op.measurement_shape, dtype=torch.float64)  # noqa: E731
    eye = torch.eye(N, dtype=torch.float64).reshape(N, *shape)
    M = int(torch.tensor(op.measurement_shape).prod())
    J_x = run(eye.clone(), zeros_y(N))
    J_y = run(zeros(M), torch.eye(M, dtype=torch.float64).reshape(M, *op.measurement_shape))
    J_d = run(zeros(N), zeros_y(N), d=eye.clone())
    J_z = []
    for name, sshape in streams.items():
        size = int(torch.tensor(sshape).prod())
        impulses = torch.eye(size, dtype=torch.float64).reshape(size, *sshape)

        def fill(stream, B, name=name, impulses=impulses):
            return impulses if stream == name else torch.zeros(B, *streams[stream], dtype=torch.float64)

        J_z.append(run(zeros(size), zeros_y(size), fill=fill))
    J_z = torch.cat(J_z, dim=1) if J_z else torch.zeros(N, 0, dtype=torch.float64)
    return J_x, J_y, J_z, J_d, a_t, a_prev


def _close(real, closed, what):
    scale = max(float(closed.abs().max()), float(real.abs().max()), 1e-300)
    err = float((real - closed).abs().max()) / scale
    assert err < 1e-9, f"{what}: relative error {err:.2e}"


def assert_law_is_step(sampler, task, seed, task_params=None, per_band=()):
    """The sampler's ``closed_form_step`` against impulses through its real ``step`` at every step of a 6-step
    schedule of random knobs (from ``seed``) on ``task`` (with ``task_params``; None: ``TASKS[task]``), the knobs
    in ``per_band`` given per radial band: ``A``, ``b``, ``E`` and ``Q`` to float64 rounding."""
    sur, op, p = _setup(task, task_params)
    gen = torch.Generator().manual_seed(seed)
    params = _random_params(sampler, task, gen, per_band)
    den = PerturbedDenoiser(AnalyticDenoiser(sur, SCHED))
    P, Y = _coordinates(p, sur, op)
    vals = {k: torch.tensor(v, dtype=torch.float64) for k, v in params.values.items()}
    for i in range(STEPS):
        J_x, J_y, J_z, J_d, a_t, a_prev = _jacobians(sampler, den, sur, op, params, i)
        C, _ = p.denoiser_at(a_t)
        A, b, E, Q = sampler.closed_form_step(StepInputs(p, C, a_t, a_prev, vals, i, abar=SCHED.alphas_cumprod))
        where = f"{sampler.name} on {task}{'' if task_params is None else f' {task_params}'}"
        where += f"{f' (per band: {per_band})' if per_band else ''}, step {i} of {STEPS}"
        _close(P @ J_x.to(P.dtype) @ P.mH, _block_matrix(A, p), f"{where}: A (state)")
        b_full = torch.block_diag(*b.expand(*p.Sigma.shape[:-2], p.n, p.m).reshape(-1, p.n, p.m))
        _close(P @ J_y.to(P.dtype), b_full.to(Y.dtype) @ Y, f"{where}: b (measurement)")
        Pz = P @ J_z.to(P.dtype)
        _close(Pz @ Pz.mH, _block_matrix(E, p), f"{where}: E (fresh noise)")
        _close(P @ J_d.to(P.dtype) @ P.mH, _block_matrix(Q, p), f"{where}: Q (x0_hat)")


@pytest.mark.parametrize("method", LINEAR)
@pytest.mark.parametrize("task", list(TASKS))
def test_closed_form_step_is_the_real_step(task, method):
    seed = 100 * list(TASKS).index(task) + LINEAR.index(method)  # stable per case
    assert_law_is_step(get_sampler(method), task, seed)


@pytest.mark.parametrize("method", LINEAR)
def test_closed_form_step_is_the_real_step_on_sr_with_a_kernel(method):
    """Super-resolution by blur + decimation: complex alias blocks whose singular values and right singular vectors
    (``BlurDecimation``'s completion) depend on the kernel's symbol."""
    assert_law_is_step(get_sampler(method), KERNEL_SR[0], 300 + LINEAR.index(method), task_params=KERNEL_SR[1])


@pytest.mark.parametrize(("method", "knob"), PER_BAND)
def test_closed_form_step_is_the_real_step_with_a_knob_per_band(method, knob):
    """A knob given per radial frequency band on blur (DiffPIR's ``lam``), ``BANDS`` random values per step: the
    real step expands them on the operator's grid, the closed form on the problem's."""
    assert int(radial_bands(SIZE, SIZE, BANDS).unique().numel()) == BANDS, "every band holds frequencies"
    seed = 400 + PER_BAND.index((method, knob))
    assert_law_is_step(get_sampler(method), "deblur_gaussian", seed, per_band=(knob,))


def assert_dps_step_at_its_residual_norm(method, task, task_params=None):
    """A sampler whose gain divides by its residual norm (DPS): its law given the state's law ``B = 0``, ``V = 0``
    and measurement coordinates of norm ``nu`` is its real step at residual norm ``nu``."""
    sur, op, p = _setup(task, task_params)
    sampler = get_sampler(method)
    gen = torch.Generator().manual_seed(7)
    params = _random_params(sampler, task, gen)
    den = AnalyticDenoiser(sur, SCHED)
    P, Y = _coordinates(p, sur, op)
    vals = {k: torch.tensor(v, dtype=torch.float64) for k, v in params.values.items()}
    abar = SCHED.alphas_cumprod
    N = sur.shape[0] * SIZE * SIZE
    for i, t in enumerate(params.timesteps):
        a_t = float(abar[t])
        a_prev = float(abar[params.timesteps[i + 1]]) if i + 1 < STEPS else 1.0
        x = torch.randn(1, *sur.shape, generator=gen, dtype=torch.float64)
        y = torch.randn(1, *op.measurement_shape, generator=gen, dtype=torch.float64)
        nu = float((y - op.A(den.x0(x, t))).flatten().norm())

        def impulses(stream, of_shape=sur.shape, dtype=torch.float64, **_):
            return torch.eye(N, dtype=dtype).reshape(N, *of_shape)

        zero = lambda stream, of_shape=sur.shape, dtype=torch.float64, **_: torch.zeros(1, *of_shape, dtype=dtype)  # noqa: E731
        out, _ = sampler.step(den, op, y, SIGMA, params, i, t, a_t, a_prev, x, zero, sur)
        with_z, _ = sampler.step(
            den,
            op,
            y.expand(N, *y.shape[1:]),
            SIGMA,
            params,
            i,
            t,
            a_t,
            a_prev,
            x.expand(N, *x.shape[1:]),
            impulses,
            sur,
        )
        J_z = (with_z - out).reshape(N, -1).T if a_prev < 1.0 else torch.zeros(N, 0, dtype=torch.float64)
        # the closed form's step with nu^2 = ||y_coords||^2: B = 0 and V = 0 leave only that term in r2
        B0 = torch.zeros(*p.Sigma.shape[:-2], p.n, p.m, dtype=p.dtype)
        y_coords = torch.zeros(*p.Sigma.shape[:-2], p.m, dtype=p.dtype)
        y_coords.view(-1, p.m)[0, 0] = nu
        C, _ = p.denoiser_at(a_t)
        law = StepInputs(p, C, a_t, a_prev, vals, i, B0, torch.zeros_like(C), y_coords)
        A, b, E, _ = sampler.closed_form_step(law)
        where = (
            f"{method} on {task}{'' if task_params is None else f' {task_params}'}, step {i} of {STEPS} (nu {nu:.3g})"
        )
        b_full = torch.block_diag(*b.expand(*p.Sigma.shape[:-2], p.n, p.m).reshape(-1, p.n, p.m)).to(Y.dtype)
        predicted = _block_matrix(A, p).to(P.dtype) @ (P @ x.flatten().to(P.dtype)) + b_full @ (
            Y @ y.flatten().to(Y.dtype)
        )
        _close(P @ out.flatten().to(P.dtype), predicted, f"{where}: A x + b y")
        Pz = P @ J_z.to(P.dtype)
        _close(Pz @ Pz.mH, _block_matrix(E, p), f"{where}: E (fresh noise)")


@pytest.mark.parametrize("method", NORM)
@pytest.mark.parametrize("task", list(TASKS))
def test_dps_step_at_its_residual_norm_is_the_closed_form(task, method):
    """A sampler whose gain divides by its residual norm (DPS) at its residual norm, on each structure of ``TASKS``."""
    assert_dps_step_at_its_residual_norm(method, task)


@pytest.mark.parametrize("method", NORM)
def test_dps_step_at_its_residual_norm_on_sr_with_a_kernel(method):
    """The same on super-resolution by blur + decimation (``KERNEL_SR``)."""
    assert_dps_step_at_its_residual_norm(method, KERNEL_SR[0], task_params=KERNEL_SR[1])
