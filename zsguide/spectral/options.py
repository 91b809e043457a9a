"""The design options, defined once: what ``restore --params spectral``, evaluate's ``grid.params`` entries,
``analyze``, ``tune`` and the Python API (zsguide/api.py) design with.

:class:`DesignOptions` holds them, with the command line's defaults (``DesignOptions()`` is what no option given
means); :func:`add_design_options` puts them on a jsonargparse parser (their types and help are the fields'
metadata); :meth:`DesignOptions.checked` checks their values, each failure one :class:`~zsguide.errors.ZSGuideError`
line naming the option; :meth:`DesignOptions.resolved` gives the keyword arguments of
:func:`zsguide.spectral.service.designed_schedule`. A new design option is a field here (type, default, help, its
check) and its use in the designer. No heavy imports at the top: restore's parser loads this module before Lightning.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, Optional, Union

DEFAULT_TRUST_FACTOR = 2.0
"""The trust factor that ``restore --params spectral``, ``analyze`` and ``tune`` use when none is given: every designed
knob within a factor 2 of its heuristic. The closed forms are exact for the Gaussian surrogate, not for a trained
network: on the shipped checkpoint the unconstrained design diverges where it pushes a knob far from the peers'
value, and a factor 2 (the one factor measured there) removes most of the cells where the design is worse on both
PSNR and the Frechet spectral distance while keeping the inpainting gains (docs/benchmarks.md, "Designs inside a
trust region", has the numbers)."""

UNCONSTRAINED = ("none", "inf", "unconstrained")


def _option(name: str) -> str:
    return f"--{name}"


def resolve_trust_factor(value, option: str = "--trust_factor") -> float | None:
    """A command line's trust factor as ``design(trust=...)`` takes it: left out (None) -> DEFAULT_TRUST_FACTOR;
    ``none`` / ``inf`` / ``unconstrained`` -> None (the unconstrained optimum for the surrogate); a number > 1 -> itself.
    Anything else is a one-line error naming the option and the value."""
    from ..errors import ZSGuideError

    if value is None:
        return DEFAULT_TRUST_FACTOR
    given = value
    if isinstance(value, str):
        if value.strip().lower() in UNCONSTRAINED:
            return None
        try:
            value = float(value)
        except ValueError:
            value = math.nan
    if isinstance(value, (int, float)) and math.isinf(value) and value > 0:
        return None
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 1):
        raise ZSGuideError(
            f"{option} must be a number > 1 (every knob within that factor of its heuristic) or "
            f"'none' for an unconstrained design, got {given!r}"
        )
    return float(value)


def resolve_objective(value, option: str = "--objective") -> str:
    """A command line's design objective (design.py: w2, mse, perception or pareto); anything else is a one-line
    error naming the option and the value."""
    from ..errors import ZSGuideError
    from .design import OBJECTIVES

    if value not in OBJECTIVES:
        raise ZSGuideError(
            f"{option} must be one of {', '.join(OBJECTIVES)} (the closed-form criterion the design "
            f"minimises), got {value!r}"
        )
    return str(value)


def _help(text: str, type_: Any) -> dict:
    return {"help": text, "type": type_}


