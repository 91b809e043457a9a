"""Radial frequency bands: the per-frequency variant of a knob (one value per band and step) on circulant operators.

Band ``b`` of ``n`` holds the DFT frequencies with ``b <= n |f| / max|f| < b + 1`` (``|f|`` in cycles per pixel,
``radial_frequency``), the last band closed. Knobs given per band are expanded to the operator's Fourier coefficient
layout (H, W) with :func:`expand_bands`.
"""

from __future__ import annotations

import torch

from ..errors import ZSGuideError
from ..surrogate import radial_frequency


def radial_bands(height: int, width: int, bands: int) -> torch.Tensor:
    """Band index (long, (H, W)) of every DFT frequency."""
    f = radial_frequency(height, width)
    return (f / f.max() * bands).floor().long().clamp(max=bands - 1)


def expand_bands(values, operator, like: torch.Tensor, sampler: str, knob: str) -> torch.Tensor | float:
    """A knob's value at one step: a float stays a float; a list of per-band values becomes an (H, W) tensor on the
    Fourier grid of a circulant operator (cast like ``like``)."""
    if not isinstance(values, (list, tuple)):
        return float(values)
    if operator.structure != "fourier_diagonal":
        raise ZSGuideError(
            f"sampler {sampler}: per-frequency {knob!r} needs a circulant (blur) operator, not {operator.structure!r}"
        )
    _, height, width = operator.image_shape
    idx = radial_bands(height, width, len(values))
    return torch.tensor(values, dtype=torch.float64)[idx].to(device=like.device, dtype=like.real.dtype)
