"""What every zero-shot sampler shares: the parameter schedule (each knob checked against its domain), the interface,
the DDIM step and the divergence guard (NaN/Inf, or ``|x| > 1e3`` in network units: :func:`check_finite`).

Template (theory.md §4): at each sampling time ``tau_i`` the sampler forms a guided estimate ``x0_y`` of the clean
image from ``x0_hat = D(x_t, t)`` and the measurement, then takes a DDIM step from it with the re-derived noise
``eps' = (x_t - sqrt(abar_t) x0_y) / sqrt(1 - abar_t)``:

    x_{t-1} = sqrt(abar_{t-1}) x0_y + sqrt(1 - abar_{t-1} - s_t^2) eps' + s_t z,
    s_t = eta sqrt((1 - abar_{t-1}) / (1 - abar_t)) sqrt(1 - abar_t / abar_{t-1}).

After the last step (``abar_{t-1} := 1``) the output is the final ``x_{-1}``, which every sampler makes its clean
estimate. Everything happens in the network's [-1, 1] space,
where the measurement noise has std ``sigma = 2 sigma_y``. Image ``i``'s noise comes from (seed, i), so outputs never
depend on batch size or device count.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..diffusion.ddim import ddim_coefficients
from ..diffusion.denoisers import Denoiser
from ..diffusion.schedule import VPSchedule
from ..errors import ZSGuideError
from ..operators.base import LinearOperator
from ..operators.tasks import get_task
from ..seeding import randn_per_image
from .law import AffineStep, BlockLike, StepInputs, standard_initial


@dataclass
class ParamSchedule:
    """A sampler's per-step parameters: ``values[knob][i]`` applies at step i (time ``timesteps[i]``, decreasing); a
    value that is a list gives the knob per radial frequency band (samplers/bands.py; DiffPIR's ``lam`` on blur)."""

    method: str
    task: str
    steps: int
    spacing: str
    timesteps: list[int]
    values: dict[str, list[float]]
    provenance: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.timesteps) != self.steps:
            raise ZSGuideError(
                f"parameter schedule for {self.method}: {len(self.timesteps)} timesteps, expected {self.steps}"
            )
        for knob, vals in self.values.items():
            if len(vals) != self.steps:
                raise ZSGuideError(
                    f"parameter schedule for {self.method}: knob {knob!r} has {len(vals)} values, expected {self.steps}"
                )
            if not all(math.isfinite(v) for v in _flat(vals)):
                raise ZSGuideError(f"parameter schedule for {self.method}: knob {knob!r} has non-finite values")

    def value(self, knob: str, step: int) -> float:
        v = self.values[knob][step]
        if isinstance(v, (list, tuple)):
            raise ZSGuideError(
                f"parameter schedule for {self.method}: knob {knob!r} is given per frequency band, "
                f"which {self.method} does not take"
            )
        return float(v)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ParamSchedule:
        try:
            return cls(
                d["method"],
                d["task"],
                int(d["steps"]),
                d["spacing"],
                [int(t) for t in d["timesteps"]],
                {k: [_floats(v) for v in vs] for k, vs in d["values"].items()},
                d.get("provenance", {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ZSGuideError(f"malformed parameter schedule: {type(exc).__name__}: {exc}") from None

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> ParamSchedule:
        path = Path(path)
        if not path.is_file():
            raise ZSGuideError(f"parameter file {str(path)!r} does not exist")
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ZSGuideError(f"parameter file {str(path)!r} is not valid JSON: {exc}") from None
        return cls.from_dict(d)


def _floats(v):
    """A knob's value at one step: a float, or a list of floats (one per frequency band)."""
    return [float(x) for x in v] if isinstance(v, (list, tuple)) else float(v)


def _flat(vals):
    for v in vals:
        yield from (v if isinstance(v, (list, tuple)) else [v])


SEARCH_DECADES = 1.0  # a positive knob with no published search range is searched within 10^-+1 of its heuristic


@dataclass(frozen=True)
class Knob:
    """One knob of a sampler, as the registry describes it (what the designer, the CLIs and params.json rely on).

    ``domain``: ``unit`` for a knob in [0, 1] (the designer moves its odds), ``positive`` for one > 0 (the designer
    moves its log; spectral/design.py). ``per_band``: the knob may be given per radial frequency band on circulant
    operators (samplers/bands.py)."""

    name: str
    domain: str
    per_band: bool = False
    meaning: str = ""
    search: tuple[float, float, bool] | None = None  # (low, high, log): the peers' published search range
    search_source: str = ""  # where ``search`` comes from

    def __post_init__(self) -> None:
        if self.domain not in ("unit", "positive"):
            raise ValueError(f"knob {self.name!r}: domain must be 'unit' or 'positive', got {self.domain!r}")
        if self.search is not None and not (0 <= self.search[0] < self.search[1] and self.admits(self.search[1])):
            raise ValueError(f"knob {self.name!r}: search range {self.search} is not an interval of its domain")

    def search_range(self, heuristic: float) -> tuple[float, float, bool, str]:
        """``(low, high, log, source)``: the range a hyperparameter search draws this knob's scalar from (the
        peers' space, zsguide/search/space.py). The published range where the peers publish one (``search``, e.g.
        InverseBench's sweeps); otherwise the knob's domain [0, 1] for a ``unit`` knob, and for a ``positive`` one
        a decade either side of its heuristic value ``heuristic``, log-uniform (:data:`SEARCH_DECADES`)."""
        if self.search is not None:
            return (*self.search, self.search_source)
        if self.domain == "unit":
            return 0.0, 1.0, False, "the knob's domain [0, 1]"
        f = 10.0**SEARCH_DECADES
        return heuristic / f, heuristic * f, True, f"no published range: the heuristic x 10^-+{SEARCH_DECADES:g}"

    def admits(self, value: float) -> bool:
        """Whether ``value`` lies in the knob's domain: [0, 1] for ``unit``, > 0 for ``positive``."""
        return 0.0 <= value <= 1.0 if self.domain == "unit" else value > 0.0

    @property
    def domain_text(self) -> str:
        return "[0, 1]" if self.domain == "unit" else "> 0"


StepCallback = Callable[[int, int, torch.Tensor, torch.Tensor], None]  # (step, t, x_t, x0_y)


DIVERGENCE_BOUND = 1e3  # |x_t| beyond this (network units) is a diverged run: check_finite


def check_finite(x: torch.Tensor, sampler: str, step: int, t: int, indices: Sequence[int]) -> None:
    """Stop with a clear error naming the sampler, step, time and image index when a value is NaN or infinite, or when
    the state has diverged: ``|x| > DIVERGENCE_BOUND = 1e3`` in network units.

    Why 1e3: images are in [-1, 1] in network units, and every sampler's state is ``x_t = sqrt(abar_t) x0 +
    sqrt(1 - abar_t) eps`` with the noise of std ~1 (the DDIM step keeps its scale; DDRM's start is the same law
    given y), so a sane run stays within ``1 + 7 = 8`` (7 standard deviations: under 1e-11 per value) and its last
    state, the restoration, near [-1, 1]. Measured on the shipped prior with its network (20 steps, the six samplers'
    heuristics, sr4, inpaint_random, deblur_gaussian and deblur_motion, sigma_y up to 0.2): the largest ``|x|`` of any
    step was 5.2 (the guided estimate ``x0_y``, not checked here, reached 94). A guidance step that has blown up (DPS
    with zeta 1e38 reaches 2e35 at its first step) is past any such scale at once; 1e3 is about 200 times what a sane
    run reaches, so no valid run is stopped, and a restoration beyond it (PSNR below -54 dB) is no restoration."""
    flat = x.reshape(x.shape[0], -1)
    bad = ~torch.isfinite(flat).all(dim=1)
    if bool(bad.any()):
        first = int(torch.nonzero(bad)[0])
        raise ZSGuideError(
            f"sampler {sampler} produced NaN/Inf at step {step} (t={t}) for image index "
            f"{int(indices[first])}; the restoration was stopped, nothing was zeroed"
        )
    peak = flat.detach().abs().amax(dim=1)
    far = peak > DIVERGENCE_BOUND
    if bool(far.any()):
        first = int(torch.nonzero(far)[0])
        raise ZSGuideError(
            f"sampler {sampler} diverged at step {step} (t={t}) for image index {int(indices[first])}: |x| reached "
            f"{float(peak[first]):.3g}, beyond {DIVERGENCE_BOUND:g} in network units (images are in [-1, 1]); the "
            f"restoration was stopped"
        )


class Sampler(ABC):
    """A zero-shot posterior sampler: ``run(...)`` maps a measurement to one restoration per image."""

    name: str = ""
    knob_specs: tuple[Knob, ...] = ()
    exact: bool = False  # an exact posterior sampler under the surrogate (the oracle): nothing to design
    affine: bool = True  # with the analytic denoiser the step is affine in (x_t, y, z, x0_hat); DPS: not (its norm)
    needs_grad: bool = False  # differentiates through the denoiser (needs autograd outside inference mode)
    needs_surrogate: bool = False
    default_spacing: str = "uniform"
    reference: str = ""  # where the heuristic defaults come from
    no_law_reason: str = ""  # why a sampler without closed_form_step has none (analyze reports it)
    variant_of: str = ""  # a registered variant of another sampler (the same code, other integer settings: daps_fast)

    @property
    def closed_form(self) -> bool:
        """The spectral engine has its output law: the class states it with :meth:`closed_form_step`."""
        return type(self).closed_form_step is not Sampler.closed_form_step

    @property
    def designable(self) -> bool:
        """The spectral designer may move its knobs (spectral/design.py): it has a law and knobs and is not exact."""
        return self.closed_form and bool(self.knob_specs) and not self.exact

    @property
    def knobs(self) -> tuple[str, ...]:
        """The knobs' names, in the registry's order."""
        return tuple(k.name for k in self.knob_specs)

    def knob(self, name: str) -> Knob:
        """The registry entry of knob ``name``."""
        for k in self.knob_specs:
            if k.name == name:
                return k
        raise ZSGuideError(f"sampler {self.name} has no knob {name!r}; its knobs: {', '.join(self.knobs)}")

    @abstractmethod
    def heuristic_values(self, task: str, steps: int) -> dict[str, float | list[float]]:
        """The peers' hand-set defaults for ``task`` (constants or per-step lists)."""

    def heuristic(self, task: str, steps: int, schedule: VPSchedule, spacing: str | None = None) -> ParamSchedule:
        """The peers' defaults for ``task`` (a named task, operators/tasks.py: an unknown one is refused) as a
        :class:`ParamSchedule` of ``steps`` times of ``schedule``."""
        get_task(task)  # an unknown task has no defaults: refused, never given another family's
        spacing = spacing or self.default_spacing
        taus = schedule.timesteps(steps, spacing).tolist()
        vals = {
            k: (list(map(float, v)) if isinstance(v, (list, tuple)) else [float(v)] * steps)
            for k, v in self.heuristic_values(task, steps).items()
        }
        return ParamSchedule(
            self.name, task, steps, spacing, taus, vals, {"source": "heuristic", "reference": self.reference}
        )

    def check_params(self, params: ParamSchedule) -> None:
        if params.method != self.name:
            raise ZSGuideError(f"parameter schedule is for sampler {params.method!r}, not {self.name!r}")
        missing = [k for k in self.knobs if k not in params.values]
        if missing:
            raise ZSGuideError(f"parameter schedule for {self.name} lacks knob(s) {', '.join(missing)}")
        for knob in self.knob_specs:
            for i, v in enumerate(params.values[knob.name]):
                bad = [float(x) for x in (v if isinstance(v, (list, tuple)) else [v]) if not knob.admits(float(x))]
                if bad:
                    raise ZSGuideError(
                        f"parameter schedule for {self.name}: knob {knob.name!r} is {bad[0]:g} at step {i} "
                        f"(t={params.timesteps[i]}), outside its domain {knob.domain_text}"
                    )

    def run(
        self,
        denoiser: Denoiser,
        operator: LinearOperator,
        y: torch.Tensor,
        sigma: float,
        params: ParamSchedule,
        seed: int,
        indices: Sequence[int],
        surrogate=None,
        callback: StepCallback | None = None,
    ) -> torch.Tensor:
        """Restore a batch: ``y`` and ``sigma`` in network units; returns ``x0`` (B, C, H, W) in network units."""
        self.check_params(params)
        if sigma < 0:
            raise ZSGuideError(f"measurement noise must be >= 0, got sigma={sigma}")
        if self.needs_surrogate and surrogate is None:
            raise ZSGuideError(f"sampler {self.name} needs the Gaussian surrogate")
        abar = denoiser.schedule.alphas_cumprod
        taus = params.timesteps
        shape = (operator.image_shape[0], operator.image_shape[1], operator.image_shape[2])
        x = self.initial(operator, y, sigma, params, seed, indices, abar, shape)
        for i, t in enumerate(taus):
            a_t = float(abar[t])
            a_prev = float(abar[taus[i + 1]]) if i + 1 < len(taus) else 1.0

            def noise(stream: str, of_shape=shape, i=i, dtype=x.dtype, device=x.device) -> torch.Tensor:
                return randn_per_image(of_shape, seed, indices, f"{self.name}/{stream}{i}", dtype=dtype, device=device)

            x, x0_y = self.step(denoiser, operator, y, sigma, params, i, t, a_t, a_prev, x, noise, surrogate)
            check_finite(x, self.name, i, t, indices)
            if callback is not None:
                callback(i, t, x, x0_y)
        return x

    def initial(self, operator, y, sigma, params, seed, indices, abar, shape) -> torch.Tensor:
        """``x_T ~ N(0, I)`` from each image's own generator."""
        return randn_per_image(shape, seed, indices, f"{self.name}/init", dtype=y.dtype, device=y.device)

    @abstractmethod
    def step(self, denoiser, operator, y, sigma, params, i, t, a_t, a_prev, x, noise, surrogate):
        """One sampling step; returns ``(x_{t-1}, x0_y)``.

        ``noise(stream, of_shape=image shape)`` draws white noise from each image's own generator for this step.
        """

    def closed_form_step(self, step: StepInputs) -> AffineStep:
        """The law of one :meth:`step` with the analytic denoiser ``x0_hat = C_t x_t``, in a block problem's SVD
        coordinates (samplers/law.py): ``(A, b, E, Q)`` with ``x' = A x + b ybar + N(0, E)`` and ``Q`` the coefficient
        on ``x0_hat``, computed from the same coefficient functions as :meth:`step`. A sampler that does not define it
        has no closed form (``closed_form`` False): the spectral engine refuses it."""
        why = (
            self.no_law_reason
            or "its class does not define closed_form_step (docs/architecture.md, 'Adding a sampler')"
        )
        raise ZSGuideError(
            f"sampler {self.name} has no closed form: {why}, so the spectral engine cannot analyse or design it"
        )

    def design_penalty(self, p: BlockLike, params: ParamSchedule, abar: torch.Tensor, knobs) -> torch.Tensor | None:
        """A differentiable penalty (>= 0, 0 where the knobs are admissible) that the designer adds to its objective,
        for a constraint the law cannot express: a run the real sampler cannot follow in finite precision although its
        law is finite (DAPS's Langevin chain with ``|G| > 1`` grows by ``|G|^M`` before later levels shrink it). None:
        no constraint."""
        return None

    def closed_form_initial(self, p: BlockLike, a_T: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The law of :meth:`initial` given y, ``x_T ~ N(B ybar, V)`` per block at ``abar_T = a_T``: ``x_T ~ N(0, I)``
        (``B = 0``, ``V = I``) unless the sampler starts otherwise (DDRM)."""
        return standard_initial(p)


def ddim_from_estimate(
    x: torch.Tensor, x0_y: torch.Tensor, a_t: float, a_prev: float, eta: float, z: Callable[[], torch.Tensor]
) -> torch.Tensor:
    """The DDIM step of the module docstring from a guided estimate ``x0_y``; ``z()`` draws the fresh noise."""
    if a_prev >= 1.0:
        return x0_y
    eps = (x - math.sqrt(a_t) * x0_y) / math.sqrt(1 - a_t)
    c_eps, s = ddim_coefficients(a_t, a_prev, eta)
    out = math.sqrt(a_prev) * x0_y + c_eps * eps
    return out + s * z() if s > 0 else out