@dataclass(frozen=True)
class DesignOptions:
    """How ``spectral`` designs: the command lines' ``--trust_factor``, ``--pareto_guard``, ``--objective``,
    ``--denoiser_model`` and ``--calibration`` (defaults: theirs), or one of evaluate's ``grid.params`` entries."""

    trust_factor: Any = field(
        default=None,
        metadata=_help(
            "keep every designed knob within this factor (> 1) of its heuristic (odds for knobs in [0, 1]), or "
            f"'none' for the unconstrained design; default: {DEFAULT_TRUST_FACTOR:g}",
            Union[float, str, None],
        ),
    )  # as the command line takes it: None -> DEFAULT_TRUST_FACTOR, "none" -> unconstrained
    pareto_guard: bool = field(
        default=False,
        metadata=_help(
            "design only closed-form Pareto improvements: MSE and perception W2 no worse than the heuristic's "
            "(within 0.1 percent)",
            bool,
        ),
    )
    objective: str = field(
        default="w2",
        metadata=_help(
            "what the design minimises in closed form: w2 (avg W2 to the posterior), mse (distortion), perception "
            "(W2 of the output marginal to the prior) or pareto (w2 without raising MSE or perception W2 above the "
            "heuristic's)",
            str,
        ),
    )
    denoiser_model: str = field(
        default="gaussian",
        metadata=_help(
            "the denoiser the closed forms assume: gaussian (the surrogate's Wiener denoiser) or calibrated (the "
            "network's measured gain and residual, from 'python -m zsguide calibrate'; spectral/denoiser_model.py)",
            str,
        ),
    )
    calibration: str | None = field(
        default=None,
        metadata=_help(
            "with --denoiser_model calibrated: the calibration file (default: the network calibration next to the "
            "checkpoint, for this checkpoint file)",
            Optional[str],
        ),
    )  # None: the calibration next to the checkpoint (denoiser_model calibrated)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_config(cls, cfg) -> DesignOptions:
        """The options of a parsed command line (a jsonargparse namespace or a mapping holding every option)."""
        return cls(**{name: cfg[name] for name in cls.names()})

    def given(self) -> list[str]:
        """The options set to something other than their default, in field order."""
        default = DesignOptions()
        return [name for name in self.names() if getattr(self, name) != getattr(default, name)]

    def checked(self, option: Callable[[str], str] = _option) -> DesignOptions:
        """``self`` once every value is checked; each failure is one :class:`ZSGuideError` line naming the option as
        ``option(name)`` (``--trust_factor``; ``grid.params[1].trust_factor`` for an evaluate entry)."""
        from ..errors import ZSGuideError
        from .denoiser_model import DENOISER_MODELS

        resolve_trust_factor(self.trust_factor, option("trust_factor"))
        if not isinstance(self.pareto_guard, bool):
            raise ZSGuideError(f"{option('pareto_guard')} must be true or false, got {self.pareto_guard!r}")
        resolve_objective(self.objective, option("objective"))
        if self.denoiser_model not in DENOISER_MODELS:
            raise ZSGuideError(
                f"{option('denoiser_model')} must be one of {', '.join(DENOISER_MODELS)}, got {self.denoiser_model!r}"
            )
        if self.calibration is not None and (
            self.denoiser_model != "calibrated" or not isinstance(self.calibration, str)
        ):
            raise ZSGuideError(
                f"{option('calibration')} (a file path) applies to {option('denoiser_model')} calibrated only"
            )
        return self

    def resolved(self) -> dict:
        """The keyword arguments of :func:`~zsguide.spectral.service.designed_schedule` these options give, besides
        the denoiser model (:func:`~zsguide.spectral.denoiser_model.denoiser_model_for` resolves that one):
        ``trust`` (a float, or None for the unconstrained design), ``guard`` and ``objective``."""
        return {
            "trust": resolve_trust_factor(self.trust_factor),
            "guard": self.pareto_guard,
            "objective": self.objective,
        }

    def record(self) -> dict:
        """The options as a run records them (analysis.json): the trust factor resolved (a number, or None for the
        unconstrained design), the others as given."""
        return {name: getattr(self, name) for name in self.names()} | {
            "trust_factor": resolve_trust_factor(self.trust_factor)
        }

    def label(self) -> str:
        """A short name of the design: ``spectral`` for the default one, else ``spectral_trust<T>`` /
        ``spectral_free``, plus ``_guard``, ``_<objective>`` for an objective other than w2, and ``_calibrated``."""
        factor = resolve_trust_factor(self.trust_factor)
        name = (
            "spectral"
            if factor == DEFAULT_TRUST_FACTOR
            else ("spectral_free" if factor is None else f"spectral_trust{factor:g}")
        )
        return (
            name
            + ("_guard" if self.pareto_guard else "")
            + (f"_{self.objective}" if self.objective != "w2" else "")
            + ("_calibrated" if self.denoiser_model == "calibrated" else "")
        )


def add_design_options(parser, context: str = "") -> None:
    """The fields of :class:`DesignOptions` as ``--<name>`` options of a jsonargparse parser, with their defaults;
    ``context`` prefixes their help (e.g. "with --params spectral: ")."""
    for f in fields(DesignOptions):
        parser.add_argument(
            f"--{f.name}", type=f.metadata["type"], default=f.default, help=context + f.metadata["help"]
        )
