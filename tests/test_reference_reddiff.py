"""RED-diff against its reference code, written out literally (issue 25, with the fidelity tests of issue 23).

The reference: NVlabs/RED-diff ``algos/reddiff.py`` ``REDDIFF.sample`` and ``initialize`` with
``_configs/algo/reddiff.yaml`` (``awd: True``, ``sigma_x0: 0.0``, ``obs_weight: 1.0``, ``grad_term_weight: 0.25``,
``denoise_term_weight: "linear"``, ``lr: 0.1``). Per step, as lines 46-101 of that file compute it:

- ``x0_pred = mu + sigma_x0 * noise_x0`` (``sigma_x0 = 0``: ``x0_pred = mu``);
  ``xt = alpha_t.sqrt() * x0_pred + (1 - alpha_t).sqrt() * noise_xt``;
- ``et``: the model's eps (``awd``), for a denoiser given by its ``x0``: ``(xt - sqrt(alpha_t) x0_hat) /
  sqrt(1 - alpha_t)``, detached;
- ``e_obs = y_0 - H.H(x0_pred)``, ``loss_obs = (e_obs**2).mean() / 2``,
  ``loss_noise = torch.mul((et - noise_xt).detach(), x0_pred).mean()``;
- ``snr_inv = (1 - alpha_t).sqrt() / alpha_t.sqrt()``, ``w_t = grad_term_weight * snr_inv``, ``v_t = obs_weight``,
  ``loss = w_t * loss_noise + v_t * loss_obs``, ``optimizer.zero_grad(); loss.backward(); optimizer.step()`` with
  ``torch.optim.Adam([mu], lr, betas=(0.9, 0.99), weight_decay=0.0)``;
- ``initialize``: ``mu = H.H_pinv(y_0)``.

Here that is done with torch's own optimisers on a leaf tensor ``mu``, the operator a dense matrix ``H`` whose rows
are the measured values (the reference's ``H.H`` returns the kept pixels of an inpainting mask, the block means of
super-resolution, the whole blurred image), one image per batch (the reference's means run over the batch: the
project's are per image, a deliberate difference, stated in samplers/reddiff.py: each image of the package's batch
of two equals the reference run on that image alone, its batch of one). The denoiser is the surrogate's affine Wiener denoiser on both sides
and the noise the test's own tensors. ``reddiff_sgd`` is checked against ``torch.optim.SGD`` with ``lr d`` (the
project's per-pixel step, samplers/reddiff.py), every structure, random knobs and times, float64, to 1e-10.
"""

import pytest
import torch

from zsguide.samplers import get_sampler
from zsguide.samplers.reddiff import START_CUT

from .test_reference_pigdm_dps_diffpir import ABAR, STRUCTURES, C, Problem, S, _params, _truncated, _uniform

N = C * S * S
REL = 1e-10


