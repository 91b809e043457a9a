"""What a restoration costs, counted while it runs: network calls, vector-Jacobian products through the network and
operator applications, per image (issue 25: samplers compared at equal cost).

Every call a sampler makes processes its whole batch, so a count of calls is a count per image. :func:`counting`
wraps the denoiser and the operator of one run:

- ``network_calls``: calls of the denoiser's ``x0`` (or ``eps``); DAPS's inner ODE counts each of its calls;
- ``vjps``: backward passes through the network (DPS, PiGDM differentiate ``x0_hat`` with respect to ``x_t``),
  counted by an identity autograd function on the network's output whose backward increments the count;
- ``operator_applications``: applications of ``A``, ``A^T``, ``A^+`` and of the SVD's transforms ``V``, ``V^T``,
  ``U``, ``U^T`` (what each costs depends on the operator: an FFT, a mask; the count is what samplers are compared
  on); one applied inside an autograd graph counts twice (the backward applies its adjoint). DAPS applies its 100 Langevin steps at once in the SVD basis (samplers/daps.py): a few transforms, where the
  reference's loop applies ``A`` and ``A^T`` 200 times a level.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import torch

from ..diffusion.denoisers import Denoiser

OPERATOR_METHODS = ("A", "A_adjoint", "A_pinv", "V", "Vt", "U", "Ut")


@dataclass
class Cost:
    """Counts of one run, per image."""

    network_calls: int = 0
    vjps: int = 0
    operator_applications: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class _CountBackward(torch.autograd.Function):
    """The identity, whose backward adds one to ``cost.vjps``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, cost: Cost) -> torch.Tensor:
        ctx.cost = cost
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        ctx.cost.vjps += 1
        return grad, None


class CountingDenoiser(Denoiser):
    """``denoiser`` with its calls (and backward passes) counted in ``cost``."""

    def __init__(self, denoiser: Denoiser, cost: Cost) -> None:
        super().__init__(denoiser.schedule)
        self.inner, self.cost = denoiser, cost

    def x0(self, x_t: torch.Tensor, t) -> torch.Tensor:
        self.cost.network_calls += 1
        out = self.inner.x0(x_t, t)
        return _CountBackward.apply(out, self.cost) if out.requires_grad else out


def counting_operator(operator, cost: Cost):
    """A shallow copy of ``operator`` (same class: the samplers' ``isinstance`` dispatch holds; the same tensors)
    whose :data:`OPERATOR_METHODS` count their applications in ``cost``."""
    counted_op = copy.copy(operator)
    for name in OPERATOR_METHODS:
        method = getattr(operator, name)

        def counted(*args, _method=method, **kwargs):
            # an application inside a graph is applied again, adjoint, by the backward pass (DPS's residual)
            tracked = any(torch.is_tensor(a) and a.requires_grad for a in args)
            cost.operator_applications += 2 if tracked else 1
            return _method(*args, **kwargs)

        setattr(counted_op, name, counted)
    counted_op._uncounted = operator
    return counted_op


def counting(denoiser: Denoiser, operator, cost: Cost):
    """``(denoiser, operator)`` wrapped so that a sampler run with them adds its counts to ``cost``."""
    return CountingDenoiser(denoiser, cost).to(denoiser.alphas_cumprod.device), counting_operator(operator, cost)


def uncounted(operator):
    """The operator itself, outside any count: for a query of its layout that applies nothing of substance."""
    return getattr(operator, "_uncounted", operator)
