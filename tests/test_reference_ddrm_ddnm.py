"""DDRM and DDNM+ against their reference repositories, written independently of the package (issue 23, item 1).

The package's step and its closed form share the coefficient functions (``ddrm_coefficients``, ``ddnm_coefficients``),
so an error there is invisible to the sync and Monte Carlo tests. Here each step is rewritten from the reference code,
in its most literal form, with none of the package's coefficient or SVD helpers:

* the operator is a dense matrix ``A`` (``A[:, j] = A(e_j)``, 3 x 8 x 8 images, float64) with its SVD
  ``A = U diag(s) V^T`` from ``torch.linalg.svd``; the reference's ``H_funcs`` / ``A_funcs`` (``V``, ``Vt``, ``Ut``,
  ``singulars``) become products with these matrices, and its ``singulars()`` vector is the ``r`` nonzero singular
  values of the operator (``r`` = its rank: DDRM's ``Inpainting`` and ``SuperResolution`` measure only the kept pixels /
  blocks, its ``Deblurring`` keeps every frequency and zeroes the small ones);
* the per-singular-value update is the reference's, line by line (cited in each function);
* the denoiser is a fixed linear map (the same ``x0_hat`` for both sides); the reference's network returns ``eps``, so
  its ``et`` is ``(x_t - sqrt(abar_t) x0_hat) / sqrt(1 - abar_t)``, from which its own Eq. 12 recovers ``x0_hat``;
* the fresh noise is common: the package draws white image noise ``w`` through ``noise("z")`` and uses ``V^T w``; the
  reference draws white coefficients, here ``V_dense^T w``. Every coefficient of either update is a function of the
  singular value alone, so the image-space update ``V f(s) V^T`` does not depend on which orthonormal basis of each
  singular subspace is used (the package's FFT / block bases or the dense SVD's) and the two agree to rounding.

Compared with ``sampler.step`` at random knobs (eta in [0.05, 0.95], eta_b in [0.3, 1.8], lambda_scale in
[0.3, 1.5]), random measurement noise levels and random decreasing timesteps, at every step including the last, on
every structure: a circulant blur, super-resolution by block averaging and with a Gaussian kernel, random and box
inpainting. Agreement is to float64 rounding (1e-10 relative to the largest entry).

Conventions where the package deliberately differs from the reference code, each stated and checked to be exactly
that difference:

1. sigma in network units: both references double the user's sigma (DDRM ``runners/diffusion.py``: ``args.sigma_0 =
   2 * args.sigma_0 #to account for scaling to [-1,1]``; DDNM ``guided_diffusion/diffusion.py``: ``args.sigma_y = 2 *
   args.sigma_y``); the step takes that doubled value, and so do the references here.
2. the singular-value cut: the reference operators zero small singular values (DDRM ``svd_replacement.py``:
   ``Deblurring(..., ZERO = 3e-2)``, ``self.singulars_small[self.singulars_small < ZERO] = 0``; ``GeneralH``: 1e-3);
   the package's cut is the operator's ``rcond`` relative to the largest singular value. The references here get the
   dense singular values cut at ``s <= rcond * max(s)``.
3. DDRM, cut singular values: in ``efficient_generalized_steps`` a singular value zeroed by that cut still lies in
   ``singulars``, and ``cond_after_lite = singulars * sigma_next < sigma_0`` is true for it when ``sigma_0 > 0``, so the
   reference updates it as "less noisy than y" (``V_t_x0 + sigma_tilde * (U_t_y - 0) / sigma_0 + ...``). The package
   treats a cut singular value as missing (the ``s = 0`` case: ``V_t_x0 + sigma_tilde * Vt(et) + ...``). Checked: the
   package equals the reference with those components moved to the missing set, and the literal reference differs
   from the package only on them, by exactly ``sqrt(abar_next) sigma_tilde (U_t_y / sigma_0 - Vt(et))``.
4. DDRM, ``etaA = etaC``: the reference has separate knobs for the less-noisy and the missing components; its runner
   passes ``etaA=self.args.eta, etaC=self.args.eta`` (``runners/diffusion.py``, ``sample_image``), the package's ``eta``.
5. DDRM, one noise vector: the reference draws ``torch.randn_like`` separately for the missing, less-noisy and noisier
   components; each set of components uses its own draw only, so one white vector restricted to each set has the same
   law. Both sides get the same white coefficients here.
6. DDRM, ``eta_b > 1``: the reference's ``diff_sigma_t_nextB = sqrt(sigma_next^2 - sigma_0^2 / s^2 * etaB^2)`` is the
   square root of a negative number (NaN) on noisier components where ``etaB sigma_0 / s > sigma_next``; the package
   clamps that variance at 0. Checked: the package equals the reference wherever the reference is a number, and the
   reference with the variance clamped at 0 elsewhere (and the random knobs do reach that case).
7. DDRM's start ``p(x_T | y)``: the reference ends with ``init_y = init_y / largest_sigmas`` (``largest_sigmas =
   sqrt(1 - abar_T) / sqrt(abar_T)``), a state of unit scale; the package returns the VP state ``sqrt(abar_T) x_mod``,
   which is the reference's times ``sqrt(1 - abar_T)`` exactly (checked).
8. DDNM+, ``lambda_scale``: the package scales the range-space correction by the knob (1 in the reference). Checked:
   the package equals the reference whose correction ``x0_t - x0_t_hat`` is multiplied by ``lambda_scale``, and the
   literal reference at ``lambda_scale = 1``.
"""

