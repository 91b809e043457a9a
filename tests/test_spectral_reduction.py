"""The spectral engine's reductions for large images: blur designed on grouped blocks (criteria within 1e-3 of the
exact ones, predictions quoted exactly), super-resolution on a stratified block sample (an unbiased estimate)."""

import pytest
import torch

from zsguide.data.gaussian import gaussian_field_spectrum
from zsguide.diffusion.schedule import VPSchedule
from zsguide.operators import make_operator
from zsguide.samplers import get_sampler
from zsguide.spectral.criteria import Criteria
from zsguide.spectral.problem import TAKE_ALL, problem_for, sample_blocks
from zsguide.spectral.service import GROUP_ABOVE, designed_schedule
from zsguide.spectral.transfer import transfer
from zsguide.surrogate import GaussianSurrogate

SCHED = VPSchedule()


def rough_surrogate(size: int, channels: int = 3) -> GaussianSurrogate:
    """A power law with periodogram-like scatter (log-normal, 0.5 in log), so blocks do not group trivially."""
    g = torch.Generator().manual_seed(0)
    lam = gaussian_field_spectrum(channels, size, 0.3, 2.0, 1 / 32)
    lam = lam * torch.exp(0.5 * torch.randn(lam.shape, generator=g, dtype=torch.float64))
    sur = GaussianSurrogate(channels, size, size)
    sur.set(torch.zeros(channels, dtype=torch.float64), lam)
    return sur


@pytest.mark.parametrize("method", ["ddrm", "pigdm", "dps", "diffpir"])
def test_grouped_blur_problem_converges_to_the_exact_criteria(method):
    """At the default cells (10% in lambda and s) every criterion is within 2e-3 of the exact one on a rough
    spectrum (5e-4 on the 256 x 256 photograph prior, docs/benchmarks.md), and the error falls at least fourfold
    when the cells are four times narrower: the grouping is a consistent approximation, not a fixed bias."""
    sur = rough_surrogate(64)
    op = make_operator("deblur_gaussian", sur.shape, 0, [0])
    exact = problem_for(sur, op, 0.05)
    params = get_sampler(method).heuristic("deblur_gaussian", 20, SCHED)
    a = Criteria(exact)(transfer(method, exact, params, SCHED.alphas_cumprod))

    def error(cell: float) -> float:
        grouped = exact.grouped(cell, cell)
        assert float(grouped.weight.sum()) == exact.num_blocks
        b = Criteria(grouped)(transfer(method, grouped, params, SCHED.alphas_cumprod))
        return max(abs(float(b[k] / a[k]) - 1) for k in a)

    coarse = exact.grouped()
    assert coarse.num_blocks < exact.num_blocks / 5
    assert error(0.1) < 2e-3
    assert error(0.025) < error(0.1) / 4
    assert Criteria(coarse).references() == pytest.approx(Criteria(exact).references(), rel=2e-3)


def test_large_blur_designs_on_the_grouped_problem_and_quotes_exact_predictions():
    sur = rough_surrogate(64)  # 3 x 64 x 64 blocks > GROUP_ABOVE
    op = make_operator("deblur_gaussian", sur.shape, 0, [0])
    problem = problem_for(sur, op, 0.05)
    assert problem.num_blocks > GROUP_ABOVE and problem.note == ""  # blur stays exact
    heur = get_sampler("diffpir").heuristic("deblur_gaussian", 10, SCHED)
    r = designed_schedule(sur, op, 0.05, SCHED, heur, "deblur_gaussian", use_cache=False, trust=2.0)
    assert "grouped problem" in r.params.provenance["designed_on"]
    crit = Criteria(problem)
    for label, params in (("heuristic", heur), ("designed", r.params)):
        exact = crit(transfer("diffpir", problem, params, SCHED.alphas_cumprod))
        assert getattr(r, label)["avg_w2"] == pytest.approx(float(exact["avg_w2"]), rel=1e-12)
    assert r.designed["avg_w2"] < 0.95 * r.heuristic["avg_w2"]


