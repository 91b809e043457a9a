"""Tests of zsguide.operators: adjointness, pseudo-inverses, the SVD view, Fourier blocks, seeding and input errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from zsguide.errors import ZSGuideError
from zsguide.operators import (
    TASK_NAMES,
    Blur,
    Inpainting,
    SuperResolution,
    box_mask,
    fft2_ortho,
    gaussian_kernel,
    load_kernel,
    load_mask,
    make_operator,
    motion_kernel,
    random_pixel_mask,
    task_defaults,
)

SHAPE = (3, 16, 16)
SEED = 7
INDICES = [0, 5]
F64 = torch.float64


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Mask and kernel files, good and bad."""
    root = tmp_path_factory.mktemp("operator_files")
    rng = np.random.default_rng(0)
    mask = (rng.random((16, 16)) < 0.6).astype(np.uint8)
    paths = {
        "mask_npy": root / "mask.npy",
        "mask_png": root / "mask.png",
        "mask_rgb_png": root / "mask_rgb.png",
        "mask_small": root / "mask_small.npy",
        "kernel": root / "kernel.npy",
        "kernel_3d": root / "kernel_3d.npy",
        "kernel_nan": root / "kernel_nan.npy",
        "kernel_negative": root / "kernel_negative.npy",
        "kernel_zero": root / "kernel_zero.npy",
        "kernel_txt": root / "kernel.txt",
    }
    np.save(paths["mask_npy"], mask)
    Image.fromarray(mask * 255, mode="L").save(paths["mask_png"])
    Image.fromarray(np.repeat(mask[..., None] * 200, 3, axis=2), mode="RGB").save(paths["mask_rgb_png"])
    np.save(paths["mask_small"], mask[:8, :8])
    np.save(paths["kernel"], rng.random((5, 5)))
    np.save(paths["kernel_3d"], rng.random((2, 5, 5)))
    np.save(paths["kernel_nan"], np.array([[1.0, np.nan], [0.0, 1.0]]))
    np.save(paths["kernel_negative"], np.array([[1.0, -0.5], [0.2, 1.0]]))
    np.save(paths["kernel_zero"], np.zeros((3, 3)))
    paths["kernel_txt"].write_text("1 2 3")
    return {name: str(path) for name, path in paths.items()}


CASES = [
    ("inpaint_random", {}),
    ("inpaint_box", {}),
    ("inpaint_box", {"box_position": "random", "box_size": 6}),
    ("inpaint_mask", {"path": "mask_png"}),
    ("inpaint_mask", {"path": "mask_npy"}),
    ("deblur_gaussian", {}),
    ("deblur_uniform", {}),
    ("deblur_motion", {}),
    ("deblur_kernel", {"path": "kernel"}),
    ("sr2", {}),
    ("sr4", {}),
    ("sr2", {"kernel": "gaussian"}),
    ("sr4", {"kernel": "kernel"}),
]
IDS = [f"{task}-{'-'.join(f'{k}={v}' for k, v in params.items())}".rstrip("-") for task, params in CASES]


def build(case, files, shape=SHAPE, indices=INDICES, seed=SEED, **extra):
    task, params = case
    resolved = {k: files.get(v, v) if k in ("path", "kernel") else v for k, v in params.items()}
    return make_operator(task, shape, seed, indices, **resolved, **extra)


@pytest.fixture(params=CASES, ids=IDS)
def case(request):
    return request.param


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().norm() / b.abs().norm().clamp_min(1e-300))


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def images(op, seed=0):
    return randn(len(INDICES), *op.image_shape, seed=seed)


def measurements(op, seed=1):
    return randn(len(INDICES), *op.measurement_shape, seed=seed)


# --- every operator -------------------------------------------------------------------------------------------------


def test_adjointness(case, files):
    op = build(case, files)
    x, y = images(op), measurements(op)
    lhs = (op.A(x) * y).sum()
    rhs = (x * op.A_adjoint(y)).sum()
    assert abs(float(lhs - rhs)) <= 1e-10 * float(op.A(x).norm() * y.norm())


def test_pinv_penrose_identities(case, files):
    exact = build(case, files, rcond=0.0)
    x, y = images(exact), measurements(exact)
    ax = exact.A(x)
    assert rel(exact.A(exact.A_pinv(ax)), ax) < 1e-9
    op = build(case, files)  # default rcond: A^+ A A^+ = A^+ stays well conditioned
    assert rel(op.A_pinv(op.A(op.A_pinv(y))), op.A_pinv(y)) < 1e-9


