"""zsguide's Python API: load a prior, measure, design, restore and predict, in pixel units.

Every command line is a shell over these functions, so a notebook and ``python -m zsguide restore`` give the same
restorations bit for bit for the same seed and image indices (tests/test_api.py). Units: images in [0, 1], the
measurement noise ``sigma_y`` in [0, 1] pixel units (``noise_convention="network"`` takes it in the network's
[-1, 1] units instead, as ``--noise_convention`` does); the network's units stay inside. Defaults are the command
line's (``--steps`` 20, ``--params heuristic``, the trust region ``--trust_factor 2`` for designs): no argument means
something else here than its option there.

    >>> import zsguide
    >>> prior = zsguide.load_prior("checkpoints/patches32.ckpt")
    >>> images, indices = prior.test_images(2)
    >>> m = zsguide.measure(images, "deblur_gaussian", sigma_y=0.01, indices=indices)
    >>> out = zsguide.restore(prior, m, "ddrm", steps=10, params="spectral")
    >>> tuple(out.images.shape), out.params.provenance["source"]
    ((2, 3, 32, 32), 'spectral')
    >>> p = zsguide.predict(prior, "deblur_gaussian", "ddrm", steps=10, sigma_y=0.01, params=out.params)
    >>> sorted(p)[:3]
    ['avg_w2', 'mmse', 'mse']
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import torch

from .checkpoint import image_shape as checkpoint_image_shape
from .checkpoint import load_score_module
from .diffusion.denoisers import Denoiser
from .errors import ZSGuideError
from .evaluation.metrics import image_metrics
from .operators import TASK_NAMES, make_operator
from .operators.base import LinearOperator
from .parameters import DEFAULT_STEPS, check_schedule, param_schedule, record_design_inputs
from .restoration import (
    check_images,
    check_measurement,
    network_sigma,
    run_sampler,
    to_network_units,
    to_pixel_units,
)
from .samplers import ParamSchedule, Sampler, get_sampler, sampler_names
from .samplers.cost import Cost
from .spectral.options import DesignOptions

if TYPE_CHECKING:
    from .diffusion.module import ScoreModule
    from .diffusion.schedule import VPSchedule
    from .prior_file import PriorModule
    from .surrogate import GaussianSurrogate

PIXEL_SQUARED = 4.0  # a squared quantity in network units [-1, 1] is 4 times its value in pixel units [0, 1]


@dataclass
class Prior:
    """A diffusion prior and its Gaussian surrogate, from a ``fit`` checkpoint or a ``prior`` file.

    ``network_denoiser()`` is the trained (EMA) network, ``analytic_denoiser()`` the surrogate's Wiener filter; both
    work in network units on the VP schedule ``schedule``. The network's parameters are frozen (only ``x_t`` is
    differentiated, by DPS and PiGDM)."""

    path: Path
    module: Union[ScoreModule, PriorModule]
    meta: dict

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the images the prior was made for."""
        return checkpoint_image_shape(self.meta)

    @property
    def surrogate(self) -> GaussianSurrogate:
        """The Gaussian surrogate: mean and power spectrum (surrogate.py)."""
        return self.module.surrogate

    @property
    def schedule(self) -> VPSchedule:
        """The variance-preserving schedule the network was trained on."""
        return self.module.schedule

    @property
    def device(self) -> torch.device:
        """Where the network and the surrogate are (:meth:`to` moves them); restorations come back there."""
        return next(iter(self.module.buffers())).device

    @property
    def dtype(self) -> torch.dtype:
        """The network's floating-point type (float32 as loaded): what :func:`restore` runs in."""
        return next(p.dtype for p in self.module.parameters() if p.is_floating_point())

    @property
    def clipped(self) -> bool:
        """Whether the prior's data are images clipped to [0, 1] (every data set but the Gaussian testbed's fields,
        which the commands measure and score unclipped): pass it as :func:`measure`'s ``check_range`` and
        :func:`image_metrics`' ``clip``."""
        return (self.meta.get("data") or {}).get("name") != "gaussian"

    @classmethod
    def from_module(
        cls, module: Any, *, path: str | Path | None = None, data: Mapping[str, Any] | None = None
    ) -> Prior:
        """The prior of a live module, as it is now: a :class:`~zsguide.diffusion.module.ScoreModule` being trained,
        a prior file's module, or any ``torch.nn.Module`` with ``network_denoiser()``, ``analytic_denoiser()``,
        ``surrogate``, ``schedule`` and ``image_shape`` (what :class:`~zsguide.RestorationCallback` restores with).
        ``path`` names it in messages and locates a calibration next to it (default ``<ClassName>``); ``data``
        (``{"name": ...}``) decides :attr:`clipped`. Parameters are neither copied nor frozen."""
        missing = [a for a in ("network_denoiser", "surrogate", "schedule", "image_shape") if not hasattr(module, a)]
        if missing:
            raise ZSGuideError(
                f"{type(module).__name__} is not a prior: it lacks {', '.join(missing)} (a ScoreModule or a prior "
                f"file's module has them)"
            )
        meta = {"image_shape": [int(v) for v in module.image_shape], "data": dict(data or {})}
        return cls(Path(path) if path is not None else Path(f"<{type(module).__name__}>"), module, meta)

    def network_denoiser(self) -> Denoiser:
        """The trained network's (EMA weights) denoiser, ``x0_hat = D(x_t, t)`` in network units."""
        return self.module.network_denoiser()

    def analytic_denoiser(self) -> Denoiser:
        """The surrogate's Wiener denoiser (exact for the Gaussian surrogate), ``x0_hat = C_t x_t`` in network units."""
        return self.module.analytic_denoiser()

    def denoiser(self, kind: str = "network") -> Denoiser:
        """``network`` or ``analytic``, as ``restore --denoiser`` takes it."""
        if kind not in ("network", "analytic"):
            raise ZSGuideError(f"denoiser must be 'network' or 'analytic', got {kind!r}")
        return self.network_denoiser() if kind == "network" else self.analytic_denoiser()

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> Prior:
        """Move the prior (network and surrogate) to ``device`` and/or cast it to ``dtype``; returns itself."""
        self.module.to(device=device, dtype=dtype)
        return self

    def test_images(self, num_images: int | None = None, **data: Any) -> tuple[torch.Tensor, list[int]]:
        """The first ``num_images`` held-out test images of the data the prior was made with (``--data.*``
        overrides as keyword arguments), as ``restore`` takes them: ``(images (N, C, H, W) in [0, 1], indices)``."""
        from .runtime.heldout import held_out_images

        _, dataset, indices = held_out_images(
            self.meta, self.image_shape, num_images=num_images, data=data, ckpt_path=str(self.path)
        )
        images = torch.stack([dataset[i]["image"] for i in range(len(dataset))])
        return images, indices


