"""Adding a sampler through the documented path only (docs/architecture.md, "Adding a sampler"): subclass ``Sampler``,
give it knobs, ``heuristic_values``, ``step`` and its law ``closed_form_step`` (both from one shared coefficient
function), register it. The registry then lists it as having a closed form and designable, its law is held to its
step by the sync test's own machinery (tests/test_transfer_sync.py) and to Monte Carlo of its code by the central
test's (tests/test_spectral_transfer.py), and the designer runs on it. A sampler without a law is listed as neither
and refused by the spectral engine with an error naming it."""

import math

import pytest
import torch

import zsguide.samplers as samplers
from zsguide.errors import ZSGuideError
from zsguide.samplers import get_sampler, register_sampler, sampler_names
from zsguide.samplers.base import Knob, Sampler, ddim_from_estimate
from zsguide.samplers.law import AffineStep, StepInputs, col, embed, safe_inv
from zsguide.samplers.svd import effective_singulars
from zsguide.spectral.criteria import Criteria
from zsguide.spectral.design import design
from zsguide.spectral.transfer import transfer

from .test_spectral_transfer import test_output_law_given_y_matches_monte_carlo as check_monte_carlo
from .test_transfer_sync import SCHED, TASKS, _setup, assert_law_is_step


def projection_gain(s: torch.Tensor, weight) -> torch.Tensor:
    """The toy's correction per singular value: ``g = weight`` on the kept range, 0 where ``s = 0`` (shared by its
    step and its law, as every sampler's coefficients are)."""
    return weight * (s > 0).to(s.dtype)


class Projection(Sampler):
    """A toy: a damped range-space projection, ``x0_y = x0_hat - V diag(g) s^+ (s c0 - cy)``, then the DDIM step."""

    name = "projection"
    knob_specs = (
        Knob("weight", "positive", meaning="share of the range-space correction"),
        Knob("eta", "unit", meaning="stochasticity of the DDIM step"),
    )
    reference = "a test's toy"

    def heuristic_values(self, task: str, steps: int) -> dict:
        return {"weight": 0.8, "eta": 0.5}

    def step(self, denoiser, operator, y, sigma, params, i, t, a_t, a_prev, x, noise, surrogate):
        w, eta = params.value("weight", i), params.value("eta", i)
        with torch.no_grad():
            x0 = denoiser.x0(x, t)
        c0, cy = operator.Vt(x0), operator.Ut(y)
        s, s_pinv = effective_singulars(operator, c0.real)
        x0_y = x0 - operator.V(projection_gain(s, w) * s_pinv * (s * c0 - cy))
        return ddim_from_estimate(x, x0_y, a_t, a_prev, eta, lambda: noise("z")), x0_y

    def closed_form_step(self, step: StepInputs) -> AffineStep:
        """``x0_y = X x + Y ybar``, ``X = diag(1 - g) C``, ``Y = [diag(g / s); 0]``, composed with the DDIM step."""
        p = step.p
        g = projection_gain(step.s, step.value("weight"))
        keep = 1 - g
        X, Y = col(keep.to(p.dtype)) * step.C, embed((g * safe_inv(step.s))[..., : p.m].to(p.dtype), p.n)
        A, b, E, k1 = step.ddim(X, Y, 0.0, step.value("eta"))
        return AffineStep(A, b, E, k1 * keep)


class NoLaw(Sampler):
    """A sampler with a step and knobs but no closed form."""

    name = "nolaw"
    knob_specs = (Knob("eta", "unit"),)

    def heuristic_values(self, task: str, steps: int) -> dict:
        return {"eta": 1.0}

    def step(self, denoiser, operator, y, sigma, params, i, t, a_t, a_prev, x, noise, surrogate):
        with torch.no_grad():
            x0 = denoiser.x0(x, t)
        return ddim_from_estimate(x, x0, a_t, a_prev, params.value("eta", i), lambda: noise("z")), x0


@pytest.fixture
def registry(monkeypatch):
    """The registry with the two samplers added (register_sampler), restored after the test."""
    monkeypatch.setattr(samplers, "SAMPLERS", dict(samplers.SAMPLERS))
    register_sampler(Projection())
    register_sampler(NoLaw())


def test_the_registry_describes_what_a_sampler_provides(registry):
    toy, nolaw = get_sampler("projection"), get_sampler("nolaw")
    assert toy.closed_form and toy.designable and toy.affine and not toy.exact
    assert "projection" in sampler_names(closed_form=True) and "projection" in sampler_names(designable=True)
    assert not nolaw.closed_form and not nolaw.designable
    assert "nolaw" in sampler_names(closed_form=False) and "nolaw" in sampler_names(designable=False)
    with pytest.raises(ZSGuideError, match="cannot register sampler 'projection'"):
        register_sampler(Projection())


@pytest.mark.parametrize("task", list(TASKS))
def test_a_new_samplers_law_is_its_step(registry, task):
    assert_law_is_step(get_sampler("projection"), task, seed=17 + list(TASKS).index(task))


def test_a_new_samplers_law_matches_monte_carlo_of_its_code(registry):
    check_monte_carlo("deblur_gaussian", "projection", 10)


def test_a_new_sampler_can_be_designed(registry):
    _, _, p = _setup("deblur_gaussian")
    heuristic = get_sampler("projection").heuristic("deblur_gaussian", 6, SCHED)
    result = design("projection", p, heuristic, SCHED.alphas_cumprod, max_iter=5)
    assert result.designed["avg_w2"] <= result.heuristic["avg_w2"]
    assert math.isfinite(float(Criteria(p)(transfer("projection", p, result.params, SCHED.alphas_cumprod))["mse"]))


def test_a_sampler_without_a_law_is_refused_naming_it(registry):
    _, _, p = _setup("deblur_gaussian")
    params = get_sampler("nolaw").heuristic("deblur_gaussian", 6, SCHED)
    with pytest.raises(ZSGuideError, match="sampler nolaw has no closed form"):
        transfer("nolaw", p, params, SCHED.alphas_cumprod)
    with pytest.raises(ZSGuideError, match="sampler nolaw has no closed form"):
        design("nolaw", p, params, SCHED.alphas_cumprod)
    C, _ = p.denoiser_at(0.5)
    knobs = {"eta": torch.ones(6, dtype=torch.float64)}
    with pytest.raises(ZSGuideError, match="sampler nolaw has no closed form"):
        get_sampler("nolaw").closed_form_step(StepInputs(p, C, 0.5, 0.6, knobs, 0))
