"""RED-diff (Mardani et al., ICLR 2024, "A Variational Perspective on Solving Inverse Problems with Diffusion
Models"; reference code NVlabs/RED-diff ``algos/reddiff.py``, ``_configs/algo/reddiff.yaml``).

RED-diff optimises the mean ``mu`` of a variational distribution instead of running the reverse chain. From
``mu = A^+ y`` (the reference's ``H_pinv``: DDRM's ``H_functions``, which zero singular values below 3e-2; here those
at or below ``3e-2`` times the image's largest, :data:`START_CUT`: with the operators' own ``rcond`` of 1e-3 a noisy
blur's pseudo-inverse amplifies the noise 1000-fold and RED-diff does not recover from that start), at each time ``t`` from high to low, with fresh ``eps ~ N(0, I)``:

    x_t   = sqrt(abar_t) mu + sqrt(1 - abar_t) eps,     eps_hat = (x_t - sqrt(abar_t) D(x_t, t)) / sqrt(1 - abar_t)
    loss  = w_t mean((eps_hat - eps) mu) + v mean((y - A mu)^2) / 2,    w_t = lam sqrt(1 - abar_t) / sqrt(abar_t)

(``eps_hat`` held fixed: no gradient through the network), one optimiser step on ``mu``; the output is ``mu``. The
means are over one image's pixels (``d``) and its measured values (``m``: the operator's non-zero singular values,
what the reference's ``H.H`` returns: the kept pixels of an inpainting mask, ``d / 16`` for x4 super-resolution, ``d``
for blur), so the gradient is

    g = [ w_t (eps_hat - eps) + v (d / m) A^T (A mu - y) ] / d.

Two optimisers, two registry names:

- ``reddiff``: Adam (betas 0.9 / 0.99, eps 1e-8, as the reference) on ``g``. Its per-pixel scaling is not linear, so
  it has no closed form (``closed_form`` False: ``analyze`` and ``tune`` refuse it with that reason).
- ``reddiff_sgd``: ``mu <- mu - lr d g``, plain gradient descent with the step in per-pixel units (``d g`` does not
  depend on the image size). Under the analytic denoiser it is affine in ``(mu, y, eps)``, since
  ``w_t (eps_hat - eps) = lam (I - sqrt(abar_t) C_t) mu - lam sqrt(1 - abar_t) C_t eps``:

      mu' = [I - lr lam (I - sqrt(abar_t) C_t) - lr v (d/m) A^T A] mu + lr v (d/m) A^T y
            + lr lam sqrt(1 - abar_t) C_t eps

  per block: ``A = I - lr lam (I - sqrt(abar_t) C) - lr r H^H H``, ``b = lr r H^H``, ``E = (lr lam
  sqrt(1 - abar_t))^2 C C^H``, ``Q = lr lam I`` (``r = v d / m``, ``H`` the true operator, as the reference's data
  term uses it); the start ``B = [diag(s^+); 0]`` (truncated at :data:`START_CUT`), ``V = 0``.

Deliberate differences from the reference, each stated in tests/test_reference_reddiff.py: the means are per image
(the reference's run over the whole batch, which scales every gradient by the batch size: Adam hides it up to its
``eps``, SGD would not); ``sigma_x0 = 0`` (the reference YAML's value: ``x0_pred = mu``) and ``awd = True`` (the
network's own ``eps``, which is ``eps_hat`` above for an eps network). ``v`` (``obs_weight``, 1) is fixed: scaling it
with ``lam`` by c and ``lr`` by 1 / c gives the same step. Heuristic defaults: ``lam = 0.25``
(``grad_term_weight``), Adam ``lr = 0.1`` (the YAML; the README suggests 0.5), uniform steps (``num_steps`` 50 in the
reference's scripts, also 100 and 1000); SGD ``lr = 0.5``, ours (the reference has no SGD setting): on the per-pixel
scale a step moves a measured coordinate halfway to its data (for blur and x4 super-resolution, ``(d/m) s^2 <= 1``)
and a 50% inpainting mask's kept pixels onto it.
"""

from __future__ import annotations

import math

import torch

from .base import Knob, Sampler
from .cost import uncounted
from .law import AffineStep, StepInputs, embed, eye, mm

