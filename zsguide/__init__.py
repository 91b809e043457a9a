"""zsguide: zero-shot diffusion posterior sampling with spectrally designed parameters.

The Python API (zsguide/api.py), in pixel units with the command line's defaults::

    prior = zsguide.load_prior("checkpoints/patches32.ckpt")
    images, indices = prior.test_images(8)
    m = zsguide.measure(images, "deblur_gaussian", sigma_y=0.01, indices=indices)
    out = zsguide.restore(prior, m, "diffpir", steps=20, params="spectral")
    zsguide.predict(prior, "deblur_gaussian", "diffpir", steps=20, sigma_y=0.01, params=out.params)

``zsguide.RestorationCallback`` restores with them inside any Lightning run (``fit`` uses it).

The names are loaded on first use, so ``python -m zsguide`` and ``import zsguide`` stay light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"


if TYPE_CHECKING:
    from .api import (
        TASK_NAMES,
        DesignOptions,
        Measurement,
        ParamSchedule,
        Prior,
        Restoration,
        ZSGuideError,
        design,
        design_options,
        heuristic,
        image_metrics,
        load_prior,
        measure,
        predict,
        restore,
        sampler_names,
    )
    from .restoration_callback import RestorationCallback


def __getattr__(name: str) -> Any:
    if name == "RestorationCallback":
        from .restoration_callback import RestorationCallback

        return RestorationCallback
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'zsguide' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "TASK_NAMES",
    "DesignOptions",
    "Measurement",
    "ParamSchedule",
    "Prior",
    "Restoration",
    "RestorationCallback",
    "ZSGuideError",
    "__version__",
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