import math

import pytest
import torch

from zsguide.diffusion.denoisers import Denoiser
from zsguide.diffusion.schedule import VPSchedule
from zsguide.operators import make_operator
from zsguide.samplers import ParamSchedule, get_sampler
from zsguide.seeding import randn_per_image

SCHED = VPSchedule()
SHAPE = (3, 8, 8)
N = 3 * 8 * 8
STRUCTURES = {
    "blur": ("deblur_gaussian", {"size": 5, "sigma": 1.0}),
    "sr2_block": ("sr2", {}),
    "sr2_kernel": ("sr2", {"kernel": "gaussian", "kernel_size": 5}),
    "inpaint_random": ("inpaint_random", {}),
    "inpaint_box": ("inpaint_box", {}),
}
TRIALS, MAX_STEPS = 4, 6
F64 = torch.float64


# --- the dense operator and the shared inputs -------------------------------------------------------------------------


class Dense:
    """The operator as a dense matrix with its SVD, the reference's ``H_funcs`` view of it."""

    def __init__(self, op):
        eye = torch.eye(N, dtype=F64).reshape(N, *SHAPE)
        self.A = op.A(eye).reshape(N, -1).T  # (M, N): column j is A e_j
        U, s, Vh = torch.linalg.svd(self.A, full_matrices=True)
        r = int((s > 1e-12 * s.max()).sum())  # the rank: the reference measures only these components
        self.U = U[:, :r]  # (M, r)
        self.Vh = Vh  # (N, N): V^T
        self.r = r
        self.raw = s[:r].clone()  # the operator's nonzero singular values
        kept = s[:r] > op.rcond * s.max()  # convention 2: the cut
        self.singulars = torch.where(kept, s[:r], torch.zeros_like(s[:r]))
        self.cut = ~kept  # components zeroed by the cut (inside the reference's singulars)

    def Vt(self, x):
        return self.Vh @ x.reshape(-1)

    def V(self, c):
        return (self.Vh.T @ c).reshape(1, *SHAPE)

    def Ut(self, y):
        return self.U.T @ y.reshape(-1)