def load_prior(path: str | Path, device: str | torch.device = "cpu") -> Prior:
    """The prior in ``path``: a ``python -m zsguide fit`` checkpoint or a ``python -m zsguide prior`` file (whose
    network file is checked against its recorded size and sha256). Read without unpickling code.

    >>> prior = load_prior("checkpoints/patches32.ckpt")
    >>> prior.image_shape, prior.schedule.num_timesteps
    ((3, 32, 32), 1000)
    """
    module, meta = load_score_module(path, map_location=device)
    module.requires_grad_(False).eval()
    return Prior(Path(path), module, meta)


@dataclass
class Measurement:
    """A measurement ``y = A x + sigma_y n`` of images x in [0, 1], with what made it.

    ``y`` is in pixel units, at the measurement's own shape (the low-resolution image for super-resolution);
    ``y_network`` is the same measurement in the network's units, ``A (2 x - 1) + sigma P n``, which the samplers
    take. ``operator`` is per image when the task draws per image (random masks, motion kernels)."""

    y_network: torch.Tensor
    operator: LinearOperator
    task: str
    sigma_y: float
    seed: int
    indices: list[int]
    noise_convention: str = "pixel"
    task_params: dict = field(default_factory=dict)

    @property
    def y(self) -> torch.Tensor:
        """The measurement in pixel units, ``(y_network + A 1) / 2``."""
        return to_pixel_units(self.y_network, self.operator)

    @property
    def sigma_network(self) -> float:
        """The noise std in network units (``2 sigma_y`` in the pixel convention)."""
        return network_sigma(self.sigma_y, self.noise_convention)

    @classmethod
    def from_pixels(
        cls,
        y: torch.Tensor,
        task: str,
        image_shape: Sequence[int],
        sigma_y: float,
        *,
        seed: int = 0,
        noise_convention: str = "pixel",
        **task_params: Any,
    ) -> Measurement:
        """A measurement you already have, ``y`` (C, h, w) or (1, C, h, w) in pixel units, as ``restore --input``
        reads it: the operator of image index 0 for ``seed``, ``y`` mapped to network units by
        ``U U^T (2 y - A 1)``. Restore it several times with ``indices``-distinct samples via :func:`restore`'s
        ``indices``. ``y`` must be finite and lie in [0, 1] widened by its noise, ``8 sigma_y + 0.01`` (pixel units;
        :func:`zsguide.restoration.check_measurement`), where the operator observes it."""
        shape = tuple(int(v) for v in image_shape)
        operator = make_operator(task, shape, seed, [0], **task_params)
        y = torch.as_tensor(y).detach().cpu()
        if y.ndim not in (3, 4) or (y.ndim == 4 and y.shape[0] != 1):
            raise ZSGuideError(f"a measurement is (C, h, w) or (1, C, h, w), got shape {tuple(y.shape)}")
        y = y.reshape(y.shape[-3:])
        if tuple(y.shape) != tuple(operator.measurement_shape):
            raise ZSGuideError(
                f"measurement of shape {tuple(y.shape)} does not match task {task!r} on {shape} images, which "
                f"measures {tuple(operator.measurement_shape)}"
            )
        check_measurement(y, operator, network_sigma(float(sigma_y), noise_convention))
        y_net = to_network_units(y, operator).to(torch.float32)
        return cls(
            y_net, operator.to(dtype=torch.float32), task, float(sigma_y), seed, [0], noise_convention, task_params
        )