ADAM_BETAS = (0.9, 0.99)  # the reference's torch.optim.Adam(betas=(0.9, 0.99)) ("original: 0.999")
ADAM_EPS = 1e-8  # torch.optim.Adam's default
LAM = 0.25  # grad_term_weight
ADAM_LR = 0.1  # the reference YAML
SGD_LR = 0.5  # ours (module docstring)
START_CUT = 3e-2  # the start's pseudo-inverse drops s <= 3e-2 max(s): DDRM's H_functions' ZERO, which RED-diff uses


def measured_fraction_inverse(operator, like: torch.Tensor) -> torch.Tensor:
    """``d / m`` per image (B, 1, 1, 1): the image's size over its number of measured values (non-zero true singular
    values), the ratio of the two means in RED-diff's loss (module docstring)."""
    coeffs = uncounted(operator).Vt(like)  # for its layout only
    s = torch.broadcast_to(torch.as_tensor(operator.singulars, device=like.device), coeffs.shape)
    m = (s > 0).flatten(1).sum(1).to(torch.float64)
    d = float(like[0].numel())
    return (d / m).view(-1, 1, 1, 1)


def reddiff_gradient(denoiser, operator, y, x, t: int, a_t: float, lam: float, eps: torch.Tensor) -> torch.Tensor:
    """``d g`` of the module docstring for the state ``mu = x``: ``w_t (eps_hat - eps) + (d / m) A^T (A mu - y)``
    with ``v = 1``, ``eps_hat`` from the denoiser at ``x_t = sqrt(abar_t) mu + sqrt(1 - abar_t) eps`` (no gradient
    through it)."""
    s_t = math.sqrt(1 - a_t)
    x_t = math.sqrt(a_t) * x + s_t * eps
    with torch.no_grad():
        x0 = denoiser.x0(x_t, t)
    eps_hat = (x_t - math.sqrt(a_t) * x0) / s_t
    w_t = lam * s_t / math.sqrt(a_t)
    ratio = measured_fraction_inverse(operator, x).to(x.dtype)
    return w_t * (eps_hat - eps) + ratio * operator.A_adjoint(operator.A(x) - y)


def _ratio(p) -> float:
    """``d / m`` over a block problem's modelled image (the law's counterpart of :func:`measured_fraction_inverse`)."""
    w = torch.ones(p.s.shape[:-1], dtype=torch.float64) if p.weight is None else p.weight.to(torch.float64)
    return float((w * p.n).sum()) / float((w * (p.s > 0).sum(-1)).sum())


class _RedDiff(Sampler):
    """What both optimisers share: the start ``A^+ y``, the knobs, uniform steps, the gradient."""

    knob_specs = (
        Knob("lam", "positive", meaning="weight of the denoising (score) term, lambda of w_t = lambda / SNR_t^1/2"),
        Knob("lr", "positive", meaning="the optimiser's step size"),
    )
    reference = "Mardani et al. 2024 (NVlabs/RED-diff reddiff.yaml): lambda 0.25, Adam lr 0.1, mu_0 = H^+ y"

    def initial(self, operator, y, sigma, params, seed, indices, abar, shape) -> torch.Tensor:
        """``mu_0 = A^+ y``, the pseudo-inverse truncated at :data:`START_CUT` of the image's largest singular value
        (no noise)."""
        c = operator.Ut(y)
        s = torch.broadcast_to(torch.as_tensor(operator.singulars, device=c.device), c.shape).to(c.real.dtype)
        largest = s.flatten(1).amax(1).view(-1, *[1] * (c.dim() - 1))
        keep = s > START_CUT * largest
        return operator.V(torch.where(keep, c / torch.where(keep, s, torch.ones_like(s)), torch.zeros_like(c)))

    def closed_form_initial(self, p, a_T: float) -> tuple[torch.Tensor, torch.Tensor]:
        """``mu_0 = A^+ y``: ``B = [diag(s^+); 0]`` (``1 / s`` where ``s > START_CUT max(s)``, the true singular values
        ``p.s``), ``V = 0``."""
        s = p.s
        keep = s > START_CUT * float(s.max())
        inv = torch.where(keep, 1 / torch.where(keep, s, torch.ones_like(s)), torch.zeros_like(s)).to(p.dtype)
        return embed(inv, p.n), torch.zeros(*s.shape[:-1], p.n, p.n, dtype=p.dtype)


