"""The design-region options that ``analyze``, ``tune`` and ``restore --params spectral`` share (no heavy imports:
restore's parser loads this before Lightning). Their values are resolved by service.resolve_trust_factor and
passed to service.designed_schedule as ``trust`` and ``guard`` (design.py has the mathematics)."""

from __future__ import annotations

from typing import Optional, Union

DEFAULT_TRUST_FACTOR = 2.0
"""The trust factor that ``restore --params spectral``, ``analyze`` and ``tune`` use when none is given: every designed
knob within a factor 2 of its heuristic. The closed forms are exact for the Gaussian surrogate, not for a trained
network: on the shipped checkpoint the unconstrained design diverges where it pushes a knob far from the peers'
value, and a factor 2 (the one factor measured there) removes most of the cells where the design is worse on both
PSNR and the Frechet spectral distance while keeping the inpainting gains (docs/benchmarks.md, "Designs inside a
trust region", has the numbers)."""


def add_design_region_options(parser, context: str = "") -> None:
    """``--trust_factor`` (default: DEFAULT_TRUST_FACTOR, 2; ``none`` for the unconstrained design),
    ``--denoiser_model``, ``--calibration``, ``--objective`` and ``--pareto_guard`` on a jsonargparse parser; ``context`` prefixes their help (e.g. "with --params spectral: ")."""
    parser.add_argument(
        "--trust_factor",
        type=Union[float, str, None],
        default=None,
        help=f"{context}keep every designed knob within this factor (> 1) of its heuristic (odds for "
        f"knobs in [0, 1]), or 'none' for the unconstrained design; default: "
        f"{DEFAULT_TRUST_FACTOR:g}",
    )
    parser.add_argument(
        "--denoiser_model",
        type=str,
        default="gaussian",
        help=f"{context}the denoiser the closed forms assume: gaussian (the surrogate's Wiener "
        "denoiser) or calibrated (the network's measured gain and residual, from 'python -m "
        "zsguide calibrate'; spectral/denoiser_model.py)",
    )
    parser.add_argument(
        "--calibration",
        type=Optional[str],
        default=None,
        help=f"{context}with --denoiser_model calibrated: the calibration file (default: the "
        "network calibration next to the checkpoint, for this checkpoint file)",
    )
    parser.add_argument(
        "--objective",
        type=str,
        default="w2",
        help=f"{context}what the design minimises in closed form: w2 (avg W2 to the posterior), mse "
        "(distortion), perception (W2 of the output marginal to the prior) or pareto (w2 "
        "without raising MSE or perception W2 above the heuristic's)",
    )
    parser.add_argument(
        "--pareto_guard",
        type=bool,
        default=False,
        help=f"{context}design only closed-form Pareto improvements: MSE and perception W2 no worse "
        "than the heuristic's (within 0.1 percent)",
    )