def measure(
    images: torch.Tensor,
    task: str,
    sigma_y: float,
    seed: int = 0,
    indices: Sequence[int] | None = None,
    *,
    noise_convention: str = "pixel",
    check_range: bool = True,
    **task_params: Any,
) -> Measurement:
    """Measure ``images`` (B, C, H, W) in [0, 1] with ``task`` and noise ``sigma_y`` exactly as the commands do:
    image ``indices[i]``'s operator (mask, kernel) and noise come from ``(seed, indices[i])`` (default indices
    ``0 .. B-1``), so the measurement of an image never depends on the batch it is in. Images that are not finite
    or leave [0, 1] are refused (:func:`zsguide.restoration.check_images`); ``check_range=False`` keeps only the
    finiteness check, for the Gaussian testbed's images, which are not clipped by design (data/gaussian.py).

        x = 2 images - 1,   y_network = A x + sigma P n,   sigma = 2 sigma_y (pixel convention)

    >>> images = torch.full((2, 3, 32, 32), 0.5)
    >>> m = measure(images, "sr4", sigma_y=0.0)
    >>> tuple(m.y.shape), m.sigma_network, bool(torch.allclose(m.y, torch.full_like(m.y, 0.5)))
    ((2, 3, 8, 8), 0.0, True)
    """
    images = torch.as_tensor(images).detach()
    if images.ndim != 4:
        raise ZSGuideError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
    idx = list(range(images.shape[0])) if indices is None else [int(i) for i in indices]
    if len(idx) != images.shape[0]:
        raise ZSGuideError(f"{len(idx)} indices for {images.shape[0]} images")
    if check_range:
        check_images(images)
    elif not bool(torch.isfinite(images).all()):
        raise ZSGuideError("images hold NaN or infinite values")
    sigma = network_sigma(float(sigma_y), noise_convention)
    x = 2 * images - 1
    op = make_operator(task, tuple(images.shape[1:]), seed, idx, **task_params).to(x.device, x.dtype)
    y = op.measure(x, sigma, op.noise_for(seed, idx, dtype=x.dtype, device=x.device))
    return Measurement(y, op, task, float(sigma_y), int(seed), idx, noise_convention, dict(task_params))