def test_svd_reproduces_operator_and_adjoint(case, files):
    op = build(case, files)
    x, y = images(op), measurements(op)
    s = op.singulars
    assert s.dtype == F64 and bool((s >= 0).all())
    assert rel(op.U(s * op.Vt(x)), op.A(x)) < 1e-12
    assert rel(op.V(s * op.Ut(y)), op.A_adjoint(y)) < 1e-12
    assert torch.broadcast_shapes(s.shape, op.Vt(x).shape) == op.Vt(x).shape


def test_V_is_orthogonal_and_keeps_images_real(case, files):
    op = build(case, files)
    x = images(op)
    c = op.Vt(x)
    assert c.shape[0] == x.shape[0]
    assert rel(op.V(c), x) < 1e-12
    assert abs(float(c.abs().square().sum() - x.square().sum())) < 1e-10 * float(x.square().sum())
    # A real multiplier that depends on the singular values (what every sampler applies) keeps V's output real:
    # dropping an imaginary part would make this round trip fail.
    a = 1.0 + 2.0 * op.singulars + 3.0 * op.singulars**2
    assert rel(op.Vt(op.V(a * c)), a * c) < 1e-12


def test_U_inverts_Ut_on_the_range(case, files):
    op = build(case, files)
    y = op.A(images(op))
    assert rel(op.U(op.Ut(y)), y) < 1e-12
    coeffs = op.Ut(y)
    if op.structure != "fourier_diagonal":  # positions with no measurement carry 0
        missing = (op.singulars == 0).expand_as(coeffs)
        assert bool(missing.any()) and float(coeffs[missing].abs().max()) == 0.0
    if op.structure != "pixel_mask":  # blur and SR measure everything: U is unitary on the whole space
        y = measurements(op)
        assert rel(op.U(op.Ut(y)), y) < 1e-12


def test_float32_and_to(case, files):
    op = build(case, files)
    x = images(op)
    op32 = op.to(dtype=torch.float32)
    assert op32 is not op and op.to(dtype=F64) is op
    assert op32.singulars.dtype == torch.float32 and op.singulars.dtype == F64
    y32 = op32.A(x.float())
    assert y32.dtype == torch.float32 and rel(y32.double(), op.A(x)) < 1e-5
    c32 = op32.Vt(x.float())
    assert c32.dtype in (torch.float32, torch.complex64)
    assert rel(op32.V(c32).double(), x) < 1e-5
    assert rel(op32.A_adjoint(op32.A(x.float())).double(), op.A_adjoint(op.A(x))) < 1e-5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(case, files):
    op = build(case, files)
    gpu = op.to("cuda", torch.float32)
    x, y = images(op), measurements(op)
    xg, yg = x.float().cuda(), y.float().cuda()
    assert gpu.singulars.is_cuda and gpu.A(xg).is_cuda
    assert rel(gpu.A(xg).double().cpu(), op.A(x)) < 1e-5
    assert rel(gpu.A_adjoint(yg).double().cpu(), op.A_adjoint(y)) < 1e-5
    assert rel(gpu.V(gpu.Vt(xg)).double().cpu(), x) < 1e-5
    assert rel(gpu.U(gpu.singulars * gpu.Vt(xg)).double().cpu(), op.A(x)) < 1e-5
    # A A^+ A: the projection of A x onto the kept singular directions (A x itself only where nothing is truncated
    # at rcond). In float32 the rounding of A x (relative eps * log2 n) is amplified by up to the condition number
    # kappa of the kept singular values, so the bound is 32 eps kappa; in float64 on the device, 1e-10. (A singular
    # value within rounding of rcond * max could be kept on one side and cut on the other; none is in these cases.)
    ref = op.A(op.A_pinv(op.A(x)))
    s = op.singulars.abs()
    kappa = float(s.max() / s[s > op.rcond * s.max()].min())
    assert rel(gpu.A(gpu.A_pinv(gpu.A(xg))).double().cpu(), ref) < 32 * torch.finfo(torch.float32).eps * kappa
    gpu64 = op.to("cuda", F64)
    assert rel(gpu64.A(gpu64.A_pinv(gpu64.A(x.cuda()))).cpu(), ref) < 1e-10
    assert gpu.noise_for(SEED, INDICES, device="cuda").is_cuda
    if isinstance(op, SuperResolution) and op.kernel is not None:  # built on the device directly
        direct = SuperResolution(op.factor, SHAPE, kernel=op.kernel.cuda())
        assert rel(direct.V(direct.Vt(x.cuda())).cpu(), x) < 1e-12
        rows, cols = direct.alias_indices()
        assert rows.is_cuda


