"""An offline perception measure: the Frechet distance between two image sets on spectral statistics.

Inception-FID and LPIPS need backbone weights that no package ships and zsguide never downloads (they are found by
path, docs/evaluate.md, "Metrics"); this measure needs none.
It asks the question FID asks -- do the restorations, as a set, look like draws from the same law as the clean
images? -- with features that a 32x32 natural-image patch set supports and that restoration artefacts move: blur and
over-smoothing remove high-frequency power, noise and ringing add it, colour casts shift the means.

Features of one image ``x`` in ``[0, 1]`` pixel units, shape ``(C, H, W)``, per channel ``c`` (the image's own
channels, no colour transform):

- ``radial``: the radially averaged log power spectrum in ``n_bins`` rings (default ``min(H, W) // 4``: 8 at 32x32).
  With the unitary 2-D DFT ``X = F(x_c - mean(x_c))`` (``norm="ortho"``, so white noise of variance v has power v at
  every frequency) and the integer radius ``k = round(r min(H, W))`` of the radial frequency ``r = sqrt(fy^2 +
  fx^2)`` in cycles per pixel (``torch.fft.fftfreq``), ring ``b = 1 .. n_bins`` holds the frequencies with
  ``ceil(k n_bins / (min(H, W) // 2)) == b`` (at 32x32: radii 1-2, 3-4, ..., 15-16); the feature is
  ``log(mean_{ring b} |X|^2 + eps)``, ``eps = 1e-10``. DC (k = 0) is left out (it is the mean, below); the corners
  beyond the Nyquist circle are left out (they exist only along the diagonals, so they would mix directions). Every
  ring is non-empty. The log makes the features scale-free across the spectrum's many decades (natural images fall
  off as ~1/f^2), so the high frequencies, where restorations differ, weigh as much as the low ones. Rings of two
  radii rather than one: half the features (30 instead of 54 at 32x32x3), so the covariances of 64 images (and their
  bootstrap resamples, ~40 distinct images) are full rank; on the held-out patches the bootstrap standard error then
  matches the spread over disjoint sets of 64, and blur is ranked the same way.
- ``mean``: the channel's mean (colour and brightness shifts).
- ``std``: the channel's standard deviation (contrast; ``sqrt`` of the total non-DC power).

So ``C * (n_bins + 2)`` features per image (30 for 32x32x3). The spectrum's phases, which carry edges' positions, are
deliberately not used: the measure is about the set's statistics, PSNR and SSIM measure per-image fidelity.

Distance: fit a Gaussian (mean ``mu``, sample covariance ``S`` with ``n - 1``) to each set's features and take

    FD = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1^{1/2} S2 S1^{1/2})^{1/2})

in float64. Both square roots are of symmetric PSD matrices, taken by ``eigh`` with eigenvalues below
``n * eps_machine * max eigenvalue`` set to zero (they are round-off; without the cut their square roots, ~1e-8 each,
would make FD(X, X) visibly non-zero for rank-deficient covariances), so there is no complex-valued ``sqrtm`` of the
non-symmetric product ``S1 S2`` (what pytorch-fid uses). FD is symmetric in its two arguments and >= 0 (clamped at 0
against round-off).

Reading it: FD is in squared feature units (log-power, and [0, 1] pixel units for mean and std). Like FID it is
biased upward with few images (the sample covariances are noisy), so compare FDs only at the same number of images
against the same clean set. :func:`bootstrap_se` gives a resampling standard error (paired rows for a restored set
against its own clean images); :func:`bootstrap_difference_se` that of the difference between two restorations of
the same images, smaller than either FD's own error when the two restorations are alike, since what the images share
cancels. Bootstrap resamples repeat rows, so with about as many images as features (30 at 32x32x3) or fewer both
errors are rough: use >= 64 images.
"""

from __future__ import annotations

import math

import torch

from ..errors import ZSGuideError

LOG_EPS = 1e-10


def _check_images(images: torch.Tensor, name: str, min_images: int = 2) -> torch.Tensor:
    if not isinstance(images, torch.Tensor):
        raise ZSGuideError(f"{name}: expected a tensor of images (N, C, H, W), got {type(images).__name__}")
    if images.ndim != 4:
        raise ZSGuideError(f"{name}: expected images of shape (N, C, H, W), got shape {tuple(images.shape)}")
    if images.shape[0] < min_images:
        raise ZSGuideError(f"{name}: a Frechet distance needs at least 2 images per set, got {images.shape[0]}")
    if min(images.shape[2:]) < 2:
        raise ZSGuideError(f"{name}: images of {images.shape[2]}x{images.shape[3]} pixels have no spectrum to bin")
    images = images.detach().to(torch.float64)
    if not torch.isfinite(images).all():
        raise ZSGuideError(f"{name}: the images contain NaN or Inf")
    return images