def _sampler(sampler: str | Sampler) -> Sampler:
    return sampler if isinstance(sampler, Sampler) else get_sampler(sampler)


def _options(design: DesignOptions | Mapping[str, Any] | None) -> DesignOptions:
    """Design options given as a :class:`DesignOptions`, a mapping of them, or None (the command line's defaults)."""
    if isinstance(design, DesignOptions):
        return design.checked(lambda name: f"design.{name}")
    return design_options(**dict(design or {}))


def heuristic(
    prior: Prior, task: str, sampler: str | Sampler, steps: int = DEFAULT_STEPS, spacing: str | None = None
) -> ParamSchedule:
    """The peers' hand-set parameters of ``sampler`` for ``task`` at ``steps`` on the prior's timesteps
    (docs/peers.md), as ``--params heuristic`` runs them; ``spacing`` default: the sampler's.

    >>> prior = load_prior("checkpoints/patches32.ckpt")
    >>> h = heuristic(prior, "sr4", "ddrm", steps=4)
    >>> h.timesteps, h.values["eta"]
    ([999, 666, 333, 0], [0.85, 0.85, 0.85, 0.85])
    """
    return _sampler(sampler).heuristic(task, int(steps), prior.schedule, spacing=spacing)


def design_options(**options: Any) -> DesignOptions:
    """The design options (:class:`~zsguide.spectral.options.DesignOptions`: ``trust_factor``, ``pareto_guard``,
    ``objective``, ``denoiser_model``, ``calibration``) as keyword arguments, with the command line's defaults for
    those left out, checked. As on the command line, ``trust_factor`` left out (None) is the default trust region
    (every knob within a factor 2 of its heuristic) and ``"none"`` the unconstrained optimum.

    >>> design_options(trust_factor="none").label()
    'spectral_free'
    """
    unknown = sorted(set(options) - set(DesignOptions.names()))
    if unknown:
        raise ZSGuideError(
            f"unknown design option(s) {', '.join(unknown)}; the design options: {', '.join(DesignOptions.names())}"
        )
    return DesignOptions(**options).checked(lambda name: name)


def design(
    prior: Prior,
    task: str,
    sampler: str | Sampler,
    steps: int = DEFAULT_STEPS,
    sigma_y: float = 0.01,
    objective: str = "w2",
    *,
    spacing: str | None = None,
    seed: int = 0,
    index: int = 0,
    noise_convention: str = "pixel",
    task_params: dict | None = None,
    **options: Any,
) -> ParamSchedule:
    """The spectrally designed parameter schedule of ``sampler`` for ``task`` at ``steps`` and ``sigma_y``: the
    object ``tune``'s params.json holds, with its provenance (the closed-form predictions, the cache key, the noise
    and task parameters). It is what ``restore --params spectral`` runs, designed on the operator of image ``index``
    for ``seed`` (the first image's, as restore does) and kept in the design cache (``$ZSGUIDE_CACHE``).
    ``objective`` and ``options`` are the design options (:func:`design_options`: ``trust_factor``,
    ``pareto_guard``, ``denoiser_model``, ``calibration``), with the command line's defaults.

    >>> prior = load_prior("checkpoints/patches32.ckpt")
    >>> p = design(prior, "sr4", "ddnm", steps=5, sigma_y=0.02)
    >>> p.method, len(p.values["eta"]), p.provenance["predicted_designed"]["avg_w2"] <= (
    ...     p.provenance["predicted_heuristic"]["avg_w2"])
    ('ddnm', 5, True)
    """
    spec = _sampler(sampler)
    operator = make_operator(task, prior.image_shape, seed, [index], **(task_params or {}))
    params, _ = param_schedule(
        "spectral",
        spec,
        prior.module,
        operator,
        network_sigma(float(sigma_y), noise_convention),
        task=task,
        steps=steps,
        spacing=spacing,
        design=design_options(objective=objective, **options),
        ckpt_path=str(prior.path),
        option="design",
    )
    record_design_inputs(params, task_params or {}, float(sigma_y), noise_convention)
    return params


