"""Zero-shot posterior samplers: one module per method, each a step function over (denoiser, operator, y, x_t) with
its closed-form law beside it (``closed_form_step``, samplers/law.py).

``SAMPLERS`` is the one registry: every sampler with its knobs (name, domain, per band or not; base.Knob), whether the
spectral engine has its law (``closed_form``: the class defines ``closed_form_step``) and whether the designer may
move its knobs (``designable``: a law, knobs, and not exact). The lists the rest of the package uses (restore's and
evaluate's names, analyze's, the designer's) are read from it by :func:`sampler_names`; :func:`register_sampler` adds
one (docs/architecture.md, "Adding a sampler")."""

from ..errors import ZSGuideError
from .base import Knob, ParamSchedule, Sampler
from .daps import DAPS
from .ddnm import DDNMPlus
from .ddrm import DDRM
from .diffpir import DiffPIR
from .dps import DPS
from .oracle import Oracle
from .pigdm import PiGDM
from .reddiff import RedDiffAdam, RedDiffSGD

SAMPLERS: dict[str, Sampler] = {
    s.name: s
    for s in (
        DDRM(),
        DDNMPlus(),
        PiGDM(),
        DPS(),
        DiffPIR(),
        RedDiffAdam(),
        RedDiffSGD(),
        DAPS(),
        DAPS("daps_fast", ode_steps=1),
        Oracle(),
    )
}
SAMPLER_NAMES = tuple(SAMPLERS)  # the built-in samplers (sampler_names() also lists registered ones)


def register_sampler(sampler: Sampler) -> Sampler:
    """Add ``sampler`` to the registry under its ``name`` (non-empty, not taken) and return it; from then on
    :func:`get_sampler` finds it and :func:`sampler_names` lists it, and the registry's tests check its law."""
    if not sampler.name or sampler.name in SAMPLERS:
        raise ZSGuideError(f"cannot register sampler {sampler.name!r}: the name is empty or already taken")
    SAMPLERS[sampler.name] = sampler
    return sampler


def sampler_names(*, designable: bool | None = None, closed_form: bool | None = None) -> tuple[str, ...]:
    """The registry's sampler names, those with ``designable`` / ``closed_form`` equal to the value when given."""
    return tuple(
        n
        for n, s in SAMPLERS.items()
        if (designable is None or s.designable == designable) and (closed_form is None or s.closed_form == closed_form)
    )


def get_sampler(name: str) -> Sampler:
    """The sampler called ``name``; an unknown name raises :class:`ZSGuideError` listing the valid ones."""
    if name not in SAMPLERS:
        raise ZSGuideError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    return SAMPLERS[name]


__all__ = [
    "SAMPLERS",
    "SAMPLER_NAMES",
    "Knob",
    "ParamSchedule",
    "Sampler",
    "get_sampler",
    "register_sampler",
    "sampler_names",
]
