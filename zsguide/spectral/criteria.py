"""The criteria of theory.md §5 for a block problem, per pixel (divided by ``problem.dims``), network units.

With the measurement coordinates ``ybar = U^H y`` (problem.py), ``Cov[ybar] = H Sigma H^H + sigma^2 D`` (D: the
measured coordinates) and the posterior ``N(W ybar, Sigma_post)``:

    avg W2^2 to the posterior = tr((B - W) Cov[ybar] (B - W)^H) + tr(V + Sigma_post - 2 (Sigma_post^1/2 V
                                Sigma_post^1/2)^1/2)   (w2_mean + w2_cov: the means' and the covariances' parts)
    MSE to the truth          = tr((I - B H) Sigma (I - B H)^H) + sigma^2 tr(B D B^H) + tr V
    perception W2^2 to prior  = W2^2(N(0, B Cov[ybar] B^H + V), N(0, Sigma))  (the output marginal over y)

References (theory.md §3): the ideal posterior sampler has MSE ``2 tr Sigma_post`` and avg W2 0; the MMSE estimator
has MSE ``tr Sigma_post``. For 1 x 1 blocks these are the per-frequency sums of the diagonal formulas. A problem whose
blocks are grouped (``problem.weight``: block b stands for w_b equal blocks) sums them with those weights.
"""

from __future__ import annotations

import torch

from ..samplers.law import block_sum, mm
from ..samplers.svd import sqrt_pos
from .problem import BlockProblem, eig_fn
from .transfer import Transfer


def _tr(M: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """``sum_blocks w_b tr M_b`` (``weight`` None: every block counts once)."""
    return block_sum(M.diagonal(dim1=-2, dim2=-1).real.sum(-1), weight)


def _sqrt_psd(M: torch.Tensor) -> torch.Tensor:
    """``M^{1/2}`` of a Hermitian PSD field (eigenvalues clamped at 0)."""
    if M.shape[-1] == 1:
        return sqrt_pos(M.real).to(M.dtype)
    e, Q = torch.linalg.eigh(M)
    return eig_fn(e, Q, e.clamp(min=0).sqrt())


def _tr_sqrt(M: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """``sum_blocks w_b tr M_b^{1/2}`` of a Hermitian PSD field (differentiable)."""
    if M.shape[-1] == 1:
        return block_sum(sqrt_pos(M.real)[..., 0, 0], weight)
    return block_sum(sqrt_pos(torch.linalg.eigvalsh(0.5 * (M + M.mH))).sum(-1), weight)


def w2_squared(
    V: torch.Tensor, S_half: torch.Tensor, S: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """``W2^2(N(0, V), N(0, S)) = tr(V + S - 2 (S^1/2 V S^1/2)^1/2)`` summed over blocks (weighted)."""
    return _tr(V, weight) + _tr(S, weight) - 2 * _tr_sqrt(mm(mm(S_half, V), S_half), weight)


class Criteria:
    """Precomputes the posterior and the square roots once per problem; ``__call__`` evaluates a transfer."""

    def __init__(self, p: BlockProblem) -> None:
        self.p = p
        self.W, self.post = p.posterior()
        self.post_half = _sqrt_psd(self.post)
        self.prior_half = p.fn(lambda e: e.sqrt())
        self.ey = p.y_cov()
        self.H = p.H()
        self.I = torch.eye(p.n, dtype=p.dtype)

    def references(self) -> dict[str, float]:
        """Per pixel, network units: the posterior sampler's MSE (2 tr Sigma_post) and the MMSE (tr Sigma_post)."""
        mmse = float(_tr(self.post, self.p.weight)) / self.p.dims
        return {"posterior_sampler_mse": 2 * mmse, "mmse": mmse}

    def __call__(self, out: Transfer) -> dict[str, torch.Tensor]:
        p, B, V = self.p, out.B, out.V
        w = p.weight
        D = B - self.W
        w2_mean = _tr(mm(mm(D, self.ey), D.mH), w)  # the means' part: E_y |(B - W) ybar|^2
        w2_cov = w2_squared(V, self.post_half, self.post, w)  # the covariances' part (Bures)
        w2 = w2_mean + w2_cov
        R = self.I - mm(B, self.H)
        Dm = p.noise_cov()
        mse = _tr(mm(mm(R, p.Sigma), R.mH), w) + _tr(mm(mm(B, Dm), B.mH), w) + _tr(V, w)
        marg = mm(mm(B, self.ey), B.mH) + V
        perc = w2_squared(marg, self.prior_half, p.Sigma, w)
        return {
            "avg_w2": w2 / p.dims,
            "mse": mse / p.dims,
            "perception_w2": perc / p.dims,
            "w2_mean": w2_mean / p.dims,
            "w2_cov": w2_cov / p.dims,
        }
