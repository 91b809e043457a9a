"""The options of ``python -m zsguide restore``: a jsonargparse parser (``--config FILE`` for YAML presets).

Every option can sit in a YAML file given with ``--config`` (configs/restore/*.yaml) and be overridden on the command
line after it. ``--data.*`` mirrors the data options of ``fit`` (:class:`~zsguide.data.ImageDataModule`), each
defaulting to the value the checkpoint was trained with, so a ``gaussian`` checkpoint restores ``gaussian`` test data
unless told otherwise. ``--trainer.*`` goes to the Lightning Trainer that runs the predict loop.

Parse errors become one :class:`~zsguide.errors.ZSGuideError` line (jsonargparse's own messages span several lines).
"""

from __future__ import annotations

import inspect
import typing
from typing import Any, Optional, Union

from jsonargparse import ActionConfigFile, ArgumentParser, Namespace

from ..errors import ZSGuideError, one_line
from ..spectral.options import add_design_options

DENOISERS = ("network", "analytic")
NOISE_CONVENTIONS = ("pixel", "network")
PARAM_SOURCES = ("heuristic", "spectral")  # or a path to a params.json
DATA_EXCLUDED = ("batch_size",)  # restore has its own --batch_size

DESCRIPTION = """Restore images with a diffusion prior and a zero-shot sampler.

Test images of the checkpoint's data (or --data.*) are measured with --task (noise --sigma_y, per-image randomness
from --seed and the image index) and restored with --sampler; or --input restores a user's own measurement. Writes
restored/, measurement/, truth/ (PNG and .npy, named by dataset index), grid.png, metrics.csv, params.json,
config.yaml and, last, summary.json (its presence marks a complete run) into --output."""


def build_parser() -> ArgumentParser:
    from ..operators import TASK_NAMES

    p = ArgumentParser(
        prog="python -m zsguide restore", description=DESCRIPTION, exit_on_error=False, default_meta=False
    )
    p.add_argument("--config", action=ActionConfigFile, help="a YAML file of these options (configs/restore/*.yaml)")
    p.add_argument(
        "--ckpt_path",
        "--ckpt",
        type=Optional[str],
        default=None,
        help="checkpoint written by 'python -m zsguide fit' (required)",
    )
    p.add_argument("--task", type=str, default="sr4", help=f"measurement task: {', '.join(TASK_NAMES)}")
    p.add_argument(
        "--task_params",
        type=dict[str, Any],
        default={},
        help="task parameters: --task_params '{\"keep\": 0.3}' or --task_params.keep 0.3",
    )
    p.add_argument("--sampler", type=str, default="ddrm", help="ddrm, ddnm, pigdm, dps, diffpir or oracle")
    p.add_argument(
        "--steps",
        type=Optional[int],
        default=None,
        help="sampling steps (default 20 with --params heuristic; a params file sets its own)",
    )
    p.add_argument(
        "--spacing",
        type=Optional[str],
        default=None,
        help="timestep spacing for --params heuristic: uniform or quadratic (default: the sampler's)",
    )
    p.add_argument(
        "--params",
        type=str,
        default="heuristic",
        help="parameter schedule: heuristic (the peers' defaults), spectral (designed on the checkpoint's "
        "surrogate, cached), or a params.json written by a previous run",
    )
    add_design_options(p, "with --params spectral: ")
    p.add_argument(
        "--sigma_y",
        "--noise",
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
    p.add_argument("--seed", type=int, default=0, help="seed of every per-image draw (masks, kernels, noise, sampler)")
    p.add_argument(
        "--num_images",
        "-n",
        type=Optional[int],
        default=None,
        help="restore the first N test images (default: the whole test split)",
    )
    p.add_argument("--batch_size", type=int, default=16, help="images per batch per device")
    p.add_argument(
        "--denoiser",
        type=str,
        default="network",
        help="network (the trained EMA network) or analytic (the Gaussian surrogate's Wiener denoiser)",
    )
    p.add_argument(
        "--output",
        "--out",
        "-o",
        type=Optional[str],
        default=None,
        help="output directory (default runs/restore/<task>_<sampler>)",
    )
    p.add_argument(
        "--input",
        type=Optional[str],
        default=None,
        help="restore this measurement (PNG/JPEG/... or .npy, in [0, 1]; for sr the low-resolution image) "
        "instead of test images; no ground truth, no metrics",
    )
    p.add_argument("--num_samples", type=int, default=1, help="with --input: K samples (sample k uses index k)")
    p.add_argument(
        "--lpips_weights",
        type=Optional[str],
        default=None,
        help="torchvision AlexNet state_dict for LPIPS (or env ZSGUIDE_LPIPS_WEIGHTS); else LPIPS is skipped",
    )
    add_data_options(p, "default: the checkpoint's data option")
    add_trainer_options(p)
    return p


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


def parse(argv: list[str]) -> Namespace:
    """Parse ``argv`` (the arguments after ``restore``); a bad option raises a one-line :class:`ZSGuideError`."""
    return parse_one_line(build_parser(), argv)


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
