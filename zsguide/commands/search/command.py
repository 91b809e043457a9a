"""``python -m zsguide search``: parse, check, lock the output folder, run (or resume) the study, write the result.

On 1..N devices through Lightning Fabric: ``--trainer.devices N --trainer.strategy ddp`` starts the other ranks by
re-running this command (torchrun or SLURM for several nodes, as for evaluate); every rank restores its share of each
trial's validation images and rank 0 alone keeps the study (zsguide/search/runner.py). Output (``--output``):

- ``study.db``: the Optuna study (SQLite); the same command again resumes it, and refuses other settings;
- ``params.json``: the best schedule, source ``searched`` (``--space peers``) or ``searched_design``, its provenance
  the space, the validation draw and indices, the best value and what the search spent (trials, network calls,
  seconds); ``params_at<K>.json``: the best of the first K trials, for each ``--record_at`` K;
- ``trials.csv``: every finished trial (its point, value, metrics, cost); ``search.json``: the settings and the result.
"""

from __future__ import annotations

import csv
import io
import shlex
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from ...errors import ZSGuideError
from ...runtime.files import atomic_write_text, check_output_dir, json_safe, write_json
from ...runtime.lock import OutputLock, launch_rank_is_zero
from ...runtime.options import DENOISERS, config_to_dict
from ...search import Objective, SearchResult, SearchSettings, provenance, validation_images
from ...spectral.options import DesignOptions
from .options import parse


def output_dir(cfg) -> Path:
    """``--output``, or ``runs/search/<sampler>_<task>_<steps>steps_sigma<sigma_y>_<space>_draw<draw>``."""
    if cfg.output:
        return Path(cfg.output)
    return (
        Path("runs/search")
        / f"{cfg.sampler}_{cfg.task}_{cfg.steps}steps_sigma{cfg.sigma_y:g}_{cfg.space}_draw{cfg.draw}"
    )


def _settings(cfg) -> SearchSettings:
    from ...operators import task_defaults
    from ...restoration import network_sigma
    from ...samplers import get_sampler
    from ...search.space import SPACES

    get_sampler(cfg.sampler)
    task_defaults(cfg.task)
    network_sigma(cfg.sigma_y, cfg.noise_convention)
    if cfg.space not in SPACES:
        raise ZSGuideError(f"unknown --space {cfg.space!r}; choose one of {', '.join(SPACES)}")
    if cfg.denoiser not in DENOISERS:
        raise ZSGuideError(f"unknown --denoiser {cfg.denoiser!r}; choose network or analytic")
    if cfg.steps < 1 or cfg.trials < 1 or cfg.num_images < 1 or cfg.startup_trials < 0:
        raise ZSGuideError("--steps, --trials and --num_images must be >= 1, --startup_trials >= 0")
    if any(k < 1 or k > cfg.trials for k in cfg.record_at):
        raise ZSGuideError(f"--record_at {cfg.record_at}: every K must lie within 1 .. --trials {cfg.trials}")
    return SearchSettings(
        sampler=cfg.sampler,
        task=cfg.task,
        steps=int(cfg.steps),
        sigma_y=float(cfg.sigma_y),
        space=cfg.space,
        objective=Objective(cfg.metric, float(cfg.fd_weight), cfg.lpips_weights),
        seed=int(cfg.seed),
        denoiser=cfg.denoiser,
        noise_convention=cfg.noise_convention,
        task_params=dict(cfg.task_params or {}),
        design=DesignOptions.from_config(cfg).checked(),
        startup_trials=int(cfg.startup_trials),
    )


def _fabric(cfg):
    from lightning.fabric import Fabric

    from ...runtime.signals import cpu_cores

    fabric = Fabric(
        accelerator=cfg.trainer.accelerator,
        devices=cfg.trainer.devices,
        strategy=cfg.trainer.strategy,
        num_nodes=cfg.trainer.num_nodes,
    )
    if fabric.device.type == "cpu" and fabric.world_size // max(cfg.trainer.num_nodes, 1) > cpu_cores():
        raise ZSGuideError(
            f"--trainer.devices {cfg.trainer.devices} on the CPU: more processes than the {cpu_cores()} CPU core(s) "
            f"this process may use"
        )
    fabric.launch()
    return fabric