class LinearDenoiser(Denoiser):
    """A fixed deterministic denoiser ``x0_hat = sqrt(abar_t) W x_t + m`` (W a fixed random matrix)."""

    def __init__(self, gen):
        super().__init__(SCHED)
        self.W = torch.randn(N, N, generator=gen, dtype=F64) / math.sqrt(N)
        self.m = 0.1 * torch.randn(N, generator=gen, dtype=F64)

    def x0(self, x_t, t):
        a = float(self.alphas_cumprod[int(t)])
        return (math.sqrt(a) * x_t.reshape(x_t.shape[0], -1) @ self.W.T + self.m).reshape(x_t.shape)


def test_schedule_is_the_references_compute_alpha():
    """Both references' ``compute_alpha(b, t)``: ``beta = cat([0], b)``, ``(1 - beta).cumprod()[t + 1]``, with DDRM's
    ``get_beta_schedule("linear")`` (``np.linspace(beta_start, beta_end, T)``, configs: 1e-4, 0.02, 1000); ``t = -1``
    (``seq_next = [-1] + ...``) gives 1, the ``a_prev = 1`` of the package's last step."""
    b = torch.linspace(1e-4, 0.02, 1000, dtype=F64)
    beta = torch.cat([torch.zeros(1, dtype=F64), b])
    a = (1 - beta).cumprod(dim=0)
    _close(SCHED.alphas_cumprod, a[1:], "alphas_cumprod", tol=1e-13)
    assert float(a[0]) == 1.0


def _setup(structure, seed):
    task, kw = STRUCTURES[structure]
    op = make_operator(task, SHAPE, seed, [0], **kw).to(dtype=F64)
    return op, Dense(op)


def _random_schedule(name, structure, gen):
    """A schedule of 3..MAX_STEPS random decreasing timesteps with random knob values in their domains."""
    steps = int(torch.randint(3, MAX_STEPS + 1, (1,), generator=gen))
    taus = sorted(torch.randperm(999, generator=gen)[:steps].add(1).tolist(), reverse=True)
    u = lambda lo, hi: (lo + (hi - lo) * torch.rand(steps, generator=gen, dtype=F64)).tolist()  # noqa: E731
    if name == "ddrm":
        values = {"eta": u(0.05, 0.95), "eta_b": u(0.3, 1.8)}
    else:
        values = {"eta": u(0.05, 0.95), "lambda_scale": u(0.3, 1.5)}
    return ParamSchedule(name, STRUCTURES[structure][0], steps, "uniform", taus, values)


def _measurement(op, gen, sigma):
    x_true = torch.rand(1, *SHAPE, generator=gen, dtype=F64) * 2 - 1
    noise = torch.randn(1, *op.measurement_shape, generator=gen, dtype=F64)
    return op.measure(x_true, sigma, noise)


def _package_step(sampler, den, op, y, sigma, params, i, x, w):
    """The package's step with the white image noise ``w`` injected through its ``noise`` callable."""
    t = params.timesteps[i]
    a_t = float(SCHED.alphas_cumprod[t])
    a_prev = float(SCHED.alphas_cumprod[params.timesteps[i + 1]]) if i + 1 < params.steps else 1.0
    asked = []

    def noise(stream, of_shape=SHAPE, **_):
        asked.append(stream)
        assert tuple(of_shape) == SHAPE
        return w.clone()

    out, _ = sampler.step(den, op, y, sigma, params, i, t, a_t, a_prev, x, noise, None)
    assert set(asked) <= {"z"}, f"{sampler.name} drew streams {asked}"
    return out, a_t, a_prev


def _close(got, want, what, tol=1e-10):
    scale = max(1.0, float(want.abs().max()))
    err = float((got - want).abs().max())
    assert err <= tol * scale, f"{what}: max |package - reference| = {err:.3e} (scale {scale:.3g})"


# --- DDRM: bahjat-kawar/ddrm, functions/denoising.py, efficient_generalized_steps -------------------------------------