def test_measure_and_noise(case, files):
    op = build(case, files)
    x = images(op)
    noise = op.noise_for(SEED, INDICES, dtype=F64)
    assert noise.shape == (len(INDICES), *op.measurement_shape)
    assert torch.equal(op.noise_for(SEED, [5], dtype=F64)[0], noise[1])  # per image, not per batch
    assert not torch.equal(op.noise_for(SEED + 1, INDICES, dtype=F64), noise)
    y = op.measure(x, 0.1, noise)
    if op.structure == "pixel_mask":
        missing = (op.mask == 0).expand_as(y)
        assert bool(missing.any()) and bool((y[missing] == 0).all())
        assert torch.allclose(y[~missing], (op.A(x) + 0.1 * noise)[~missing], rtol=0, atol=1e-14)
    else:
        assert torch.allclose(y, op.A(x) + 0.1 * noise, rtol=0, atol=1e-14)
    per_image = op.measure(x, torch.tensor([0.0, 0.2], dtype=F64), noise)
    assert torch.equal(per_image[0], op.A(x)[0])


def test_operator_for_an_image_does_not_depend_on_its_batch(case, files):
    alone = build(case, files, indices=[5])
    batch = build(case, files, indices=[3, 5, 9])
    x = randn(1, *SHAPE)
    assert torch.equal(alone.A(x)[0], batch.A(x.expand(3, *SHAPE))[1])


# --- small dense checks ---------------------------------------------------------------------------------------------

SMALL = (1, 12, 12)
DENSE_TASKS = ["inpaint_random", "inpaint_box", "deblur_gaussian", "deblur_uniform", "deblur_motion", "sr2", "sr4"]


def dense(fn, n_in_shape):
    n = int(np.prod(n_in_shape))
    basis = torch.eye(n, dtype=F64).view(n, *n_in_shape)
    return fn(basis).reshape(n, -1).T  # (outputs, inputs)


@pytest.mark.parametrize("task,params", [(t, {}) for t in DENSE_TASKS] + [("sr2", {"kernel": "gaussian"})])
def test_dense_matrices_match_linear_algebra(task, params):
    op = make_operator(task, SMALL, SEED, [0], **params)
    matrix = dense(op.A, SMALL)
    assert torch.allclose(dense(op.A_adjoint, op.measurement_shape), matrix.T, atol=1e-13)
    pinv = torch.linalg.pinv(matrix, rtol=max(op.rcond, 1e-9))
    assert torch.allclose(dense(op.A_pinv, op.measurement_shape), pinv, atol=1e-8)
    vt = dense(op.Vt, SMALL).to(torch.complex128)  # Vt is unitary: white noise maps to white coefficients
    assert torch.allclose(vt.mH @ vt, torch.eye(vt.shape[1], dtype=torch.complex128), atol=1e-12)


# --- blur ----------------------------------------------------------------------------------------------------------


