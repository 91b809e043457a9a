"""``python -m zsguide analyze`` and ``python -m zsguide tune``: the spectral engine from the command line.

analyze: for one task, step count and noise level, every sampler's closed-form averaged W2 to the posterior, MSE to
the truth and perception distance (W2 from its output marginal to the prior), heuristic against designed, with the
ideal posterior sampler and the MMSE estimator as references; a table, ``analysis.json`` and figures.
tune: the designed schedule of one sampler as a ``params.json`` that ``restore --params FILE`` reads.

Units in the outputs: every criterion is per pixel and squared, in [0, 1] pixel units (the network-unit closed forms
divided by 4), so ``mse`` is the quantity restore reports as ``mse_unclipped_mean`` and ``avg_w2`` is comparable with it (the
posterior sampler has avg_w2 0 and MSE 2 mmse; the MMSE estimator has avg_w2 = MSE = mmse).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Optional

from jsonargparse import ActionConfigFile, ArgumentParser

from ...errors import ZSGuideError, one_line
from ...parameters import record_design_inputs
from ...restoration import network_sigma
from ...runtime.files import check_output_dir, check_output_file
from ...runtime.options import add_noise_options
from ...spectral.options import DesignOptions, add_design_options

UNIT = 4.0  # network-unit squared quantities -> [0, 1] pixel units


def _analyzed() -> tuple[str, ...]:
    """The samplers with a closed form (the registry, samplers/__init__.py)."""
    from ...samplers import sampler_names

    return sampler_names(closed_form=True)


def _parser(prog: str, tune: bool) -> ArgumentParser:
    p = ArgumentParser(prog=prog, exit_on_error=False, default_meta=False)
    p.add_argument("--config", action=ActionConfigFile)
    p.add_argument("--ckpt_path", "--ckpt", type=Optional[str], default=None, help="checkpoint from fit (required)")
    p.add_argument(
        "--task", type=str, default="deblur_gaussian", help="task: blur, super-resolution or inpainting (see restore)"
    )
    p.add_argument("--task_params", type=dict[str, Any], default={}, help="task parameters, as for restore")
    p.add_argument("--steps", type=int, default=20, help="sampling steps")
    p.add_argument("--spacing", type=Optional[str], default=None, help="timestep spacing (default: the sampler's)")
    add_noise_options(p)
    p.add_argument("--mse_weight", type=float, default=0.0, help="objective: avg W2^2 + mse_weight * MSE")
    p.add_argument(
        "--frequency_bands",
        type=int,
        default=0,
        help="per-frequency variant: DiffPIR's lam per radial band (blur tasks); 0 = one value per step",
    )
    add_design_options(p)
    if tune:
        p.add_argument("--sampler", type=str, default="ddrm", help="ddrm, ddnm, pigdm, dps or diffpir")
        p.add_argument("--output", "-o", type=str, default="params.json", help="the params.json to write")
    else:
        p.add_argument("--samplers", type=list[str], default=list(_analyzed()), help="samplers to analyse")
        p.add_argument("--sweep", type=list[int], default=[], help="also design at these step counts (W2 vs steps)")
        p.add_argument("--output", "-o", type=str, default="runs/analyze", help="output folder")
    return p


def _parse(prog: str, tune: bool, argv: list[str]):
    try:
        cfg = _parser(prog, tune).parse_args(argv)
    except Exception as exc:  # noqa: BLE001
        raise ZSGuideError(one_line(str(exc))) from None
    if cfg.ckpt_path is None:
        raise ZSGuideError("--ckpt_path is required (a checkpoint written by 'python -m zsguide fit')")
    if not cfg.sigma_y >= 0:
        raise ZSGuideError(f"--sigma_y must be >= 0, got {cfg.sigma_y!r}")
    if cfg.steps < 1:
        raise ZSGuideError(f"--steps must be >= 1, got {cfg.steps}")
    if cfg.frequency_bands < 0:
        raise ZSGuideError(f"--frequency_bands must be >= 0, got {cfg.frequency_bands}")
    network_sigma(cfg.sigma_y, cfg.noise_convention)  # an unknown convention: one line naming --noise_convention
    (check_output_file if tune else check_output_dir)(cfg.output, "--output")  # before any work
    return cfg, DesignOptions.from_config(cfg).checked()


def _setup(cfg, design: DesignOptions):
    from ...checkpoint import load_gaussian_prior
    from ...operators import make_operator
    from ...spectral.denoiser_model import denoiser_model_for
    from ...spectral.service import block_problem

    prior = load_gaussian_prior(cfg.ckpt_path)  # surrogate and schedule only: no network, no Lightning import
    operator = make_operator(cfg.task, tuple(prior.meta["image_shape"]), 0, [0], **dict(cfg.task_params or {}))
    sigma_net = network_sigma(cfg.sigma_y, cfg.noise_convention)
    denoiser = denoiser_model_for(design.denoiser_model, prior.surrogate, cfg.ckpt_path, design.calibration)
    return prior, operator, sigma_net, block_problem(prior.surrogate, operator, sigma_net, denoiser)


def _pixel_units(c: dict) -> dict:
    return {k: float(v) / UNIT for k, v in c.items()}


def run_tune(argv: list[str]) -> None:
    from ...samplers import get_sampler
    from ...spectral.service import designed_schedule

    cfg, design = _parse("python -m zsguide tune", True, argv)
    prior, operator, sigma_net, problem = _setup(cfg, design)
    sampler = get_sampler(cfg.sampler)
    heuristic = sampler.heuristic(cfg.task, cfg.steps, prior.schedule, spacing=cfg.spacing)
    t0 = time.perf_counter()
    r = designed_schedule(
        prior.surrogate,
        operator,
        sigma_net,
        prior.schedule,
        heuristic,
        cfg.task,
        mse_weight=cfg.mse_weight,
        problem=problem,
        bands=cfg.frequency_bands,
        **design.resolved(),
    )
    record_design_inputs(r.params, cfg.task_params or {}, cfg.sigma_y, cfg.noise_convention)
    out = Path(cfg.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    r.params.save(out)
    h, d = _pixel_units(r.heuristic), _pixel_units(r.designed)
    print(
        f"tune: {cfg.sampler} on {cfg.task}, {cfg.steps} steps, sigma_y {cfg.sigma_y}, {cfg.denoiser_model} "
        f"denoiser, objective {cfg.objective}: avg W2^2 {h['avg_w2']:.3e} -> {d['avg_w2']:.3e}, MSE {h['mse']:.3e} -> {d['mse']:.3e}, "
        f"perception W2^2 {h['perception_w2']:.3e} -> {d['perception_w2']:.3e} (per pixel, [0, 1] units), {time.perf_counter() - t0:.1f} s\nwrote {out}"
    )


def run_analyze(argv: list[str]) -> None:
    from ...samplers import get_sampler, sampler_names
    from ...spectral.criteria import Criteria
    from ...spectral.service import designed_schedule
    from ...spectral.transfer import transfer
    from .figures import schedule_figure, steps_figure, transfer_figure

    cfg, design = _parse("python -m zsguide analyze", False, argv)
    for name in cfg.samplers:
        if name not in _analyzed():
            get_sampler(name).closed_form_step(None)  # type: ignore[arg-type]  # unknown, or why it has no law
    not_analysed = {n: get_sampler(n).no_law_reason or "no closed form" for n in sampler_names(closed_form=False)}
    t0 = time.perf_counter()
    prior, operator, sigma_net, problem = _setup(cfg, design)
    designed_with = design.resolved()
    abar, criteria = prior.schedule.alphas_cumprod, Criteria(problem)
    refs = _pixel_units(criteria.references())
    mmse = refs["mmse"]
    result = {
        "task": cfg.task,
        "task_params": dict(cfg.task_params or {}),
        "steps": cfg.steps,
        "sigma_y": cfg.sigma_y,
        "noise_convention": cfg.noise_convention,
        **design.record(),
        "calibration": problem.denoiser.source if problem.denoiser is not None else None,
        "units": "per pixel, squared, [0, 1] pixel units",
        "surrogate_digest": prior.surrogate.digest(),
        "structure": problem.structure,
        "reduction": problem.note or None,
        "references": refs,
        "samplers": {},
        "not_analysed": not_analysed,  # the registry's samplers without a closed form, and why
    }
    transfers: dict[tuple[str, str], Any] = {}  # (sampler, label) -> its Transfer
    schedules: dict[str, dict] = {}  # sampler -> {steps: (heuristic, designed)}
    for name in cfg.samplers:
        sampler = get_sampler(name)
        heur = sampler.heuristic(cfg.task, cfg.steps, prior.schedule, spacing=cfg.spacing)
        per_band = any(k.per_band for k in sampler.knob_specs)
        designed = (
            heur
            if not sampler.designable
            else designed_schedule(
                prior.surrogate,
                operator,
                sigma_net,
                prior.schedule,
                heur,
                cfg.task,
                mse_weight=cfg.mse_weight,
                problem=problem,
                criteria=criteria,
                bands=cfg.frequency_bands if per_band else 0,
                **designed_with,
            ).params
        )
        entry: dict[str, Any] = {}
        for label, params in (("heuristic", heur), ("spectral", designed)):
            if params is heur and label == "spectral":  # not designable (the oracle): its design is its heuristic
                entry[label], transfers[(name, label)] = entry["heuristic"], transfers[(name, "heuristic")]
                continue
            tr = transfer(name, problem, params, abar)
            entry[label] = _pixel_units(criteria(tr))
            transfers[(name, label)] = tr
        result["samplers"][name] = entry
        schedules[name] = {cfg.steps: (heur, designed)}
        for n in cfg.sweep:
            if not sampler.designable:
                continue
            h = sampler.heuristic(cfg.task, n, prior.schedule, spacing=cfg.spacing)
            r = designed_schedule(
                prior.surrogate,
                operator,
                sigma_net,
                prior.schedule,
                h,
                cfg.task,
                mse_weight=cfg.mse_weight,
                problem=problem,
                criteria=criteria,
                **designed_with,
            )
            schedules[name][n] = (h, r.params)
            entry.setdefault("sweep", {})[str(n)] = {
                "heuristic": _pixel_units(r.heuristic),
                "spectral": _pixel_units(r.designed),
            }
    grouped = sorted(
        {
            p.provenance["designed_on"]
            for _, p in (v[cfg.steps] for v in schedules.values())
            if "designed_on" in p.provenance
        }
    )
    result["design_reduction"] = grouped[0] if grouped else None
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    transfer_figure(problem, transfers, out / "transfer_functions.png")
    schedule_figure(schedules, out / "designed_schedules.png")
    if cfg.sweep:
        steps_figure(result, out / "w2_vs_steps.png")
    result["wall_time_s"] = time.perf_counter() - t0
    (out / "analysis.json").write_text(json.dumps(result, indent=2))
    lines = [
        f"analyze: {cfg.task}, {cfg.steps} steps, sigma_y {cfg.sigma_y}, {cfg.denoiser_model} denoiser, "
        f"objective {cfg.objective} "
        f"(per pixel, squared, [0, 1] units)",
        f"references: posterior sampler MSE {2 * mmse:.3e}, MMSE {mmse:.3e}"
        + (f"\n{problem.note}" if problem.note else ""),
        f"{'sampler':11s} {'avgW2 heur':>11s} {'avgW2 spec':>11s} {'MSE heur':>10s} {'MSE spec':>10s} "
        f"{'perc heur':>10s} {'perc spec':>10s}",
    ]
    for name, e in result["samplers"].items():
        h, s = e["heuristic"], e["spectral"]
        lines.append(
            f"{name:11s} {h['avg_w2']:11.3e} {s['avg_w2']:11.3e} {h['mse']:10.3e} {s['mse']:10.3e} "
            f"{h['perception_w2']:10.3e} {s['perception_w2']:10.3e}"
        )
    lines += [f"{name:11s} not analysed: no closed form ({why})" for name, why in not_analysed.items()]
    print("\n".join(lines) + f"\nwrote {out} ({result['wall_time_s']:.1f} s)")