def run_search(argv: list[str]) -> None:
    """Run (or resume) one search; bad input raises :class:`ZSGuideError` before anything is written."""
    import yaml

    from ...api import load_prior
    from ...search import DistributedShards, LocalShards, search

    cfg = parse(argv)
    if cfg.ckpt_path is None:
        raise ZSGuideError("--ckpt_path is required (a checkpoint written by 'python -m zsguide fit' or a prior file)")
    if not Path(cfg.ckpt_path).is_file():
        raise ZSGuideError(f"checkpoint {cfg.ckpt_path!r} does not exist (--ckpt_path)")
    settings = _settings(cfg)
    output = check_output_dir(output_dir(cfg), "--output")
    is_zero = launch_rank_is_zero()
    created = not output.exists()
    lock = OutputLock(output, "search") if is_zero else None
    try:
        fabric = _fabric(cfg)
        prior = load_prior(cfg.ckpt_path, device=fabric.device)
        validation = validation_images(prior.meta, prior.image_shape, cfg.num_images, cfg.draw, cfg.data)
        lpips_net = None
        if settings.objective.metric == "lpips":
            from ...evaluation.metrics import load_lpips, lpips_weights_path

            path = lpips_weights_path(settings.objective.lpips_weights)
            assert path is not None
            lpips_net = load_lpips(path)
        shards = DistributedShards() if fabric.world_size > 1 else LocalShards()
        progress = _Progress(cfg.trials, settings.objective.direction) if is_zero and cfg.progress else None
        with progress or nullcontext():
            result = search(
                prior,
                settings,
                validation,
                trials=cfg.trials,
                network_calls=cfg.network_calls,
                storage=output / "study.db",
                batch_size=cfg.batch_size,
                shards=shards,
                on_trial=progress.update if progress else None,
                lpips_net=lpips_net,
            )
        if result is None:  # the other ranks: rank 0 writes
            return
        command = "python -m zsguide search " + " ".join(shlex.quote(a) for a in argv)
        budget = {"trials": cfg.trials, "network_calls": cfg.network_calls}
        origin = provenance(settings, validation, result, str(cfg.ckpt_path), budget) | {"command": command}
        _write(output, result, origin, cfg.record_at)
        atomic_write_text(output / "config.yaml", yaml.safe_dump(json_safe(config_to_dict(cfg)), sort_keys=False))
        best = result.best()
        spent = result.spent()
        print(
            f"search {settings.sampler} {settings.task} ({settings.space}): best {settings.objective.metric} "
            f"{best.value:.4g} at trial {best.number} of {spent['trials']}, {spent['network_calls']} network calls, "
            f"{spent['seconds']:.1f} s; wrote {output / 'params.json'}"
        )
    except BaseException:
        if lock is not None and created and not (output / "study.db").exists():
            lock.release(remove_empty_dir=True)
            lock = None
        raise
    finally:
        if lock is not None:
            lock.release()


def _write(output: Path, result: SearchResult, origin: dict, record_at: list[int]) -> None:
    result.params(provenance=origin).save(output / "params.json")
    for k in sorted(set(record_at)):
        if k <= len(result.trials):
            result.params(k, provenance=origin).save(output / f"params_at{k}.json")
    keys = sorted({k for t in result.trials for k in t.summary})
    dims = [d.name for d in result.space.dimensions]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["trial", *dims, "value", *keys, "network_calls", "vjps", "seconds", "error"])
    for t in result.trials:
        w.writerow(
            [t.number, *(t.point.get(d) for d in dims), t.value, *(t.summary.get(k) for k in keys)]
            + [t.network_calls, t.vjps, f"{t.seconds:.3f}", t.error or ""]
        )
    atomic_write_text(output / "trials.csv", buf.getvalue())
    best = result.best()
    summary: dict[str, Any] = {
        **origin,
        "space": result.space.describe(),
        "best": {"trial": best.number, "value": best.value, "point": best.point, "summary": best.summary},
        "spent": result.spent(),
        "best_at": {k: result.best(k).value for k in sorted(set(record_at)) if k <= len(result.trials)},
    }
    write_json(output / "search.json", summary)


class _Progress:
    """A rich progress line on stderr: trials done, the best value so far, network calls spent."""

    def __init__(self, total: int, direction: str) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.direction = direction
        self.best: float | None = None
        self.calls = 0
        self._progress = Progress(
            TextColumn("search"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=Console(file=sys.stderr),
        )
        self._task = self._progress.add_task("", total=total)

    def __enter__(self) -> _Progress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def update(self, record, finished: int) -> None:
        self.calls += record.network_calls
        if record.value is not None:
            better = self.best is None or (
                record.value > self.best if self.direction == "maximize" else record.value < self.best
            )
            self.best = record.value if better else self.best
        best = "-" if self.best is None else f"{self.best:.4g}"
        self._progress.update(self._task, completed=finished, description=f"best {best}, {self.calls} calls")
