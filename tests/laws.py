"""Image-space laws and their Monte Carlo statistics, shared by the tests that hold sampler output against a
closed-form law (tests/test_spectral_transfer.py, tests/test_criteria_independent.py).

A block problem's law ``N(B ybar, V)`` (spectral/transfer.py) lives in its SVD coordinates; :func:`coordinate_maps`
writes those coordinates as dense maps built from unit images through the problem's own ``to_layout`` and
``y_coords``, :func:`image_law` gives the law in image space, and :func:`law_statistics` compares samples with it in
the law's eigenbasis, where the coordinates are independent N(0, 1), so the aggregates have known null laws."""

from __future__ import annotations

import math

import torch
from scipy import stats


def coordinate_maps(p, sur, op):
    """The block problem's coordinates as dense maps: ``X`` (d x d, unitary) from the SVD coordinates ``xi`` (blocks
    in order, then the coordinate within a block) to the image, and ``Y`` from a measurement to ``ybar``."""
    d = p.Sigma[..., 0].numel()
    layout = p.to_layout(torch.eye(d, dtype=torch.complex128).reshape(d, *p.Sigma.shape[:-1]))
    if p.structure != "pixel_mask":  # spectra of the decorrelated channels -> decorrelated pixels
        layout = torch.fft.ifft2(layout, norm="ortho")
    X = torch.einsum("dc,...chw->...dhw", sur.Q.T.to(layout.dtype), layout).reshape(d, d).T
    m = math.prod(op.measurement_shape)
    Y = p.y_coords(torch.eye(m, dtype=torch.float64).reshape(m, *op.measurement_shape), sur).reshape(m, -1).T
    return X, Y.to(torch.complex128)


def image_map(M, left, right):
    """A field of blocks (..., a, b) as one block-diagonal matrix (blocks in row-major order), ``left @ . @ right``,
    which must be real (an image-space map)."""
    out = left @ torch.block_diag(*M.reshape(-1, *M.shape[-2:]).to(torch.complex128)) @ right
    assert out.imag.abs().max() < 1e-10
    return out.real


def image_law(law, X, Y):
    """A block transfer ``N(B ybar, V)`` as the image-space law ``x | y ~ N(B_img y, V_img)`` (real)."""
    V = image_map(law.V, X, X.mH)
    return image_map(law.B, X, Y), 0.5 * (V + V.T)


def law_statistics(samples, mean, cov, rel_floor=1e-9):
    """Monte Carlo ``samples`` (N, d) against ``N(mean, cov)`` in the law's eigenbasis ``cov = sum_k e_k q_k q_k^T``,
    where the coordinates ``w_k = q_k^T (x - mean) / sqrt(e_k)`` are independent N(0, 1) under the law (the
    directions with ``e_k`` above ``rel_floor`` times the largest; K of them). Returns

        chi2_mean   sum_k z_k^2, z_k = sqrt(N) mean_n w_nk: chi-squared with K degrees of freedom
        z_max       max_k |z_k|
        z_along_mean  the z-scores' component along the whitened predicted mean: N(0, 1); it sees an error in a
                    measurement gain (a mean scaled by 1 + d along what is measured) that the K-dimensional
                    aggregate dilutes
        var_pooled  sum_k sum_n (w_nk - wbar_k)^2: chi-squared with K (N - 1) degrees of freedom, standardised
        var_spread  sum_k r_k^2, r_k = (s_k^2 - 1) / sqrt(2 / (N - 1)) with s_k^2 the sample variance of w_k:
                    mean K, variance K (2 + 12 / (N - 1)) (chi-squared(N - 1) / (N - 1) has excess kurtosis
                    12 / (N - 1)), standardised; it sees a variance error confined to a few directions
        null_dev    the largest |mean deviation| along the other directions (no spread predicted)

    and K."""
    N = samples.shape[0]
    e, U = torch.linalg.eigh(cov)
    keep = e > rel_floor * e.max()
    K = int(keep.sum())
    w = ((samples - mean) @ U)[:, keep] / e[keep].sqrt()
    z = math.sqrt(N) * w.mean(0)
    ss = (w - w.mean(0)).square().sum(0)
    r = (ss / (N - 1) - 1) / math.sqrt(2 / (N - 1))
    null = ((samples - mean) @ U)[:, ~keep].mean(0)
    along = (mean @ U)[keep] / e[keep].sqrt()  # the predicted mean, whitened: a fixed direction
    return {
        "chi2_mean": float(z.square().sum()),
        "z_max": float(z.abs().max()),
        "z_along_mean": float(z @ along) / float(along.norm()),
        "var_pooled": (float(ss.sum()) - K * (N - 1)) / math.sqrt(2 * K * (N - 1)),
        "var_spread": (float(r.square().sum()) - K) / math.sqrt(K * (2 + 12 / (N - 1))),
        "null_dev": float(null.abs().max()) if null.numel() else 0.0,
    }, K


def check_law(st, K):
    """Each bound at about 1e-4 false alarms (tests/test_criteria_independent.py's designed-schedule test explains
    what each sees): the mean's chi-squared below its 1e-4 upper quantile, every ``|z| < 5``, the component along the
    predicted mean ``|z| < 4``; the pooled variance within 4 standard errors, the spread statistic below 5; no mean
    deviation (1e-8) where the law has no spread."""
    assert st["chi2_mean"] < stats.chi2.isf(1e-4, K), (st, K)
    assert st["z_max"] < 5 and abs(st["z_along_mean"]) < 4, st
    assert abs(st["var_pooled"]) < 4 and st["var_spread"] < 5, st
    assert st["null_dev"] < 1e-8, st
