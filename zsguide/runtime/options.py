"""The command-line pieces several commands share (restore, evaluate, calibrate, prior, test on a prior file): the
``--data.*`` options (each of :class:`~zsguide.data.ImageDataModule`'s, default None for the caller to fill), a predict
run's ``--trainer.*`` options, jsonargparse parse errors as one :class:`~zsguide.errors.ZSGuideError` line, the parsed
options as a plain dict, and the names the commands accept for the denoiser and the noise convention."""

from __future__ import annotations

import inspect
import typing
from typing import Optional, Union

from jsonargparse import ArgumentParser, Namespace

from ..errors import ZSGuideError, one_line
from ..restoration import NOISE_CONVENTIONS

DENOISERS = ("network", "analytic")
DATA_EXCLUDED = ("batch_size",)  # the commands have their own --batch_size

__all__ = [
    "DATA_EXCLUDED",
    "DENOISERS",
    "NOISE_CONVENTIONS",
    "add_data_options",
    "add_trainer_options",
    "config_to_dict",
    "parse_one_line",
]


def add_trainer_options(p: ArgumentParser, precision_note: str = "") -> None:
    """``--trainer.*`` for the Lightning Trainer of a predict run (restore, evaluate)."""
    p.add_argument("--trainer.accelerator", type=str, default="auto", help="cpu, gpu, auto, ...")
    p.add_argument("--trainer.devices", type=Union[int, str, list[int]], default=1, help="devices per node")
    p.add_argument("--trainer.strategy", type=str, default="auto", help="auto, ddp, ...")
    p.add_argument(
        "--trainer.precision",
        type=Optional[Union[int, str]],
        default="32-true",
        help=f"32-true, 64-true, bf16-mixed, 16-mixed, ...{precision_note}",
    )
    p.add_argument(
        "--trainer.num_nodes",
        type=int,
        default=1,
        help="nodes (torchrun or SLURM start one process per device on each)",
    )
    p.add_argument("--trainer.enable_progress_bar", type=bool, default=True)


def add_data_options(p: ArgumentParser, default_note: str) -> None:
    """``--data.<name>`` for each option of ImageDataModule (its own ``batch_size`` aside), default None: the caller
    fills it (restore: the checkpoint's value; prior: the data module's default or the network's shape)."""
    from ..data import ImageDataModule

    hints = typing.get_type_hints(ImageDataModule.__init__)
    for name, param in inspect.signature(ImageDataModule.__init__).parameters.items():
        if name == "self" or name in DATA_EXCLUDED:
            continue
        kind = hints[name]
        p.add_argument(
            f"--data.{name}",
            type=Optional[kind],
            default=None,
            help=f"{default_note} (fit's default {param.default!r})",
        )


def add_noise_options(p: ArgumentParser, *sigma_aliases: str) -> None:
    """``--sigma_y`` (the measurement noise std, default 0.01) and ``--noise_convention`` (``pixel``: sigma_y in
    [0, 1] units, the network sees ``2 sigma_y``; ``network``: in [-1, 1] units; zsguide/restoration.py
    ``network_sigma`` converts)."""
    p.add_argument(
        "--sigma_y",
        *sigma_aliases,
        type=float,
        default=0.01,
        help="measurement noise std (pixel units [0, 1] unless --noise_convention network)",
    )
    p.add_argument(
        "--noise_convention",
        type=str,
        default="pixel",
        help="pixel: sigma_y is the std in [0, 1] units (network std 2 sigma_y); network: in [-1, 1] units",
    )


def parse_one_line(parser: ArgumentParser, argv: list[str]) -> Namespace:
    """``parser.parse_args(argv)`` with every parse error (and YAML error from ``--config``) as one
    :class:`ZSGuideError` line."""
    try:
        return parser.parse_args(argv)
    except ZSGuideError:
        raise
    except Exception as exc:  # jsonargparse's ArgumentError (and YAML errors from --config)
        raise ZSGuideError(one_line(str(exc))) from None


def config_to_dict(cfg: Namespace) -> dict:
    """The namespace as a plain dict (for config.yaml), without the ``--config`` bookkeeping."""
    cfg = cfg.clone()
    if "config" in cfg:
        del cfg["config"]
    return cfg.as_dict()
