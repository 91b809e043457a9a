"""Samplers: the oracle against the closed-form posterior (Monte Carlo), per-image determinism, the NaN guard."""

import math

import pytest
import torch

from zsguide.data.gaussian import gaussian_field_spectrum
from zsguide.diffusion.denoisers import AnalyticDenoiser, Denoiser
from zsguide.diffusion.schedule import VPSchedule
from zsguide.errors import ZSGuideError
from zsguide.operators import make_operator
from zsguide.samplers import SAMPLERS, ParamSchedule, get_sampler
from zsguide.samplers.oracle import apply_cov
from zsguide.surrogate import GaussianSurrogate

SCHED = VPSchedule()


def _surrogate(C=3, H=8, mean=0.1):
    sur = GaussianSurrogate(C, H, H)
    sur.set(torch.full((C,), mean, dtype=torch.float64), gaussian_field_spectrum(C, H, 0.3, 2.0, 1 / H))
    return sur


def _dense(fn, n_in_shape):
    """The matrix of a linear map on flattened tensors, by pushing basis vectors through it (float64)."""
    n = math.prod(n_in_shape)
    basis = torch.eye(n, dtype=torch.float64).reshape(n, *n_in_shape)
    return fn(basis).reshape(n, -1).T


def closed_form_posterior(sur, op, y, sigma):
    """Dense posterior ``N(mu_post, Sigma_post)`` of theory.md §3 for one measurement y (float64)."""
    shape = sur.shape
    S0 = _dense(lambda b: apply_cov(sur, sur.spectrum, b), shape)
    H = _dense(op.A, shape)
    mu = sur.mean[:, None, None].expand(shape).reshape(-1)
    G = S0 @ H.T @ torch.linalg.pinv(H @ S0 @ H.T + sigma**2 * torch.eye(H.shape[0], dtype=torch.float64))
    mu_post = mu + G @ (y.reshape(-1) - H @ mu)
    return mu_post.reshape(shape), S0 - G @ H @ S0


@pytest.mark.parametrize(
    "task,task_params", [("deblur_gaussian", {"size": 5, "sigma": 1.0}), ("sr2", {}), ("inpaint_random", {})]
)
def test_oracle_matches_the_true_posterior(task, task_params):
    """N = 2000 oracle samples of one measurement (10 steps, analytic denoiser, 8x8 RGB Gaussian fields). Tolerances:
    every pixel's sample mean within 5 standard errors of mu_post; every decorrelated frequency's sample variance
    within 5 (conservative) standard errors sqrt(2/N) of diag(T Sigma_post T^H), T = F Q; their average ratio within
    4 sqrt(2 / (N K)) of 1 (K frequencies)."""
    N, sigma = 2000, 0.1
    sur = _surrogate()
    op = make_operator(task, sur.shape, seed=0, indices=[7], **task_params)
    x = sur.sample(1, torch.Generator().manual_seed(11))
    y = op.measure(x, sigma, op.noise_for(0, [7], dtype=torch.float64))
    mu_post, cov_post = closed_form_posterior(sur, op, y, sigma)
    sampler = get_sampler("oracle")
    params = sampler.heuristic(task, 10, SCHED)
    out = sampler.run(
        AnalyticDenoiser(sur, SCHED),
        op,
        y.expand(N, *y.shape[1:]),
        sigma,
        params,
        seed=1,
        indices=list(range(N)),
        surrogate=sur,
    )
    se_mean = (cov_post.diagonal() / N).sqrt().reshape(sur.shape)
    z_mean = (out.mean(0) - mu_post) / se_mean
    assert z_mean.abs().max() < 5, float(z_mean.abs().max())
    T = _dense(lambda b: sur.to_spectral(b, centre=False), sur.shape).to(torch.complex128)  # rows: F Q
    v_true = torch.einsum("ij,jk,ik->i", T, cov_post.to(torch.complex128), T.conj()).real.reshape(sur.shape)
    u = sur.to_spectral(out, centre=False)
    v_emp = (u - u.mean(0)).abs().square().mean(0)
    ratio = v_emp / v_true
    assert ((ratio - 1).abs() / math.sqrt(2 / N)).max() < 5, (float(ratio.min()), float(ratio.max()))
    assert abs(float(ratio.mean()) - 1) < 4 * math.sqrt(2 / (N * ratio.numel()))