def ddrm_reference_step(H, xt, et, at, at_next, y_0, sigma_0, etaA, etaB, etaC, z, cut_as_missing, clamp):
    """One iteration of the loop of ``efficient_generalized_steps``, literally, for one image.

    ``z`` stands for every ``torch.randn_like`` of the iteration (convention 5). ``cut_as_missing``: convention 3
    (the package's treatment of cut singular values); ``clamp``: convention 6. Returns ``(xt_next, cases)``."""
    singulars = H.singulars  # singulars = H_funcs.singulars()
    Sigma = torch.zeros(N, dtype=F64)  # Sigma = torch.zeros(x.shape[1]*x.shape[2]*x.shape[3])
    Sigma[: singulars.shape[0]] = singulars  # Sigma[:singulars.shape[0]] = singulars
    U_t_y = H.Ut(y_0)  # U_t_y = H_funcs.Ut(y_0)
    Sig_inv_U_t_y = U_t_y / singulars  # Sig_inv_U_t_y = U_t_y / singulars[:U_t_y.shape[-1]] (inf where 0: unused)

    x0_t = (xt - et * math.sqrt(1 - at)) / math.sqrt(at)  # x0_t = (xt - et * (1 - at).sqrt()) / at.sqrt()
    sigma_next = math.sqrt(1 - at_next) / math.sqrt(at_next)  # sigma_next = (1 - at_next).sqrt() / at_next.sqrt()
    V_t_x0 = H.Vt(x0_t)  # V_t_x0 = H_funcs.Vt(x0_t)
    SVt_x0 = (V_t_x0 * Sigma)[: U_t_y.shape[0]]  # SVt_x0 = (V_t_x0 * Sigma)[:, :U_t_y.shape[1]]

    falses = torch.zeros(N - singulars.shape[0], dtype=torch.bool)
    cond_before_lite = singulars * sigma_next > sigma_0  # cond_before_lite = singulars * sigma_next > sigma_0
    cond_after_lite = singulars * sigma_next < sigma_0  # cond_after_lite = singulars * sigma_next < sigma_0
    if cut_as_missing:  # convention 3: a cut singular value is missing, not "less noisy"
        cond_after_lite = cond_after_lite & ~H.cut
    cond_before = torch.cat((cond_before_lite, falses))  # cond_before = torch.hstack((cond_before_lite, falses))
    cond_after = torch.cat((cond_after_lite, falses))

    std_nextC = sigma_next * etaC  # std_nextC = sigma_next * etaC
    sigma_tilde_nextC = math.sqrt(sigma_next**2 - std_nextC**2)  # torch.sqrt(sigma_next ** 2 - std_nextC ** 2)
    std_nextA = sigma_next * etaA
    sigma_tilde_nextA = math.sqrt(sigma_next**2 - std_nextA**2)
    # diff_sigma_t_nextB = torch.sqrt(sigma_next ** 2 - sigma_0 ** 2 / singulars[cond_before_lite] ** 2 * (etaB ** 2))
    varB = sigma_next**2 - sigma_0**2 / singulars[cond_before_lite] ** 2 * (etaB**2)
    diff_sigma_t_nextB = (varB.clamp(min=0) if clamp else varB).sqrt()

    # missing pixels: Vt_xt_mod_next = V_t_x0 + sigma_tilde_nextC * H_funcs.Vt(et) + std_nextC * torch.randn_like(V_t_x0)
    Vt_xt_mod_next = V_t_x0 + sigma_tilde_nextC * H.Vt(et) + std_nextC * z
    # less noisy than y (after): V_t_x0 + sigma_tilde_nextA * ((U_t_y - SVt_x0) / sigma_0) + std_nextA * randn
    if bool(cond_after_lite.any()):
        Vt_xt_mod_next[cond_after] = (
            V_t_x0[cond_after]
            + sigma_tilde_nextA * ((U_t_y - SVt_x0) / sigma_0)[cond_after_lite]
            + std_nextA * z[cond_after]
        )
    # noisier than y (before): Sig_inv_U_t_y * etaB + (1 - etaB) * V_t_x0 + diff_sigma_t_nextB * randn
    Vt_xt_mod_next[cond_before] = (
        Sig_inv_U_t_y[cond_before_lite] * etaB + (1 - etaB) * V_t_x0[cond_before] + diff_sigma_t_nextB * z[cond_before]
    )
    xt_mod_next = H.V(Vt_xt_mod_next)  # xt_mod_next = H_funcs.V(Vt_xt_mod_next)
    xt_next = math.sqrt(at_next) * xt_mod_next  # xt_next = at_next.sqrt()[0, 0, 0, 0] * xt_mod_next
    cases = {
        "missing": int(N - cond_before.sum() - cond_after.sum()),
        "less_noisy": int(cond_after.sum()),
        "noisier": int(cond_before.sum()),
        "negative_varB": int((varB < 0).sum()),
    }
    return xt_next, cases


