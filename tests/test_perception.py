"""The Frechet spectral distance (zsguide/evaluation/perception.py): exactness, closed forms, monotonicity, errors."""

import math

import pytest
import torch

from zsguide.errors import ZSGuideError
from zsguide.evaluation.perception import (
    bootstrap_difference_se,
    bootstrap_se,
    frechet_distance,
    frechet_distance_features,
    radial_bins,
    spectral_features,
    spectral_frechet_distance,
)


def _images(n, seed=0, shape=(3, 32, 32)):
    """Smooth-ish random images in [0, 1]: white noise low-passed by a fixed Gaussian, so they have a spectrum."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, *shape, generator=g, dtype=torch.float64)
    return _blur(x, 0.8).clamp(0, 1)


def _blur(x, sigma):
    """Periodic Gaussian blur in the Fourier domain (sigma in pixels; 0 = identity)."""
    h, w = x.shape[-2:]
    fy = torch.fft.fftfreq(h, dtype=torch.float64)[:, None]
    fx = torch.fft.fftfreq(w, dtype=torch.float64)[None, :]
    gain = torch.exp(-2 * math.pi**2 * sigma**2 * (fy**2 + fx**2))
    return torch.fft.ifft2(torch.fft.fft2(x) * gain).real


def test_features_shape_and_white_noise_level():
    x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    f = spectral_features(x)
    assert f.shape == (8, 3 * (8 + 2))
    assert f.dtype == torch.float64
    # uniform [0, 1] white noise: variance 1/12 at every frequency (unitary DFT), so every radial ring ~ log(1/12)
    radial = f[:, : 3 * 8]
    assert abs(float(radial.mean()) - math.log(1 / 12)) < 0.05
    assert torch.allclose(f[:, 24:27], x.mean(dim=(2, 3)))
    assert torch.allclose(f[:, 27:], x.std(dim=(2, 3), unbiased=False))
    # one ring per integer radius: 16 rings; non-square images bin on the shorter side
    assert spectral_features(x, n_bins=16).shape == (8, 3 * (16 + 2))
    assert spectral_features(torch.rand(4, 1, 16, 24, dtype=torch.float64)).shape == (4, 4 + 2)
    with pytest.raises(ZSGuideError, match="n_bins"):
        spectral_features(x, n_bins=17)


def test_rings_partition_the_nyquist_disc():
    index, n_bins = radial_bins(32, 32)
    k = torch.round(torch.sqrt(torch.fft.fftfreq(32)[:, None] ** 2 + torch.fft.fftfreq(32)[None, :] ** 2) * 32)
    assert n_bins == 8
    assert torch.equal(index == 0, k == 0)  # DC alone
    assert torch.equal(index > n_bins, k > 16)  # the corners beyond Nyquist
    for b in range(1, 9):  # ring b = radii 2b - 1 and 2b
        assert set(k[index == b].long().tolist()) == {2 * b - 1, 2 * b}


def test_zero_on_itself_and_symmetric():
    x, y = _images(40, seed=0), _images(70, seed=1)
    assert abs(spectral_frechet_distance(x, x)) < 1e-9
    assert abs(spectral_frechet_distance(x, x[torch.randperm(40)])) < 1e-9  # a set: order does not matter
    small = _images(10, seed=2)  # fewer images than features: rank-deficient covariance, still exactly zero
    assert abs(spectral_frechet_distance(small, small)) < 1e-9
    d_xy, d_yx = spectral_frechet_distance(x, y), spectral_frechet_distance(y, x)
    assert d_xy > 0
    assert abs(d_xy - d_yx) < 1e-9 * max(1.0, d_xy)


def test_matches_the_nuclear_norm_form():
    """tr((S1^1/2 S2 S1^1/2)^1/2) = ||A B^T||_* / sqrt((n-1)(m-1)) for centred data A, B: an independent formula."""
    g = torch.Generator().manual_seed(3)
    a = torch.randn(50, 12, generator=g, dtype=torch.float64) @ torch.randn(12, 12, generator=g, dtype=torch.float64)
    b = torch.randn(30, 12, generator=g, dtype=torch.float64) * 1.5 + 0.3
    ca, cb = a - a.mean(0), b - b.mean(0)
    s1, s2 = ca.T @ ca / 49, cb.T @ cb / 29
    nuclear = torch.linalg.matrix_norm(ca @ cb.T, ord="nuc") / math.sqrt(49 * 29)
    expected = float(((a.mean(0) - b.mean(0)) ** 2).sum() + s1.trace() + s2.trace() - 2 * nuclear)
    assert frechet_distance_features(a, b) == pytest.approx(expected, rel=1e-10)


def test_gaussian_closed_forms():
    """Known laws: N(mu, S) against N(mu + delta, S) has FD |delta|^2; against N(mu, c^2 S) it has (1 - c)^2 tr S."""
    d = 6
    g = torch.Generator().manual_seed(4)
    m = torch.randn(d, d, generator=g, dtype=torch.float64)
    s = m @ m.T / d + 0.1 * torch.eye(d, dtype=torch.float64)
    mu = torch.randn(d, generator=g, dtype=torch.float64)
    delta = torch.tensor([0.5, -0.3, 0.0, 0.2, 0.1, -0.4], dtype=torch.float64)
    assert frechet_distance(mu, s, mu + delta, s) == pytest.approx(float(delta @ delta), rel=1e-9)
    assert frechet_distance(mu, s, mu, 4 * s) == pytest.approx(float(s.trace()), rel=1e-9)  # c = 2
    # two commuting (diagonal) covariances: sum_i (sqrt(a_i) - sqrt(b_i))^2
    a, b = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64), torch.tensor([4.0, 0.5, 3.0], dtype=torch.float64)
    z = torch.zeros(3, dtype=torch.float64)
    assert frechet_distance(z, torch.diag(a), z, torch.diag(b)) == pytest.approx(
        float(((a.sqrt() - b.sqrt()) ** 2).sum()), rel=1e-12
    )

    # samples: same law -> small (the finite-sample bias, ~ 2 tr(S^2)/... -> order d^2/n); shifted law -> |delta|^2
    lchol = torch.linalg.cholesky(s)
    n = 4000
    x1 = mu + torch.randn(n, d, generator=g, dtype=torch.float64) @ lchol.T
    x2 = mu + torch.randn(n, d, generator=g, dtype=torch.float64) @ lchol.T
    same = frechet_distance_features(x1, x2)
    shifted = frechet_distance_features(x1, x2 + delta)
    assert same < 0.02
    assert shifted == pytest.approx(float(delta @ delta), abs=0.03)
    # the bootstrap standard error against the spread over independent replicates of the same experiment
    reps = [
        frechet_distance_features(
            mu + torch.randn(300, d, generator=g, dtype=torch.float64) @ lchol.T,
            mu + delta + torch.randn(300, d, generator=g, dtype=torch.float64) @ lchol.T,
        )
        for _ in range(60)
    ]
    spread = float(torch.tensor(reps).std())
    se = bootstrap_se(x1[:300], x2[:300] + delta, num=60)
    assert 0.5 * spread < se < 2 * spread


def test_paired_bootstrap_of_a_difference():
    clean = _images(64, seed=6)
    fc = spectral_features(clean)
    fa = spectral_features(_blur(clean, 0.6))
    fb = spectral_features(_blur(clean, 0.62))
    assert bootstrap_difference_se(fa, fa, fc, num=5) == 0.0
    d_se = bootstrap_difference_se(fa, fb, fc, num=20)
    own_se = bootstrap_se(fa, fc, num=20, paired=True)
    assert 0 < d_se < 0.2 * own_se  # what the two restorations share cancels
    with pytest.raises(ZSGuideError, match="as many rows"):
        bootstrap_difference_se(fa[:10], fb, fc)
    with pytest.raises(ZSGuideError, match="as many rows"):
        bootstrap_se(fa[:10], fc, paired=True)


def test_increases_with_blur():
    clean = _images(64, seed=5)
    values = [spectral_frechet_distance(_blur(clean, s), clean) for s in (0.0, 0.5, 1.0, 1.5, 2.5)]
    assert values[0] < 1e-9
    assert all(b > a for a, b in zip(values, values[1:])), values


def test_bad_input():
    x = _images(8)
    with pytest.raises(ZSGuideError, match="at least 2 images"):
        spectral_frechet_distance(x[:1], x)
    with pytest.raises(ZSGuideError, match="at least 2 images"):
        spectral_frechet_distance(x, x[:1])
    with pytest.raises(ZSGuideError, match="different image shapes"):
        spectral_frechet_distance(x, _images(8, shape=(1, 32, 32)))
    with pytest.raises(ZSGuideError, match="different image shapes"):
        spectral_frechet_distance(x, _images(8, shape=(3, 16, 16)))
    with pytest.raises(ZSGuideError, match=r"\(N, C, H, W\)"):
        spectral_frechet_distance(x[0], x)
    with pytest.raises(ZSGuideError, match="NaN or Inf"):
        spectral_frechet_distance(x, torch.full_like(x, float("nan")))
    with pytest.raises(ZSGuideError, match="mismatched"):
        frechet_distance_features(torch.randn(5, 3), torch.randn(5, 4))
    with pytest.raises(ZSGuideError, match="mismatched"):
        frechet_distance(torch.zeros(3), torch.eye(3), torch.zeros(2), torch.eye(2))


@pytest.mark.parametrize("n1,n2,d", [(5, 7, 30), (64, 64, 198), (10, 12, 2048)])
def test_few_images_many_features_use_the_gram_form_of_the_same_distance(n1, n2, d):
    """With N < D the distance is computed from the centred features' cross Gram matrix (nuclear norm); it must be
    the distance of the fitted Gaussians computed with D x D roots, to float64 rounding."""
    from zsguide.evaluation.perception import feature_stats, frechet_distance, frechet_distance_features

    g = torch.Generator().manual_seed(n1 + d)
    a = torch.randn(n1, d, generator=g, dtype=torch.float64)
    b = 1.3 * torch.randn(n2, d, generator=g, dtype=torch.float64) + 0.2
    exact = frechet_distance(*feature_stats(a), *feature_stats(b))
    assert frechet_distance_features(a, b) == pytest.approx(exact, rel=1e-10)
    assert frechet_distance_features(a, a) == pytest.approx(0.0, abs=1e-9 * exact)