def test_block_sample_is_unbiased():
    """Over many seeds, the weighted sum of a per-block quantity over the sample averages to its sum over the grid
    (within 4 standard errors), for a quantity unrelated to the sampling energy too; the most powerful blocks are
    always in, with weight 1, and every cell gives one draw."""
    C, h, w, k, take = 2, 32, 32, 4, 8
    g = torch.Generator().manual_seed(1)
    energy = torch.exp(2 * torch.randn(C, h, w, generator=g, dtype=torch.float64))
    energy[:, 0, :] *= 20  # a strong zero-frequency row, as natural images have
    other = torch.exp(torch.randn(C, h, w, generator=g, dtype=torch.float64))  # not proportional to the energy
    top = set(energy[0].flatten().topk(take).indices.tolist())
    estimates = {"energy": [], "other": []}
    for seed in range(300):
        rows, cols, weight = sample_blocks(energy, k, take, seed)
        assert rows.shape == cols.shape == weight.shape == (C, take + (h // k) * (w // k))
        assert set((rows[0, :take] * w + cols[0, :take]).tolist()) == top and bool((weight[:, :take] == 1).all())
        drawn = rows[:, take:] // k * (w // k) + cols[:, take:] // k  # the cell of every draw: each exactly once
        assert bool((drawn.sort(dim=1).values == torch.arange((h // k) * (w // k))).all())
        ch = torch.arange(C)[:, None]
        for name, field in (("energy", energy), ("other", other)):
            estimates[name].append(float((field[ch, rows, cols] * weight).sum()))
    for name, field in (("energy", energy), ("other", other)):
        est = torch.tensor(estimates[name], dtype=torch.float64)
        assert abs(float(est.mean()) - float(field.sum())) < 4 * float(est.std() / len(est) ** 0.5), name


def test_large_super_resolution_is_a_stated_sample_of_exact_blocks():
    sur = rough_surrogate(64)
    op = make_operator("sr4", sur.shape, 0, [0])
    reduced = problem_for(sur, op, 0.05)  # 16 x 16 alias blocks per channel > 1024 / 16
    exact = problem_for(sur, op, 0.05, max_fourier=10**9)
    assert exact.Sigma.shape == (3, 16, 16, 16, 16) and reduced.Sigma.shape == (3, TAKE_ALL + 64, 16, 16)
    assert "dimension reduction" in reduced.note and exact.note == ""
    assert reduced.dims == exact.dims and reduced.weight.shape == (3, TAKE_ALL + 64)
    # every sampled block is one of the exact problem's blocks, unchanged
    rows, cols = reduced.positions
    ch = torch.arange(3)[:, None]
    for name in ("Sigma", "s", "s_eff", "U", "Vh"):
        torch.testing.assert_close(getattr(reduced, name), getattr(exact, name)[ch, rows, cols])
    # the per-frequency layout puts each sampled block's values at its own frequencies
    full = exact.diagonal_map(exact.Sigma)
    sampled = reduced.diagonal_map(reduced.Sigma)
    known = ~torch.isnan(sampled)
    for c in range(3):
        distinct = len(set((rows[c] * 16 + cols[c]).tolist()))
        assert int(known[c].sum()) == 16 * distinct  # n = 16 alias frequencies per block
    torch.testing.assert_close(sampled[known], full[known])
    params = get_sampler("ddrm").heuristic("sr4", 10, SCHED)
    a = Criteria(exact)(transfer("ddrm", exact, params, SCHED.alphas_cumprod))
    b = Criteria(reduced)(transfer("ddrm", reduced, params, SCHED.alphas_cumprod))
    for key in a:  # a sample of a quarter of the blocks: an estimate, here within 15%
        assert abs(float(b[key] / a[key]) - 1) < 0.15, (key, float(a[key]), float(b[key]))