def roll_convolution(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Periodic convolution, centred kernel: sum_{a,b} k[a,b] x[i - a + kh//2, j - b + kw//2]."""
    kh, kw = kernel.shape[-2:]
    out = torch.zeros_like(x)
    for a in range(kh):
        for b in range(kw):
            out += kernel[..., a, b, None, None] * torch.roll(x, shifts=(a - kh // 2, b - kw // 2), dims=(-2, -1))
    return out


@pytest.mark.parametrize("task,params", [("deblur_gaussian", {}), ("deblur_motion", {}), ("deblur_kernel", {})])
def test_blur_symbol_matches_direct_periodic_convolution(task, params, files):
    if task == "deblur_kernel":
        params = {"path": files["kernel"]}
    op = make_operator(task, SHAPE, SEED, INDICES, **params)
    x = images(op)
    direct = roll_convolution(x, op.kernel)
    assert rel(op.A(x), direct) < 1e-12
    assert rel(torch.fft.fft2(direct), op.symbol * torch.fft.fft2(x)) < 1e-12
    assert rel(fft2_ortho(direct), op.symbol * fft2_ortho(x)) < 1e-12
    assert torch.allclose(op.singulars, op.symbol.abs())
    assert torch.allclose(op.kernel.sum(dim=(-2, -1)), torch.ones((), dtype=F64))


def test_blur_pinv_truncates_small_frequencies():
    op = make_operator("deblur_uniform", SHAPE, SEED, [0])
    y = measurements(op)
    h = op.symbol
    keep = h.abs() > op.rcond * h.abs().max()
    assert op.rcond == 1e-3 and bool(keep.any()) and bool((~keep).any())
    expected = torch.fft.ifft2(torch.where(keep, torch.fft.fft2(y) / h, torch.zeros_like(h))).real
    assert rel(op.A_pinv(y), expected) < 1e-10


def test_motion_kernels():
    kernels = motion_kernel(SEED, [0, 1, 2], size=9, intensity=0.5)
    assert kernels.shape == (3, 1, 9, 9) and bool((kernels >= 0).all())
    assert torch.allclose(kernels.sum(dim=(-2, -1)), torch.ones(3, 1, dtype=F64))
    assert bool(((kernels > 1e-3).sum(dim=(-2, -1)) >= 9).all())  # a trajectory, not a point
    assert not torch.equal(kernels[0], kernels[1])
    assert torch.equal(motion_kernel(SEED, [1])[0], kernels[1])
    assert not torch.equal(motion_kernel(SEED + 1, [1])[0], kernels[1])
    # intensity 0 is a straight stroke: the kernel's second-moment matrix has one dominant direction
    line = motion_kernel(SEED, [0], size=9, intensity=0.0)[0, 0]
    r = torch.arange(9, dtype=F64)
    rows, cols = torch.meshgrid(r, r, indexing="ij")
    pts = torch.stack([rows.flatten(), cols.flatten()])
    w = line.flatten()
    centre = (pts * w).sum(dim=1, keepdim=True)
    cov = ((pts - centre) * w) @ (pts - centre).T
    eig = torch.linalg.eigvalsh(cov)
    assert float(eig[0] / eig[1]) < 0.05


# --- super-resolution -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("factor", [2, 4])
@pytest.mark.parametrize("variant", ["block", "gaussian", "file"])
def test_sr_fourier_blocks_reproduce_operator(factor, variant, files):
    kernel = {"block": "block", "gaussian": "gaussian", "file": files["kernel"]}[variant]
    op = make_operator(f"sr{factor}", SHAPE, SEED, INDICES, kernel=kernel)
    x = images(op)
    rows, cols = op.alias_indices()
    blocks = op.fourier_blocks()
    h, w = 16 // factor, 16 // factor
    assert blocks.shape == (1, 1, h, w, factor**2) and rows.shape == (h, w, factor**2)
    assert sorted((rows * 16 + cols).flatten().tolist()) == list(range(256))  # each HR frequency once
    predicted = (blocks * fft2_ortho(x)[..., rows, cols]).sum(dim=-1)
    assert rel(predicted, fft2_ortho(op.A(x))) < 1e-12
    # the singular value of each LR frequency is the norm of its row
    assert torch.allclose(op.singulars[:, :, 0].expand(1, 1, h, w), blocks.abs().norm(dim=-1), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("factor", [2, 4])
def test_sr_block_averaging_is_the_block_mean(factor):
    op = make_operator(f"sr{factor}", SHAPE, SEED, INDICES)
    x = images(op)
    assert rel(op.A(x), torch.nn.functional.avg_pool2d(x, factor)) < 1e-14
    assert torch.allclose(op.singulars.flatten()[0], torch.tensor(1.0 / factor, dtype=F64))
    assert bool((op.singulars.flatten()[1:] == 0).all())
    assert op.Vt(x).dtype == F64  # DDRM's real per-block basis
    first = op.Vt(x)[:, :, 0]
    assert rel(first, factor * op.A(x)) < 1e-12  # the first component is ones/s . block = s * mean


def test_sr_blur_decimation_is_blur_then_subsample(files):
    kernel = load_kernel(files["kernel"])
    op = SuperResolution(4, SHAPE, kernel=kernel)
    x = images(op)
    assert rel(op.A(x), roll_convolution(x, kernel)[..., ::4, ::4]) < 1e-12
    assert op.rcond == 1e-3 and SuperResolution(4, SHAPE).rcond == 0.0


@pytest.mark.parametrize("factor", [2, 4])
def test_sr_kernel_basis_is_conjugate_covariant(factor):
    """Different real multipliers on the s^2 components (not only on the singular one) keep V's output real."""
    op = SuperResolution(factor, SHAPE, kernel=gaussian_kernel(5, 1.0))
    x = images(op)
    c = op.Vt(x)
    assert c.is_complex() and c.shape == (2, 3, factor**2, 16 // factor, 16 // factor)
    a = 1.0 + torch.arange(factor**2, dtype=F64).view(1, 1, -1, 1, 1) + op.singulars
    assert rel(op.Vt(op.V(a * c)), a * c) < 1e-12
    noise = op.Vt(randn(2, *SHAPE, seed=3))
    assert rel(op.Vt(op.V(a * noise)), a * noise) < 1e-12


# --- masks ----------------------------------------------------------------------------------------------------------


def test_random_pixel_masks():
    masks = random_pixel_mask(16, 16, SEED, [0, 1], keep=0.25)
    assert masks.shape == (2, 1, 16, 16)
    assert masks.sum(dim=(1, 2, 3)).tolist() == [64.0, 64.0]
    assert not torch.equal(masks[0], masks[1])
    assert not torch.equal(random_pixel_mask(16, 16, SEED + 1, [0])[0], random_pixel_mask(16, 16, SEED, [0])[0])
    op = make_operator("inpaint_random", SHAPE, SEED, [0])
    assert op.mask.shape == (1, 1, 16, 16) and float(op.mask.mean()) == 0.5
    assert op.A(torch.ones(1, *SHAPE, dtype=F64)).sum() == 3 * 128  # shared across channels


def test_box_masks():
    centre = box_mask(16, 16, SEED, [0, 1])
    assert centre.shape == (1, 1, 16, 16) and float(centre.sum()) == 256 - 64
    assert bool((centre[0, 0, 4:12, 4:12] == 0).all())
    random = box_mask(16, 16, SEED, [0, 1, 2, 3], box_size=5, box_position="random")
    assert random.shape == (4, 1, 16, 16) and random.sum(dim=(1, 2, 3)).tolist() == [256 - 25] * 4
    corners = {tuple(torch.nonzero(m[0] == 0)[0].tolist()) for m in random}
    assert len(corners) > 1
    assert torch.equal(box_mask(16, 16, SEED, [2], box_size=5, box_position="random")[0], random[2])


def test_mask_files(files):
    from_npy = load_mask(files["mask_npy"], SHAPE)
    assert from_npy.shape == (1, 1, 16, 16)
    assert torch.equal(load_mask(files["mask_png"], SHAPE), from_npy)
    assert torch.equal(load_mask(files["mask_rgb_png"], SHAPE), from_npy)  # agreeing colour channels collapse
    expected = torch.from_numpy(np.load(files["mask_npy"]) != 0).to(F64)
    assert torch.equal(from_npy[0, 0], expected)


# --- tasks and errors -----------------------------------------------------------------------------------------------


def test_tasks_and_defaults():
    assert set(TASK_NAMES) == {
        "inpaint_random",
        "inpaint_box",
        "inpaint_mask",
        "deblur_gaussian",
        "deblur_uniform",
        "deblur_motion",
        "deblur_kernel",
        "sr2",
        "sr4",
    }
    for task in TASK_NAMES:
        defaults = task_defaults(task)
        assert "rcond" in defaults
        assert all(isinstance(d["source"], str) and d["source"] for d in defaults.values())
    assert task_defaults("deblur_gaussian")["size"]["value"] == 9
    assert task_defaults("deblur_gaussian")["sigma"]["value"] == 1.5
    assert task_defaults("deblur_motion")["intensity"]["value"] == 0.5
    assert task_defaults("inpaint_random")["keep"]["value"] == 0.5
    op = make_operator("deblur_gaussian", SHAPE, SEED, INDICES)
    assert isinstance(op, Blur) and torch.allclose(op.kernel, gaussian_kernel(9, 1.5))
    kinds = {
        "inpaint_random": (Inpainting, "pixel_mask", SHAPE),
        "deblur_uniform": (Blur, "fourier_diagonal", SHAPE),
        "sr2": (SuperResolution, "fourier_block", (3, 8, 8)),
        "sr4": (SuperResolution, "fourier_block", (3, 4, 4)),
    }
    for task, (cls, structure, mshape) in kinds.items():
        op = make_operator(task, SHAPE, SEED, INDICES)
        assert isinstance(op, cls) and op.structure == structure and op.measurement_shape == mshape


@pytest.mark.parametrize("task", ["inpaint_random", "deblur_motion"])
def test_random_operators_differ_by_index_and_seed(task):
    x = randn(1, *SHAPE)
    base = make_operator(task, SHAPE, SEED, [1]).A(x)
    assert not torch.allclose(make_operator(task, SHAPE, SEED, [2]).A(x), base)
    assert not torch.allclose(make_operator(task, SHAPE, SEED + 1, [1]).A(x), base)
    assert torch.equal(make_operator(task, SHAPE, SEED, [1]).A(x), base)


def test_error_wrong_mask_shape(files):
    with pytest.raises(ZSGuideError) as err:
        make_operator("inpaint_mask", SHAPE, SEED, INDICES, path=files["mask_small"])
    assert "mask_small.npy" in str(err.value) and "(8, 8)" in str(err.value) and "(16, 16)" in str(err.value)
    with pytest.raises(ZSGuideError, match="does not exist"):
        make_operator("inpaint_mask", SHAPE, SEED, INDICES, path=files["mask_npy"] + ".missing.npy")
    with pytest.raises(ZSGuideError, match="inpainting mask must contain only 0"):
        Inpainting(torch.full((1, 1, 4, 4), 0.5))
    with pytest.raises(ZSGuideError, match="expected 1 or 3"):
        Inpainting(torch.ones(1, 2, 4, 4), channels=3)


def test_error_factor_does_not_divide():
    with pytest.raises(ZSGuideError) as err:
        make_operator("sr4", (3, 18, 18), SEED, INDICES)
    assert "factor 4" in str(err.value) and "18x18" in str(err.value)
    with pytest.raises(ZSGuideError, match="factor"):
        SuperResolution(1, SHAPE)


def test_error_unknown_task_and_parameters(files):
    with pytest.raises(ZSGuideError) as err:
        make_operator("deblur_fancy", SHAPE, SEED, INDICES)
    assert "deblur_fancy" in str(err.value) and all(t in str(err.value) for t in TASK_NAMES)
    with pytest.raises(ZSGuideError, match="task_defaults|unknown task"):
        task_defaults("nope")
    with pytest.raises(ZSGuideError) as err:
        make_operator("deblur_gaussian", SHAPE, SEED, INDICES, sigm=2.0)
    assert "'sigm'" in str(err.value) and "sigma" in str(err.value) and "size" in str(err.value)
    with pytest.raises(ZSGuideError, match="'path'"):
        make_operator("deblur_kernel", SHAPE, SEED, INDICES)
    bad_values = [
        ("inpaint_random", {"keep": 1.5}, "keep"),
        ("inpaint_box", {"box_position": "left"}, "box_position"),
        ("inpaint_box", {"box_size": 40}, "box_size"),
        ("deblur_gaussian", {"size": 8}, "size"),
        ("deblur_gaussian", {"sigma": -1.0}, "sigma"),
        ("deblur_gaussian", {"size": 21}, "does not fit"),
        ("deblur_motion", {"intensity": 2.0}, "intensity"),
        ("sr2", {"kernel": "bicubic"}, "kernel"),
        ("sr2", {"rcond": -0.1}, "rcond"),
    ]
    for task, params, needle in bad_values:
        with pytest.raises(ZSGuideError, match=needle):
            make_operator(task, SHAPE, SEED, INDICES, **params)
    with pytest.raises(ZSGuideError, match="image_shape"):
        make_operator("sr2", (16, 16), SEED, INDICES)


@pytest.mark.parametrize(
    "name,needle",
    [
        ("kernel_3d", "2-D"),
        ("kernel_nan", "NaN"),
        ("kernel_negative", "negative"),
        ("kernel_zero", "positive"),
        ("kernel_txt", ".npy"),
    ],
)
def test_error_bad_kernel_file(files, name, needle):
    with pytest.raises(ZSGuideError, match=needle) as err:
        make_operator("deblur_kernel", SHAPE, SEED, INDICES, path=files[name])
    assert files[name] in str(err.value)