def radial_bins(height: int, width: int, n_bins: int | None = None) -> tuple[torch.Tensor, int]:
    """``(bin index per frequency (H, W), n_bins)``: the integer radius ``k = round(r * min(H, W))`` (r in cycles
    per pixel), grouped into ``n_bins`` equal rings over ``k = 1 .. min(H, W) // 2``: bin ``ceil(k n_bins /
    (min(H, W) // 2))``; 0 is DC, above ``n_bins`` the corners."""
    fy = torch.fft.fftfreq(height, dtype=torch.float64)[:, None]
    fx = torch.fft.fftfreq(width, dtype=torch.float64)[None, :]
    side = min(height, width)
    half = side // 2
    n_bins = default_bins(height, width) if n_bins is None else int(n_bins)
    if not 1 <= n_bins <= half:
        raise ZSGuideError(f"n_bins must be between 1 and {half} for {height}x{width} images, got {n_bins}")
    k = torch.round(torch.sqrt(fy**2 + fx**2) * side).long()
    return torch.div(k * n_bins + half - 1, half, rounding_mode="floor"), n_bins


def default_bins(height: int, width: int) -> int:
    """``max(1, min(H, W) // 4)`` rings: 8 at 32x32, two integer radii each."""
    return max(1, min(height, width) // 4)


def spectral_features(images: torch.Tensor, n_bins: int | None = None) -> torch.Tensor:
    """Per-image features ``(N, C * (n_bins + 2))``, float64: per channel the radial log power spectrum in ``n_bins``
    rings (default ``min(H, W) // 4``), then per channel the mean, then per channel the std (module docstring).
    Image by image, so a single image is fine (the distance needs two per set)."""
    x = _check_images(images, "spectral_features", min_images=1)
    n, c, h, w = x.shape
    mean = x.mean(dim=(2, 3))
    centred = x - mean[:, :, None, None]
    power = torch.fft.fft2(centred, norm="ortho").abs() ** 2  # (N, C, H, W)
    index, n_bins = radial_bins(h, w, n_bins)
    flat = index.flatten()
    keep = (flat >= 1) & (flat <= n_bins)
    sums = torch.zeros(n, c, n_bins + 1, dtype=torch.float64)
    sums.index_add_(2, flat[keep], power.flatten(2)[:, :, keep])
    counts = torch.bincount(flat[keep], minlength=n_bins + 1).to(torch.float64)
    radial = torch.log(sums[:, :, 1:] / counts[1:] + LOG_EPS)  # (N, C, n_bins)
    std = centred.pow(2).mean(dim=(2, 3)).sqrt()
    return torch.cat([radial.flatten(1), mean, std], dim=1)


def feature_stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mu, S)`` of ``(N, D)`` features: the mean and the unbiased sample covariance (``N - 1``), float64."""
    f = features.to(torch.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ZSGuideError(f"feature_stats: expected (N >= 2, D) features, got shape {tuple(f.shape)}")
    mu = f.mean(dim=0)
    d = f - mu
    return mu, d.T @ d / (f.shape[0] - 1)


def _psd_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    """The symmetric PSD square root by ``eigh``; eigenvalues below ``D eps max`` (round-off) count as zero."""
    sym = (matrix + matrix.T) / 2
    values, vectors = torch.linalg.eigh(sym)
    cut = sym.shape[0] * torch.finfo(torch.float64).eps * float(values.abs().max())
    root = torch.where(values > cut, values, torch.zeros_like(values)).sqrt()
    return (vectors * root) @ vectors.T


def _psd_trace_sqrt(matrix: torch.Tensor) -> float:
    sym = (matrix + matrix.T) / 2
    values = torch.linalg.eigvalsh(sym)
    cut = sym.shape[0] * torch.finfo(torch.float64).eps * float(values.abs().max())
    return float(torch.where(values > cut, values, torch.zeros_like(values)).sqrt().sum())


def frechet_distance(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor) -> float:
    """The Frechet (W2^2) distance between ``N(mu1, S1)`` and ``N(mu2, S2)``, float64, symmetric PSD roots."""
    mu1, mu2 = mu1.to(torch.float64).flatten(), mu2.to(torch.float64).flatten()
    s1, s2 = sigma1.to(torch.float64), sigma2.to(torch.float64)
    d = mu1.shape[0]
    if mu2.shape[0] != d or s1.shape != (d, d) or s2.shape != (d, d):
        raise ZSGuideError(
            f"frechet_distance: mismatched statistics: means {tuple(mu1.shape)} and {tuple(mu2.shape)}, "
            f"covariances {tuple(s1.shape)} and {tuple(s2.shape)}"
        )
    if not all(torch.isfinite(t).all() for t in (mu1, mu2, s1, s2)):
        raise ZSGuideError("frechet_distance: the statistics contain NaN or Inf")
    r1 = _psd_sqrt(s1)
    cross = _psd_trace_sqrt(r1 @ ((s2 + s2.T) / 2) @ r1)
    value = float(((mu1 - mu2) ** 2).sum()) + float(torch.trace(s1) + torch.trace(s2)) - 2 * cross
    return max(value, 0.0)


def frechet_distance_features(f1: torch.Tensor, f2: torch.Tensor) -> float:
    """The Frechet distance between the Gaussians fitted to two feature sets ``(N1, D)`` and ``(N2, D)``.

    With fewer images than features (Inception's 2048 for FID, or large images' spectra) the covariances have rank
    below ``D`` and the same distance is computed from the centred features ``A_k`` (rows ``f - mean``) without a
    ``D x D`` root: ``S_k = A_k^T A_k / (N_k - 1)``, and the non-zero eigenvalues of ``S1^1/2 S2 S1^1/2`` are those
    of ``S1 S2``, the squared singular values of ``A2 A1^T / sqrt((N1 - 1)(N2 - 1))``, so

        tr (S1^1/2 S2 S1^1/2)^1/2 = ||A1 A2^T||_* / sqrt((N1 - 1)(N2 - 1))      (nuclear norm: sum of singular values)
        tr S_k = ||A_k||_F^2 / (N_k - 1)

    which costs ``O(N1 N2 D)`` instead of ``O(D^3)`` (FID on 64 images: milliseconds instead of seconds per call).
    """
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1]:
        raise ZSGuideError(
            f"frechet_distance_features: mismatched feature sets {tuple(f1.shape)} and {tuple(f2.shape)}"
        )
    n1, n2, d = f1.shape[0], f2.shape[0], f1.shape[1]
    if min(n1, n2) >= d:
        return frechet_distance(*feature_stats(f1), *feature_stats(f2))
    if n1 < 2 or n2 < 2:
        raise ZSGuideError(
            f"feature_stats: expected (N >= 2, D) features, got shapes {tuple(f1.shape)} and {tuple(f2.shape)}"
        )
    mu1, mu2 = f1.to(torch.float64).mean(dim=0), f2.to(torch.float64).mean(dim=0)
    a1, a2 = f1.to(torch.float64) - mu1, f2.to(torch.float64) - mu2
    if not (torch.isfinite(a1).all() and torch.isfinite(a2).all()):
        raise ZSGuideError("frechet_distance: the statistics contain NaN or Inf")
    cross = float(torch.linalg.svdvals(a1 @ a2.T).sum()) / math.sqrt((n1 - 1) * (n2 - 1))
    value = (
        float(((mu1 - mu2) ** 2).sum())
        + float(a1.square().sum()) / (n1 - 1)
        + float(a2.square().sum()) / (n2 - 1)
        - 2 * cross
    )
    return max(value, 0.0)


def spectral_frechet_distance(images1: torch.Tensor, images2: torch.Tensor) -> float:
    """The Frechet spectral distance between two image sets ``(N1, C, H, W)`` and ``(N2, C, H, W)`` in ``[0, 1]``.

    The sets may differ in size, not in image shape. Restorations should be clipped to ``[0, 1]`` first, as for PSNR
    and SSIM (:mod:`zsguide.evaluation.metrics`).
    """
    a = _check_images(images1, "first image set")
    b = _check_images(images2, "second image set")
    if a.shape[1:] != b.shape[1:]:
        raise ZSGuideError(
            f"the two image sets have different image shapes: {tuple(a.shape[1:])} and {tuple(b.shape[1:])} (C, H, W)"
        )
    return frechet_distance_features(spectral_features(a), spectral_features(b))


def _se(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def bootstrap_se(f1: torch.Tensor, f2: torch.Tensor, num: int = 200, seed: int = 0, paired: bool = False) -> float:
    """A bootstrap standard error of :func:`frechet_distance_features`, ``num`` resamples with a fixed seed.

    ``paired=False``: the two sets are resampled independently. ``paired=True`` (row i of ``f1`` belongs with row i
    of ``f2``, e.g. a restoration and its clean image): the same rows are drawn from both.
    """
    if num < 2:
        raise ZSGuideError(f"bootstrap_se: num must be >= 2, got {num}")
    if paired and f1.shape[0] != f2.shape[0]:
        raise ZSGuideError(f"bootstrap_se: paired sets must have as many rows, got {f1.shape[0]} and {f2.shape[0]}")
    g = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(num):
        i = torch.randint(f1.shape[0], (f1.shape[0],), generator=g)
        j = i if paired else torch.randint(f2.shape[0], (f2.shape[0],), generator=g)
        values.append(frechet_distance_features(f1[i], f2[j]))
    return _se(values)


def bootstrap_difference_se(
    fa: torch.Tensor, fb: torch.Tensor, ref: torch.Tensor, num: int = 200, seed: int = 0
) -> float:
    """The bootstrap standard error of ``FD(fb, ref) - FD(fa, ref)`` for paired rows (image i restored two ways and
    its clean image): the same rows are drawn from all three sets, so what the images share cancels."""
    if num < 2:
        raise ZSGuideError(f"bootstrap_difference_se: num must be >= 2, got {num}")
    if not fa.shape[0] == fb.shape[0] == ref.shape[0]:
        raise ZSGuideError(
            f"bootstrap_difference_se: paired sets must have as many rows, got {fa.shape[0]}, "
            f"{fb.shape[0]} and {ref.shape[0]}"
        )
    g = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(num):
        i = torch.randint(ref.shape[0], (ref.shape[0],), generator=g)
        values.append(frechet_distance_features(fb[i], ref[i]) - frechet_distance_features(fa[i], ref[i]))
    return _se(values)
