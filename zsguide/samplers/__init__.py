"""Zero-shot posterior samplers: one module per method, each a step function over (denoiser, operator, y, x_t)."""

from ..errors import ZSGuideError
from .base import ParamSchedule, Sampler
from .ddnm import DDNMPlus
from .ddrm import DDRM
from .diffpir import DiffPIR
from .dps import DPS
from .oracle import Oracle
from .pigdm import PiGDM

SAMPLERS: dict[str, Sampler] = {s.name: s for s in (DDRM(), DDNMPlus(), PiGDM(), DPS(), DiffPIR(), Oracle())}
SAMPLER_NAMES = tuple(SAMPLERS)


def get_sampler(name: str) -> Sampler:
    """The sampler called ``name``; an unknown name raises :class:`ZSGuideError` listing the valid ones."""
    if name not in SAMPLERS:
        raise ZSGuideError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLER_NAMES)}")
    return SAMPLERS[name]


__all__ = ["SAMPLERS", "SAMPLER_NAMES", "ParamSchedule", "Sampler", "get_sampler"]