def ddrm_reference_initial(H, w, aT, y_0, sigma_0):
    """``p(x_T | y)`` of ``efficient_generalized_steps`` ("initialize x_T as given in the paper"), literally; ``x``
    (the caller's randn) is the white coefficients ``V^T w``."""
    singulars = H.singulars
    x = H.Vt(w)
    U_t_y = H.Ut(y_0)
    largest_sigmas = math.sqrt(1 - aT) / math.sqrt(aT)  # (1 - largest_alphas).sqrt() / largest_alphas.sqrt()
    large = singulars * largest_sigmas > sigma_0  # torch.where(singulars * largest_sigmas[0, 0, 0, 0] > sigma_0)
    inv_singulars_and_zero = torch.zeros(N, dtype=F64)
    inv_singulars_and_zero[: H.r][large] = sigma_0 / singulars[large]  # [large] = sigma_0 / singulars[large]
    init_y = torch.zeros(N, dtype=F64)
    init_y[: H.r][large] = U_t_y[large] / singulars[large]  # U_t_y[:, large] / singulars[large]
    remaining_s = (largest_sigmas**2 - inv_singulars_and_zero**2).clamp_min(0.0).sqrt()
    init_y = init_y + remaining_s * x  # init_y = init_y + remaining_s * x
    init_y = init_y / largest_sigmas  # init_y = init_y / largest_sigmas
    return H.V(init_y)  # x = H_funcs.V(init_y.view(x.size(0), -1))