def _schedule(
    prior: Prior,
    spec: Sampler,
    params: str | Path | ParamSchedule,
    operator: LinearOperator,
    sigma_net: float,
    *,
    task: str,
    steps: int | None,
    spacing: str | None,
    design: DesignOptions | Mapping[str, Any] | None,
) -> ParamSchedule:
    """``params`` as :func:`restore` and :func:`predict` take it: a schedule (checked against the sampler, the task,
    ``steps`` / ``spacing`` when given and the prior's timesteps), or ``heuristic`` / ``spectral`` / a params.json."""
    if isinstance(params, ParamSchedule):
        check_schedule(params, spec, prior.schedule, task=task, steps=steps, spacing=spacing, option="")
        return params
    schedule, _ = param_schedule(
        str(params),
        spec,
        prior.module,
        operator,
        sigma_net,
        task=task,
        steps=steps,
        spacing=spacing,
        design=_options(design),
        ckpt_path=str(prior.path),
        option="params",
    )
    return schedule


@dataclass
class Restoration:
    """Restored images in pixel units (B, C, H, W), unclipped as computed, on the prior's device and in its dtype,
    the parameter schedule used, and what the run cost per image (``network_calls``, ``vjps``,
    ``operator_applications``: counted, zsguide/samplers/cost.py)."""

    images: torch.Tensor
    params: ParamSchedule
    indices: list[int]
    cost: dict[str, int] = field(default_factory=dict)


def restore(
    prior: Prior,
    measurement: Measurement,
    sampler: str | Sampler,
    steps: int | None = None,
    params: str | Path | ParamSchedule = "heuristic",
    seed: int | None = None,
    *,
    denoiser: str | Denoiser = "network",
    spacing: str | None = None,
    design: DesignOptions | Mapping[str, Any] | None = None,
    indices: Sequence[int] | None = None,
    callback: Callable[[int, int, torch.Tensor, torch.Tensor], None] | None = None,
) -> Restoration:
    """Restore ``measurement`` with ``sampler`` (a name or a :class:`~zsguide.samplers.Sampler`) and the prior's
    ``denoiser`` (``network``, ``analytic``, or any :class:`~zsguide.diffusion.denoisers.Denoiser` on the prior's
    schedule).

    ``params``: ``"heuristic"`` (the peers' defaults), ``"spectral"`` (:func:`design` on the measurement's first
    operator, with ``design`` options, a :class:`DesignOptions` or a mapping, default the command line's), a
    :class:`ParamSchedule` (checked against the sampler, the task and ``steps`` / ``spacing`` when given), or a
    params.json path. ``steps``: default 20 (or the schedule's own). ``seed``: the sampler's noise seed, default the
    measurement's (one ``--seed`` for everything, as the command line). ``indices``: the images' indices for the
    sampler's noise (default the measurement's; with one measurement of several samples,
    :meth:`Measurement.from_pixels`, give one index per sample). ``callback(step, t, x_t, x0_y)`` sees each step's
    state and guided estimate in network units ([-1, 1]). The run is in the prior's dtype on its device (the
    measurement is moved there); gradients (DPS and PiGDM differentiate through the denoiser) are handled here, also
    inside ``torch.inference_mode()``; the result is detached.

    >>> prior = load_prior("checkpoints/patches32.ckpt")
    >>> images, indices = prior.test_images(1)
    >>> m = measure(images, "inpaint_box", sigma_y=0.02, indices=indices)
    >>> out = restore(prior, m, "dps", steps=3)
    >>> tuple(out.images.shape), out.indices, out.params.values["zeta"]
    ((1, 3, 32, 32), [0], [0.5, 0.5, 0.5])
    """
    spec = _sampler(sampler)
    if tuple(measurement.operator.image_shape) != tuple(prior.image_shape):
        raise ZSGuideError(
            f"the measurement is of {tuple(measurement.operator.image_shape)} images, but the prior {str(prior.path)!r} "
            f"was made for {prior.image_shape} (C, H, W)"
        )
    seed = measurement.seed if seed is None else int(seed)
    idx = list(measurement.indices) if indices is None else [int(i) for i in indices]
    op, y = measurement.operator, measurement.y_network
    if len(idx) != y.shape[0]:
        if y.shape[0] != 1:
            raise ZSGuideError(f"{len(idx)} indices for a measurement of {y.shape[0]} images")
        y = y.expand(len(idx), *y.shape[1:])
    schedule = _schedule(
        prior,
        spec,
        params,
        make_operator(
            measurement.task, prior.image_shape, measurement.seed, measurement.indices[:1], **measurement.task_params
        ),
        measurement.sigma_network,
        task=measurement.task,
        steps=steps,
        spacing=spacing,
        design=design,
    )
    device, dtype = prior.device, prior.dtype
    cost = Cost()
    x0 = run_sampler(
        spec,
        denoiser if isinstance(denoiser, Denoiser) else prior.denoiser(denoiser),
        op.to(device, dtype),
        y.to(device, dtype),
        sigma_net=measurement.sigma_network,
        params=schedule,
        seed=seed,
        indices=idx,
        surrogate=prior.surrogate,
        callback=callback,
        cost=cost,
    )
    return Restoration((x0 + 1) / 2, schedule, idx, cost.as_dict())


