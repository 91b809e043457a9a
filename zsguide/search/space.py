"""The two spaces a hyperparameter search draws a sampler's parameter schedule from (issue 26; docs/search.md).

``peers``: the field's practice (InverseBench's sweeps, DAPS's own). One scalar per knob, drawn from the knob's
published range (:meth:`zsguide.samplers.base.Knob.search_range`: log-uniform where the peers draw it so, e.g. DPS's
guidance scale in [1e-3, 1e3]; a unit knob on [0, 1]; a positive knob with no published range a decade either side of
its heuristic). The scalar replaces the heuristic's value at the first step and keeps the heuristic's shape over the
steps (DAPS's step size decays from it, as the reference's ``lr`` does):

    knob_i = c h_i / h_0                 (h: the heuristic schedule, c: the drawn scalar)

``design``: a few multipliers on the spectrally designed schedule ``d`` (parameters.py, ``--params spectral``), two per
knob, its overall scale ``s`` (log-uniform in [1/F, F]) and its tilt over time ``g`` (uniform in [-G, G]), with
``u_i = i / (n - 1)`` the step's position:

    positive knob:  knob_i = d_i s exp(g (2 u_i - 1))
    unit knob:      odds(knob_i) = odds(d_i) s exp(g (2 u_i - 1)),   odds(v) = v / (1 - v)

so ``s = 1, g = 0`` is the design itself, the study's first trial. A unit knob is moved through its odds (as the
designer moves it, spectral/design.py), so it stays in (0, 1); a value of exactly 0 or 1 is moved from 1e-3 off it.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from ..samplers.base import ParamSchedule, Sampler

SCALE_FACTOR = 4.0  # F: the design space's scale within [1/4, 4] (the trust region's factor 2, twice over)
TILT = math.log(4.0)  # G: the last step's factor over the first's within 4^-+2 (16)
UNIT_MARGIN = 1e-3  # a unit knob at exactly 0 or 1 is moved from this far inside before its odds are scaled


@dataclass(frozen=True)
class Dimension:
    """One searched number: its name in the study, its range, and whether it is drawn log-uniformly."""

    name: str
    low: float
    high: float
    log: bool
    source: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "log": self.log, "source": self.source}


class SearchSpace(ABC):
    """Maps a point (one value per :class:`Dimension`) to a parameter schedule of ``sampler``."""

    name: str = ""

    def __init__(self, sampler: Sampler, base: ParamSchedule) -> None:
        sampler.check_params(base)
        self.sampler, self.base = sampler, base

    @property
    @abstractmethod
    def dimensions(self) -> tuple[Dimension, ...]:
        """The searched numbers, in a fixed order."""

    @abstractmethod
    def schedule(self, point: dict[str, float]) -> ParamSchedule:
        """The parameter schedule at ``point``."""

    def start(self) -> dict[str, float] | None:
        """The point the study evaluates first (None: the sampler draws the first point)."""
        return None

    def describe(self) -> dict[str, Any]:
        """What params.json records of the space: its name and every dimension's range."""
        return {"name": self.name, "dimensions": {d.name: d.as_dict() for d in self.dimensions}}

    def _with(self, values: dict[str, list], point: dict[str, float]) -> ParamSchedule:
        b = self.base
        return ParamSchedule(
            b.method, b.task, b.steps, b.spacing, list(b.timesteps), values, {"source": self.name, "point": point}
        )


def _scalar(value: float | list[float]) -> float:
    return float(value[0]) if isinstance(value, list) else float(value)


class PeersSpace(SearchSpace):
    """The field's space: one scalar per knob on its published range, the heuristic's shape over the steps."""

    name = "peers"

    @property
    def dimensions(self) -> tuple[Dimension, ...]:
        dims = []
        for knob in self.sampler.knob_specs:
            low, high, log, source = knob.search_range(_scalar(self.base.values[knob.name][0]))
            dims.append(Dimension(knob.name, low, high, log, source))
        return tuple(dims)

    def schedule(self, point: dict[str, float]) -> ParamSchedule:
        values = {}
        for knob in self.sampler.knob_specs:
            h = [_scalar(v) for v in self.base.values[knob.name]]
            c = float(point[knob.name])
            values[knob.name] = [c * v / h[0] for v in h] if h[0] != 0 and len(set(h)) > 1 else [c] * len(h)
        return self._with(values, point)


class DesignSpace(SearchSpace):
    """Multipliers on a designed schedule: per knob its scale and its tilt over time, the design at (1, 0)."""

    name = "design"

    @property
    def dimensions(self) -> tuple[Dimension, ...]:
        dims = []
        for knob in self.sampler.knob_specs:
            dims.append(Dimension(f"{knob.name}.scale", 1 / SCALE_FACTOR, SCALE_FACTOR, True, "x the design"))
            dims.append(Dimension(f"{knob.name}.tilt", -TILT, TILT, False, "exp(g (2u - 1)) over the steps"))
        return tuple(dims)

    def start(self) -> dict[str, float]:
        return {d.name: (1.0 if d.name.endswith(".scale") else 0.0) for d in self.dimensions}

    def schedule(self, point: dict[str, float]) -> ParamSchedule:
        n = self.base.steps
        values: dict[str, list] = {}
        for knob in self.sampler.knob_specs:
            s, g = float(point[f"{knob.name}.scale"]), float(point[f"{knob.name}.tilt"])
            row = []
            for i, v in enumerate(self.base.values[knob.name]):
                factor = s * math.exp(g * (2 * (i / max(n - 1, 1)) - 1))
                move = (lambda x: _unit(x, factor)) if knob.domain == "unit" else (lambda x: x * factor)
                row.append([move(float(x)) for x in v] if isinstance(v, list) else move(float(v)))
            values[knob.name] = row
        return self._with(values, point)


def _unit(value: float, factor: float) -> float:
    """``value`` in [0, 1] with its odds multiplied by ``factor`` (``value`` itself for a factor of 1)."""
    if factor == 1.0:
        return value
    v = min(max(value, UNIT_MARGIN), 1 - UNIT_MARGIN)
    odds = v / (1 - v) * factor
    return odds / (1 + odds)


SPACES: dict[str, type[PeersSpace] | type[DesignSpace]] = {"peers": PeersSpace, "design": DesignSpace}