@pytest.mark.parametrize("structure", list(STRUCTURES))
def test_ddrm_step_is_efficient_generalized_steps(structure):
    """DDRM's step against ``efficient_generalized_steps`` (conventions 1-6), every step of random schedules,
    including the last (``seq_next`` ends at -1: ``at_next = 1``, ``sigma_next = 0``, and the reference's update is
    ``V_t_x0`` on every component, i.e. ``x0_t``, as the package's)."""
    gen = torch.Generator().manual_seed(23_000 + list(STRUCTURES).index(structure))
    sampler = get_sampler("ddrm")
    seen = dict.fromkeys(("missing", "less_noisy", "noisier", "negative_varB", "cut"), 0)
    for trial in range(TRIALS):
        op, H = _setup(structure, trial)
        den = LinearDenoiser(gen)
        sigma = float(0.02 + 0.4 * torch.rand(1, generator=gen, dtype=F64))  # network units (convention 1)
        sigma = 0.0 if trial == 0 else sigma  # noiseless: only the missing and noisier cases
        y = _measurement(op, gen, sigma)
        params = _random_schedule("ddrm", structure, gen)
        for i in range(params.steps):
            x = torch.randn(1, *SHAPE, generator=gen, dtype=F64)
            w = torch.randn(1, *SHAPE, generator=gen, dtype=F64)
            out, at, at_next = _package_step(sampler, den, op, y, sigma, params, i, x, w)
            x0 = den.x0(x, params.timesteps[i])
            et = (x - math.sqrt(at) * x0) / math.sqrt(1 - at)  # what the reference's eps-network returns
            eta, eta_b = params.value("eta", i), params.value("eta_b", i)
            args = (H, x, et, at, at_next, y, sigma, eta, eta_b, eta, H.Vt(w))
            ref, cases = ddrm_reference_step(*args, cut_as_missing=True, clamp=True)
            where = f"ddrm on {structure}, trial {trial}, step {i} (t={params.timesteps[i]}, eta={eta:.3f}, eta_b={eta_b:.3f})"
            _close(out, ref, where)
            if at_next == 1.0:
                _close(out, x0, f"{where}: the last step returns x0_hat, as the reference's")
            # convention 6: where the literal reference is a number, it is the package
            literal_b, _ = ddrm_reference_step(*args, cut_as_missing=True, clamp=False)
            if cases["negative_varB"] == 0:
                _close(out, literal_b, f"{where}, literal noisier-case variance")
            else:
                assert eta_b > 1 and not bool(torch.isfinite(literal_b).all())
            # convention 3: the literal reference differs only on the cut components, by exactly that term
            literal, _ = ddrm_reference_step(*args, cut_as_missing=False, clamp=True)
            diff = H.Vt(literal - out) / math.sqrt(at_next)
            expect = torch.zeros(N, dtype=F64)
            after_cut = H.cut & (H.singulars * math.sqrt(1 - at_next) / math.sqrt(at_next) < sigma)
            if at_next < 1:
                tilde = math.sqrt(1 - eta**2) * math.sqrt(1 - at_next) / math.sqrt(at_next)
                expect[: H.r][after_cut] = tilde * (H.Ut(y)[after_cut] / sigma - H.Vt(et)[: H.r][after_cut])
            _close(diff, expect, f"{where}, the literal reference on cut components")
            for k, v in cases.items():
                seen[k] += v
            seen["cut"] += int(after_cut.sum()) if at_next < 1 else 0
    # every case of the reference was exercised; cut components exist only on the blur (its 3 smallest frequencies,
    # 5.4e-4 <= 1e-3; the Gaussian sr2 kernel's smallest singular value is 0.086), eta_b > 1 reaches NaN on it
    assert seen["missing"] and seen["less_noisy"] and seen["noisier"], seen
    if structure == "blur":
        assert seen["cut"] and seen["negative_varB"], seen


@pytest.mark.parametrize("structure", list(STRUCTURES))
def test_ddrm_initial_is_the_reference_p_xT_given_y(structure):
    """``DDRM.initial`` against the reference's ``p(x_T | y)`` (convention 7: the package is the reference's start
    times ``sqrt(1 - abar_T)``, the VP state ``sqrt(abar_T) x_mod``), at random first timesteps and noise levels."""
    gen = torch.Generator().manual_seed(23_100 + list(STRUCTURES).index(structure))
    sampler = get_sampler("ddrm")
    for trial in range(TRIALS):
        op, H = _setup(structure, trial)
        sigma = [0.0, 0.05, 0.2, 0.5][trial]
        y = _measurement(op, gen, sigma)
        params = _random_schedule("ddrm", structure, gen)
        params.timesteps[0] = [999, 700, 300, 60][trial]
        seed = 7 + trial
        got = sampler.initial(op, y, sigma, params, seed, [0], SCHED.alphas_cumprod, SHAPE)
        w = randn_per_image(SHAPE, seed, [0], "ddrm/init", dtype=F64)  # the package's own draw, reproduced
        aT = float(SCHED.alphas_cumprod[params.timesteps[0]])
        ref = ddrm_reference_initial(H, w, aT, y, sigma)
        _close(got, math.sqrt(1 - aT) * ref, f"ddrm initial on {structure}, T={params.timesteps[0]}, sigma={sigma}")
        assert float((got - ref).abs().max()) > 1e-6 * float(ref.abs().max())  # the factor is real, not rounding