def _batch_outputs(name, task, indices, sur):
    op = make_operator(task, sur.shape, seed=3, indices=indices)
    x = torch.stack([sur.sample(1, torch.Generator().manual_seed(100 + i))[0] for i in indices])
    y = op.measure(x, 0.05, op.noise_for(3, indices, dtype=torch.float64))
    sampler = get_sampler(name)
    return sampler.run(
        AnalyticDenoiser(sur, SCHED),
        op,
        y,
        0.05,
        sampler.heuristic(task, 5, SCHED),
        seed=9,
        indices=indices,
        surrogate=sur,
    )


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_outputs_do_not_depend_on_the_batch(name):
    sur = _surrogate(1, 8)
    together = _batch_outputs(name, "inpaint_random", [4, 2, 9], sur)
    alone = _batch_outputs(name, "inpaint_random", [2], sur)
    assert torch.allclose(together[1], alone[0], rtol=0, atol=1e-12)
    assert not torch.allclose(together[0], together[1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("task", ["deblur_gaussian", "sr2", "inpaint_random"])
@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_cuda_outputs_match_cpu(name, task):
    """Every sampler on a CUDA device, in float64 with the analytic denoiser, gives the CPU's output: the noise comes
    from (seed, index) whatever the device, so only rounding may differ (relative 1e-9 in float64). This is the
    check that caught the oracle mixing a CPU tensor into the surrogate's CUDA spectrum."""
    sur, indices = _surrogate(3, 16), [0, 5]
    op = make_operator(task, sur.shape, seed=3, indices=indices)
    x = torch.stack([sur.sample(1, torch.Generator().manual_seed(100 + i))[0] for i in indices])
    y = op.measure(x, 0.05, op.noise_for(3, indices, dtype=torch.float64))
    sampler = get_sampler(name)
    params = sampler.heuristic(task, 5, SCHED)
    cpu = sampler.run(AnalyticDenoiser(sur, SCHED), op, y, 0.05, params, seed=9, indices=indices, surrogate=sur)
    sur_g = _surrogate(3, 16).to("cuda")
    gpu = sampler.run(
        AnalyticDenoiser(sur_g, SCHED),
        op.to("cuda", torch.float64),
        y.cuda(),
        0.05,
        params,
        seed=9,
        indices=indices,
        surrogate=sur_g,
    )
    assert gpu.is_cuda and gpu.dtype == cpu.dtype
    assert torch.linalg.vector_norm(gpu.cpu() - cpu) <= 1e-9 * torch.linalg.vector_norm(cpu)


def test_ddnm_is_measurement_consistent_without_noise():
    """DDNM's range-null-space step ends with x0 - A^+(A x0 - y), so A x_out = y exactly when sigma = 0."""
    sur = _surrogate(3, 8)
    for task in ("inpaint_random", "sr2"):
        op = make_operator(task, sur.shape, seed=0, indices=[0, 1])
        x = sur.sample(2, torch.Generator().manual_seed(2))
        y = op.A(x)
        s = get_sampler("ddnm")
        out = s.run(AnalyticDenoiser(sur, SCHED), op, y, 0.0, s.heuristic(task, 5, SCHED), seed=0, indices=[0, 1])
        assert torch.allclose(op.A(out), y, atol=1e-10)
        assert not torch.allclose(out, x)


class _NaNAt(Denoiser):
    """NaN in image 1's estimate when called at time ``bad_step_t`` (exactly: DAPS's inner ODE calls the denoiser
    at lower times within a step, so "from then on" would stop it earlier)."""

    def __init__(self, inner, bad_step_t):
        super().__init__(SCHED)
        self.inner, self.bad_t = inner, bad_step_t

    def x0(self, x_t, t):
        out = self.inner.x0(x_t, t)
        if int(torch.as_tensor(t).reshape(-1)[0]) == self.bad_t:
            out = out.clone()
            out[1] = float("nan")
        return out


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_nan_stops_with_sampler_step_and_index(name):
    sur = _surrogate(1, 8)
    op = make_operator("sr2", sur.shape, seed=0, indices=[5, 6])
    y = op.A(sur.sample(2, torch.Generator().manual_seed(0)))
    s = get_sampler(name)
    params = s.heuristic("sr2", 6, SCHED)
    bad_t = params.timesteps[3]
    with pytest.raises(
        ZSGuideError, match=rf"sampler {name} produced NaN/Inf at step 3 \(t={bad_t}\) for image index 6"
    ):
        s.run(_NaNAt(AnalyticDenoiser(sur, SCHED), bad_t), op, y, 0.05, params, seed=0, indices=[5, 6], surrogate=sur)


def test_param_schedule_round_trip_and_checks(tmp_path):
    p = get_sampler("diffpir").heuristic("deblur_gaussian", 7, SCHED)
    assert (
        p.spacing == "quadratic"
        and p.values["zeta"] == [0.3] * 7
        and p.values["lam"] == [7.0] * 7
        and p.provenance["source"] == "heuristic"
    )
    p.save(tmp_path / "p.json")
    assert ParamSchedule.load(tmp_path / "p.json") == p
    with pytest.raises(ZSGuideError, match="has 2 values, expected 3"):
        ParamSchedule("ddrm", "sr2", 3, "uniform", [999, 500, 0], {"eta": [0.1, 0.2], "eta_b": [1, 1, 1]})
    with pytest.raises(ZSGuideError, match="not 'ddrm'"):
        get_sampler("ddrm").check_params(p)
    with pytest.raises(ZSGuideError, match="unknown sampler 'ddpm'"):
        get_sampler("ddpm")


WITHOUT_LAW = {"reddiff"}  # the built-in samplers the engine has no law for, on purpose


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_the_registry_describes_each_sampler(name):
    """The registry's knobs are the heuristic's, for every task; each heuristic value lies in its knob's domain (unit:
    [0, 1], positive: > 0), which is what the designer's parameterisation assumes (spectral/design.py); the lists
    the engine uses come from the registry (every built-in sampler but RED-diff with Adam states its closed form,
    ``closed_form_step``; the oracle alone among those is not designable, being exact)."""
    from zsguide.operators import TASK_NAMES
    from zsguide.samplers import sampler_names
    from zsguide.samplers.base import Sampler
    from zsguide.spectral.design import bounded

    sampler = get_sampler(name)
    for task in TASK_NAMES:
        values = sampler.heuristic_values(task, 20)
        assert set(values) == set(sampler.knobs), (task, values)
        for knob, v in values.items():
            flat = [float(x) for x in (v if isinstance(v, (list, tuple)) else [v])]
            spec = sampler.knob(knob)
            assert all(0 <= x <= 1 for x in flat) if spec.domain == "unit" else all(x > 0 for x in flat), (knob, v)
            assert bounded(name, knob) == (spec.domain == "unit")
    if name in WITHOUT_LAW:  # RED-diff with Adam: its per-pixel scaling is not linear (samplers/reddiff.py)
        from types import SimpleNamespace

        from zsguide.parameters import param_schedule

        assert not sampler.closed_form and not sampler.designable and name in sampler_names(closed_form=False)
        with pytest.raises(ZSGuideError, match=f"sampler {name} has no closed form"):
            sampler.closed_form_step(None)
        prior = SimpleNamespace(surrogate=_surrogate(1, 8), schedule=SCHED)
        op = make_operator("sr2", (1, 8, 8), seed=0, indices=[0])
        with pytest.raises(ZSGuideError, match=f"--params spectral: sampler {name} has no closed form .*heuristic"):
            param_schedule("spectral", sampler, prior, op, 0.1, task="sr2", steps=3)
    else:
        assert (name in sampler_names(designable=True)) == sampler.designable == (name != "oracle")
        assert sampler.designable == (not sampler.exact)
        assert sampler.closed_form and name in sampler_names(closed_form=True)
        assert type(sampler).closed_form_step is not Sampler.closed_form_step
    with pytest.raises(ZSGuideError, match=f"sampler {name} has no knob 'nope'"):
        sampler.knob("nope")
    with pytest.raises(ZSGuideError, match="unknown task 'blur'"):  # no silent defaults for an unknown task
        sampler.heuristic("blur", 20, SCHED)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_the_cost_counts_are_what_the_sampler_does(name):
    """A run's counted cost (samplers/cost.py, through ``run_sampler``): one network call per step (DAPS: its five
    ODE calls per level), one vector-Jacobian product per step for the samplers that differentiate through the
    network (``needs_grad``: PiGDM, DPS) and none otherwise, at least one operator application per step, the same
    for a batch of one and of three (a count per image); the output is the uncounted run's, bit for bit."""
    from zsguide.restoration import run_sampler
    from zsguide.samplers.cost import Cost

    sur = _surrogate(3, 8)
    s = get_sampler(name)
    steps = 4
    params = s.heuristic("sr2", steps, SCHED)
    counts = []
    for idx in ([0], [0, 1, 2]):
        op = make_operator("sr2", sur.shape, seed=0, indices=idx)
        y = op.measure(sur.sample(len(idx), torch.Generator().manual_seed(0)), 0.1, op.noise_for(0, idx))
        den, cost = AnalyticDenoiser(sur, SCHED), Cost()
        kw = dict(sigma_net=0.1, params=params, seed=0, indices=idx, surrogate=sur)
        counted = run_sampler(s, den, op, y, cost=cost, **kw)
        assert torch.equal(counted, run_sampler(s, den, op, y, **kw))
        counts.append(cost.as_dict())
    assert counts[0] == counts[1]
    per_level = getattr(s, "ode_steps", 1)  # DAPS: its ODE's calls per level
    assert counts[0]["network_calls"] == steps * per_level
    assert counts[0]["vjps"] == (steps if s.needs_grad else 0)
    assert counts[0]["operator_applications"] >= steps
