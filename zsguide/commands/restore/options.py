"""The options of ``python -m zsguide restore``: a jsonargparse parser (``--config FILE`` for YAML presets).

Every option can sit in a YAML file given with ``--config`` (configs/restore/*.yaml) and be overridden on the command
line after it. ``--data.*`` mirrors the data options of ``fit`` (:class:`~zsguide.data.ImageDataModule`), each
defaulting to the value the checkpoint was trained with, so a ``gaussian`` checkpoint restores ``gaussian`` test data
unless told otherwise. ``--trainer.*`` goes to the Lightning Trainer that runs the predict loop.

Parse errors become one :class:`~zsguide.errors.ZSGuideError` line (jsonargparse's own messages span several lines).
The options that other commands share (``--data.*``, ``--trainer.*``) are in :mod:`zsguide.runtime.options`.
"""

from __future__ import annotations

from typing import Any, Optional

from jsonargparse import ActionConfigFile, ArgumentParser, Namespace

from ...runtime.options import add_data_options, add_noise_options, add_trainer_options, parse_one_line
from ...spectral.options import add_design_options

PARAM_SOURCES = ("heuristic", "spectral")  # or a path to a params.json

DESCRIPTION = """Restore images with a diffusion prior and a zero-shot sampler.

Test images of the checkpoint's data (or --data.*) are measured with --task (noise --sigma_y, per-image randomness
from --seed and the image index) and restored with --sampler; or --input restores a user's own measurement. Writes
restored/, measurement/, truth/ (PNG and .npy, named by dataset index), grid.png, metrics.csv, params.json,
config.yaml and, last, summary.json (its presence marks a complete run) into --output."""


def build_parser() -> ArgumentParser:
    from ...operators import TASK_NAMES

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
    add_noise_options(p, "--noise")
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


def parse(argv: list[str]) -> Namespace:
    """Parse ``argv`` (the arguments after ``restore``); a bad option raises a one-line :class:`ZSGuideError`."""
    return parse_one_line(build_parser(), argv)