# --- DDNM+: wyhuai/DDNM, functions/svd_ddnm.py ddnm_plus_diffusion with functions/svd_operators.py Lambda ------------


def ddnm_reference_step(H, xt, et, at, at_next, y, sigma_y, eta, z):
    """One "normal sampling" iteration (``j < i``; time travel off) of ``ddnm_plus_diffusion``, literally, with
    ``A_funcs`` the dense SVD and ``Lambda`` / ``Lambda_noise`` as ``svd_operators.py`` writes them for ``Inpainting``
    and ``SuperResolution`` (the same per-singular-value code; its ``Deblurring`` and ``SRConv`` define no ``Lambda``,
    so the reference runs DDNM+ only on the former: on the blur and the kernel super-resolution this is the same
    per-singular-value rule, the paper's Eqs. 17, 19 and 51, applied to their SVD). ``sigma_t = sqrt(1 - at_next)`` as
    in the SVD-based code (the ``simplified_ddnm_plus`` of ``guided_diffusion/diffusion.py`` writes ``(1 -
    at_next**2).sqrt()``; the package follows the SVD-based one). ``z`` is the image-space ``torch.randn_like(x0_t)``.
    Returns ``(xt_next, x0_t, x0_t_hat, cases)``."""
    singulars = torch.zeros(N, dtype=F64)  # temp_singulars[:singulars.size(0)] = singulars
    singulars[: H.r] = H.singulars
    inverse_singulars = torch.where(singulars == 0, torch.zeros_like(singulars), 1.0 / singulars)

    def A(vec):  # A_functions.A: self.U(singulars * temp[:, :singulars.shape[0]])
        return H.U @ (H.singulars * H.Vt(vec)[: H.r])

    def A_pinv(vec):  # A_functions.A_pinv: factors = 1. / singulars; factors[singulars == 0] = 0.
        temp = torch.zeros(N, dtype=F64)
        temp[: H.r] = (H.U.T @ vec) * inverse_singulars[: H.r]
        return H.V(temp)

    def Lambda(vec, a, sigma_y, sigma_t, eta):
        lambda_t = torch.ones(N, dtype=F64)
        if a != 0 and sigma_y != 0:
            change_index = (sigma_t < a * sigma_y * inverse_singulars).to(
                F64
            )  # ``* 1.0`` in the reference (float32 here: torch's default)
            # lambda_t * (-change_index + 1.0) + change_index * (singulars * sigma_t * (1 - eta ** 2) ** 0.5 / a / sigma_y)
            lambda_t = lambda_t * (-change_index + 1.0) + change_index * (
                singulars * sigma_t * (1 - eta**2) ** 0.5 / a / sigma_y
            )
        return H.V(H.Vt(vec) * lambda_t), lambda_t

    def Lambda_noise(vec, a, sigma_y, sigma_t, eta, epsilon):
        d1_t = torch.ones(N, dtype=F64) * sigma_t * eta
        d2_t = torch.ones(N, dtype=F64) * sigma_t * (1 - eta**2) ** 0.5
        if a != 0 and sigma_y != 0:
            change_index = (sigma_t < a * sigma_y * inverse_singulars).to(
                F64
            )  # ``* 1.0`` in the reference (float32 here: torch's default)
            d1_t = d1_t * (-change_index + 1.0) + change_index * sigma_t * eta
            d2_t = d2_t * (-change_index + 1.0)
            change_index = (sigma_t > a * sigma_y * inverse_singulars).to(
                F64
            )  # ``* 1.0`` in the reference (float32 here: torch's default)
            d1_t = d1_t * (-change_index + 1.0) + torch.sqrt(
                change_index * (sigma_t**2 - a**2 * sigma_y**2 * inverse_singulars**2)
            )
            d2_t = d2_t * (-change_index + 1.0)
            change_index = (singulars == 0).to(F64)  # ``* 1.0`` in the reference (float32 here: torch's default)
            d1_t = d1_t * (-change_index + 1.0) + change_index * sigma_t * eta
            d2_t = d2_t * (-change_index + 1.0) + change_index * sigma_t * (1 - eta**2) ** 0.5
        return H.V(H.Vt(vec) * d1_t + H.Vt(epsilon) * d2_t)  # result_vec + result_eps

    x0_t = (xt - et * math.sqrt(1 - at)) / math.sqrt(at)  # Eq. 12
    sigma_t = math.sqrt(1 - at_next)  # sigma_t = (1 - at_next).sqrt()[0, 0, 0, 0]
    a = math.sqrt(at_next)
    # Eq. 17: x0_t_hat = x0_t - A_funcs.Lambda(A_funcs.A_pinv(A_funcs.A(x0_t) - y), at_next.sqrt(), sigma_y, sigma_t, eta)
    corr, lambda_t = Lambda(A_pinv(A(x0_t) - y.reshape(-1)), a, sigma_y, sigma_t, eta)
    x0_t_hat = x0_t - corr
    # Eq. 51: xt_next = at_next.sqrt() * x0_t_hat + A_funcs.Lambda_noise(torch.randn_like(x0_t), ..., et)
    xt_next = a * x0_t_hat + Lambda_noise(z, a, sigma_y, sigma_t, eta, et)
    measured = singulars > 0
    cases = {
        "scaled": int((measured & (lambda_t != 1)).sum()),
        "unscaled": int((measured & (lambda_t == 1)).sum()),
        "null": int((~measured).sum()),
    }
    return xt_next, x0_t, x0_t_hat, cases