class RedDiffSGD(_RedDiff):
    name = "reddiff_sgd"

    def heuristic_values(self, task: str, steps: int) -> dict:
        return {"lam": LAM, "lr": SGD_LR}

    def step(self, denoiser, operator, y, sigma, params, i, t, a_t, a_prev, x, noise, surrogate):
        lam, lr = params.value("lam", i), params.value("lr", i)
        g = reddiff_gradient(denoiser, operator, y, x, t, a_t, lam, noise("eps"))
        x = x - lr * g
        return x, x

    def design_penalty(self, p, params, abar: torch.Tensor, knobs) -> torch.Tensor:
        """``sum_i (lr_i r s_max^2 - 1)_+^2``: a designed step may not move a measured coordinate past its data
        (gradient descent's monotone range, step <= 1 / L of the data term). The law allows up to twice that (the
        recursion is stable below 2 / L), but at the edge the data term no longer damps anything: on the shipped
        prior the unconstrained design of random inpainting (``lr = 1``, twice the heuristic, ``r = 2``) matched its
        law with the Wiener denoiser (MSE 0.0117 to 0.0044 on 8 patches) and fell to 8 dB with the network, whose
        errors the undamped recursion accumulates. The heuristic sits at 1 / L on inpainting (one step onto the
        kept pixels)."""
        s_max = float(p.s.max())
        r = _ratio(p)
        return sum((torch.relu(knobs["lr"][i] * r * s_max**2 - 1) ** 2 for i in range(params.steps)), torch.zeros(()))

    def closed_form_step(self, step: StepInputs) -> AffineStep:
        """:meth:`step` per block (module docstring): ``A = I - lr lam (I - sqrt(a) C) - lr r H^H H``,
        ``b = lr r H^H``, ``E = (lr lam sqrt(1 - a))^2 C C^H``, ``Q = lr lam``, ``r = d / m``."""
        p, C = step.p, step.C
        lam, lr = step.value("lam"), step.value("lr")
        a = step.a_t
        H = p.H()
        Hh = H.mH
        r = _ratio(p)
        A = eye(p) - lr * lam * (eye(p) - math.sqrt(a) * C) - lr * r * mm(Hh, H)
        g = lr * lam * math.sqrt(1 - a)
        return AffineStep(
            A, lr * r * Hh, g * g * mm(C, C.mH), lr * lam * torch.ones(*p.s.shape[:-1], p.n, dtype=p.dtype)
        )


class RedDiffAdam(_RedDiff):
    name = "reddiff"
    no_law_reason = "Adam's per-pixel step scaling is not linear (reddiff_sgd is the analysed and designable variant)"
    _moments: dict[str, torch.Tensor]  # Adam's moments, for the run in progress (:meth:`run`)

    def heuristic_values(self, task: str, steps: int) -> dict:
        return {"lam": LAM, "lr": ADAM_LR}

    def run(self, *args, **kwargs) -> torch.Tensor:
        """As :meth:`Sampler.run`, with Adam's moments kept for the run (per image, elementwise)."""
        self._moments = {}
        try:
            return super().run(*args, **kwargs)
        finally:
            self._moments = {}

    def step(self, denoiser, operator, y, sigma, params, i, t, a_t, a_prev, x, noise, surrogate):
        lam, lr = params.value("lam", i), params.value("lr", i)
        g = reddiff_gradient(denoiser, operator, y, x, t, a_t, lam, noise("eps")) / x[0].numel()
        m1 = self._moments.get("m", torch.zeros_like(x))
        m2 = self._moments.get("v", torch.zeros_like(x))
        b1, b2 = ADAM_BETAS
        m1 = b1 * m1 + (1 - b1) * g
        m2 = b2 * m2 + (1 - b2) * g * g
        self._moments.update(m=m1, v=m2)
        k = i + 1
        x = x - lr * (m1 / (1 - b1**k)) / ((m2 / (1 - b2**k)).sqrt() + ADAM_EPS)
        return x, x