def predict(
    prior: Prior,
    task: str,
    sampler: str | Sampler,
    steps: int = DEFAULT_STEPS,
    sigma_y: float = 0.01,
    params: str | Path | ParamSchedule = "heuristic",
    *,
    design: DesignOptions | Mapping[str, Any] | None = None,
    spacing: str | None = None,
    seed: int = 0,
    index: int = 0,
    noise_convention: str = "pixel",
    task_params: dict | None = None,
) -> dict[str, float]:
    """The closed-form numbers ``analyze`` reports for ``sampler`` run with ``params`` (``heuristic``,
    ``spectral``, a schedule or a params.json) at noise ``sigma_y``, under the prior's Gaussian surrogate (or the
    calibrated denoiser model of ``design``'s ``denoiser_model``): per pixel, squared, in [0, 1] pixel units
    (theory.md §5):

    - ``avg_w2``: W2^2 from the sampler's output law given y to the posterior, averaged over y, and its two parts
      ``w2_mean`` (the means' distance) and ``w2_cov`` (the covariances' Bures distance);
    - ``mse``: the expected squared error to the truth (what ``restore`` measures as ``mse_unclipped_mean``: the
      restoration as computed, before clipping);
    - ``perception_w2``: W2^2 from the output marginal to the prior;
    - references: ``mmse`` and ``posterior_sampler_mse`` (= 2 mmse).

    A schedule designed at another noise level is predicted at this one (its provenance records its own).

    >>> prior = load_prior("checkpoints/patches32.ckpt")
    >>> p = predict(prior, "sr4", "oracle", steps=10, sigma_y=0.02)  # the oracle samples the posterior exactly
    >>> p["avg_w2"] < 1e-6 * p["mmse"], abs(p["mse"] - p["posterior_sampler_mse"]) < 1e-6 * p["mse"]
    (True, True)
    """
    from .spectral.criteria import Criteria
    from .spectral.denoiser_model import denoiser_model_for
    from .spectral.service import block_problem
    from .spectral.transfer import transfer

    spec = _sampler(sampler)
    options = _options(design)
    operator = make_operator(task, prior.image_shape, seed, [index], **(task_params or {}))
    sigma = network_sigma(float(sigma_y), noise_convention)
    schedule = _schedule(prior, spec, params, operator, sigma, task=task, steps=steps, spacing=spacing, design=options)
    model = denoiser_model_for(options.denoiser_model, prior.surrogate, str(prior.path), options.calibration)
    problem = block_problem(prior.surrogate, operator, sigma, model)
    criteria = Criteria(problem)
    values = criteria(transfer(spec.name, problem, schedule, prior.schedule.alphas_cumprod))
    return {k: float(v) / PIXEL_SQUARED for k, v in (values | criteria.references()).items()}


__all__ = [
    "TASK_NAMES",
    "DesignOptions",
    "Measurement",
    "ParamSchedule",
    "Prior",
    "Restoration",
    "ZSGuideError",
    "design",
    "design_options",
    "heuristic",
    "image_metrics",
    "load_prior",
    "measure",
    "predict",
    "restore",
    "sampler_names",
]