@pytest.mark.parametrize("structure", list(STRUCTURES))
def test_ddnm_plus_step_is_the_reference_noisy_update(structure):
    """DDNM+'s step against ``ddnm_plus_diffusion`` without time travel (conventions 1, 2 and 8), every step of
    random schedules, including the last (``at_next = 1``: ``Lambda = 0``, the reference returns ``x0_t``)."""
    gen = torch.Generator().manual_seed(23_200 + list(STRUCTURES).index(structure))
    sampler = get_sampler("ddnm")
    seen = dict.fromkeys(("scaled", "unscaled", "null"), 0)
    for trial in range(TRIALS):
        op, H = _setup(structure, trial)
        den = LinearDenoiser(gen)
        sigma = float(0.02 + 0.4 * torch.rand(1, generator=gen, dtype=F64))  # network units (convention 1)
        y = _measurement(op, gen, sigma)
        params = _random_schedule("ddnm", structure, gen)
        if trial == 0:
            params.values["lambda_scale"] = [1.0] * params.steps  # the reference's own value: literal agreement
        for i in range(params.steps):
            x = torch.randn(1, *SHAPE, generator=gen, dtype=F64)
            w = torch.randn(1, *SHAPE, generator=gen, dtype=F64)
            out, at, at_next = _package_step(sampler, den, op, y, sigma, params, i, x, w)
            x0 = den.x0(x, params.timesteps[i])
            et = (x - math.sqrt(at) * x0) / math.sqrt(1 - at)
            eta, mult = params.value("eta", i), params.value("lambda_scale", i)
            ref, x0_t, x0_t_hat, cases = ddnm_reference_step(H, x, et, at, at_next, y, sigma, eta, w)
            # convention 8: the package's correction is lambda_scale times the reference's
            scaled = ref - math.sqrt(at_next) * (mult - 1) * (x0_t - x0_t_hat)
            where = f"ddnm on {structure}, trial {trial}, step {i} (t={params.timesteps[i]}, eta={eta:.3f}, scale={mult:.3f})"
            _close(out, scaled, where)
            if mult == 1.0:
                _close(out, ref, f"{where}, literal")
            if at_next == 1.0:
                _close(out, x0, f"{where}: the last step returns x0_hat, as the reference's")
            for k, v in cases.items():
                seen[k] += v
    assert seen["scaled"] and seen["unscaled"] and seen["null"], seen
