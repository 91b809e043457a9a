"""The held-out test images of a prior: the data it was made with (a checkpoint's ``datamodule_hyper_parameters``, a
prior file's surrogate data), overridden by the ``--data.*`` given, and the test split's first ``num_images``
(restore, evaluate, calibrate, ``test`` on a prior file, the Python API). DataLoader workers: 0 unless
``num_workers`` is given (the checkpoint's training value is not reused: restoring is compute-bound)."""

from __future__ import annotations

from collections.abc import Mapping

from torch.utils.data import Subset

from ..errors import ZSGuideError
from .options import DATA_EXCLUDED


def data_options_for(meta: dict, image_shape: tuple[int, int, int], data: Mapping | None = None) -> dict:
    """The prior's data options (``meta["data"]``), overridden by the ``data`` given (``--data.*``: None values are
    not given; the commands' own ``--batch_size`` aside)."""
    import inspect

    from ..data import ImageDataModule

    accepted = set(inspect.signature(ImageDataModule.__init__).parameters) - {"self", *DATA_EXCLUDED}
    base = meta.get("data") or {"image_size": image_shape[1], "channels": image_shape[0]}
    options = {k: v for k, v in base.items() if k in accepted and k != "num_workers"}  # workers: ours, not fit's
    given = {k: v for k, v in (data or {}).items() if v is not None and k in accepted}
    return options | given


def held_out_images(
    meta: dict,
    image_shape: tuple[int, int, int],
    *,
    num_images: int | None = None,
    data: Mapping | None = None,
    ckpt_path: str | None = None,
    batch_size: int = 16,
) -> tuple[dict, Subset, list[int]]:
    """``(data options, the test split's first num_images images (default all), their indices)`` of the prior's data
    (metadata ``meta``, images of ``image_shape``) overridden by ``data``; a shape mismatch is one error line naming
    the checkpoint ``ckpt_path``. ``batch_size`` is recorded in the data options (``batch_size`` of the data module)."""
    from ..data import ImageDataModule

    options = data_options_for(meta, image_shape, data)
    dm = ImageDataModule(**options, batch_size=int(batch_size))
    if tuple(dm.image_shape) != image_shape:
        raise ZSGuideError(
            f"the checkpoint {ckpt_path!r} was made for images of shape {image_shape} (C, H, W), but the data "
            f"({options.get('name')}) gives {tuple(dm.image_shape)}; pass matching --data.image_size / "
            f"--data.channels"
        )
    test = dm.dataset("test")
    n = len(test) if num_images is None else int(num_images)
    if n > len(test):
        raise ZSGuideError(
            f"--num_images {n} exceeds the {len(test)} images of the test split of data set {options.get('name')!r}"
        )
    if n < 1:
        raise ZSGuideError(f"the test split of data set {options.get('name')!r} is empty")
    return dict(dm.hparams), Subset(test, range(n)), list(range(n))
