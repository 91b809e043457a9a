"""The options of ``python -m zsguide evaluate``: a jsonargparse parser (``--config FILE``, every entry overridable).

The grid is ``--grid.samplers`` x ``--grid.tasks`` x ``--grid.steps`` x ``--grid.params`` x ``--grid.sigma_y`` x
``--grid.seeds``; each task is a name or ``{name, params, label}``, each parameter source ``heuristic``, ``spectral``
(restore's default design, trust factor 2) or ``{source, trust_factor, pareto_guard, objective, denoiser_model,
calibration, label}`` (grid.py). The rest
mirrors ``restore``: the prior (``--ckpt_path``), the held-out images (``--data.*``, defaulting to the checkpoint's,
and ``--num_images``), the denoiser, the noise convention, LPIPS weights, and ``--trainer.*`` for the one Lightning
run (devices, nodes, strategy, precision). Parse errors become one :class:`~zsguide.errors.ZSGuideError` line.
"""

from __future__ import annotations

from typing import Any, Optional, Union

from jsonargparse import ActionConfigFile, ArgumentParser, Namespace

from ...runtime.options import add_data_options, add_trainer_options, parse_one_line

DESCRIPTION = """Evaluate a grid of restorations (samplers x tasks x steps x parameter sources x sigma_y x seeds) on
held-out images as one Lightning run on 1..N devices, resumable: every (cell, image) result is committed to
--output as it is produced, and the same command again finishes what is missing. Writes results.csv, cells.csv,
cells.json, report.md and figures/ into --output."""

EPILOG = """exit status: 0 when the grid is complete; 2 for bad input (one 'error: ...' line, nothing run); 3 when a
cell failed (e.g. a sampler's NaN): the report is written, the cell is marked failed, and its failed batches run
again next time (docs/evaluate.md)."""


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="python -m zsguide evaluate",
        description=DESCRIPTION,
        epilog=EPILOG,
        exit_on_error=False,
        default_meta=False,
    )
    p.add_argument("--config", action=ActionConfigFile, help="a YAML file of these options (configs/evaluate/*.yaml)")
    p.add_argument(
        "--ckpt_path",
        "--ckpt",
        type=Optional[str],
        default=None,
        help="checkpoint written by 'python -m zsguide fit', or a prior file (required)",
    )
    p.add_argument("--grid.samplers", type=list[str], default=["ddrm"], help="samplers (restore --sampler names)")
    p.add_argument(
        "--grid.tasks",
        type=list[Union[str, dict[str, Any]]],
        default=["sr4"],
        help="tasks: a name, or {name: inpaint_random, params: {keep: 0.3}, label: ...}",
    )
    p.add_argument("--grid.steps", type=list[int], default=[20], help="sampling step counts")
    p.add_argument(
        "--grid.params",
        type=list[Union[str, dict[str, Any]]],
        default=["heuristic", "spectral"],
        help="parameter sources: heuristic, spectral, or {source: spectral, trust_factor: none, "
        "pareto_guard: false, objective: w2, denoiser_model: gaussian, label: ...}",
    )
    p.add_argument(
        "--grid.sigma_y",
        type=list[float],
        default=[0.02],
        help="measurement noise levels (pixel units [0, 1] unless --noise_convention network)",
    )
    p.add_argument("--grid.seeds", type=list[int], default=[0], help="seeds of every per-image draw")
    p.add_argument("--noise_convention", type=str, default="pixel", help="pixel or network (as in restore)")
    p.add_argument(
        "--num_images",
        "-n",
        type=Optional[int],
        default=None,
        help="the first N held-out test images (default: the whole test split)",
    )
    p.add_argument("--batch_size", type=int, default=16, help="images per batch per device (within one cell)")
    p.add_argument("--denoiser", type=str, default="network", help="network or analytic (as in restore)")
    p.add_argument(
        "--output",
        "--out",
        "-o",
        type=Optional[str],
        default=None,
        help="output directory (default runs/evaluate/<config name or 'grid'>)",
    )
    p.add_argument(
        "--lpips_weights",
        type=Optional[str],
        default=None,
        help="torchvision AlexNet state_dict for LPIPS (or env ZSGUIDE_LPIPS_WEIGHTS); else skipped",
    )
    p.add_argument(
        "--fid_weights",
        type=Optional[str],
        default=None,
        help="torch-fidelity's InceptionV3 weights (pt_inception-2015-12-05-6726825d.pth) for FID "
        "(or env ZSGUIDE_FID_WEIGHTS); else FID is skipped",
    )
    p.add_argument(
        "--bootstrap", type=int, default=200, help="bootstrap resamples for the standard errors of FD and FID (0: none)"
    )
    p.add_argument("--examples", type=int, default=4, help="images per task in the report's example grid")
    p.add_argument(
        "--save_images", type=bool, default=True, help="write every restoration as a PNG under cells/<cell>/restored/"
    )
    p.add_argument(
        "--report_only",
        type=bool,
        default=False,
        help="rebuild results.csv, cells.*, report.md and figures/ from what is committed; run nothing",
    )
    add_data_options(p, "default: the checkpoint's data option")
    add_trainer_options(p, "; part of every cell's settings")
    return p


def parse(argv: list[str]) -> Namespace:
    """Parse ``argv`` (the arguments after ``evaluate``); a bad option raises a one-line :class:`ZSGuideError`."""
    return parse_one_line(build_parser(), argv)
