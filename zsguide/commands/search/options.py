"""The options of ``python -m zsguide search``: a jsonargparse parser (``--config FILE``, every entry overridable)."""

from __future__ import annotations

from typing import Any, Optional, Union

from jsonargparse import ActionConfigFile, ArgumentParser, Namespace

from ...runtime.options import add_data_options, add_noise_options, parse_one_line
from ...search.objective import FD_WEIGHT, METRICS
from ...search.space import SPACES
from ...search.study import STARTUP_TRIALS
from ...spectral.options import add_design_options

DESCRIPTION = """Search one sampler's parameters with the network in the loop (Optuna's TPE), maximising a metric of
its restorations of a few validation images (the prior's validation split, never the test images), within a budget of
trials and network calls; resumable (the study is kept in OUTPUT/study.db: the same command continues it). Writes
OUTPUT/params.json (the best schedule, for restore --params and evaluate's 'searched' sources), params_at<K>.json for
every --record_at K, trials.csv and search.json."""


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="python -m zsguide search", description=DESCRIPTION, exit_on_error=False, default_meta=False
    )
    p.add_argument("--config", action=ActionConfigFile, help="a YAML file of these options")
    p.add_argument(
        "--ckpt_path", "--ckpt", type=Optional[str], default=None, help="checkpoint or prior file (required)"
    )
    p.add_argument("--sampler", type=str, default="ddrm", help="the sampler whose knobs are searched")
    p.add_argument("--task", type=str, default="sr4", help="the task (restore --task names)")
    p.add_argument("--task_params", type=dict[str, Any], default={}, help="the task's parameters, e.g. {keep: 0.3}")
    p.add_argument("--steps", type=int, default=20, help="sampling steps")
    add_noise_options(p)
    p.set_defaults(sigma_y=0.02)
    p.add_argument(
        "--space",
        type=str,
        default="design",
        help=f"{' or '.join(SPACES)}: multipliers (scale, tilt) on the spectral design, started at it (the default: "
        "better on held-out images than the peers' space at 10 and 30 trials, docs/benchmarks.md), or the knobs' "
        "published ranges",
    )
    p.add_argument("--trials", type=int, default=30, help="the budget in trials")
    p.add_argument(
        "--network_calls",
        type=Optional[int],
        default=None,
        help="the budget in network calls (forward evaluations summed over the images; none: trials only)",
    )
    p.add_argument(
        "--record_at",
        type=list[int],
        default=[],
        help="also write the best of the first K trials as params_at<K>.json, for each K",
    )
    p.add_argument("--num_images", "-n", type=int, default=6, help="validation images per trial")
    p.add_argument("--draw", type=int, default=0, help="which draw of validation images (a seeded permutation)")
    p.add_argument("--metric", type=str, default="psnr", help=f"what is optimised: {', '.join(METRICS)}")
    p.add_argument("--fd_weight", type=float, default=FD_WEIGHT, help="psnr_fd: PSNR - fd_weight x spectral FD")
    p.add_argument("--lpips_weights", type=Optional[str], default=None, help="AlexNet weights for --metric lpips")
    p.add_argument("--seed", type=int, default=0, help="seed of the measurements, the sampler's noise and the search")
    p.add_argument("--startup_trials", type=int, default=STARTUP_TRIALS, help="random trials before TPE models")
    p.add_argument("--denoiser", type=str, default="network", help="network or analytic")
    p.add_argument("--batch_size", type=int, default=16, help="images per chunk (chunks are shared out over devices)")
    add_design_options(p, "--space design: ")
    p.add_argument("--output", "--out", "-o", type=Optional[str], default=None, help="default runs/search/<run>")
    add_data_options(p, "default: the checkpoint's data option")
    p.add_argument("--trainer.accelerator", type=str, default="auto", help="cpu, gpu, auto")
    p.add_argument("--trainer.devices", type=Union[int, str], default=1, help="devices per node (images shared out)")
    p.add_argument("--trainer.strategy", type=str, default="auto", help="auto, ddp")
    p.add_argument("--trainer.num_nodes", type=int, default=1, help="nodes")
    p.add_argument("--progress", type=bool, default=True, help="a rich progress line on stderr")
    return p


def parse(argv: list[str]) -> Namespace:
    return parse_one_line(build_parser(), argv)