def _rows(prob: Problem, b: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference's ``H.H``: the dense operator's measured rows (an inpainting mask keeps its observed pixels)."""
    H = prob.H[b]
    keep = H.abs().sum(1) > 0
    return H[keep], keep


def reference_steps(prob, b, y, mu0, ts, lam, lr, noises, optimiser):
    """The reference's loop for image ``b`` from ``mu0`` over times ``ts`` (high to low), with the noise
    ``noises[k]`` at step k; returns ``mu`` after each step."""
    Hm, keep = _rows(prob, b)
    y_0 = y[b].reshape(-1)[keep]
    mu = mu0.clone().requires_grad_(True)
    opt = optimiser([mu])
    out = []
    for k, t in enumerate(ts):
        alpha_t = ABAR[t]
        noise_xt = noises[k][b].reshape(-1)
        x0_pred = mu
        xt = alpha_t.sqrt() * x0_pred + (1 - alpha_t).sqrt() * noise_xt
        J, d = prob.affine_denoiser(t)
        x0_hat = J @ xt.detach() + d
        et = ((xt - alpha_t.sqrt() * x0_hat) / (1 - alpha_t).sqrt()).detach()
        e_obs = y_0 - Hm @ x0_pred
        loss_obs = (e_obs**2).mean() / 2
        loss_noise = torch.mul((et - noise_xt).detach(), x0_pred).mean()
        snr_inv = (1 - alpha_t).sqrt() / alpha_t.sqrt()
        w_t = lam * snr_inv
        loss = w_t * loss_noise + 1.0 * loss_obs
        opt.zero_grad()
        loss.backward()
        opt.step()
        out.append(mu.detach().clone())
    return out


def _run(prob, name, y, sigma, ts, lam, lr, noises):
    """The package's sampler over ``ts`` from its own start, the test's noise as the stream ``eps`` of each step."""
    sampler = get_sampler(name)
    params = _params(sampler, prob.task, {"lam": lam, "lr": lr})
    params.steps, params.timesteps = len(ts), list(ts)
    params.values = {"lam": [lam] * len(ts), "lr": [lr] * len(ts)}
    mu = sampler.initial(prob.op, y, sigma, params, 0, [0, 1], ABAR, (C, S, S))
    states = []
    if name == "reddiff":
        sampler._moments = {}
    for k, t in enumerate(ts):
        streams = []

        def noise(stream, of_shape=None, k=k, **_):
            streams.append(stream)
            return noises[k].clone()

        mu, _ = sampler.step(prob.den, prob.op, y, sigma, params, k, t, float(ABAR[t]), 1.0, mu, noise, prob.sur)
        assert streams == ["eps"], streams
        states.append(mu.clone())
    return mu, states


@pytest.mark.parametrize("name", list(STRUCTURES))
@pytest.mark.parametrize("sampler", ["reddiff", "reddiff_sgd"])
def test_reddiff_steps_are_the_reference_loop(name, sampler):
    """Four steps at random decreasing times from the start ``H^+ y`` (the dense SVD's pseudo-inverse without the
    singular values at or below 3e-2 of the largest: the package's start is checked against it through every state), ``lam`` in [0.1, 1], ``lr`` in [0.02, 0.3] (Adam) or
    [0.05, 0.6] (SGD, per pixel: the reference's SGD ``lr`` is ``lr d``), noisy measurements: every state equals the
    reference loop's to 1e-10, image by image (each image alone is the reference's batch of one)."""
    prob = Problem(name, seed=41 + list(STRUCTURES).index(name) + (7 if sampler == "reddiff_sgd" else 0))
    sigma = 0.1
    _, y, _ = prob.draw(sigma)
    g = prob.gen
    lam = _uniform(g, 0.1, 1.0)
    lr = _uniform(g, 0.02, 0.3) if sampler == "reddiff" else _uniform(g, 0.05, 0.6)
    ts = sorted(torch.randperm(998, generator=g)[:4].add(1).tolist(), reverse=True)
    noises = [torch.randn(2, C, S, S, generator=g, dtype=torch.float64) for _ in ts]
    _, states = _run(prob, sampler, y, sigma, ts, lam, lr, noises)
    for b in range(2):
        _, pinv, *_ = _truncated(prob.H[b], START_CUT)
        mu0 = pinv @ y[b].reshape(-1)  # the reference's H_pinv (DDRM's H_functions zero s below 3e-2)
        if sampler == "reddiff":
            optimiser = lambda p: torch.optim.Adam(p, lr=lr, betas=(0.9, 0.99), weight_decay=0.0)  # noqa: E731
        else:
            optimiser = lambda p: torch.optim.SGD(p, lr=lr * N)  # noqa: E731
        want = reference_steps(prob, b, y, mu0, ts, lam, lr, noises, optimiser)
        for k in range(len(ts)):
            got = states[k][b].reshape(-1)
            err = float((got - want[k]).abs().max()) / float(want[k].abs().max())
            assert err < REL, f"{sampler} {name} image {b} step {k}: relative error {err:.2e}"
